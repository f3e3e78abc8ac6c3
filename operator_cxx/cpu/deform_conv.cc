// CPU loops of (modulated) deformable convolution: OpenMP over independent outputs, calling the
// per-element math of include/dcn/{sampling,deform_im2col}.h, and OpenBLAS for the GEMMs.
//
// Speed: the bilinear corners/weights of a sample depend on (image, position, tap, group) but not
// on the channel, so they are computed once into a table and reused by every channel of the
// deformable group. The images are copied channels-last and zero-padded (sampling.h), so for one
// sample the channels of a group are contiguous both in the data and in the column buffer: every
// inner loop below runs over contiguous channels with no bounds tests and vectorizes (omp simd).
// Determinism: col2im runs one thread per (image, channel run), so no two threads ever write
// the same element (no atomics, same result for any thread count); col2im_coord gives each
// sample's offset / mask gradients to exactly one thread.
#include <algorithm>
#include <cstring>
#include <vector>

#include "dcn/deform_conv_launchers.h"

// The wheel's libopenblas.so.0 ships without headers; these are its CBLAS prototypes (32-bit int).
extern "C" {
enum CBLAS_ORDER { CblasRowMajor = 101, CblasColMajor = 102 };
enum CBLAS_TRANSPOSE { CblasNoTrans = 111, CblasTrans = 112 };
void cblas_sgemm(enum CBLAS_ORDER order, enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb, int M,
                 int N, int K, float alpha, const float* A, int lda, const float* B, int ldb,
                 float beta, float* C, int ldc);
void cblas_dgemm(enum CBLAS_ORDER order, enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb, int M,
                 int N, int K, double alpha, const double* A, int lda, const double* B, int ldb,
                 double beta, double* C, int ldc);
}

namespace dcn {
namespace cpu {

namespace {

struct PlainAdd {
  template <typename T>
  void operator()(T* p, T v) const {
    *p += v;
  }
};

// A run of channels [c0, c1) within one deformable group g, one weight group and one column
// block: contiguous in the padded images and, for each tap, in a row of the column buffer.
struct Run {
  int c0, c1, g;
};

template <typename T>
std::vector<Run> channel_runs(const DeformArgs<T>& a) {
  std::vector<Run> runs;
  const int cpg = a.channels_per_dg(), Cg = a.Cg();
  for (int c = 0; c < a.C;) {
    const int gi0 = c / Cg * Cg;
    const int end =
        std::min({(c / cpg + 1) * cpg, gi0 + Cg, gi0 + ((c - gi0) / kColBlock + 1) * kColBlock});
    runs.push_back({c, end, c / cpg});
    c = end;
  }
  return runs;
}

// Iterations handed out at a time by the dynamic schedules: on a shared machine a thread that
// loses its core does not hold up the others (static halves would), and results do not depend
// on the schedule (every output element is computed by exactly one iteration).
constexpr int kChunk = 16;

}  // namespace

template <typename T>
void deform_pad(const DeformArgs<T>& a, const T* data, T* padded) {
  // One (image, padded row) per iteration: the channels-last transpose of an input row.
  const int H = a.H, W = a.W, C = a.C, Hp = padded_height(H);
  const index_t rows = static_cast<index_t>(a.S) * Hp;
  constexpr int kCB = 16;  // channels per block: kCB input rows read at once
#pragma omp parallel for schedule(dynamic, kChunk)
  for (index_t sr = 0; sr < rows; ++sr) {
    const int s = static_cast<int>(sr / Hp), y = static_cast<int>(sr % Hp) - 1;
    T* dst = padded + s * a.image_size() + static_cast<index_t>(y + 1) * a.row();
    if (y < 0 || y >= H) {
      std::fill(dst, dst + a.row(), T(0));
      continue;
    }
    std::fill(dst, dst + C, T(0));                                          // pixel (y, -1)
    std::fill(dst + static_cast<index_t>(W + 1) * C, dst + a.row(), T(0));  // pixel (y, W)
    const T* src = data + ((a.n0 + s) * C) * H * W + static_cast<index_t>(y) * W;
    for (int c0 = 0; c0 < C; c0 += kCB) {
      const int c1 = std::min(C, c0 + kCB);
      for (int x = 0; x < W; ++x) {
        T* d = dst + static_cast<index_t>(x + 1) * C;
        for (int c = c0; c < c1; ++c) d[c] = src[static_cast<index_t>(c) * H * W + x];
      }
    }
  }
}

template <typename T>
void deform_unpad(const DeformArgs<T>& a, const T* grad_padded, T* grad_data) {
  // One (image, channel block) per iteration: the inverse transpose.
  const int H = a.H, W = a.W, C = a.C;
  constexpr int kCB = 16;
  const int blocks = (C + kCB - 1) / kCB;
  const index_t items = static_cast<index_t>(a.S) * blocks;
#pragma omp parallel for schedule(dynamic, kChunk)
  for (index_t it = 0; it < items; ++it) {
    const int s = static_cast<int>(it / blocks), c0 = static_cast<int>(it % blocks) * kCB;
    const int c1 = std::min(C, c0 + kCB);
    for (int y = 0; y < H; ++y) {
      const T* src = grad_padded + s * a.image_size() + padded_index(y, 0, a.Wp()) * a.px();
      for (int c = c0; c < c1; ++c) {
        T* d = grad_data + ((a.n0 + s) * C + c) * H * W + static_cast<index_t>(y) * W;
        for (int x = 0; x < W; ++x) d[x] = src[static_cast<index_t>(x) * C + c];
      }
    }
  }
}

template <typename T>
void deform_im2col(const DeformArgs<T>& a, Sample<T>* table, T* col) {
  // One row (image, position) of the column buffer per iteration: its samples [tap][g] first
  // (into the table, which col2im reuses), then their channels.
  const std::vector<Run> runs = channel_runs(a);
  const int K = a.taps(), dg = a.dg;
  const index_t P = a.P(), SP = a.SP(), CK = a.CK(), px = a.px(), row = a.row();
#pragma omp parallel for schedule(dynamic, kChunk)
  for (index_t r = 0; r < SP; ++r) {
    const index_t s = r / P;
    const int ho = a.r0 + static_cast<int>(r % P / a.Wo), wo = static_cast<int>(r % P % a.Wo);
    Sample<T>* t = table + r * K * dg;
    for (int i = 0, k = 0; i < a.kh; ++i) {
      for (int j = 0; j < a.kw; ++j) {
        for (int g = 0; g < dg; ++g) t[k++] = sample_at(a, g, i, j, a.n0 + s, ho, wo);
      }
    }
    const T* image = a.padded + s * a.image_size();
    T* dst_row = col + r * CK;
    for (int tap = 0; tap < K; ++tap) {
      for (const Run& run : runs) {
        const Sample<T> smp = t[tap * dg + run.g];
        const T* src = image + run.c0;
        T* dst = dst_row + col_column(a, run.c0, tap);
        const int n = run.c1 - run.c0;
#pragma omp simd
        for (int c = 0; c < n; ++c) dst[c] = gather(smp, src + c, px, row);
      }
    }
  }
}

template <typename T>
void deform_col2im(const DeformArgs<T>& a, const Sample<T>* table, const T* gcol, T* grad_padded) {
  // One (image, channel run) per iteration: it alone scatters into those channels, and reads a
  // contiguous stretch of every row of the column buffer (the run's column block).
  const std::vector<Run> runs = channel_runs(a);
  const int K = a.taps(), dg = a.dg;
  const index_t P = a.P(), CK = a.CK(), px = a.px(), row = a.row();
  const index_t items = static_cast<index_t>(a.S) * runs.size();
  const PlainAdd add;
#pragma omp parallel for schedule(dynamic, 1)
  for (index_t it = 0; it < items; ++it) {
    const int s = static_cast<int>(it / runs.size());
    const Run& run = runs[it % runs.size()];
    T* dst = grad_padded + s * a.image_size() + run.c0;
    const int n = run.c1 - run.c0;
    for (index_t p = 0; p < P; ++p) {
      const index_t r = s * P + p;
      const Sample<T>* t = table + r * K * dg + run.g;
      const T* src_row = gcol + r * CK;
      for (int tap = 0; tap < K; ++tap) {
        const Sample<T> smp = t[tap * dg];
        const T* src = src_row + col_column(a, run.c0, tap);
#pragma omp simd
        for (int c = 0; c < n; ++c) scatter(smp, src[c], dst + c, px, row, add);
      }
    }
  }
}

template <typename T>
void deform_col2im_coord(const DeformArgs<T>& a, const T* gcol, T* grad_offset, T* grad_mask) {
  // One row (image, position) per iteration: all taps and groups of that position.
  const std::vector<Run> runs = channel_runs(a);
  const int K = a.taps();
  const index_t P = a.P(), SP = a.SP(), CK = a.CK(), px = a.px(), row = a.row();
#pragma omp parallel for schedule(dynamic, kChunk)
  for (index_t r = 0; r < SP; ++r) {
    const int s = static_cast<int>(r / P);
    const index_t p = r % P;
    const int ho = a.r0 + static_cast<int>(p / a.Wo), wo = static_cast<int>(p % a.Wo);
    const T* image = a.padded + s * a.image_size();
    const T* grow = gcol + r * CK;
    for (int tap = 0; tap < K; ++tap) {
      const int i = tap / a.kw, j = tap % a.kw;
      for (int g = 0; g < a.dg; ++g) {
        const CoordSample<T> cs = coord_sample_at(a, g, i, j, a.n0 + s, ho, wo);
        T acc_h = T(0), acc_w = T(0), acc_m = T(0);
        if (cs.valid) {
          for (const Run& run : runs) {
            if (run.g != g) continue;
            const T* src = image + run.c0;
            const T* gsrc = grow + col_column(a, run.c0, tap);
            const int n = run.c1 - run.c0;
#pragma omp simd reduction(+ : acc_h, acc_w, acc_m)
            for (int c = 0; c < n; ++c) {
              T dvh, dvw, v;
              coord_terms(cs, src + c, px, row, &dvh, &dvw, &v);
              acc_h += gsrc[c] * dvh;
              acc_w += gsrc[c] * dvw;
              acc_m += gsrc[c] * v;
            }
          }
        }
        coord_write(a, cs, acc_h, acc_w, acc_m, g, tap, s, p, grad_offset, grad_mask);
      }
    }
  }
}

template <typename T>
void permute_weight(const T* weight, T* permuted, index_t F, int Cg, int K) {
  const index_t KCg = static_cast<index_t>(K) * Cg;
#pragma omp parallel for schedule(static)
  for (index_t f = 0; f < F; ++f) {
    for (int cc = 0; cc < Cg; ++cc) {
      for (int tap = 0; tap < K; ++tap) {
        permuted[f * KCg + group_column(cc, tap, Cg, K)] = weight[f * KCg + cc * K + tap];
      }
    }
  }
}

template <typename T>
void unpermute_weight(const T* permuted, T* weight, index_t F, int Cg, int K) {
  const index_t KCg = static_cast<index_t>(K) * Cg;
#pragma omp parallel for schedule(static)
  for (index_t f = 0; f < F; ++f) {
    for (int cc = 0; cc < Cg; ++cc) {
      for (int tap = 0; tap < K; ++tap) {
        weight[f * KCg + cc * K + tap] = permuted[f * KCg + group_column(cc, tap, Cg, K)];
      }
    }
  }
}

template <>
void gemm<float>(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda,
                 const float* B, int ldb, float beta, float* C, int ldc) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N,
              K, alpha, A, lda, B, ldb, beta, C, ldc);
}

template <>
void gemm<double>(bool ta, bool tb, int M, int N, int K, double alpha, const double* A, int lda,
                  const double* B, int ldb, double beta, double* C, int ldc) {
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N,
              K, alpha, A, lda, B, ldb, beta, C, ldc);
}

template <typename T>
void fill_bias(T* out, const T* bias, index_t N, index_t F, index_t plane) {
#pragma omp parallel for schedule(static)
  for (index_t nf = 0; nf < N * F; ++nf) {
    std::fill(out + nf * plane, out + (nf + 1) * plane, bias[nf % F]);
  }
}

template <typename T>
void bias_grad(const T* gout, T* gbias, index_t N, index_t F, index_t plane) {
#pragma omp parallel for schedule(static)
  for (index_t f = 0; f < F; ++f) {
    T acc = T(0);
    for (index_t n = 0; n < N; ++n) {
      const T* g = gout + (n * F + f) * plane;
      for (index_t p = 0; p < plane; ++p) acc += g[p];
    }
    gbias[f] = acc;
  }
}

template <typename T>
void fill_zero(T* ptr, index_t count) {
#pragma omp parallel for schedule(static)
  for (index_t i = 0; i < count; ++i) ptr[i] = T(0);
}

#define DCN_INSTANTIATE(T)                                                              \
  template void deform_pad<T>(const DeformArgs<T>&, const T*, T*);                      \
  template void deform_unpad<T>(const DeformArgs<T>&, const T*, T*);                    \
  template void deform_im2col<T>(const DeformArgs<T>&, Sample<T>*, T*);                 \
  template void deform_col2im<T>(const DeformArgs<T>&, const Sample<T>*, const T*, T*); \
  template void deform_col2im_coord<T>(const DeformArgs<T>&, const T*, T*, T*);         \
  template void permute_weight<T>(const T*, T*, index_t, int, int);                     \
  template void unpermute_weight<T>(const T*, T*, index_t, int, int);                   \
  template void fill_bias<T>(T*, const T*, index_t, index_t, index_t);                  \
  template void bias_grad<T>(const T*, T*, index_t, index_t, index_t);                  \
  template void fill_zero<T>(T*, index_t);

DCN_INSTANTIATE(float)
DCN_INSTANTIATE(double)
#undef DCN_INSTANTIATE

}  // namespace cpu
}  // namespace dcn
