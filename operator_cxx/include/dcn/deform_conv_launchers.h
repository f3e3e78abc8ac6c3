// Launchers of the (modulated) deformable convolution kernels, one set per device.
//
// Plain functions on raw pointers: the CPU ones are defined in cpu/deform_conv.cc (OpenMP), the
// CUDA ones in cuda/deform_conv.cu and cuda/blas.cu. This header must stay free of lib_api.h
// because nvcc compiles the .cu files that include it. ops/deform_conv.cc holds the drivers.
//
// GEMMs are row-major: C[M x N] = alpha * op(A) . op(B) + beta * C with leading dimensions
// lda / ldb / ldc (op = transpose when ta / tb).
#pragma once

#include "dcn/common.h"
#include "dcn/deform_im2col.h"
#include "dcn/sampling.h"

namespace dcn {
namespace cpu {

// padded := the chunk's images (a.n0 .. a.n0 + a.S) of data, zero-padded channels-last.
template <typename T>
void deform_pad(const DeformArgs<T>& a, const T* data, T* padded);

// col (a.col_size()), and table[e] = sample_at(...) for every sample e = [s][p][tap][g] of the
// chunk: the corners of a sample are computed once and serve all channels of its group.
template <typename T>
void deform_im2col(const DeformArgs<T>& a, Sample<T>* table, T* col);

// grad_padded += scatter of gcol through the table; one thread per (image, channel block).
template <typename T>
void deform_col2im(const DeformArgs<T>& a, const Sample<T>* table, const T* gcol, T* grad_padded);

// grad_data of the chunk's images := interior of grad_padded.
template <typename T>
void deform_unpad(const DeformArgs<T>& a, const T* grad_padded, T* grad_data);

// grad_offset / grad_mask (nullptr without a mask) of the chunk's samples; one writer each.
template <typename T>
void deform_col2im_coord(const DeformArgs<T>& a, const T* gcol, T* grad_offset, T* grad_mask);

// weight (F, Cg, K) <-> weight' (F, K, Cg) (see deform_im2col.h).
template <typename T>
void permute_weight(const T* weight, T* permuted, index_t F, int Cg, int K);
template <typename T>
void unpermute_weight(const T* permuted, T* weight, index_t F, int Cg, int K);

template <typename T>
void gemm(bool ta, bool tb, int M, int N, int K, T alpha, const T* A, int lda, const T* B, int ldb,
          T beta, T* C, int ldc);

// out[n, f, :] = bias[f] for n < N, f < F, over `plane` positions.
template <typename T>
void fill_bias(T* out, const T* bias, index_t N, index_t F, index_t plane);

// gbias[f] = sum over n and positions of gout[n, f, :].
template <typename T>
void bias_grad(const T* gout, T* gbias, index_t N, index_t F, index_t plane);

template <typename T>
void fill_zero(T* ptr, index_t count);

}  // namespace cpu

namespace cuda {

// Each launcher enqueues on `stream` (a cudaStream_t) and returns nullptr, or the text of the
// CUDA / cuBLAS error seen right after the launch (cudaGetLastError).

// padded := the chunk's images, zero-padded.
template <typename T>
const char* deform_pad(const DeformArgs<T>& a, const T* data, T* padded, void* stream);

template <typename T>
const char* deform_im2col(const DeformArgs<T>& a, T* col, void* stream);

// grad_padded += scatter of gcol (atomic adds).
template <typename T>
const char* deform_col2im(const DeformArgs<T>& a, const T* gcol, T* grad_padded, void* stream);

template <typename T>
const char* deform_unpad(const DeformArgs<T>& a, const T* grad_padded, T* grad_data, void* stream);

template <typename T>
const char* deform_col2im_coord(const DeformArgs<T>& a, const T* gcol, T* grad_offset, T* grad_mask,
                                void* stream);

template <typename T>
const char* permute_weight(const T* weight, T* permuted, index_t F, int Cg, int K, void* stream);
template <typename T>
const char* unpermute_weight(const T* permuted, T* weight, index_t F, int Cg, int K, void* stream);

// cuBLAS, one handle per (host thread, device), bound to `stream` for every call.
template <typename T>
const char* gemm(bool ta, bool tb, int M, int N, int K, T alpha, const T* A, int lda, const T* B,
                 int ldb, T beta, T* C, int ldc, void* stream);

template <typename T>
const char* fill_bias(T* out, const T* bias, index_t N, index_t F, index_t plane, void* stream);

template <typename T>
const char* bias_grad(const T* gout, T* gbias, index_t N, index_t F, index_t plane, void* stream);

template <typename T>
const char* fill_zero(T* ptr, index_t count, void* stream);

}  // namespace cuda
}  // namespace dcn
