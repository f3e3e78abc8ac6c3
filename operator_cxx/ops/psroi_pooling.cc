// PSROIPooling / DeformablePSROIPooling: attribute parsing, shape and type inference, input
// validation, and the forward / backward drivers for CPU and GPU.
//
// Position-sensitive RoI pooling (R-FCN, Dai et al., NIPS 2016) and its deformable variant
// (Deformable ConvNets, Dai et al., ICCV 2017), with the exact semantics of MXNet's
// _contrib_PSROIPooling / _contrib_DeformablePSROIPooling (see dcn/psroi.h). Tensors:
//   data (N, C, H, W), C = output_dim * group_size^2     rois (R, 5) [batch, x1, y1, x2, y2]
//   trans (R, 2 * num_classes, part_size, part_size)      out (R, output_dim, pooled, pooled)
// Like contrib, one visible output: contrib's hidden top_count is recomputed in the backward.
//
// Attributes (the Python str() of each value; unknown names are rejected):
//
//   name             default  meaning
//   spatial_scale    required feature-map size / image size (e.g. 0.0625); finite, > 0
//   output_dim       required output channels
//   pooled_size      required output bins per side
//   group_size       required score-map grid per side; PSROIPooling: 0 (-> pooled_size)
//   part_size        0        offset grid per side, 0 -> pooled_size     (deformable only)
//   sample_per_part  1        bilinear samples per bin side               (deformable only)
//   trans_std        0.0      offset scale: shift = trans * trans_std * roi size; finite, >= 0
//                                                                         (deformable only)
//   no_trans         False    no trans input (plain PS RoI pooling with bilinear sampling)
//                                                                         (deformable only)
// spatial_scale and trans_std are kept as float32, as contrib's parameters are.
//
// Bad input is an MXNetError, never an abort: wrong shapes, a roi batch index that is not an
// integer in [0, N) (checked on the CPU; on the GPU such a roi gives 0, see the launchers), and
// non-finite attributes. NaN / inf roi coordinates or offsets give finite results: a sample at a
// non-finite position is not counted (a bin without counted samples is 0), a PSROIPooling bin
// with non-finite bounds is empty (0).
// The library never learns grad_req: gradients are fully overwritten (rois get zeros).
#include "psroi_pooling.h"
#include "shape_utils.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <exception>
#include <sstream>
#include <string>
#include <vector>

#include "dcn/common.h"
#include "dcn/geometry.h"
#include "dcn/psroi_launchers.h"

namespace dcn {
namespace {

using mxnet::ext::kFloat32;
using mxnet::ext::kFloat64;
using mxnet::ext::MX_FAIL;
using mxnet::ext::MX_SUCCESS;

// Bounds on the integer attributes, far from any overflow of the derived products.
constexpr int64_t kMaxGrid = 1 << 12;
constexpr int64_t kMaxOutputDim = 1 << 24;

static const AttrSpec kDpsroiAttrs[] = {
    {"spatial_scale", nullptr, "feature-map size / image size"},
    {"output_dim", nullptr, "output channels"},
    {"group_size", nullptr, "score-map grid per side"},
    {"pooled_size", nullptr, "output bins per side"},
    {"part_size", "0", "offset grid per side (0: pooled_size)"},
    {"sample_per_part", "1", "bilinear samples per bin side"},
    {"trans_std", "0.0", "offset scale"},
    {"no_trans", "False", "no trans input"},
};

static const AttrSpec kPsroiAttrs[] = {
    {"spatial_scale", nullptr, "feature-map size / image size"},
    {"output_dim", nullptr, "output channels"},
    {"pooled_size", nullptr, "output bins per side"},
    {"group_size", "0", "score-map grid per side (0: pooled_size)"},
};

struct PoolAttrs {
  bool deformable = false;
  float spatial_scale = 0.f, trans_std = 0.f;
  int64_t output_dim = 0, group = 0, pooled = 0, part = 0, sample_per_part = 1;
  bool no_trans = true;  // PSROIPooling never has trans

  const char* name() const { return deformable ? "DeformablePSROIPooling" : "PSROIPooling"; }
  bool has_trans() const { return !no_trans; }
  int num_inputs() const { return has_trans() ? 3 : 2; }
};

// Parses a float; rejects trailing garbage and non-finite values.
bool parse_float(const std::string& text, double* out) {
  const std::string t = trim(text);
  if (t.empty()) return false;
  char* end = nullptr;
  const double v = std::strtod(t.c_str(), &end);
  if (end == t.c_str() || *end != '\0' || !std::isfinite(v)) return false;
  *out = v;
  return true;
}

template <size_t K>
bool check_attr_names(const Attrs& attrs, const AttrSpec (&specs)[K], std::string* err) {
  for (const auto& kv : attrs) {
    // MXNet may attach internal attributes such as __lr_mult__; those are not ours to check.
    if (kv.first.size() >= 2 && kv.first.compare(0, 2, "__") == 0) continue;
    bool known = false;
    for (const AttrSpec& s : specs) known = known || kv.first == s.name;
    if (!known) {
      *err = "unknown attribute '" + kv.first + "'; known:";
      for (const AttrSpec& s : specs) *err += std::string(" ") + s.name;
      return false;
    }
  }
  for (const AttrSpec& s : specs) {
    if (s.default_value == nullptr && find_attr(attrs, s.name) == nullptr) {
      *err = std::string("required attribute '") + s.name + "' (" + s.doc + ") is missing";
      return false;
    }
  }
  return true;
}

// A float32 attribute that is > 0 (positive) or >= 0.
bool parse_float_attr(const Attrs& attrs, const char* name, const char* dflt, bool positive,
                      float* out, std::string* err) {
  const std::string* v = find_attr(attrs, name);
  const std::string text = v ? *v : std::string(dflt);
  double x;
  if (!parse_float(text, &x) || x < 0 || (positive && !(static_cast<float>(x) > 0)) ||
      x > 3.0e38) {
    *err = std::string(name) + " must be a finite number " + (positive ? "> 0" : ">= 0") +
           ", got '" + text + "'";
    return false;
  }
  *out = static_cast<float>(x);
  return true;
}

bool parse_pool_attrs(const Attrs& attrs, bool deformable, PoolAttrs* a, std::string* err) {
  a->deformable = deformable;
  if (deformable ? !check_attr_names(attrs, kDpsroiAttrs, err)
                 : !check_attr_names(attrs, kPsroiAttrs, err)) {
    return false;
  }
  if (!parse_float_attr(attrs, "spatial_scale", nullptr, true, &a->spatial_scale, err) ||
      !parse_int_attr(attrs, "output_dim", nullptr, 1, kMaxOutputDim, &a->output_dim, err) ||
      !parse_int_attr(attrs, "pooled_size", nullptr, 1, kMaxGrid, &a->pooled, err)) {
    return false;
  }
  if (!deformable) {
    if (!parse_int_attr(attrs, "group_size", "0", 0, kMaxGrid, &a->group, err)) return false;
    if (a->group == 0) a->group = a->pooled;
    return true;
  }
  if (!parse_int_attr(attrs, "group_size", nullptr, 1, kMaxGrid, &a->group, err) ||
      !parse_int_attr(attrs, "part_size", "0", 0, kMaxGrid, &a->part, err) ||
      !parse_int_attr(attrs, "sample_per_part", "1", 1, kMaxGrid, &a->sample_per_part, err) ||
      !parse_float_attr(attrs, "trans_std", "0.0", false, &a->trans_std, err)) {
    return false;
  }
  if (a->part == 0) a->part = a->pooled;
  const std::string* nt = find_attr(attrs, "no_trans");
  a->no_trans = false;
  if (nt && !parse_bool(*nt, &a->no_trans)) {
    *err = "no_trans must be True or False, got '" + *nt + "'";
    return false;
  }
  return true;
}

MXReturnValue parse(const Attrs& attrs, bool deformable, PoolAttrs* a) {
  std::string err;
  DCN_CHECK(parse_pool_attrs(attrs, deformable, a, &err))
      << (deformable ? "DeformablePSROIPooling" : "PSROIPooling") << ": " << err;
  return MX_SUCCESS;
}

std::vector<std::string> input_names(const PoolAttrs& a) {
  std::vector<std::string> names = {"data", "rois"};
  if (a.has_trans()) names.push_back("trans");
  return names;
}

std::vector<int64_t> to_i64(const std::vector<unsigned>& s) {
  return std::vector<int64_t>(s.begin(), s.end());
}

// ---------------------------------------------------------------------------------------------
// Shape checks, shared by inferShape (known shapes only) and the drivers (actual tensors).

bool check_rois(const PoolAttrs& a, const std::vector<int64_t>& rois, std::string* err) {
  if (rois.size() != 2 || rois[1] != 5) {
    *err = std::string(a.name()) + ": rois must be (R, 5) [batch_index, x1, y1, x2, y2], got " +
           shape_str(rois);
    return false;
  }
  return true;
}

bool check_data(const PoolAttrs& a, const std::vector<int64_t>& data, std::string* err) {
  const int64_t want = a.output_dim * a.group * a.group;
  if (data.size() != 4) {
    *err = std::string(a.name()) + ": data must be 4-D (N, C, H, W), got " + shape_str(data);
    return false;
  }
  if (data[1] != want) {
    *err = std::string(a.name()) + ": data has " + std::to_string(data[1]) +
           " channels, expected output_dim * group_size^2 = " + std::to_string(a.output_dim) +
           " * " + std::to_string(a.group) + "^2 = " + std::to_string(want) + " (data " +
           shape_str(data) + ")";
    return false;
  }
  return true;
}

// trans (R, 2 * num_classes, part, part) with output_dim divisible by num_classes.
bool check_trans(const PoolAttrs& a, const std::vector<int64_t>& trans, int64_t num_rois,
                 std::string* err) {
  const std::string want = "(" + std::to_string(num_rois) + ", 2 * num_classes, " +
                           std::to_string(a.part) + ", " + std::to_string(a.part) + ")";
  if (trans.size() != 4 || trans[0] != num_rois || trans[1] < 2 || trans[1] % 2 != 0 ||
      trans[2] != a.part || trans[3] != a.part) {
    *err = std::string(a.name()) + ": trans must be " + want + " (rois " +
           std::to_string(num_rois) + ", part_size " + std::to_string(a.part) + "), got " +
           shape_str(trans);
    return false;
  }
  if (a.output_dim % (trans[1] / 2) != 0) {
    *err = std::string(a.name()) + ": output_dim " + std::to_string(a.output_dim) +
           " must be divisible by the number of trans classes " + std::to_string(trans[1] / 2) +
           " (trans " + shape_str(trans) + ")";
    return false;
  }
  return true;
}

template <typename T>
bool check_batch_indices(const PoolAttrs& a, const T* rois, int64_t num_rois, int64_t num_images,
                         std::string* err) {
  for (int64_t r = 0; r < num_rois; ++r) {
    if (roi_batch_index(rois[r * 5], num_images) < 0) {
      std::ostringstream s;
      s.precision(17);
      s << a.name() << ": rois[" << r << ", 0] = " << rois[r * 5]
        << " is not a valid batch index: it must be an integer in [0, " << num_images
        << "), the batch size of data";
      *err = s.str();
      return false;
    }
  }
  return true;
}

PsroiDims psroi_dims(const PoolAttrs& a, const std::vector<int64_t>& data) {
  PsroiDims d;
  d.num_images = data[0];
  d.channels = data[1];
  d.height = data[2];
  d.width = data[3];
  d.output_dim = a.output_dim;
  d.group = a.group;
  d.pooled = a.pooled;
  return d;
}

DpsroiDims dpsroi_dims(const PoolAttrs& a, const std::vector<int64_t>& data,
                       const std::vector<int64_t>* trans) {
  DpsroiDims d;
  d.num_images = data[0];
  d.channels = data[1];
  d.height = data[2];
  d.width = data[3];
  d.output_dim = a.output_dim;
  d.group = a.group;
  d.pooled = a.pooled;
  d.part = a.part;
  d.sample_per_part = a.sample_per_part;
  d.no_trans = a.no_trans;
  d.num_classes = a.no_trans ? 1 : (*trans)[1] / 2;
  d.channels_each_class = a.output_dim / d.num_classes;
  return d;
}

// ---------------------------------------------------------------------------------------------
// lib_api callbacks shared by both ops

MXReturnValue parse_attrs(const Attrs& attrs, bool deformable, int* num_in, int* num_out) {
  PoolAttrs a;
  if (!parse(attrs, deformable, &a)) return MX_FAIL;
  *num_in = a.num_inputs();
  *num_out = 1;
  return MX_SUCCESS;
}

MXReturnValue infer_type(const Attrs& attrs, bool deformable, std::vector<int>* in_types,
                         std::vector<int>* out_types) {
  PoolAttrs a;
  if (!parse(attrs, deformable, &a)) return MX_FAIL;
  return infer_float_dtype(a.name(), input_names(a), in_types, out_types);
}

MXReturnValue infer_shape(const Attrs& attrs, bool deformable,
                          std::vector<std::vector<unsigned int>>* in_shapes,
                          std::vector<std::vector<unsigned int>>* out_shapes) {
  PoolAttrs a;
  if (!parse(attrs, deformable, &a)) return MX_FAIL;
  const std::vector<std::string> names = input_names(a);
  DCN_CHECK(in_shapes->size() == names.size())
      << a.name() << ": expected " << names.size() << " inputs, got " << in_shapes->size();
  std::string err;
  const std::vector<unsigned>& data = (*in_shapes)[0];
  const std::vector<unsigned>& rois = (*in_shapes)[1];
  if (fully_known(data)) {
    DCN_CHECK(check_data(a, to_i64(data), &err)) << err;
  }
  DCN_CHECK(rois.empty() || rois.size() == 2)
      << a.name() << ": rois must be (R, 5) [batch_index, x1, y1, x2, y2], got " << dims_str(rois);
  // Nothing but the number of rois is needed for the output; MXNet asks again once it is known.
  if (!fully_known(rois)) return MX_SUCCESS;
  DCN_CHECK(check_rois(a, to_i64(rois), &err)) << err;
  if (a.has_trans() && fully_known((*in_shapes)[2])) {
    DCN_CHECK(check_trans(a, to_i64((*in_shapes)[2]), rois[0], &err)) << err;
  }
  const unsigned pooled = static_cast<unsigned>(a.pooled);
  out_shapes->assign(1, {rois[0], static_cast<unsigned>(a.output_dim), pooled, pooled});
  return MX_SUCCESS;
}

// Checks the actual tensors of a forward (inputs = data, rois, [trans]) or a backward
// (inputs = grad_out, data, rois, [trans], out) call; `first` is the index of data.
MXReturnValue check_call(const PoolAttrs& a, const std::vector<MXTensor>& in, size_t first,
                         size_t num_out) {
  const size_t want_in = first + a.num_inputs() + (first ? 1 : 0);
  DCN_CHECK(in.size() == want_in && num_out == (first ? static_cast<size_t>(a.num_inputs()) : 1))
      << a.name() << ": expected " << want_in << " inputs and "
      << (first ? a.num_inputs() : 1) << " outputs, got " << in.size() << " and " << num_out;
  const std::vector<int64_t>& data = in[first].shape;
  const std::vector<int64_t>& rois = in[first + 1].shape;
  std::string err;
  DCN_CHECK(check_data(a, data, &err)) << err;
  DCN_CHECK(check_rois(a, rois, &err)) << err;
  if (a.has_trans()) {
    DCN_CHECK(check_trans(a, in[first + 2].shape, rois[0], &err)) << err;
  }
  const int dtype = in[first].dtype;
  DCN_CHECK(dtype == kFloat32 || dtype == kFloat64)
      << a.name() << ": supports float32 and float64, got " << dtype_name(dtype);
  for (size_t k = 0; k < in.size(); ++k) {
    DCN_CHECK(in[k].dtype == dtype) << a.name() << ": all inputs must have the dtype of data ("
                                    << dtype_name(dtype) << "), input " << k << " is "
                                    << dtype_name(in[k].dtype);
  }
  if (first) {
    const std::vector<int64_t> want = {rois[0], a.output_dim, a.pooled, a.pooled};
    DCN_CHECK(in[0].shape == want) << a.name() << ": output gradient must be " << shape_str(want)
                                   << ", got " << shape_str(in[0].shape);
  }
  return MX_SUCCESS;
}

// ---------------------------------------------------------------------------------------------
// Drivers

template <typename T>
MXReturnValue forward_typed(const PoolAttrs& a, std::vector<MXTensor>* inputs,
                            std::vector<MXTensor>* outputs, bool gpu, void* stream) {
  const std::vector<int64_t>& data_shape = (*inputs)[0].shape;
  const int64_t num_rois = (*inputs)[1].shape[0];
  const T* data = (*inputs)[0].data<T>();
  const T* rois = (*inputs)[1].data<T>();
  const T* trans = a.has_trans() ? (*inputs)[2].data<T>() : nullptr;
  T* out = (*outputs)[0].data<T>();
  const T scale = static_cast<T>(a.spatial_scale);
  const T trans_std = static_cast<T>(a.trans_std);
  std::string err;
  if (!gpu) {
    DCN_CHECK(check_batch_indices(a, rois, num_rois, data_shape[0], &err)) << err;
    try {  // scratch allocations may throw; exceptions must not cross into MXNet
      if (a.deformable) {
        const DpsroiDims d =
            dpsroi_dims(a, data_shape, a.has_trans() ? &(*inputs)[2].shape : nullptr);
        cpu::dpsroi_forward(d, scale, trans_std, num_rois, data, rois, trans, out);
      } else {
        cpu::psroi_forward(psroi_dims(a, data_shape), scale, num_rois, data, rois, out);
      }
    } catch (const std::exception& e) {
      DCN_CHECK(false) << a.name() << ": forward failed: " << e.what();
    }
    return MX_SUCCESS;
  }
#ifdef DCN_WITH_CUDA
  const char* cuda_err = nullptr;
  if (a.deformable) {
    const DpsroiDims d = dpsroi_dims(a, data_shape, a.has_trans() ? &(*inputs)[2].shape : nullptr);
    cuda_err = cuda::dpsroi_forward(d, scale, trans_std, num_rois, data, rois, trans, out, stream);
  } else {
    cuda_err = cuda::psroi_forward(psroi_dims(a, data_shape), scale, num_rois, data, rois, out,
                                   stream);
  }
  DCN_CHECK(cuda_err == nullptr) << a.name() << ": CUDA forward failed: " << cuda_err;
  return MX_SUCCESS;
#else
  (void)stream;
  DCN_CHECK(false) << a.name() << ": the library was built without CUDA";
#endif
}

template <typename T>
MXReturnValue backward_typed(const PoolAttrs& a, std::vector<MXTensor>* inputs,
                             std::vector<MXTensor>* outputs, bool gpu, void* stream) {
  const std::vector<int64_t>& data_shape = (*inputs)[1].shape;
  const int64_t num_rois = (*inputs)[2].shape[0];
  const T* top_grad = (*inputs)[0].data<T>();
  const T* data = (*inputs)[1].data<T>();
  const T* rois = (*inputs)[2].data<T>();
  const T* trans = a.has_trans() ? (*inputs)[3].data<T>() : nullptr;
  T* data_grad = (*outputs)[0].data<T>();
  T* rois_grad = (*outputs)[1].data<T>();
  T* trans_grad = a.has_trans() ? (*outputs)[2].data<T>() : nullptr;
  const T scale = static_cast<T>(a.spatial_scale);
  const T trans_std = static_cast<T>(a.trans_std);
  const std::vector<int64_t>* trans_shape = a.has_trans() ? &(*inputs)[3].shape : nullptr;
  std::string err;
  if (!gpu) {
    DCN_CHECK(check_batch_indices(a, rois, num_rois, data_shape[0], &err)) << err;
    std::fill(rois_grad, rois_grad + num_rois * 5, T(0));
    try {  // scratch allocations may throw; exceptions must not cross into MXNet
      if (a.deformable) {
        cpu::dpsroi_backward(dpsroi_dims(a, data_shape, trans_shape), scale, trans_std, num_rois,
                             top_grad, data, rois, trans, data_grad, trans_grad);
      } else {
        cpu::psroi_backward(psroi_dims(a, data_shape), scale, num_rois, top_grad, rois,
                            data_grad);
      }
    } catch (const std::exception& e) {
      DCN_CHECK(false) << a.name() << ": backward failed: " << e.what();
    }
    return MX_SUCCESS;
  }
#ifdef DCN_WITH_CUDA
  const char* cuda_err = nullptr;
  if (a.deformable) {
    cuda_err = cuda::dpsroi_backward(dpsroi_dims(a, data_shape, trans_shape), scale, trans_std,
                                     num_rois, top_grad, data, rois, trans, data_grad, rois_grad,
                                     trans_grad, stream);
  } else {
    cuda_err = cuda::psroi_backward(psroi_dims(a, data_shape), scale, num_rois, top_grad, rois,
                                    data_grad, rois_grad, stream);
  }
  DCN_CHECK(cuda_err == nullptr) << a.name() << ": CUDA backward failed: " << cuda_err;
  return MX_SUCCESS;
#else
  (void)stream;
  DCN_CHECK(false) << a.name() << ": the library was built without CUDA";
#endif
}

MXReturnValue forward(const Attrs& attrs, bool deformable, std::vector<MXTensor>* inputs,
                      std::vector<MXTensor>* outputs, bool gpu, void* stream) {
  PoolAttrs a;
  if (!parse(attrs, deformable, &a)) return MX_FAIL;
  if (!check_call(a, *inputs, 0, outputs->size())) return MX_FAIL;
  return (*inputs)[0].dtype == kFloat32 ? forward_typed<float>(a, inputs, outputs, gpu, stream)
                                        : forward_typed<double>(a, inputs, outputs, gpu, stream);
}

MXReturnValue backward(const Attrs& attrs, bool deformable, std::vector<MXTensor>* inputs,
                       std::vector<MXTensor>* outputs, bool gpu, void* stream) {
  PoolAttrs a;
  if (!parse(attrs, deformable, &a)) return MX_FAIL;
  if (!check_call(a, *inputs, 1, outputs->size())) return MX_FAIL;
  return (*inputs)[1].dtype == kFloat32 ? backward_typed<float>(a, inputs, outputs, gpu, stream)
                                        : backward_typed<double>(a, inputs, outputs, gpu, stream);
}

}  // namespace

MXReturnValue psroi_parse_attrs(const Attrs& attrs, int* num_in, int* num_out) {
  return parse_attrs(attrs, false, num_in, num_out);
}
MXReturnValue psroi_infer_type(const Attrs& attrs, std::vector<int>* in_types,
                               std::vector<int>* out_types) {
  return infer_type(attrs, false, in_types, out_types);
}
MXReturnValue psroi_infer_shape(const Attrs& attrs,
                                std::vector<std::vector<unsigned int>>* in_shapes,
                                std::vector<std::vector<unsigned int>>* out_shapes) {
  return infer_shape(attrs, false, in_shapes, out_shapes);
}
MXReturnValue psroi_forward_cpu(const Attrs& attrs, std::vector<MXTensor>* inputs,
                                std::vector<MXTensor>* outputs, const OpResource&) {
  return forward(attrs, false, inputs, outputs, false, nullptr);
}
MXReturnValue psroi_backward_cpu(const Attrs& attrs, std::vector<MXTensor>* inputs,
                                 std::vector<MXTensor>* outputs, const OpResource&) {
  return backward(attrs, false, inputs, outputs, false, nullptr);
}

MXReturnValue dpsroi_parse_attrs(const Attrs& attrs, int* num_in, int* num_out) {
  return parse_attrs(attrs, true, num_in, num_out);
}
MXReturnValue dpsroi_infer_type(const Attrs& attrs, std::vector<int>* in_types,
                                std::vector<int>* out_types) {
  return infer_type(attrs, true, in_types, out_types);
}
MXReturnValue dpsroi_infer_shape(const Attrs& attrs,
                                 std::vector<std::vector<unsigned int>>* in_shapes,
                                 std::vector<std::vector<unsigned int>>* out_shapes) {
  return infer_shape(attrs, true, in_shapes, out_shapes);
}
MXReturnValue dpsroi_forward_cpu(const Attrs& attrs, std::vector<MXTensor>* inputs,
                                 std::vector<MXTensor>* outputs, const OpResource&) {
  return forward(attrs, true, inputs, outputs, false, nullptr);
}
MXReturnValue dpsroi_backward_cpu(const Attrs& attrs, std::vector<MXTensor>* inputs,
                                  std::vector<MXTensor>* outputs, const OpResource&) {
  return backward(attrs, true, inputs, outputs, false, nullptr);
}

#ifdef DCN_WITH_CUDA
MXReturnValue psroi_forward_gpu(const Attrs& attrs, std::vector<MXTensor>* inputs,
                                std::vector<MXTensor>* outputs, const OpResource& res) {
  return forward(attrs, false, inputs, outputs, true, res.get_cuda_stream());
}
MXReturnValue psroi_backward_gpu(const Attrs& attrs, std::vector<MXTensor>* inputs,
                                 std::vector<MXTensor>* outputs, const OpResource& res) {
  return backward(attrs, false, inputs, outputs, true, res.get_cuda_stream());
}
MXReturnValue dpsroi_forward_gpu(const Attrs& attrs, std::vector<MXTensor>* inputs,
                                 std::vector<MXTensor>* outputs, const OpResource& res) {
  return forward(attrs, true, inputs, outputs, true, res.get_cuda_stream());
}
MXReturnValue dpsroi_backward_gpu(const Attrs& attrs, std::vector<MXTensor>* inputs,
                                  std::vector<MXTensor>* outputs, const OpResource& res) {
  return backward(attrs, true, inputs, outputs, true, res.get_cuda_stream());
}
#endif

}  // namespace dcn
