// DeformableConvolution / ModulatedDeformableConvolution: attribute parsing, shape and type
// inference, and the forward / backward drivers shared by CPU and GPU.
//
// Computes out = W * deformable_im2col(data, offset[, mask]) + bias (see dcn/deform_im2col.h for
// the definition and layouts; papers: Dai et al. ICCV 2017, Zhu et al. CVPR 2019). Tensors:
//   data (N, C, H, W)   offset (N, dg*2*kh*kw, Ho, Wo)   mask (N, dg*kh*kw, Ho, Wo)
//   weight (F, C/num_group, kh, kw)   bias (F,)          out (N, F, Ho, Wo)
//
// Drivers: the batch is processed in chunks of S = min(im2col_step, N) images, or of one image
// and a few output rows when that keeps the column buffer under ~24 MB (no slower, less memory
// traffic) or is needed to stay under the cap min(workspace MB, INT_MAX) on the single workspace
// allocation per call (alloc_cpu / alloc_gpu take an int). Per call: weight -> weight' (the
// column order of the column buffer). Per image group: zero-padded channels-last copy of the
// images. Per chunk: im2col [CPU: + sample table] -> one GEMM per (image, weight group) straight
// into the output (ldc = Ho*Wo, no transposition copy). Backward per chunk: im2col ->
// grad_weight' += grad_out . col -> col := grad_out^T . weight' (reusing the column buffer) ->
// col2im into a padded data gradient (copied out once per image group) and col2im_coord
// (offset / mask gradients); grad_weight' -> grad_weight at the end. Layouts: dcn/deform_im2col.h.
// Only the loop heads, GEMM and allocation differ between the devices (the Backend structs).
//
// The library never learns grad_req: every gradient is fully overwritten ('add' is unsupported).
#include "ops/deform_conv.h"
#include "ops/shape_utils.h"

#include <algorithm>
#include <climits>
#include <string>
#include <vector>

#include "dcn/common.h"
#include "dcn/deform_conv_launchers.h"
#include "dcn/geometry.h"

namespace dcn {
namespace {

using mxnet::ext::kFloat32;
using mxnet::ext::kFloat64;
using mxnet::ext::MX_FAIL;
using mxnet::ext::MX_SUCCESS;


const char* op_name(const ConvGeom& g) {
  return g.modulated ? "ModulatedDeformableConvolution" : "DeformableConvolution";
}

std::vector<std::string> input_names(const ConvGeom& g) {
  std::vector<std::string> names = {"data", "offset"};
  if (g.modulated) names.push_back("mask");
  names.push_back("weight");
  if (!g.no_bias) names.push_back("bias");
  return names;
}

std::vector<int64_t> expected_input_shape(const ConvGeom& g, const ConvShapes& sh, int k) {
  if (k == 0) return sh.data;
  if (k == 1) return sh.offset;
  if (k == g.mask_index()) return sh.mask;
  if (k == g.weight_index()) return sh.weight;
  return sh.bias;
}

MXReturnValue parse(const Attrs& attrs, bool modulated, ConvGeom* g) {
  std::string err;
  DCN_CHECK(parse_conv_geom(attrs, modulated, g, &err))
      << (modulated ? "ModulatedDeformableConvolution" : "DeformableConvolution") << ": " << err;
  return MX_SUCCESS;
}

// ---------------------------------------------------------------------------------------------
// Chunking

struct ChunkPlan {
  int64_t imgs = 0, rows = 0;  // images and output rows per chunk
  // Workspace regions, each 64-byte aligned, `copies` times (1: forward; 2: backward, for the
  // gradients): permuted weight, padded images; then the column buffer and the sample table.
  size_t weight_bytes = 0, padded_bytes = 0, col_bytes = 0;
  size_t bytes = 0;
};

size_t align64(int64_t bytes) { return static_cast<size_t>((bytes + 63) / 64 * 64); }

MXReturnValue plan_chunks(const ConvGeom& g, const ConvShape& s, size_t elem, size_t table_elem,
                          int copies, ChunkPlan* plan) {
  const int64_t cap = std::min<int64_t>(g.workspace_mb * (int64_t(1) << 20), INT_MAX - 1024);
  const int64_t CK = s.C * g.taps();
  const int64_t weight = copies * static_cast<int64_t>(align64(s.F * CK / g.groups * elem));
  // Bytes per image (padded copies) and per output position of one image (a column-buffer row of
  // C*kh*kw values + dg*kh*kw table entries); all factors are bounded, nothing overflows.
  const int64_t per_img = copies * s.C * (s.H + 3) * (s.W + 2) * static_cast<int64_t>(elem);
  const int64_t per_pos =
      CK * static_cast<int64_t>(elem) + static_cast<int64_t>(g.dgroups) * g.taps() * table_elem;
  const int64_t step = std::min<int64_t>(g.im2col_step, s.N);
  const int64_t per_img_total = per_img + s.Ho * s.Wo * per_pos;
  const int64_t room = cap - weight - 256;  // 256: alignment slack
  // Column buffer + table per chunk beyond this size only cost memory traffic: the GEMMs are as
  // fast on a few output rows at a time (measured ~10% faster forward on 64x64x256).
  const int64_t kPreferred = int64_t(24) << 20;
  if (room > 0 && per_img_total <= room && step <= room / per_img_total &&
      step * s.Ho * s.Wo * per_pos <= kPreferred) {
    plan->imgs = step;
    plan->rows = s.Ho;
  } else {
    plan->imgs = 1;
    const int64_t row_bytes = per_pos * s.Wo;
    const int64_t avail = std::min(room - per_img, std::max(kPreferred, row_bytes));
    plan->rows = avail > 0 ? std::min<int64_t>(s.Ho, avail / row_bytes) : 0;
    DCN_CHECK(plan->rows > 0) << op_name(g) << ": one image and one output row need "
                              << weight + per_img + row_bytes
                              << " bytes of workspace (weights, padded images C*(H+3)*(W+2), "
                                 "column buffer C*kh*kw*Wo), more than the cap of "
                              << cap << " bytes (min(workspace=" << g.workspace_mb
                              << " MB, INT_MAX)); raise workspace or reduce the input";
  }
  const int64_t positions = plan->imgs * plan->rows * s.Wo;
  plan->weight_bytes = align64(s.F * CK / g.groups * elem);
  plan->padded_bytes = align64(plan->imgs * per_img / copies);
  plan->col_bytes = align64(CK * positions * static_cast<int64_t>(elem));
  plan->bytes = copies * (plan->weight_bytes + plan->padded_bytes) + plan->col_bytes +
                static_cast<size_t>(g.dgroups * g.taps() * positions) * table_elem;
  return MX_SUCCESS;
}

template <typename T>
DeformArgs<T> chunk_args(const ConvGeom& g, const ConvShape& s, const T* padded, const T* offset,
                         const T* mask, int64_t n0, int64_t imgs, int64_t r0, int64_t rows) {
  DeformArgs<T> a;
  a.padded = padded;
  a.offset = offset;
  a.mask = mask;
  a.C = static_cast<int>(s.C);
  a.H = static_cast<int>(s.H);
  a.W = static_cast<int>(s.W);
  a.Ho = static_cast<int>(s.Ho);
  a.Wo = static_cast<int>(s.Wo);
  a.kh = g.kh;
  a.kw = g.kw;
  a.sh = g.sh;
  a.sw = g.sw;
  a.ph = g.ph;
  a.pw = g.pw;
  a.dh = g.dh;
  a.dw = g.dw;
  a.dg = g.dgroups;
  a.groups = g.groups;
  a.n0 = n0;
  a.S = static_cast<int>(imgs);
  a.r0 = static_cast<int>(r0);
  a.rows = static_cast<int>(rows);
  return a;
}

// ---------------------------------------------------------------------------------------------
// Backends: what differs between the devices.

struct CpuBackend {
  static constexpr bool kTable = true;
  const OpResource& res;

  void* alloc(size_t bytes) const { return res.alloc_cpu(static_cast<int>(bytes)); }
  template <typename T>
  const char* pad(const DeformArgs<T>& a, const T* data, T* padded) const {
    cpu::deform_pad(a, data, padded);
    return nullptr;
  }
  template <typename T>
  const char* unpad(const DeformArgs<T>& a, const T* grad_padded, T* grad_data) const {
    cpu::deform_unpad(a, grad_padded, grad_data);
    return nullptr;
  }
  template <typename T>
  const char* permute(const T* w, T* wp, index_t F, int Cg, int K) const {
    cpu::permute_weight(w, wp, F, Cg, K);
    return nullptr;
  }
  template <typename T>
  const char* unpermute(const T* wp, T* w, index_t F, int Cg, int K) const {
    cpu::unpermute_weight(wp, w, F, Cg, K);
    return nullptr;
  }
  template <typename T>
  const char* im2col(const DeformArgs<T>& a, Sample<T>* t, T* col) const {
    cpu::deform_im2col(a, t, col);  // also fills the sample table
    return nullptr;
  }
  template <typename T>
  const char* col2im(const DeformArgs<T>& a, const Sample<T>* t, const T* gcol, T* gp) const {
    cpu::deform_col2im(a, t, gcol, gp);
    return nullptr;
  }
  template <typename T>
  const char* coord(const DeformArgs<T>& a, const T* gcol, T* goff, T* gmask) const {
    cpu::deform_col2im_coord(a, gcol, goff, gmask);
    return nullptr;
  }
  template <typename T>
  const char* gemm(bool ta, bool tb, int M, int N, int K, T alpha, const T* A, int lda, const T* B,
                   int ldb, T beta, T* C, int ldc) const {
    cpu::gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return nullptr;
  }
  template <typename T>
  const char* fill_bias(T* out, const T* bias, index_t N, index_t F, index_t plane) const {
    cpu::fill_bias(out, bias, N, F, plane);
    return nullptr;
  }
  template <typename T>
  const char* bias_grad(const T* gout, T* gbias, index_t N, index_t F, index_t plane) const {
    cpu::bias_grad(gout, gbias, N, F, plane);
    return nullptr;
  }
  template <typename T>
  const char* zero(T* ptr, index_t count) const {
    cpu::fill_zero(ptr, count);
    return nullptr;
  }
};

#ifdef DCN_WITH_CUDA
struct GpuBackend {
  static constexpr bool kTable = false;  // the GPU recomputes corners per element instead
  const OpResource& res;
  void* stream;

  void* alloc(size_t bytes) const { return res.alloc_gpu(static_cast<int>(bytes)); }
  template <typename T>
  const char* pad(const DeformArgs<T>& a, const T* data, T* padded) const {
    return cuda::deform_pad(a, data, padded, stream);
  }
  template <typename T>
  const char* unpad(const DeformArgs<T>& a, const T* grad_padded, T* grad_data) const {
    return cuda::deform_unpad(a, grad_padded, grad_data, stream);
  }
  template <typename T>
  const char* permute(const T* w, T* wp, index_t F, int Cg, int K) const {
    return cuda::permute_weight(w, wp, F, Cg, K, stream);
  }
  template <typename T>
  const char* unpermute(const T* wp, T* w, index_t F, int Cg, int K) const {
    return cuda::unpermute_weight(wp, w, F, Cg, K, stream);
  }
  template <typename T>
  const char* im2col(const DeformArgs<T>& a, Sample<T>*, T* col) const {
    return cuda::deform_im2col(a, col, stream);
  }
  template <typename T>
  const char* col2im(const DeformArgs<T>& a, const Sample<T>*, const T* gcol, T* gp) const {
    return cuda::deform_col2im(a, gcol, gp, stream);
  }
  template <typename T>
  const char* coord(const DeformArgs<T>& a, const T* gcol, T* goff, T* gmask) const {
    return cuda::deform_col2im_coord(a, gcol, goff, gmask, stream);
  }
  template <typename T>
  const char* gemm(bool ta, bool tb, int M, int N, int K, T alpha, const T* A, int lda, const T* B,
                   int ldb, T beta, T* C, int ldc) const {
    return cuda::gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, stream);
  }
  template <typename T>
  const char* fill_bias(T* out, const T* bias, index_t N, index_t F, index_t plane) const {
    return cuda::fill_bias(out, bias, N, F, plane, stream);
  }
  template <typename T>
  const char* bias_grad(const T* gout, T* gbias, index_t N, index_t F, index_t plane) const {
    return cuda::bias_grad(gout, gbias, N, F, plane, stream);
  }
  template <typename T>
  const char* zero(T* ptr, index_t count) const {
    return cuda::fill_zero(ptr, count, stream);
  }
};
#endif

// Turns a launcher's error text into MX_ERROR_MSG + MX_FAIL.
#define DCN_CALL(expr)                                                  \
  do {                                                                  \
    const char* dcn_err_ = (expr);                                      \
    DCN_CHECK(dcn_err_ == nullptr) << #expr << " failed: " << dcn_err_; \
  } while (0)

// ---------------------------------------------------------------------------------------------
// Drivers

template <typename T>
struct Operands {
  const T *data = nullptr, *offset = nullptr, *mask = nullptr, *weight = nullptr, *bias = nullptr;
};

template <typename T, typename Backend>
MXReturnValue run_forward(const Backend& be, const ConvGeom& g, const ConvShape& s,
                          const Operands<T>& in, T* out) {
  if (s.N == 0) return MX_SUCCESS;
  const index_t plane = s.Ho * s.Wo;
  const int K = g.taps(), Cg = static_cast<int>(s.C / g.groups);
  const int64_t Fg = s.F / g.groups, KCg = int64_t(K) * Cg, CK = s.C * K;
  ChunkPlan plan;
  if (!plan_chunks(g, s, sizeof(T), Backend::kTable ? sizeof(Sample<T>) : 0, 1, &plan)) {
    return MX_FAIL;
  }
  char* ws = static_cast<char*>(be.alloc(plan.bytes));
  DCN_CHECK(ws != nullptr) << op_name(g) << ": could not allocate " << plan.bytes
                           << " bytes of workspace";
  T* wperm = reinterpret_cast<T*>(ws);
  T* padded = reinterpret_cast<T*>(ws + plan.weight_bytes);
  T* col = reinterpret_cast<T*>(ws + plan.weight_bytes + plan.padded_bytes);
  Sample<T>* table =
      reinterpret_cast<Sample<T>*>(ws + plan.weight_bytes + plan.padded_bytes + plan.col_bytes);
  DCN_CALL(be.permute(in.weight, wperm, s.F, Cg, K));
  if (in.bias) DCN_CALL(be.fill_bias(out, in.bias, s.N, s.F, plane));
  const T beta = in.bias ? T(1) : T(0);
  for (int64_t n0 = 0; n0 < s.N; n0 += plan.imgs) {
    DCN_CALL(be.pad(chunk_args(g, s, padded, in.offset, in.mask, n0, plan.imgs, 0, s.Ho), in.data,
                    padded));
    for (int64_t r0 = 0; r0 < s.Ho; r0 += plan.rows) {
      const int64_t rows = std::min(plan.rows, s.Ho - r0);
      const DeformArgs<T> a = chunk_args(g, s, padded, in.offset, in.mask, n0, plan.imgs, r0, rows);
      const int64_t P = a.P();
      DCN_CALL(be.im2col(a, table, col));
      // out[n, group] (Fg x P) = weight'[group] (Fg x KCg) . col[rows of n, group cols]^T
      for (int64_t i = 0; i < plan.imgs; ++i) {
        for (int64_t gi = 0; gi < g.groups; ++gi) {
          DCN_CALL(be.gemm(false, true, static_cast<int>(Fg), static_cast<int>(P),
                           static_cast<int>(KCg), T(1), wperm + gi * Fg * KCg,
                           static_cast<int>(KCg), col + i * P * CK + gi * KCg, static_cast<int>(CK),
                           beta, out + ((n0 + i) * s.F + gi * Fg) * plane + r0 * s.Wo,
                           static_cast<int>(plane)));
        }
      }
    }
  }
  return MX_SUCCESS;
}

template <typename T>
struct Gradients {
  T *data = nullptr, *offset = nullptr, *mask = nullptr, *weight = nullptr, *bias = nullptr;
};

template <typename T, typename Backend>
MXReturnValue run_backward(const Backend& be, const ConvGeom& g, const ConvShape& s, const T* gout,
                           const Operands<T>& in, const Gradients<T>& gr) {
  const index_t plane = s.Ho * s.Wo;
  const int K = g.taps(), Cg = static_cast<int>(s.C / g.groups);
  const int64_t Fg = s.F / g.groups, KCg = int64_t(K) * Cg, CK = s.C * K;
  if (gr.bias) {
    if (s.N == 0) {
      DCN_CALL(be.zero(gr.bias, s.F));
    } else {
      DCN_CALL(be.bias_grad(gout, gr.bias, s.N, s.F, plane));
    }
  }
  if (s.N == 0) {
    DCN_CALL(be.zero(gr.weight, s.F * KCg));
    return MX_SUCCESS;
  }
  ChunkPlan plan;
  if (!plan_chunks(g, s, sizeof(T), Backend::kTable ? sizeof(Sample<T>) : 0, 2, &plan)) {
    return MX_FAIL;
  }
  char* ws = static_cast<char*>(be.alloc(plan.bytes));
  DCN_CHECK(ws != nullptr) << op_name(g) << ": could not allocate " << plan.bytes
                           << " bytes of workspace";
  char* cursor = ws;
  T* wperm = reinterpret_cast<T*>(cursor);
  T* gwperm = reinterpret_cast<T*>(cursor += plan.weight_bytes);
  T* padded = reinterpret_cast<T*>(cursor += plan.weight_bytes);
  T* grad_padded = reinterpret_cast<T*>(cursor += plan.padded_bytes);
  T* col = reinterpret_cast<T*>(cursor += plan.padded_bytes);
  Sample<T>* table = reinterpret_cast<Sample<T>*>(cursor += plan.col_bytes);
  const index_t padded_count = plan.imgs * s.C * (s.H + 3) * (s.W + 2);
  // weight' gradient accumulates over images (GEMMs with beta = 1) from zero; grad_data,
  // grad_offset and grad_mask are assigned (=) element by element below.
  DCN_CALL(be.permute(in.weight, wperm, s.F, Cg, K));
  DCN_CALL(be.zero(gwperm, s.F * KCg));
  for (int64_t n0 = 0; n0 < s.N; n0 += plan.imgs) {
    const DeformArgs<T> whole =
        chunk_args(g, s, padded, in.offset, in.mask, n0, plan.imgs, 0, s.Ho);
    DCN_CALL(be.pad(whole, in.data, padded));
    DCN_CALL(be.zero(grad_padded, padded_count));
    for (int64_t r0 = 0; r0 < s.Ho; r0 += plan.rows) {
      const int64_t rows = std::min(plan.rows, s.Ho - r0);
      const DeformArgs<T> a = chunk_args(g, s, padded, in.offset, in.mask, n0, plan.imgs, r0, rows);
      const int64_t P = a.P();
      DCN_CALL(be.im2col(a, table, col));
      // weight'[group] += grad_out[n, group] (Fg x P) . col[rows of n, group cols] (P x KCg)
      for (int64_t i = 0; i < plan.imgs; ++i) {
        for (int64_t gi = 0; gi < g.groups; ++gi) {
          DCN_CALL(be.gemm(
              false, false, static_cast<int>(Fg), static_cast<int>(KCg), static_cast<int>(P), T(1),
              gout + ((n0 + i) * s.F + gi * Fg) * plane + r0 * s.Wo, static_cast<int>(plane),
              col + i * P * CK + gi * KCg, static_cast<int>(CK), T(1), gwperm + gi * Fg * KCg,
              static_cast<int>(KCg)));
        }
      }
      // col[rows of n, group cols] := grad_out[n, group]^T (P x Fg) . weight'[group] (Fg x KCg)
      for (int64_t i = 0; i < plan.imgs; ++i) {
        for (int64_t gi = 0; gi < g.groups; ++gi) {
          DCN_CALL(be.gemm(true, false, static_cast<int>(P), static_cast<int>(KCg),
                           static_cast<int>(Fg), T(1),
                           gout + ((n0 + i) * s.F + gi * Fg) * plane + r0 * s.Wo,
                           static_cast<int>(plane), wperm + gi * Fg * KCg, static_cast<int>(KCg),
                           T(0), col + i * P * CK + gi * KCg, static_cast<int>(CK)));
        }
      }
      DCN_CALL(be.col2im(a, table, col, grad_padded));
      DCN_CALL(be.coord(a, col, gr.offset, gr.mask));
    }
    DCN_CALL(be.unpad(whole, grad_padded, gr.data));
  }
  DCN_CALL(be.unpermute(gwperm, gr.weight, s.F, Cg, K));
  return MX_SUCCESS;
}

// ---------------------------------------------------------------------------------------------
// Checks of the tensors of one call

// Checks that tensors[first + k] are the op inputs with consistent shapes / dtypes / devices.
MXReturnValue check_inputs(const ConvGeom& g, const std::vector<MXTensor>& tensors, size_t first,
                           ConvShapes* sh) {
  const std::vector<std::string> names = input_names(g);
  const MXTensor& data = tensors[first];
  std::string err;
  DCN_CHECK(conv_shapes(g, data.shape, sh, &err)) << op_name(g) << ": " << err;
  for (size_t k = 0; k < names.size(); ++k) {
    const MXTensor& t = tensors[first + k];
    const std::vector<int64_t> want = expected_input_shape(g, *sh, static_cast<int>(k));
    DCN_CHECK(t.shape == want) << op_name(g) << ": " << names[k] << " shape expected "
                               << shape_str(want) << ", got " << shape_str(t.shape);
    DCN_CHECK(t.dtype == data.dtype)
        << op_name(g) << ": " << names[k] << " dtype " << dtype_name(t.dtype)
        << " differs from data dtype " << dtype_name(data.dtype);
    DCN_CHECK(t.ctx.dev_type == data.ctx.dev_type && t.ctx.dev_id == data.ctx.dev_id)
        << op_name(g) << ": " << names[k] << " is on another device than data";
  }
  DCN_CHECK(data.dtype == kFloat32 || data.dtype == kFloat64)
      << op_name(g) << ": supports float32 and float64, got " << dtype_name(data.dtype);
  return MX_SUCCESS;
}

MXReturnValue check_tensor(const ConvGeom& g, const MXTensor& t, const MXTensor& like,
                           const std::vector<int64_t>& want, const std::string& name) {
  DCN_CHECK(t.shape == want) << op_name(g) << ": " << name << " shape expected " << shape_str(want)
                             << ", got " << shape_str(t.shape);
  DCN_CHECK(t.dtype == like.dtype) << op_name(g) << ": " << name << " dtype " << dtype_name(t.dtype)
                                   << ", expected " << dtype_name(like.dtype);
  return MX_SUCCESS;
}

template <typename T>
Operands<T> operands(const ConvGeom& g, std::vector<MXTensor>& t, size_t first) {
  Operands<T> in;
  in.data = t[first].data<T>();
  in.offset = t[first + 1].data<T>();
  if (g.modulated) in.mask = t[first + g.mask_index()].data<T>();
  in.weight = t[first + g.weight_index()].data<T>();
  if (!g.no_bias) in.bias = t[first + g.bias_index()].data<T>();
  return in;
}

template <typename T>
Gradients<T> gradients(const ConvGeom& g, std::vector<MXTensor>& t) {
  Gradients<T> gr;
  gr.data = t[0].data<T>();
  gr.offset = t[1].data<T>();
  if (g.modulated) gr.mask = t[g.mask_index()].data<T>();
  gr.weight = t[g.weight_index()].data<T>();
  if (!g.no_bias) gr.bias = t[g.bias_index()].data<T>();
  return gr;
}

template <bool kModulated, typename Backend>
MXReturnValue forward(const Attrs& attrs, std::vector<MXTensor>* inputs,
                      std::vector<MXTensor>* outputs, const Backend& be) {
  ConvGeom g;
  if (!parse(attrs, kModulated, &g)) return MX_FAIL;
  DCN_CHECK(inputs->size() == static_cast<size_t>(g.num_inputs()) && outputs->size() == 1)
      << op_name(g) << ": expected " << g.num_inputs() << " inputs and 1 output, got "
      << inputs->size() << " and " << outputs->size();
  ConvShapes sh;
  if (!check_inputs(g, *inputs, 0, &sh)) return MX_FAIL;
  if (!check_tensor(g, (*outputs)[0], (*inputs)[0], sh.out, "output")) return MX_FAIL;
  if ((*inputs)[0].dtype == kFloat32) {
    return run_forward(be, g, sh.s, operands<float>(g, *inputs, 0), (*outputs)[0].data<float>());
  }
  return run_forward(be, g, sh.s, operands<double>(g, *inputs, 0), (*outputs)[0].data<double>());
}

template <bool kModulated, typename Backend>
MXReturnValue backward(const Attrs& attrs, std::vector<MXTensor>* inputs,
                       std::vector<MXTensor>* outputs, const Backend& be) {
  ConvGeom g;
  if (!parse(attrs, kModulated, &g)) return MX_FAIL;
  const size_t n_in = static_cast<size_t>(g.num_inputs());
  // [grad_out, inputs..., out] -> [grad of each input]
  DCN_CHECK(inputs->size() == n_in + 2 && outputs->size() == n_in)
      << op_name(g) << " backward: expected " << n_in + 2 << " inputs and " << n_in
      << " outputs, got " << inputs->size() << " and " << outputs->size();
  ConvShapes sh;
  if (!check_inputs(g, *inputs, 1, &sh)) return MX_FAIL;
  const MXTensor& data = (*inputs)[1];
  if (!check_tensor(g, (*inputs)[0], data, sh.out, "grad_out")) return MX_FAIL;
  const std::vector<std::string> names = input_names(g);
  for (size_t k = 0; k < n_in; ++k) {
    if (!check_tensor(g, (*outputs)[k], data, (*inputs)[1 + k].shape, "grad of " + names[k])) {
      return MX_FAIL;
    }
  }
  if (data.dtype == kFloat32) {
    return run_backward(be, g, sh.s, (*inputs)[0].data<float>(), operands<float>(g, *inputs, 1),
                        gradients<float>(g, *outputs));
  }
  return run_backward(be, g, sh.s, (*inputs)[0].data<double>(), operands<double>(g, *inputs, 1),
                      gradients<double>(g, *outputs));
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Entry points

template <bool kModulated>
MXReturnValue deform_conv_parse_attrs(const Attrs& attrs, int* num_in, int* num_out) {
  ConvGeom g;
  if (!parse(attrs, kModulated, &g)) return MX_FAIL;
  *num_in = g.num_inputs();
  *num_out = 1;
  return MX_SUCCESS;
}

template <bool kModulated>
MXReturnValue deform_conv_infer_type(const Attrs& attrs, std::vector<int>* in_types,
                                     std::vector<int>* out_types) {
  ConvGeom g;
  if (!parse(attrs, kModulated, &g)) return MX_FAIL;
  return infer_float_dtype(op_name(g), input_names(g), in_types, out_types);
}

template <bool kModulated>
MXReturnValue deform_conv_infer_shape(const Attrs& attrs,
                                      std::vector<std::vector<unsigned int>>* in_shapes,
                                      std::vector<std::vector<unsigned int>>* out_shapes) {
  ConvGeom g;
  if (!parse(attrs, kModulated, &g)) return MX_FAIL;
  const std::vector<std::string> names = input_names(g);
  DCN_CHECK(in_shapes->size() == names.size())
      << op_name(g) << ": expected " << names.size() << " inputs, got " << in_shapes->size();
  const std::vector<unsigned>& data = (*in_shapes)[0];
  if (!fully_known(data)) {
    DCN_CHECK(data.empty() || data.size() == 4)
        << op_name(g) << ": data must be 4-D (N, C, H, W), got shape " << dims_str(data);
    return MX_SUCCESS;  // cannot derive anything yet; MXNet asks again once data is known
  }
  ConvShapes sh;
  std::string err;
  DCN_CHECK(conv_shapes(g, std::vector<int64_t>(data.begin(), data.end()), &sh, &err))
      << op_name(g) << ": " << err;
  for (size_t k = 1; k < names.size(); ++k) {
    std::vector<unsigned>& got = (*in_shapes)[k];
    const std::vector<int64_t> want = expected_input_shape(g, sh, static_cast<int>(k));
    bool ok = got.empty() || got.size() == want.size();
    for (size_t d = 0; ok && d < got.size(); ++d) {
      ok = got[d] == kUnknownDim || static_cast<int64_t>(got[d]) == want[d];
    }
    DCN_CHECK(ok) << op_name(g) << ": " << names[k] << " shape expected " << shape_str(want)
                  << ", got " << dims_str(got) << " (data shape " << dims_str(data) << ")";
    got.assign(want.begin(), want.end());
  }
  out_shapes->assign(1, std::vector<unsigned>(sh.out.begin(), sh.out.end()));
  return MX_SUCCESS;
}

template <bool kModulated>
MXReturnValue deform_conv_forward_cpu(const Attrs& attrs, std::vector<MXTensor>* inputs,
                                      std::vector<MXTensor>* outputs, const OpResource& res) {
  return forward<kModulated>(attrs, inputs, outputs, CpuBackend{res});
}

template <bool kModulated>
MXReturnValue deform_conv_backward_cpu(const Attrs& attrs, std::vector<MXTensor>* inputs,
                                       std::vector<MXTensor>* outputs, const OpResource& res) {
  return backward<kModulated>(attrs, inputs, outputs, CpuBackend{res});
}

#ifdef DCN_WITH_CUDA
template <bool kModulated>
MXReturnValue deform_conv_forward_gpu(const Attrs& attrs, std::vector<MXTensor>* inputs,
                                      std::vector<MXTensor>* outputs, const OpResource& res) {
  return forward<kModulated>(attrs, inputs, outputs, GpuBackend{res, res.get_cuda_stream()});
}

template <bool kModulated>
MXReturnValue deform_conv_backward_gpu(const Attrs& attrs, std::vector<MXTensor>* inputs,
                                       std::vector<MXTensor>* outputs, const OpResource& res) {
  return backward<kModulated>(attrs, inputs, outputs, GpuBackend{res, res.get_cuda_stream()});
}
#endif

#define DCN_INSTANTIATE(M)                                                                      \
  template MXReturnValue deform_conv_parse_attrs<M>(const Attrs&, int*, int*);                  \
  template MXReturnValue deform_conv_infer_type<M>(const Attrs&, std::vector<int>*,             \
                                                   std::vector<int>*);                          \
  template MXReturnValue deform_conv_infer_shape<M>(const Attrs&,                               \
                                                    std::vector<std::vector<unsigned int>>*,    \
                                                    std::vector<std::vector<unsigned int>>*);   \
  template MXReturnValue deform_conv_forward_cpu<M>(const Attrs&, std::vector<MXTensor>*,       \
                                                    std::vector<MXTensor>*, const OpResource&); \
  template MXReturnValue deform_conv_backward_cpu<M>(const Attrs&, std::vector<MXTensor>*,      \
                                                     std::vector<MXTensor>*, const OpResource&);
DCN_INSTANTIATE(false)
DCN_INSTANTIATE(true)
#undef DCN_INSTANTIATE

#ifdef DCN_WITH_CUDA
template MXReturnValue deform_conv_forward_gpu<false>(const Attrs&, std::vector<MXTensor>*,
                                                      std::vector<MXTensor>*, const OpResource&);
template MXReturnValue deform_conv_forward_gpu<true>(const Attrs&, std::vector<MXTensor>*,
                                                     std::vector<MXTensor>*, const OpResource&);
template MXReturnValue deform_conv_backward_gpu<false>(const Attrs&, std::vector<MXTensor>*,
                                                       std::vector<MXTensor>*, const OpResource&);
template MXReturnValue deform_conv_backward_gpu<true>(const Attrs&, std::vector<MXTensor>*,
                                                      std::vector<MXTensor>*, const OpResource&);
#endif

}  // namespace dcn
