// DeformableConvolution / ModulatedDeformableConvolution: attribute parsing, shape and type
// inference, and the MXNet forward / backward entry points for CPU and GPU.
//
// Computes out = W * deformable_im2col(data, offset[, mask]) + bias (see dcn/deform_im2col.h for
// the definition and layouts; papers: Dai et al. ICCV 2017, Zhu et al. CVPR 2019). Tensors:
//   data (N, C, H, W)   offset (N, dg*2*kh*kw, Ho, Wo)   mask (N, dg*kh*kw, Ho, Wo)
//   weight (F, C/num_group, kh, kw)   bias (F,)          out (N, F, Ho, Wo)
//
// Here: the checks of each call's tensors and the conversion of errors for MXNet. The drivers
// (chunking by im2col_step, workspace layout, im2col / GEMM / col2im order) live in
// dcn/deform_conv_driver.h, free of lib_api.h, so that the standalone GPU check
// (tests/gpu_check.cc) runs exactly the same orchestration; only the loop heads, GEMM and
// allocation differ between the devices (its CpuBackend / CudaBackend).
//
// The library never learns grad_req: every gradient is fully overwritten ('add' is unsupported).
#include "ops/deform_conv.h"
#include "ops/shape_utils.h"

#include <algorithm>
#include <climits>
#include <string>
#include <vector>

#include "dcn/common.h"
#include "dcn/deform_conv_driver.h"
#include "dcn/geometry.h"

namespace dcn {
namespace {

using mxnet::ext::kFloat32;
using mxnet::ext::kFloat64;
using mxnet::ext::MX_FAIL;
using mxnet::ext::MX_SUCCESS;

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

// Turns a driver's error text (dcn/deform_conv_driver.h) into MX_ERROR_MSG + MX_FAIL.
MXReturnValue status(const std::string& err) {
  DCN_CHECK(err.empty()) << err;
  return MX_SUCCESS;
}

// The drivers' one workspace per call, from MXNet's allocator (which takes an int byte count;
// the drivers keep every workspace under INT_MAX).
auto cpu_workspace(const OpResource& res) {
  return [&res](size_t bytes) { return res.alloc_cpu(static_cast<int>(bytes)); };
}
#ifdef DCN_WITH_CUDA
auto gpu_workspace(const OpResource& res) {
  return [&res](size_t bytes) { return res.alloc_gpu(static_cast<int>(bytes)); };
}
#endif

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
DeformOperands<T> operands(const ConvGeom& g, std::vector<MXTensor>& t, size_t first) {
  DeformOperands<T> in;
  in.data = t[first].data<T>();
  in.offset = t[first + 1].data<T>();
  if (g.modulated) in.mask = t[first + g.mask_index()].data<T>();
  in.weight = t[first + g.weight_index()].data<T>();
  if (!g.no_bias) in.bias = t[first + g.bias_index()].data<T>();
  return in;
}

template <typename T>
DeformGradients<T> gradients(const ConvGeom& g, std::vector<MXTensor>& t) {
  DeformGradients<T> gr;
  gr.data = t[0].data<T>();
  gr.offset = t[1].data<T>();
  if (g.modulated) gr.mask = t[g.mask_index()].data<T>();
  gr.weight = t[g.weight_index()].data<T>();
  if (!g.no_bias) gr.bias = t[g.bias_index()].data<T>();
  return gr;
}

template <bool kModulated, typename Backend, typename Alloc>
MXReturnValue forward(const Attrs& attrs, std::vector<MXTensor>* inputs,
                      std::vector<MXTensor>* outputs, const Backend& be, Alloc alloc) {
  ConvGeom g;
  if (!parse(attrs, kModulated, &g)) return MX_FAIL;
  DCN_CHECK(inputs->size() == static_cast<size_t>(g.num_inputs()) && outputs->size() == 1)
      << op_name(g) << ": expected " << g.num_inputs() << " inputs and 1 output, got "
      << inputs->size() << " and " << outputs->size();
  ConvShapes sh;
  if (!check_inputs(g, *inputs, 0, &sh)) return MX_FAIL;
  if (!check_tensor(g, (*outputs)[0], (*inputs)[0], sh.out, "output")) return MX_FAIL;
  if ((*inputs)[0].dtype == kFloat32) {
    return status(deform_conv_forward(be, alloc, g, sh.s, operands<float>(g, *inputs, 0),
                                      (*outputs)[0].data<float>()));
  }
  return status(deform_conv_forward(be, alloc, g, sh.s, operands<double>(g, *inputs, 0),
                                    (*outputs)[0].data<double>()));
}

template <bool kModulated, typename Backend, typename Alloc>
MXReturnValue backward(const Attrs& attrs, std::vector<MXTensor>* inputs,
                       std::vector<MXTensor>* outputs, const Backend& be, Alloc alloc) {
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
    return status(deform_conv_backward(be, alloc, g, sh.s, (*inputs)[0].data<float>(),
                                       operands<float>(g, *inputs, 1),
                                       gradients<float>(g, *outputs)));
  }
  return status(deform_conv_backward(be, alloc, g, sh.s, (*inputs)[0].data<double>(),
                                     operands<double>(g, *inputs, 1),
                                     gradients<double>(g, *outputs)));
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
  return forward<kModulated>(attrs, inputs, outputs, CpuBackend{}, cpu_workspace(res));
}

template <bool kModulated>
MXReturnValue deform_conv_backward_cpu(const Attrs& attrs, std::vector<MXTensor>* inputs,
                                       std::vector<MXTensor>* outputs, const OpResource& res) {
  return backward<kModulated>(attrs, inputs, outputs, CpuBackend{}, cpu_workspace(res));
}

#ifdef DCN_WITH_CUDA
template <bool kModulated>
MXReturnValue deform_conv_forward_gpu(const Attrs& attrs, std::vector<MXTensor>* inputs,
                                      std::vector<MXTensor>* outputs, const OpResource& res) {
  return forward<kModulated>(attrs, inputs, outputs, CudaBackend{res.get_cuda_stream()},
                             gpu_workspace(res));
}

template <bool kModulated>
MXReturnValue deform_conv_backward_gpu(const Attrs& attrs, std::vector<MXTensor>* inputs,
                                       std::vector<MXTensor>* outputs, const OpResource& res) {
  return backward<kModulated>(attrs, inputs, outputs, CudaBackend{res.get_cuda_stream()},
                              gpu_workspace(res));
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
