// CUDA launchers of (modulated) deformable convolution: grid-stride kernels around the per-element
// math of dcn/deform_im2col.h (definition and layouts there), all enqueued on MXNet's stream.
//
// pad / unpad: one thread per pixel (zero-padded channels-last copies, see sampling.h).
// im2col: one thread per column element (consecutive threads: consecutive channels of one
// sample, so reads and writes coalesce). col2im: one thread per column element, scattering with
// atomic adds into the padded gradient (so GPU data gradients are not bit-reproducible; the CPU
// ones are). col2im_coord: one thread per sample (group, tap, image, position), which owns its
// offset / mask gradients.
//
// Never include lib_api.h here (it needs curand headers under nvcc).
#include <cuda_runtime.h>

#include <algorithm>

#include "dcn/deform_conv_launchers.h"

namespace dcn {
namespace cuda {
namespace {

struct AtomicAdd {
  template <typename T>
  __device__ void operator()(T* p, T v) const {
    atomic_add(p, v);
  }
};

const char* last_error() {
  const cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? nullptr : cudaGetErrorString(e);
}

#define DCN_GRID_STRIDE(i, n)                                                            \
  for (index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; i < (n); \
       i += static_cast<index_t>(blockDim.x) * gridDim.x)

template <typename T>
__global__ void deform_pad_kernel(DeformArgs<T> a, index_t n, const T* data, T* padded) {
  DCN_GRID_STRIDE(i, n) { pad_elem(i, a, data, padded); }
}

template <typename T>
__global__ void deform_unpad_kernel(DeformArgs<T> a, index_t n, const T* grad_padded,
                                    T* grad_data) {
  DCN_GRID_STRIDE(i, n) { unpad_elem(i, a, grad_padded, grad_data); }
}

template <typename T>
__global__ void deform_im2col_kernel(DeformArgs<T> a, T* col) {
  const index_t n = a.col_size();
  DCN_GRID_STRIDE(i, n) { col[i] = im2col_elem(i, a); }
}

template <typename T>
__global__ void deform_col2im_kernel(DeformArgs<T> a, const T* gcol, T* grad_padded) {
  const index_t n = a.col_size();
  DCN_GRID_STRIDE(i, n) { col2im_elem(i, a, gcol, grad_padded, AtomicAdd()); }
}

template <typename T>
__global__ void deform_col2im_coord_kernel(DeformArgs<T> a, const T* gcol, T* grad_offset,
                                           T* grad_mask) {
  const index_t n = a.sample_count();
  DCN_GRID_STRIDE(e, n) { col2im_coord_elem(e, a, gcol, grad_offset, grad_mask); }
}

template <typename T>
__global__ void permute_weight_kernel(const T* weight, T* permuted, index_t n, int Cg, int K) {
  DCN_GRID_STRIDE(i, n) { permuted[permuted_weight_index(i, Cg, K)] = weight[i]; }
}

template <typename T>
__global__ void unpermute_weight_kernel(const T* permuted, T* weight, index_t n, int Cg, int K) {
  DCN_GRID_STRIDE(i, n) { weight[i] = permuted[permuted_weight_index(i, Cg, K)]; }
}

template <typename T>
__global__ void fill_bias_kernel(T* out, const T* bias, index_t total, index_t F, index_t plane) {
  DCN_GRID_STRIDE(i, total) { out[i] = bias[(i / plane) % F]; }
}

// One block per output channel f: a block-wide sum of gout[:, f, :].
template <typename T>
__global__ void bias_grad_kernel(const T* gout, T* gbias, index_t N, index_t F, index_t plane) {
  __shared__ T partial[kThreads];
  for (index_t f = blockIdx.x; f < F; f += gridDim.x) {
    T acc = T(0);
    for (index_t j = threadIdx.x; j < N * plane; j += blockDim.x) {
      acc += gout[((j / plane) * F + f) * plane + j % plane];
    }
    partial[threadIdx.x] = acc;
    __syncthreads();
    for (int w = kThreads / 2; w > 0; w /= 2) {
      if (threadIdx.x < w) partial[threadIdx.x] += partial[threadIdx.x + w];
      __syncthreads();
    }
    if (threadIdx.x == 0) gbias[f] = partial[0];
    __syncthreads();
  }
}

}  // namespace

template <typename T>
const char* deform_pad(const DeformArgs<T>& a, const T* data, T* padded, void* stream) {
  const cudaStream_t st = static_cast<cudaStream_t>(stream);
  const index_t n = static_cast<index_t>(a.S) * a.C * a.H * a.W;
  if (n == 0) return nullptr;
  const cudaError_t e =
      cudaMemsetAsync(padded, 0, static_cast<size_t>(a.S * a.image_size()) * sizeof(T), st);
  if (e != cudaSuccess) return cudaGetErrorString(e);
  deform_pad_kernel<T><<<grid_for(n), kThreads, 0, st>>>(a, n, data, padded);
  return last_error();
}

template <typename T>
const char* deform_unpad(const DeformArgs<T>& a, const T* grad_padded, T* grad_data, void* stream) {
  const index_t n = static_cast<index_t>(a.S) * a.C * a.H * a.W;
  if (n == 0) return nullptr;
  deform_unpad_kernel<T><<<grid_for(n), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      a, n, grad_padded, grad_data);
  return last_error();
}

template <typename T>
const char* deform_im2col(const DeformArgs<T>& a, T* col, void* stream) {
  const index_t n = a.col_size();
  if (n == 0) return nullptr;
  deform_im2col_kernel<T><<<grid_for(n), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(a, col);
  return last_error();
}

template <typename T>
const char* deform_col2im(const DeformArgs<T>& a, const T* gcol, T* grad_padded, void* stream) {
  const index_t n = a.col_size();
  if (n == 0) return nullptr;
  deform_col2im_kernel<T>
      <<<grid_for(n), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(a, gcol, grad_padded);
  return last_error();
}

template <typename T>
const char* deform_col2im_coord(const DeformArgs<T>& a, const T* gcol, T* grad_offset, T* grad_mask,
                                void* stream) {
  const index_t n = a.sample_count();
  if (n == 0) return nullptr;
  deform_col2im_coord_kernel<T><<<grid_for(n), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      a, gcol, grad_offset, grad_mask);
  return last_error();
}

template <typename T>
const char* permute_weight(const T* weight, T* permuted, index_t F, int Cg, int K, void* stream) {
  const index_t n = F * Cg * K;
  if (n == 0) return nullptr;
  permute_weight_kernel<T>
      <<<grid_for(n), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(weight, permuted, n, Cg, K);
  return last_error();
}

template <typename T>
const char* unpermute_weight(const T* permuted, T* weight, index_t F, int Cg, int K, void* stream) {
  const index_t n = F * Cg * K;
  if (n == 0) return nullptr;
  unpermute_weight_kernel<T>
      <<<grid_for(n), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(permuted, weight, n, Cg, K);
  return last_error();
}

template <typename T>
const char* fill_bias(T* out, const T* bias, index_t N, index_t F, index_t plane, void* stream) {
  const index_t total = N * F * plane;
  if (total == 0) return nullptr;
  fill_bias_kernel<T><<<grid_for(total), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      out, bias, total, F, plane);
  return last_error();
}

template <typename T>
const char* bias_grad(const T* gout, T* gbias, index_t N, index_t F, index_t plane, void* stream) {
  if (F == 0) return nullptr;
  const unsigned int blocks = static_cast<unsigned int>(std::min<index_t>(F, 1 << 16));
  bias_grad_kernel<T>
      <<<blocks, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(gout, gbias, N, F, plane);
  return last_error();
}

template <typename T>
const char* fill_zero(T* ptr, index_t count, void* stream) {
  if (ptr == nullptr || count == 0) return nullptr;
  const cudaError_t e = cudaMemsetAsync(ptr, 0, static_cast<size_t>(count) * sizeof(T),
                                        static_cast<cudaStream_t>(stream));
  return e == cudaSuccess ? nullptr : cudaGetErrorString(e);
}

#define DCN_INSTANTIATE(T)                                                                    \
  template const char* deform_pad<T>(const DeformArgs<T>&, const T*, T*, void*);              \
  template const char* deform_unpad<T>(const DeformArgs<T>&, const T*, T*, void*);            \
  template const char* deform_im2col<T>(const DeformArgs<T>&, T*, void*);                     \
  template const char* deform_col2im<T>(const DeformArgs<T>&, const T*, T*, void*);           \
  template const char* deform_col2im_coord<T>(const DeformArgs<T>&, const T*, T*, T*, void*); \
  template const char* permute_weight<T>(const T*, T*, index_t, int, int, void*);             \
  template const char* unpermute_weight<T>(const T*, T*, index_t, int, int, void*);           \
  template const char* fill_bias<T>(T*, const T*, index_t, index_t, index_t, void*);          \
  template const char* bias_grad<T>(const T*, T*, index_t, index_t, index_t, void*);          \
  template const char* fill_zero<T>(T*, index_t, void*);

DCN_INSTANTIATE(float)
DCN_INSTANTIATE(double)
#undef DCN_INSTANTIATE

}  // namespace cuda
}  // namespace dcn
