// Launchers of the PSROIPooling and DeformablePSROIPooling kernels, one set per device (layouts
// and semantics: dcn/psroi.h).
//
// Plain functions on raw pointers, free of lib_api.h because nvcc compiles the .cu that includes
// this header: cpu/psroi_pooling.cc (OpenMP) and cuda/psroi_pooling.cu define them for float and
// double; ops/psroi_pooling.cc validates the inputs and calls them.
//
// Every launcher fully writes its outputs, because MXNet never tells the library about grad_req.
#pragma once

#include "dcn/psroi.h"

namespace dcn {
namespace cpu {

// The caller has validated every roi's batch index (the drivers still write 0 for a roi with an
// invalid one instead of reading out of bounds). The backward drivers zero-fill data_grad and
// trans_grad before accumulating.
template <typename T>
void psroi_forward(const PsroiDims& d, T spatial_scale, index_t num_rois, const T* data,
                   const T* rois, T* out);
template <typename T>
void psroi_backward(const PsroiDims& d, T spatial_scale, index_t num_rois, const T* top_grad,
                    const T* rois, T* data_grad);
template <typename T>
void dpsroi_forward(const DpsroiDims& d, T spatial_scale, T trans_std, index_t num_rois,
                    const T* data, const T* rois, const T* trans, T* out);
// trans / trans_grad may be null when d.no_trans.
template <typename T>
void dpsroi_backward(const DpsroiDims& d, T spatial_scale, T trans_std, index_t num_rois,
                     const T* top_grad, const T* data, const T* rois, const T* trans, T* data_grad,
                     T* trans_grad);

}  // namespace cpu

namespace cuda {

// Launchers enqueue on `stream` (a cudaStream_t) and return nullptr, or the text of the CUDA
// error seen right after the launch (cudaGetLastError). Rois are not copied to the host for
// validation (that would synchronise): a roi whose batch index is not an integer in [0, N) gives
// output 0 and no gradient. The backward launchers zero-fill all their outputs, rois_grad
// included (rois get no gradient).
template <typename T>
const char* psroi_forward(const PsroiDims& d, T spatial_scale, index_t num_rois, const T* data,
                          const T* rois, T* out, void* stream);
template <typename T>
const char* psroi_backward(const PsroiDims& d, T spatial_scale, index_t num_rois,
                           const T* top_grad, const T* rois, T* data_grad, T* rois_grad,
                           void* stream);
template <typename T>
const char* dpsroi_forward(const DpsroiDims& d, T spatial_scale, T trans_std, index_t num_rois,
                           const T* data, const T* rois, const T* trans, T* out, void* stream);
// trans / trans_grad may be null when d.no_trans.
template <typename T>
const char* dpsroi_backward(const DpsroiDims& d, T spatial_scale, T trans_std, index_t num_rois,
                            const T* top_grad, const T* data, const T* rois, const T* trans,
                            T* data_grad, T* rois_grad, T* trans_grad, void* stream);

}  // namespace cuda
}  // namespace dcn
