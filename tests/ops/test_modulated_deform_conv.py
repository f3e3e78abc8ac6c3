"""ModulatedDeformableConvolution (library op, DCNv2) against the float64 reference, central
differences and MXNet's _contrib_ModulatedDeformableConvolution (forward only: its backward is
GPU-only), plus its error handling."""

import mxnet as mx
import numpy as np
import pytest
from mxnet.base import MXNetError

import lib.ops as ops
from tests.ops.deform_helpers import (
    CFG,
    F,
    H,
    W,
    assert_grads_close,
    autograd,
    central_differences,
    forward,
    make_inputs,
    op_fn,
    operands,
    output_hw,
    reference,
)

NAMES = ["data", "offset", "mask", "weight", "bias"]


@pytest.fixture(scope="module", autouse=True)
def _library():
    ops.load()


@pytest.mark.parametrize("im2col_step", [1, 3])
def test_forward_float64_matches_reference(im2col_step):
    data, offset, mask, weight, bias = make_inputs(modulated=True)
    fn = op_fn(F, True, False, im2col_step=im2col_step, **CFG)
    out = forward(fn, operands(data, offset, mask, weight, bias))
    np.testing.assert_allclose(out, reference(data, offset, mask, weight, bias), rtol=0, atol=1e-9)


def test_forward_float32_matches_reference():
    data, offset, mask, weight, bias = make_inputs(seed=1, modulated=True)
    fn = op_fn(F, True, False, **CFG)
    out = forward(fn, operands(data, offset, mask, weight, bias), dtype=np.float32)
    np.testing.assert_allclose(out, reference(data, offset, mask, weight, bias), rtol=0, atol=1e-4)


def test_unit_mask_equals_unmodulated_op_and_zero_mask_leaves_bias():
    data, offset, mask, weight, bias = make_inputs(seed=2, modulated=True)
    modulated = op_fn(F, True, False, **CFG)
    plain = forward(op_fn(F, False, False, **CFG), [data, offset, weight, bias])
    ones = forward(modulated, [data, offset, np.ones_like(mask), weight, bias])
    np.testing.assert_allclose(ones, plain, rtol=0, atol=1e-12)
    zeros = forward(modulated, [data, offset, np.zeros_like(mask), weight, bias])
    np.testing.assert_allclose(zeros, np.broadcast_to(bias[None, :, None, None], zeros.shape))


def test_backward_matches_central_differences():
    data, offset, mask, weight, bias = make_inputs(seed=4, n=2, c=6, h=5, w=4, f=2, modulated=True)
    arrays = operands(data, offset, mask, weight, bias)
    fn = op_fn(2, True, False, im2col_step=1, **CFG)
    head = np.random.default_rng(5).standard_normal(forward(fn, arrays).shape)
    _, grads = autograd(fn, arrays, head)
    assert_grads_close(grads, central_differences(fn, arrays, head), NAMES)


def test_matches_contrib_forward():
    # The contrib op uses the same (updated) sampling rule on the CPU; it requires num_filter to
    # be divisible by num_deformable_group, hence F = 6 here.
    data, offset, mask, weight, bias = make_inputs(seed=6, f=6, modulated=True)
    arrays = [mx.nd.array(a, dtype=np.float64) for a in (data, offset, mask, weight, bias)]
    theirs = mx.nd.contrib.ModulatedDeformableConvolution(*arrays, num_filter=6, **CFG).asnumpy()
    ours = forward(op_fn(6, True, False, **CFG), [data, offset, mask, weight, bias])
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-9)


def test_nan_and_huge_offsets_give_zero_samples():
    data, offset, mask, weight, bias = make_inputs(seed=7, modulated=True)
    flat = offset.reshape(-1)
    picks = np.random.default_rng(8).choice(flat.size, size=30, replace=False)
    flat[picks] = np.resize([np.nan, np.inf, -np.inf, 1e30, -5e9], picks.size)
    arrays = operands(data, offset, mask, weight, bias)
    head = np.ones((data.shape[0], F) + output_hw(H, W, CFG))
    out, grads = autograd(op_fn(F, True, False, **CFG), arrays, head)
    np.testing.assert_allclose(out, reference(data, offset, mask, weight, bias), atol=1e-9)
    assert all(np.isfinite(g).all() for g in grads)
    assert (grads[1][~(np.abs(offset) < 1e8)] == 0).all()


def test_batch_zero():
    data, offset, mask, weight, bias = make_inputs(n=0, modulated=True)
    with mx.util.np_shape(True):
        out, grads = autograd(
            op_fn(F, True, False, **CFG),
            operands(data, offset, mask, weight, bias),
            np.zeros((0, F) + output_hw(H, W, CFG)),
        )
    assert out.shape == (0, F) + output_hw(H, W, CFG)
    assert [g.shape for g in grads] == [a.shape for a in (data, offset, mask, weight, bias)]
    assert not grads[3].any() and not grads[4].any()


@pytest.mark.parametrize(
    "mask_shape, match",
    [
        ((2, 17, 2, 8), r"mask shape expected \(2, 18, 2, 8\), got \(2, 17, 2, 8\)"),
        ((2, 18, 2, 7), r"mask shape expected \(2, 18, 2, 8\), got \(2, 18, 2, 7\)"),
        ((2, 18, 16), r"mask shape expected \(2, 18, 2, 8\), got \(2, 18, 16\)"),
    ],
)
def test_bad_mask_shape(mask_shape, match):
    shapes = [(2, 6, 6, 5), (2, 36, 2, 8), mask_shape, (4, 3, 3, 2), (4,)]
    with pytest.raises(MXNetError, match=match):
        mx.nd.ModulatedDeformableConvolution(
            *[mx.nd.zeros(s) for s in shapes], num_filter=F, **CFG
        ).asnumpy()


def test_mask_input_is_required():
    # Without a mask the inputs shift: the op sees the weight where the mask should be.
    shapes = [(2, 6, 6, 5), (2, 36, 2, 8), (4, 3, 3, 2), (4,)]
    with pytest.raises(MXNetError, match="mask shape expected"):
        mx.nd.ModulatedDeformableConvolution(
            *[mx.nd.zeros(s) for s in shapes], num_filter=F, no_bias=True, **CFG
        ).asnumpy()
