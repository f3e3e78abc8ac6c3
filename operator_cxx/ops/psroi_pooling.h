// MXNet entry points of PSROIPooling and DeformablePSROIPooling, registered in register.cc and
// defined in ops/psroi_pooling.cc (attributes, shapes and semantics documented there and in
// dcn/psroi.h).
#pragma once

#include <string>
#include <unordered_map>
#include <vector>

#include "lib_api.h"

namespace dcn {

using mxnet::ext::MXReturnValue;
using mxnet::ext::MXTensor;
using mxnet::ext::OpResource;
using Attrs = std::unordered_map<std::string, std::string>;

// PSROIPooling. inputs: data, rois; outputs: out.
// backward inputs: grad_out, data, rois, out; outputs: grad_data, grad_rois (zeros).
MXReturnValue psroi_parse_attrs(const Attrs& attrs, int* num_in, int* num_out);
MXReturnValue psroi_infer_type(const Attrs& attrs, std::vector<int>* in_types,
                               std::vector<int>* out_types);
MXReturnValue psroi_infer_shape(const Attrs& attrs,
                                std::vector<std::vector<unsigned int>>* in_shapes,
                                std::vector<std::vector<unsigned int>>* out_shapes);
MXReturnValue psroi_forward_cpu(const Attrs& attrs, std::vector<MXTensor>* inputs,
                                std::vector<MXTensor>* outputs, const OpResource& res);
MXReturnValue psroi_backward_cpu(const Attrs& attrs, std::vector<MXTensor>* inputs,
                                 std::vector<MXTensor>* outputs, const OpResource& res);

// DeformablePSROIPooling. inputs: data, rois, [trans] (absent when no_trans); outputs: out.
// backward inputs: grad_out, data, rois, [trans], out;
// outputs: grad_data, grad_rois (zeros), [grad_trans].
MXReturnValue dpsroi_parse_attrs(const Attrs& attrs, int* num_in, int* num_out);
MXReturnValue dpsroi_infer_type(const Attrs& attrs, std::vector<int>* in_types,
                                std::vector<int>* out_types);
MXReturnValue dpsroi_infer_shape(const Attrs& attrs,
                                 std::vector<std::vector<unsigned int>>* in_shapes,
                                 std::vector<std::vector<unsigned int>>* out_shapes);
MXReturnValue dpsroi_forward_cpu(const Attrs& attrs, std::vector<MXTensor>* inputs,
                                 std::vector<MXTensor>* outputs, const OpResource& res);
MXReturnValue dpsroi_backward_cpu(const Attrs& attrs, std::vector<MXTensor>* inputs,
                                  std::vector<MXTensor>* outputs, const OpResource& res);

#ifdef DCN_WITH_CUDA
MXReturnValue psroi_forward_gpu(const Attrs& attrs, std::vector<MXTensor>* inputs,
                                std::vector<MXTensor>* outputs, const OpResource& res);
MXReturnValue psroi_backward_gpu(const Attrs& attrs, std::vector<MXTensor>* inputs,
                                 std::vector<MXTensor>* outputs, const OpResource& res);
MXReturnValue dpsroi_forward_gpu(const Attrs& attrs, std::vector<MXTensor>* inputs,
                                 std::vector<MXTensor>* outputs, const OpResource& res);
MXReturnValue dpsroi_backward_gpu(const Attrs& attrs, std::vector<MXTensor>* inputs,
                                  std::vector<MXTensor>* outputs, const OpResource& res);
#endif

}  // namespace dcn
