// Forward / backward drivers of (modulated) deformable convolution on raw pointers: chunking,
// workspace layout and the GEMM orchestration around the launchers of deform_conv_launchers.h.
//
// Host code, free of lib_api.h and of CUDA headers, so that two callers share it:
// ops/deform_conv.cc (MXNet's tensors, workspace from OpResource, errors via MX_ERROR_MSG) and
// tests/gpu_check.cc (the standalone CPU-vs-GPU check, which links no MXNet). Only the loop heads,
// GEMM and allocation differ between the devices: the CpuBackend / CudaBackend structs below.
//
// The batch is processed in chunks of S = min(im2col_step, N) images, or of one image and a few
// output rows when that keeps the column buffer under ~24 MB (no slower, less memory traffic) or
// is needed to stay under the cap min(workspace MB, INT_MAX) on the single workspace allocation
// per call (alloc_cpu / alloc_gpu take an int). Per call: weight -> weight' (the column order of
// the column buffer). Per image group: zero-padded channels-last copy of the images. Per chunk:
// im2col [CPU: + sample table] -> one GEMM per (image, weight group) straight into the output
// (ldc = Ho*Wo, no transposition copy). Backward per chunk: im2col -> grad_weight' += grad_out .
// col -> col := grad_out^T . weight' (reusing the column buffer) -> col2im into a padded data
// gradient (copied out once per image group) and col2im_coord (offset / mask gradients);
// grad_weight' -> grad_weight at the end. Layouts: dcn/deform_im2col.h.
//
// Errors are returned as text ("" on success); every output is fully written (no grad_req).
#pragma once

#include <algorithm>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <string>

#include "dcn/deform_conv_launchers.h"
#include "dcn/geometry.h"

namespace dcn {

inline const char* op_name(const ConvGeom& g) {
  return g.modulated ? "ModulatedDeformableConvolution" : "DeformableConvolution";
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

inline size_t align64(int64_t bytes) { return static_cast<size_t>((bytes + 63) / 64 * 64); }

// Returns "" or why one image and one output row do not fit under the workspace cap.
inline std::string plan_chunks(const ConvGeom& g, const ConvShape& s, size_t elem,
                               size_t table_elem, int copies, ChunkPlan* plan) {
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
    if (plan->rows <= 0) {
      return std::string(op_name(g)) + ": one image and one output row need " +
             std::to_string(weight + per_img + row_bytes) +
             " bytes of workspace (weights, padded images C*(H+3)*(W+2), column buffer "
             "C*kh*kw*Wo), more than the cap of " +
             std::to_string(cap) + " bytes (min(workspace=" + std::to_string(g.workspace_mb) +
             " MB, INT_MAX)); raise workspace or reduce the input";
    }
  }
  const int64_t positions = plan->imgs * plan->rows * s.Wo;
  plan->weight_bytes = align64(s.F * CK / g.groups * elem);
  plan->padded_bytes = align64(plan->imgs * per_img / copies);
  plan->col_bytes = align64(CK * positions * static_cast<int64_t>(elem));
  plan->bytes = copies * (plan->weight_bytes + plan->padded_bytes) + plan->col_bytes +
                static_cast<size_t>(g.dgroups * g.taps() * positions) * table_elem;
  return std::string();
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
// Backends: what differs between the devices (allocation is the caller's, see the drivers).

struct CpuBackend {
  static constexpr bool kTable = true;

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

// Everything enqueued on `stream` (a cudaStream_t). Only instantiated by CUDA builds.
struct CudaBackend {
  static constexpr bool kTable = false;  // the GPU recomputes corners per element instead
  void* stream;

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

// Returns "<expr> failed: <error>" from the enclosing driver when a launcher reports an error.
#define DCN_DRIVER_CALL(expr)                                                    \
  do {                                                                           \
    const char* dcn_err_ = (expr);                                               \
    if (dcn_err_ != nullptr) return std::string(#expr) + " failed: " + dcn_err_; \
  } while (0)

// ---------------------------------------------------------------------------------------------
// Drivers. `alloc(bytes)` returns the call's one workspace on the backend's device (nullptr on
// failure); the drivers never free it.

template <typename T>
struct DeformOperands {
  const T *data = nullptr, *offset = nullptr, *mask = nullptr, *weight = nullptr, *bias = nullptr;
};

template <typename T>
struct DeformGradients {
  T *data = nullptr, *offset = nullptr, *mask = nullptr, *weight = nullptr, *bias = nullptr;
};

// out := the op's output for the operands (shape s, attributes g, both already checked).
template <typename T, typename Backend, typename Alloc>
std::string deform_conv_forward(const Backend& be, Alloc&& alloc, const ConvGeom& g,
                                const ConvShape& s, const DeformOperands<T>& in, T* out) {
  if (s.N == 0) return std::string();
  const index_t plane = s.Ho * s.Wo;
  const int K = g.taps(), Cg = static_cast<int>(s.C / g.groups);
  const int64_t Fg = s.F / g.groups, KCg = int64_t(K) * Cg, CK = s.C * K;
  ChunkPlan plan;
  std::string err = plan_chunks(g, s, sizeof(T), Backend::kTable ? sizeof(Sample<T>) : 0, 1, &plan);
  if (!err.empty()) return err;
  char* ws = static_cast<char*>(alloc(plan.bytes));
  if (ws == nullptr) {
    return std::string(op_name(g)) + ": could not allocate " + std::to_string(plan.bytes) +
           " bytes of workspace";
  }
  T* wperm = reinterpret_cast<T*>(ws);
  T* padded = reinterpret_cast<T*>(ws + plan.weight_bytes);
  T* col = reinterpret_cast<T*>(ws + plan.weight_bytes + plan.padded_bytes);
  Sample<T>* table =
      reinterpret_cast<Sample<T>*>(ws + plan.weight_bytes + plan.padded_bytes + plan.col_bytes);
  DCN_DRIVER_CALL(be.permute(in.weight, wperm, s.F, Cg, K));
  if (in.bias) DCN_DRIVER_CALL(be.fill_bias(out, in.bias, s.N, s.F, plane));
  const T beta = in.bias ? T(1) : T(0);
  for (int64_t n0 = 0; n0 < s.N; n0 += plan.imgs) {
    DCN_DRIVER_CALL(be.pad(chunk_args(g, s, padded, in.offset, in.mask, n0, plan.imgs, 0, s.Ho),
                           in.data, padded));
    for (int64_t r0 = 0; r0 < s.Ho; r0 += plan.rows) {
      const int64_t rows = std::min(plan.rows, s.Ho - r0);
      const DeformArgs<T> a = chunk_args(g, s, padded, in.offset, in.mask, n0, plan.imgs, r0, rows);
      const int64_t P = a.P();
      DCN_DRIVER_CALL(be.im2col(a, table, col));
      // out[n, group] (Fg x P) = weight'[group] (Fg x KCg) . col[rows of n, group cols]^T
      for (int64_t i = 0; i < plan.imgs; ++i) {
        for (int64_t gi = 0; gi < g.groups; ++gi) {
          DCN_DRIVER_CALL(be.gemm(
              false, true, static_cast<int>(Fg), static_cast<int>(P), static_cast<int>(KCg), T(1),
              wperm + gi * Fg * KCg, static_cast<int>(KCg), col + i * P * CK + gi * KCg,
              static_cast<int>(CK), beta, out + ((n0 + i) * s.F + gi * Fg) * plane + r0 * s.Wo,
              static_cast<int>(plane)));
        }
      }
    }
  }
  return std::string();
}

// Every gradient of `gr` := d(sum(out * gout)) / d(operand); mask / bias null when absent.
template <typename T, typename Backend, typename Alloc>
std::string deform_conv_backward(const Backend& be, Alloc&& alloc, const ConvGeom& g,
                                 const ConvShape& s, const T* gout, const DeformOperands<T>& in,
                                 const DeformGradients<T>& gr) {
  const index_t plane = s.Ho * s.Wo;
  const int K = g.taps(), Cg = static_cast<int>(s.C / g.groups);
  const int64_t Fg = s.F / g.groups, KCg = int64_t(K) * Cg, CK = s.C * K;
  if (gr.bias) {
    if (s.N == 0) {
      DCN_DRIVER_CALL(be.zero(gr.bias, s.F));
    } else {
      DCN_DRIVER_CALL(be.bias_grad(gout, gr.bias, s.N, s.F, plane));
    }
  }
  if (s.N == 0) {
    DCN_DRIVER_CALL(be.zero(gr.weight, s.F * KCg));
    return std::string();
  }
  ChunkPlan plan;
  std::string err = plan_chunks(g, s, sizeof(T), Backend::kTable ? sizeof(Sample<T>) : 0, 2, &plan);
  if (!err.empty()) return err;
  char* ws = static_cast<char*>(alloc(plan.bytes));
  if (ws == nullptr) {
    return std::string(op_name(g)) + ": could not allocate " + std::to_string(plan.bytes) +
           " bytes of workspace";
  }
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
  DCN_DRIVER_CALL(be.permute(in.weight, wperm, s.F, Cg, K));
  DCN_DRIVER_CALL(be.zero(gwperm, s.F * KCg));
  for (int64_t n0 = 0; n0 < s.N; n0 += plan.imgs) {
    const DeformArgs<T> whole =
        chunk_args(g, s, padded, in.offset, in.mask, n0, plan.imgs, 0, s.Ho);
    DCN_DRIVER_CALL(be.pad(whole, in.data, padded));
    DCN_DRIVER_CALL(be.zero(grad_padded, padded_count));
    for (int64_t r0 = 0; r0 < s.Ho; r0 += plan.rows) {
      const int64_t rows = std::min(plan.rows, s.Ho - r0);
      const DeformArgs<T> a = chunk_args(g, s, padded, in.offset, in.mask, n0, plan.imgs, r0, rows);
      const int64_t P = a.P();
      DCN_DRIVER_CALL(be.im2col(a, table, col));
      // weight'[group] += grad_out[n, group] (Fg x P) . col[rows of n, group cols] (P x KCg)
      for (int64_t i = 0; i < plan.imgs; ++i) {
        for (int64_t gi = 0; gi < g.groups; ++gi) {
          DCN_DRIVER_CALL(be.gemm(
              false, false, static_cast<int>(Fg), static_cast<int>(KCg), static_cast<int>(P), T(1),
              gout + ((n0 + i) * s.F + gi * Fg) * plane + r0 * s.Wo, static_cast<int>(plane),
              col + i * P * CK + gi * KCg, static_cast<int>(CK), T(1), gwperm + gi * Fg * KCg,
              static_cast<int>(KCg)));
        }
      }
      // col[rows of n, group cols] := grad_out[n, group]^T (P x Fg) . weight'[group] (Fg x KCg)
      for (int64_t i = 0; i < plan.imgs; ++i) {
        for (int64_t gi = 0; gi < g.groups; ++gi) {
          DCN_DRIVER_CALL(
              be.gemm(true, false, static_cast<int>(P), static_cast<int>(KCg), static_cast<int>(Fg),
                      T(1), gout + ((n0 + i) * s.F + gi * Fg) * plane + r0 * s.Wo,
                      static_cast<int>(plane), wperm + gi * Fg * KCg, static_cast<int>(KCg), T(0),
                      col + i * P * CK + gi * KCg, static_cast<int>(CK)));
        }
      }
      DCN_DRIVER_CALL(be.col2im(a, table, col, grad_padded));
      DCN_DRIVER_CALL(be.coord(a, col, gr.offset, gr.mask));
    }
    DCN_DRIVER_CALL(be.unpad(whole, grad_padded, gr.data));
  }
  DCN_DRIVER_CALL(be.unpermute(gwperm, gr.weight, s.F, Cg, K));
  return std::string();
}

#undef DCN_DRIVER_CALL

}  // namespace dcn
