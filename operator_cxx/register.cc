// Registers the library's operators with MXNet (loaded by lib/ops with mx.library.load).
//
// One section per op family; each op gets parseAttrs / inferType / inferShape and a forward and
// backward per device ("gpu" lines only when built with WITH_CUDA=1). Names are plain (never an
// MXNet built-in name: re-registering one silently replaces it); lib/ops/__init__.py lists them
// in EXPECTED_OPS and checks that each one registered.
#include <iostream>

#include "lib_api.h"
#include "ops/deform_conv.h"
#include "ops/psroi_pooling.h"

using mxnet::ext::MXReturnValue;

// ---- DeformableConvolution / ModulatedDeformableConvolution (ops/deform_conv.cc) -------------

REGISTER_OP(DeformableConvolution)
    .setParseAttrs(dcn::deform_conv_parse_attrs<false>)
    .setInferType(dcn::deform_conv_infer_type<false>)
    .setInferShape(dcn::deform_conv_infer_shape<false>)
    .setForward(dcn::deform_conv_forward_cpu<false>, "cpu")
#ifdef DCN_WITH_CUDA
    .setForward(dcn::deform_conv_forward_gpu<false>, "gpu")
    .setBackward(dcn::deform_conv_backward_gpu<false>, "gpu")
#endif
    .setBackward(dcn::deform_conv_backward_cpu<false>, "cpu");

REGISTER_OP(ModulatedDeformableConvolution)
    .setParseAttrs(dcn::deform_conv_parse_attrs<true>)
    .setInferType(dcn::deform_conv_infer_type<true>)
    .setInferShape(dcn::deform_conv_infer_shape<true>)
    .setForward(dcn::deform_conv_forward_cpu<true>, "cpu")
#ifdef DCN_WITH_CUDA
    .setForward(dcn::deform_conv_forward_gpu<true>, "gpu")
    .setBackward(dcn::deform_conv_backward_gpu<true>, "gpu")
#endif
    .setBackward(dcn::deform_conv_backward_cpu<true>, "cpu");

// ---- PSROIPooling / DeformablePSROIPooling (ops/psroi_pooling.cc) -----------------------------

REGISTER_OP(PSROIPooling)
    .setParseAttrs(dcn::psroi_parse_attrs)
    .setInferType(dcn::psroi_infer_type)
    .setInferShape(dcn::psroi_infer_shape)
    .setForward(dcn::psroi_forward_cpu, "cpu")
#ifdef DCN_WITH_CUDA
    .setForward(dcn::psroi_forward_gpu, "gpu")
    .setBackward(dcn::psroi_backward_gpu, "gpu")
#endif
    .setBackward(dcn::psroi_backward_cpu, "cpu");

REGISTER_OP(DeformablePSROIPooling)
    .setParseAttrs(dcn::dpsroi_parse_attrs)
    .setInferType(dcn::dpsroi_infer_type)
    .setInferShape(dcn::dpsroi_infer_shape)
    .setForward(dcn::dpsroi_forward_cpu, "cpu")
#ifdef DCN_WITH_CUDA
    .setForward(dcn::dpsroi_forward_gpu, "gpu")
    .setBackward(dcn::dpsroi_backward_gpu, "gpu")
#endif
    .setBackward(dcn::dpsroi_backward_cpu, "cpu");

// ---- library entry -----------------------------------------------------------------------------

MXReturnValue initialize(int version) {
  if (version >= 10700) return mxnet::ext::MX_SUCCESS;
  std::cerr << "dcn_ops: MXNet version " << version << " is not supported (need >= 1.7.0)"
            << std::endl;
  return mxnet::ext::MX_FAIL;
}
