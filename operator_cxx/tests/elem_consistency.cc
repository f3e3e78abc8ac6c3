// Checks, without a GPU, that the per-element functions the CUDA kernels run (im2col_elem,
// col2im_elem, col2im_coord_elem, pad/unpad_elem, permuted_weight_index; dcn/deform_im2col.h)
// give the same results as the CPU loops (cpu/deform_conv.cc) that the Python tests verify
// against the float64 reference. Each element function is run here in a plain serial loop, as
// a grid-stride kernel would run it. Built and run by `make elem-check`; exits non-zero on a
// mismatch.
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "dcn/deform_conv_launchers.h"

using dcn::index_t;

namespace {

struct SerialAdd {
  void operator()(double* p, double v) const { *p += v; }
};

double max_diff(const std::vector<double>& a, const std::vector<double>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::fmax(m, std::fabs(a[i] - b[i]));
  return m;
}

int check(int N, int C, int H, int W, int kh, int kw, int sh, int sw, int ph, int pw, int dh,
          int dw, int groups, int dg, bool modulated, unsigned seed) {
  const int Ho = (H + 2 * ph - dh * (kh - 1) - 1) / sh + 1;
  const int Wo = (W + 2 * pw - dw * (kw - 1) - 1) / sw + 1;
  const int K = kh * kw;
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(-1, 1);
  std::uniform_int_distribution<int> ui(-3, 2);
  std::vector<double> data(static_cast<size_t>(N) * C * H * W),
      off(static_cast<size_t>(N) * dg * 2 * K * Ho * Wo);
  std::vector<double> mask(static_cast<size_t>(N) * dg * K * Ho * Wo);
  for (auto& x : data) x = u(rng);
  for (auto& x : off) x = ui(rng) + 0.1 + 0.8 * (u(rng) + 1) / 2;
  off[3] = NAN;
  off[7] = 1e30;
  for (auto& x : mask) x = 1 + u(rng) / 2;

  dcn::DeformArgs<double> a{};
  a.offset = off.data();
  a.mask = modulated ? mask.data() : nullptr;
  a.C = C;
  a.H = H;
  a.W = W;
  a.Ho = Ho;
  a.Wo = Wo;
  a.kh = kh;
  a.kw = kw;
  a.sh = sh;
  a.sw = sw;
  a.ph = ph;
  a.pw = pw;
  a.dh = dh;
  a.dw = dw;
  a.dg = dg;
  a.groups = groups;
  a.n0 = 0;
  a.S = N;
  a.r0 = 0;
  a.rows = Ho;

  // pad: CPU loop vs pad_elem
  std::vector<double> pad_cpu(N * a.image_size()), pad_elem(N * a.image_size(), 0.0);
  dcn::cpu::deform_pad(a, data.data(), pad_cpu.data());
  for (index_t i = 0; i < static_cast<index_t>(data.size()); ++i)
    dcn::pad_elem(i, a, data.data(), pad_elem.data());
  int bad = 0;
  auto report = [&](const char* what, double d) {
    std::printf("%-12s max |cpu - elem| = %.3g\n", what, d);
    if (!(d < 1e-12)) ++bad;
  };
  report("pad", max_diff(pad_cpu, pad_elem));
  a.padded = pad_cpu.data();

  // im2col
  std::vector<dcn::Sample<double>> table(a.sample_count());
  std::vector<double> col_cpu(a.col_size()), col_elem(a.col_size());
  dcn::cpu::deform_im2col(a, table.data(), col_cpu.data());
  for (index_t i = 0; i < a.col_size(); ++i) col_elem[i] = dcn::im2col_elem(i, a);
  report("im2col", max_diff(col_cpu, col_elem));

  // col2im + unpad
  std::vector<double> gcol(a.col_size());
  for (auto& x : gcol) x = u(rng);
  std::vector<double> gp_cpu(N * a.image_size(), 0.0), gp_elem(N * a.image_size(), 0.0);
  dcn::cpu::deform_col2im(a, table.data(), gcol.data(), gp_cpu.data());
  for (index_t i = 0; i < a.col_size(); ++i)
    dcn::col2im_elem(i, a, gcol.data(), gp_elem.data(), SerialAdd());
  report("col2im", max_diff(gp_cpu, gp_elem));
  std::vector<double> gd_cpu(data.size()), gd_elem(data.size());
  dcn::cpu::deform_unpad(a, gp_cpu.data(), gd_cpu.data());
  for (index_t i = 0; i < static_cast<index_t>(data.size()); ++i)
    dcn::unpad_elem(i, a, gp_cpu.data(), gd_elem.data());
  report("unpad", max_diff(gd_cpu, gd_elem));

  // col2im_coord
  std::vector<double> go_cpu(off.size()), go_elem(off.size()), gm_cpu(mask.size()),
      gm_elem(mask.size());
  dcn::cpu::deform_col2im_coord(a, gcol.data(), go_cpu.data(), modulated ? gm_cpu.data() : nullptr);
  for (index_t e = 0; e < a.sample_count(); ++e) {
    dcn::col2im_coord_elem(e, a, gcol.data(), go_elem.data(), modulated ? gm_elem.data() : nullptr);
  }
  report("coord", max_diff(go_cpu, go_elem) + max_diff(gm_cpu, gm_elem));

  // weight permutation
  const int F = 2 * groups, Cg = C / groups;
  std::vector<double> w(static_cast<size_t>(F) * Cg * K), wp_cpu(w.size()), wp_elem(w.size()),
      back(w.size());
  for (auto& x : w) x = u(rng);
  dcn::cpu::permute_weight(w.data(), wp_cpu.data(), F, Cg, K);
  for (index_t i = 0; i < static_cast<index_t>(w.size()); ++i)
    wp_elem[dcn::permuted_weight_index(i, Cg, K)] = w[i];
  dcn::cpu::unpermute_weight(wp_cpu.data(), back.data(), F, Cg, K);
  report("permute", max_diff(wp_cpu, wp_elem) + max_diff(w, back));
  return bad;
}

}  // namespace

int main() {
  int bad = 0;
  bad += check(3, 6, 6, 5, 3, 2, 2, 1, 1, 2, 2, 1, 2, 3, true, 1);     // the tests' awkward case
  bad += check(2, 160, 7, 6, 3, 3, 1, 1, 1, 1, 1, 1, 2, 5, false, 2);  // column blocks 64 + 16
  bad += check(1, 72, 5, 9, 1, 3, 1, 2, 0, 1, 1, 2, 3, 4, true, 3);
  std::printf(bad ? "elem-check: FAILED\n" : "elem-check: ok\n");
  return bad ? 1 : 0;
}
