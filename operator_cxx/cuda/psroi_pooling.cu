// CUDA launchers of PSROIPooling and DeformablePSROIPooling: grid-stride kernels, one thread per
// output element (roi, column), around the per-bin math of dcn/psroi.h (layouts there).
//
// The backward scatters with atomic adds (data and trans gradients); the order of those adds is
// not fixed, so GPU gradients are not bit-reproducible (the CPU ones are). Rois are never read on
// the host: a roi with an invalid batch index gives 0 and no gradient instead of an error.
//
// Never include lib_api.h here (it needs curand headers under nvcc).
#include <cuda_runtime.h>

#include <algorithm>

#include "dcn/psroi_launchers.h"

namespace dcn {
namespace cuda {
namespace {

// Skips zero weights (gaps in the sampling windows of dcn/psroi.h): fewer atomics.
struct AtomicAdd {
  template <typename T>
  __device__ void operator()(T* p, T v) const {
    if (v != T(0)) atomic_add(p, v);
  }
};

const char* last_error() {
  const cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? nullptr : cudaGetErrorString(e);
}

const char* zero(void* ptr, index_t bytes, cudaStream_t stream) {
  if (ptr == nullptr || bytes == 0) return nullptr;
  const cudaError_t e = cudaMemsetAsync(ptr, 0, static_cast<size_t>(bytes), stream);
  return e == cudaSuccess ? nullptr : cudaGetErrorString(e);
}

template <typename T>
__global__ void psroi_forward_kernel(PsroiDims d, T spatial_scale, index_t total, const T* data,
                                     const T* rois, T* out) {
  const index_t cols = d.output_dim * d.pooled * d.pooled;
  for (index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<index_t>(blockDim.x) * gridDim.x) {
    const index_t r = i / cols;
    const index_t j = i % cols;
    const PsroiRoi<T> g = psroi_roi(rois + r * 5, d, spatial_scale);
    if (g.batch < 0) {
      out[i] = T(0);
      continue;
    }
    const PixelBin b = psroi_bin(g, (j / d.pooled) % d.pooled, j % d.pooled, d);
    const index_t c = ps_channel<T>(j, d.pooled, d.group);
    out[i] = psroi_fwd_elem(data + (g.batch * d.channels + c) * d.height * d.width, d.width, b);
  }
}

template <typename T>
__global__ void psroi_backward_kernel(PsroiDims d, T spatial_scale, index_t total,
                                      const T* top_grad, const T* rois, T* data_grad) {
  const index_t cols = d.output_dim * d.pooled * d.pooled;
  for (index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<index_t>(blockDim.x) * gridDim.x) {
    const index_t r = i / cols;
    const index_t j = i % cols;
    const PsroiRoi<T> g = psroi_roi(rois + r * 5, d, spatial_scale);
    if (g.batch < 0) continue;
    const PixelBin b = psroi_bin(g, (j / d.pooled) % d.pooled, j % d.pooled, d);
    const index_t c = ps_channel<T>(j, d.pooled, d.group);
    psroi_bwd_elem(data_grad + (g.batch * d.channels + c) * d.height * d.width, d.width, b,
                   top_grad[i], AtomicAdd());
  }
}

template <typename T>
__global__ void dpsroi_forward_kernel(DpsroiDims d, T spatial_scale, T trans_std, index_t total,
                                      const T* data, const T* rois, const T* trans, T* out) {
  const index_t cols = d.output_dim * d.pooled * d.pooled;
  for (index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<index_t>(blockDim.x) * gridDim.x) {
    const index_t r = i / cols;
    const index_t j = i % cols;
    const DpsroiRoi<T> g = dpsroi_roi(rois + r * 5, d, spatial_scale);
    if (g.batch < 0) {
      out[i] = T(0);
      continue;
    }
    const DpsroiColumn col = dpsroi_column<T>(j, d);
    const DpsroiBin<T> b = dpsroi_bin(g, r, col, trans, trans_std, d);
    DpsroiTaps<T> taps;
    dpsroi_taps<false>(g, b, d, &taps);
    out[i] = dpsroi_fwd_elem(data + (g.batch * d.channels + col.channel) * d.height * d.width, g,
                             b, taps, d);
  }
}

template <typename T>
__global__ void dpsroi_backward_kernel(DpsroiDims d, T spatial_scale, T trans_std, index_t total,
                                       const T* top_grad, const T* data, const T* rois,
                                       const T* trans, T* data_grad, T* trans_grad) {
  const index_t cols = d.output_dim * d.pooled * d.pooled;
  for (index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<index_t>(blockDim.x) * gridDim.x) {
    const index_t r = i / cols;
    const index_t j = i % cols;
    const DpsroiRoi<T> g = dpsroi_roi(rois + r * 5, d, spatial_scale);
    if (g.batch < 0) continue;
    const DpsroiColumn col = dpsroi_column<T>(j, d);
    const DpsroiBin<T> b = dpsroi_bin(g, r, col, trans, trans_std, d);
    const index_t offset = (g.batch * d.channels + col.channel) * d.height * d.width;
    DpsroiTaps<T> taps;
    dpsroi_taps<true>(g, b, d, &taps);
    T tx, ty;
    dpsroi_bwd_elem(data + offset, data_grad + offset, g, b, taps, d, top_grad[i], trans_std,
                    AtomicAdd(), &tx, &ty);
    if (!d.no_trans) {
      atomic_add(trans_grad + b.trans_index, tx);
      atomic_add(trans_grad + b.trans_index + d.part * d.part, ty);
    }
  }
}

}  // namespace

template <typename T>
const char* psroi_forward(const PsroiDims& d, T spatial_scale, index_t num_rois, const T* data,
                          const T* rois, T* out, void* stream) {
  const index_t total = num_rois * d.output_dim * d.pooled * d.pooled;
  if (total == 0) return nullptr;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  psroi_forward_kernel<T><<<grid_for(total), kThreads, 0, s>>>(d, spatial_scale, total, data, rois,
                                                                out);
  return last_error();
}

template <typename T>
const char* psroi_backward(const PsroiDims& d, T spatial_scale, index_t num_rois,
                           const T* top_grad, const T* rois, T* data_grad, T* rois_grad,
                           void* stream) {
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  const index_t data_size = d.num_images * d.channels * d.height * d.width;
  const char* err = zero(data_grad, data_size * sizeof(T), s);
  if (!err) err = zero(rois_grad, num_rois * 5 * sizeof(T), s);
  const index_t total = num_rois * d.output_dim * d.pooled * d.pooled;
  if (err || total == 0 || data_size == 0) return err;
  psroi_backward_kernel<T><<<grid_for(total), kThreads, 0, s>>>(d, spatial_scale, total, top_grad,
                                                                 rois, data_grad);
  return last_error();
}

template <typename T>
const char* dpsroi_forward(const DpsroiDims& d, T spatial_scale, T trans_std, index_t num_rois,
                           const T* data, const T* rois, const T* trans, T* out, void* stream) {
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  const index_t total = num_rois * d.output_dim * d.pooled * d.pooled;
  if (total == 0) return nullptr;
  if (d.height * d.width == 0) return zero(out, total * sizeof(T), s);  // nothing is sampled
  dpsroi_forward_kernel<T><<<grid_for(total), kThreads, 0, s>>>(d, spatial_scale, trans_std, total,
                                                                 data, rois, trans, out);
  return last_error();
}

template <typename T>
const char* dpsroi_backward(const DpsroiDims& d, T spatial_scale, T trans_std, index_t num_rois,
                            const T* top_grad, const T* data, const T* rois, const T* trans,
                            T* data_grad, T* rois_grad, T* trans_grad, void* stream) {
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  const index_t data_size = d.num_images * d.channels * d.height * d.width;
  const char* err = zero(data_grad, data_size * sizeof(T), s);
  if (!err) err = zero(rois_grad, num_rois * 5 * sizeof(T), s);
  if (!err && !d.no_trans) {
    err = zero(trans_grad, num_rois * d.num_classes * 2 * d.part * d.part * sizeof(T), s);
  }
  const index_t total = num_rois * d.output_dim * d.pooled * d.pooled;
  if (err || total == 0 || data_size == 0) return err;
  dpsroi_backward_kernel<T><<<grid_for(total), kThreads, 0, s>>>(
      d, spatial_scale, trans_std, total, top_grad, data, rois, trans, data_grad, trans_grad);
  return last_error();
}

#define DCN_INSTANTIATE_PSROI_CUDA(T)                                                             \
  template const char* psroi_forward<T>(const PsroiDims&, T, index_t, const T*, const T*, T*,    \
                                        void*);                                                   \
  template const char* psroi_backward<T>(const PsroiDims&, T, index_t, const T*, const T*, T*,   \
                                         T*, void*);                                              \
  template const char* dpsroi_forward<T>(const DpsroiDims&, T, T, index_t, const T*, const T*,    \
                                         const T*, T*, void*);                                    \
  template const char* dpsroi_backward<T>(const DpsroiDims&, T, T, index_t, const T*, const T*,   \
                                          const T*, const T*, T*, T*, T*, void*);
DCN_INSTANTIATE_PSROI_CUDA(float)
DCN_INSTANTIATE_PSROI_CUDA(double)
#undef DCN_INSTANTIATE_PSROI_CUDA

}  // namespace cuda
}  // namespace dcn
