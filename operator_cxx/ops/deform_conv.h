// MXNet entry points of DeformableConvolution and ModulatedDeformableConvolution, registered in
// register.cc. Defined in ops/deform_conv.cc; the modulated flag selects the op (mask input).
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

template <bool kModulated>
MXReturnValue deform_conv_parse_attrs(const Attrs& attrs, int* num_in, int* num_out);

template <bool kModulated>
MXReturnValue deform_conv_infer_type(const Attrs& attrs, std::vector<int>* in_types,
                                     std::vector<int>* out_types);

template <bool kModulated>
MXReturnValue deform_conv_infer_shape(const Attrs& attrs,
                                      std::vector<std::vector<unsigned int>>* in_shapes,
                                      std::vector<std::vector<unsigned int>>* out_shapes);

// inputs: data, offset, [mask], weight, [bias]; outputs: out.
template <bool kModulated>
MXReturnValue deform_conv_forward_cpu(const Attrs& attrs, std::vector<MXTensor>* inputs,
                                      std::vector<MXTensor>* outputs, const OpResource& res);

// inputs: grad_out, data, offset, [mask], weight, [bias], out;
// outputs: grad_data, grad_offset, [grad_mask], grad_weight, [grad_bias] (always overwritten:
// the library never learns grad_req, so 'add' is not supported).
template <bool kModulated>
MXReturnValue deform_conv_backward_cpu(const Attrs& attrs, std::vector<MXTensor>* inputs,
                                       std::vector<MXTensor>* outputs, const OpResource& res);

#ifdef DCN_WITH_CUDA
template <bool kModulated>
MXReturnValue deform_conv_forward_gpu(const Attrs& attrs, std::vector<MXTensor>* inputs,
                                      std::vector<MXTensor>* outputs, const OpResource& res);

template <bool kModulated>
MXReturnValue deform_conv_backward_gpu(const Attrs& attrs, std::vector<MXTensor>* inputs,
                                       std::vector<MXTensor>* outputs, const OpResource& res);
#endif

}  // namespace dcn
