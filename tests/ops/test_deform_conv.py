"""DeformableConvolution (library op) against the float64 reference, central differences and
MXNet's _contrib_DeformableConvolution, plus its error handling."""

import mxnet as mx
import numpy as np
import pytest
from mxnet.base import MXNetError

import lib.ops as ops
from tests.ops import reference as ref
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
    offsets_for_targets,
    op_fn,
    operands,
    output_hw,
    reference,
)


@pytest.fixture(scope="module", autouse=True)
def _library():
    ops.load()


def test_inputs_sample_inside_outside_and_in_border_bands():
    data, offset, _, _, _ = make_inputs()
    loc = ref.sample_locations(
        data.shape,
        offset,
        CFG["kernel"],
        CFG["stride"],
        CFG["pad"],
        CFG["dilate"],
        CFG["num_deformable_group"],
    )
    h, w = loc[..., 0], loc[..., 1]
    assert ((h > -1) & (h < 0)).any() and ((h > H - 1) & (h < H)).any()
    assert ((w > -1) & (w < 0)).any() and ((w > W - 1) & (w < W)).any()
    assert ((h <= -1) | (h >= H) | (w <= -1) | (w >= W)).any()
    assert ((h > 0) & (h < H - 1) & (w > 0) & (w < W - 1)).any()


@pytest.mark.parametrize("im2col_step", [1, 3, 64])
def test_forward_float64_matches_reference(im2col_step):
    data, offset, _, weight, bias = make_inputs()
    fn = op_fn(F, False, False, im2col_step=im2col_step, **CFG)
    out = forward(fn, operands(data, offset, None, weight, bias))
    np.testing.assert_allclose(out, reference(data, offset, None, weight, bias), rtol=0, atol=1e-9)


def test_forward_float32_matches_reference():
    data, offset, _, weight, bias = make_inputs(seed=1)
    fn = op_fn(F, False, False, **CFG)
    out = forward(fn, operands(data, offset, None, weight, bias), dtype=np.float32)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, reference(data, offset, None, weight, bias), rtol=0, atol=1e-4)


def test_forward_without_bias():
    data, offset, _, weight, _ = make_inputs(seed=2)
    fn = op_fn(F, False, True, **CFG)
    out = forward(fn, operands(data, offset, None, weight, None))
    np.testing.assert_allclose(out, reference(data, offset, None, weight, None), rtol=0, atol=1e-9)


def test_zero_offsets_equal_dense_convolution():
    data, _, _, weight, bias = make_inputs(seed=3)
    cfg = dict(CFG, num_deformable_group=1)
    ho, wo = output_hw(H, W, cfg)
    offset = np.zeros((data.shape[0], 2 * 6, ho, wo))
    out = forward(op_fn(F, False, False, **cfg), [data, offset, weight, bias])
    dense = mx.nd.Convolution(
        mx.nd.array(data, dtype=np.float64),
        mx.nd.array(weight, dtype=np.float64),
        mx.nd.array(bias, dtype=np.float64),
        kernel=cfg["kernel"],
        stride=cfg["stride"],
        pad=cfg["pad"],
        dilate=cfg["dilate"],
        num_group=cfg["num_group"],
        num_filter=F,
    )
    np.testing.assert_allclose(out, dense.asnumpy(), rtol=0, atol=1e-9)


@pytest.mark.parametrize("im2col_step", [1, 2])
def test_backward_matches_central_differences(im2col_step):
    data, offset, _, weight, bias = make_inputs(seed=4, n=2, c=6, h=5, w=4, f=2)
    arrays = operands(data, offset, None, weight, bias)
    fn = op_fn(2, False, False, im2col_step=im2col_step, **CFG)
    head = np.random.default_rng(5).standard_normal(forward(fn, arrays).shape)
    _, grads = autograd(fn, arrays, head)
    numeric = central_differences(fn, arrays, head)
    assert_grads_close(grads, numeric, ["data", "offset", "weight", "bias"])


def test_backward_is_deterministic_and_overwrites():
    data, offset, _, weight, bias = make_inputs(seed=6)
    arrays = operands(data, offset, None, weight, bias)
    fn = op_fn(F, False, False, **CFG)
    head = np.ones(forward(fn, arrays).shape)
    _, first = autograd(fn, arrays, head, dtype=np.float32)
    _, second = autograd(fn, arrays, head, dtype=np.float32)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


def test_batch_zero():
    data, offset, _, weight, bias = make_inputs(n=0)
    fn = op_fn(F, False, False, **CFG)
    with mx.util.np_shape(True):
        out, grads = autograd(
            fn, operands(data, offset, None, weight, bias), np.zeros((0, F) + output_hw(H, W, CFG))
        )
    assert out.shape == (0, F) + output_hw(H, W, CFG)
    assert grads[0].shape == data.shape and grads[1].shape == offset.shape
    np.testing.assert_array_equal(grads[2], np.zeros_like(weight))
    np.testing.assert_array_equal(grads[3], np.zeros_like(bias))


def test_workspace_cap_processes_fewer_rows():
    # One image's column buffer is 64*9*48*48*8 B = 10.6 MB; workspace=4 (MB) forces chunks of
    # a few output rows of one image at a time. Results must not change.
    rng = np.random.default_rng(7)
    cfg = dict(kernel=(3, 3), pad=(1, 1), num_deformable_group=2)
    data = rng.standard_normal((2, 64, 48, 48))
    offset = rng.uniform(-2, 2, (2, 2 * 2 * 9, 48, 48))
    weight = rng.standard_normal((8, 64, 3, 3))
    bias = rng.standard_normal(8)
    arrays = [data, offset, weight, bias]
    head = rng.standard_normal((2, 8, 48, 48))
    out_big, grads_big = autograd(op_fn(8, False, False, **cfg), arrays, head)
    out_small, grads_small = autograd(op_fn(8, False, False, workspace=4, **cfg), arrays, head)
    np.testing.assert_allclose(out_small, out_big, rtol=1e-12, atol=1e-12)
    for a, b in zip(grads_small, grads_big):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)


def test_workspace_too_small_for_one_row_is_an_error():
    data = np.zeros((1, 1024, 1, 64))
    offset = np.zeros((1, 6, 1, 64))
    weight = np.zeros((2, 1024, 1, 3))
    fn = op_fn(2, False, True, kernel=(1, 3), pad=(0, 1), workspace=1)
    with pytest.raises(MXNetError, match="one image and one output row need .* bytes"):
        forward(fn, [data, offset, weight])


def _contrib(data, offset, weight, bias, cfg):
    return mx.nd.contrib.DeformableConvolution(
        data,
        offset,
        weight,
        bias,
        kernel=cfg["kernel"],
        stride=cfg["stride"],
        pad=cfg["pad"],
        dilate=cfg["dilate"],
        num_group=cfg["num_group"],
        num_deformable_group=cfg["num_deformable_group"],
        num_filter=F,
    )


def test_matches_contrib_forward_and_backward_where_the_rules_agree():
    # The old rule (contrib) and the updated rule (ours) agree for samples in [0, H-1) x [0, W-1)
    # and for samples outside (-1, H) x (-1, W); they differ only in the border bands.
    data, _, _, weight, bias = make_inputs(seed=8)
    rng = np.random.default_rng(9)
    shape = (data.shape[0], 3, 6) + output_hw(H, W, CFG)
    target_h = rng.integers(0, H - 1, shape) + rng.uniform(0.1, 0.9, shape)
    target_w = rng.integers(0, W - 1, shape) + rng.uniform(0.1, 0.9, shape)
    target_h[rng.random(shape) < 0.15] = -2.5  # some samples well outside the image
    target_w[rng.random(shape) < 0.15] = W + 1.5
    offset = offsets_for_targets(target_h, target_w)
    loc = ref.sample_locations(
        data.shape,
        offset,
        CFG["kernel"],
        CFG["stride"],
        CFG["pad"],
        CFG["dilate"],
        CFG["num_deformable_group"],
    )
    h, w = loc[..., 0], loc[..., 1]
    inside = (h >= 0) & (h < H - 1) & (w >= 0) & (w < W - 1)
    outside = (h <= -1) | (h >= H) | (w <= -1) | (w >= W)
    assert np.all(inside | outside), "samples must avoid the bands where the rules differ"
    assert inside.any() and outside.any()

    arrays = [data, offset, weight, bias]
    head = rng.standard_normal((data.shape[0], F) + output_hw(H, W, CFG))
    ours, ours_grads = autograd(op_fn(F, False, False, **CFG), arrays, head)
    theirs, theirs_grads = autograd(lambda *a: _contrib(*a, CFG), arrays, head)
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-9)
    for name, a, b in zip(["data", "offset", "weight", "bias"], ours_grads, theirs_grads):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9, err_msg=name)


@pytest.mark.parametrize(
    "dy, ours_first_row, ours_last_row, contrib_first_row, contrib_last_row",
    [
        # dy = -0.5: the first row samples h = -0.5, in (-1, 0): the updated rule weighs row 0 by
        # 0.5, the old rule gives 0. The last row samples h = 1.5 inside: both give 1.
        (-0.5, 0.5, 1.0, 0.0, 1.0),
        # dy = +0.5: the last row samples h = 2.5, in (H-1, H): the updated rule fades to 0.5,
        # the old rule replicates the last row (1.0).
        (0.5, 1.0, 0.5, 1.0, 1.0),
    ],
)
def test_documented_difference_from_contrib_at_the_border(
    dy, ours_first_row, ours_last_row, contrib_first_row, contrib_last_row
):
    data = mx.nd.ones((1, 1, 3, 3), dtype=np.float64)
    weight = mx.nd.ones((1, 1, 1, 1), dtype=np.float64)
    offset = mx.nd.concat(
        mx.nd.full((1, 1, 3, 3), dy, dtype=np.float64),
        mx.nd.zeros((1, 1, 3, 3), dtype=np.float64),
        dim=1,
    )
    ours = ops.deformable_convolution(
        data, offset, weight, kernel=(1, 1), num_filter=1, no_bias=True
    ).asnumpy()[0, 0]
    theirs = mx.nd.contrib.DeformableConvolution(
        data, offset, weight, kernel=(1, 1), num_filter=1, no_bias=True
    ).asnumpy()[0, 0]
    np.testing.assert_allclose(ours[0], ours_first_row)
    np.testing.assert_allclose(ours[-1], ours_last_row)
    np.testing.assert_allclose(theirs[0], contrib_first_row)
    np.testing.assert_allclose(theirs[-1], contrib_last_row)


def test_nan_inf_and_huge_offsets_give_zero_samples():
    data, offset, _, weight, bias = make_inputs(seed=10)
    bad = [np.nan, np.inf, -np.inf, 1e30, -1e30, 3e9, -3e9, 1e10]
    flat = offset.reshape(-1)
    picks = np.random.default_rng(11).choice(flat.size, size=40, replace=False)
    flat[picks] = np.resize(bad, picks.size)
    arrays = operands(data, offset, None, weight, bias)
    fn = op_fn(F, False, False, **CFG)
    for dtype, tol in [(np.float64, 1e-9), (np.float32, 1e-4)]:
        head = np.ones((data.shape[0], F) + output_hw(H, W, CFG))
        out, grads = autograd(fn, arrays, head, dtype=dtype)
        assert np.isfinite(out).all()
        np.testing.assert_allclose(out, reference(data, offset, None, weight, bias), atol=tol)
        for g in grads:
            assert np.isfinite(g).all()
        # Both coordinates of a sample with a bad offset get gradient 0.
        bad = ~(np.abs(offset) < 1e8)
        assert (grads[1][bad] == 0).all()


def test_symbol_wrapper_names_and_shape_inference():
    sym = ops.deformable_convolution(
        mx.sym.var("data"),
        mx.sym.var("res5a_branch2b_offset"),
        kernel=(3, 3),
        pad=(2, 2),
        dilate=(2, 2),
        num_filter=512,
        num_deformable_group=4,
        no_bias=True,
        name="res5a_branch2b",
    )
    assert sym.list_arguments() == ["data", "res5a_branch2b_offset", "res5a_branch2b_weight"]
    assert sym.list_outputs() == ["res5a_branch2b_output"]
    args, outs, _ = sym.infer_shape(data=(1, 512, 38, 63))
    assert args == [(1, 512, 38, 63), (1, 72, 38, 63), (512, 512, 3, 3)]
    assert outs == [(1, 512, 38, 63)]
    with_bias = ops.deformable_convolution(
        mx.sym.var("data"), mx.sym.var("off"), kernel=3, num_filter=8, name="dc"
    )
    assert with_bias.list_arguments() == ["data", "off", "dc_weight", "dc_bias"]
    assert with_bias.infer_type(data=np.float64)[0] == [np.float64] * 4


def _call(
    data_shape=(2, 6, 6, 5),
    offset_shape=(2, 36, 2, 8),
    weight_shape=(4, 3, 3, 2),
    bias_shape=(4,),
    dtype=np.float32,
    **attrs,
):
    """Calls the op with zero inputs of the given shapes (defaults: valid for CFG)."""
    cfg = dict(CFG, num_filter=F)
    cfg.update(attrs)
    arrays = [
        mx.nd.zeros(s, dtype=dtype) for s in (data_shape, offset_shape, weight_shape, bias_shape)
    ]
    return mx.nd.DeformableConvolution(*arrays, **cfg).asnumpy()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(offset_shape=(2, 35, 2, 8)), r"offset shape expected \(2, 36, 2, 8\), got \(2, 35"),
        (dict(offset_shape=(2, 36, 3, 8)), r"offset shape expected \(2, 36, 2, 8\)"),
        (dict(weight_shape=(4, 6, 3, 2)), r"weight shape expected \(4, 3, 3, 2\), got \(4, 6"),
        (dict(bias_shape=(5,)), r"bias shape expected \(4,\), got \(5,\)"),
        (
            dict(num_group=4, weight_shape=(4, 1, 3, 2)),
            "data channels 6 must be divisible by num_group 4",
        ),
        (
            dict(num_deformable_group=4, offset_shape=(2, 48, 2, 8)),
            "data channels 6 must be divisible by num_deformable_group 4",
        ),
        (dict(num_filter=5, bias_shape=(5,)), "num_filter 5 must be divisible by num_group 2"),
        (
            dict(data_shape=(3, 6, 6, 5), offset_shape=(3, 36, 2, 8), im2col_step=2),
            r"batch size 3 must be divisible by im2col_step 2",
        ),
        (dict(data_shape=(6, 6, 5)), r"data must be 4-D \(N, C, H, W\), got shape \(6, 6, 5\)"),
        (
            dict(data_shape=(2, 6, 2, 5), offset_shape=(2, 36, 1, 8)),
            r"output size \(0, 8\) must be positive",
        ),
        (dict(kernel=(3, 2, 1)), "kernel must be a pair of integers"),
        (dict(stride=(0, 1)), r"stride values must be in \[1, "),
        (dict(layout="NHWC"), "layout must be None or NCHW"),
        (dict(num_deformable_groups=3), "unknown attribute 'num_deformable_groups'"),
        (dict(no_bias="maybe"), "no_bias must be True or False"),
        (dict(dtype=np.float16), "supports float32 and float64, got float16"),
    ],
)
def test_bad_inputs_raise_clear_errors(kwargs, match):
    with pytest.raises(MXNetError, match=match):
        _call(**kwargs)


def test_missing_required_attribute():
    with pytest.raises(MXNetError, match="required attribute 'num_filter'"):
        mx.nd.DeformableConvolution(
            mx.nd.zeros((1, 1, 3, 3)),
            mx.nd.zeros((1, 2, 3, 3)),
            mx.nd.zeros((1, 1, 1, 1)),
            kernel=(1, 1),
            no_bias=True,
        )


def test_many_channels_match_contrib_forward_and_backward():
    # 160 channels in 2 weight groups (80 = a full 64-channel column block + 16) and 5 deformable
    # groups of 32: channel runs cross every kind of boundary of the kernels' column layout.
    cfg = dict(
        kernel=(3, 3), stride=(1, 1), pad=(1, 1), dilate=(1, 1), num_group=2, num_deformable_group=5
    )
    rng = np.random.default_rng(12)
    n, c, h, w, f = 2, 160, 9, 8, 10
    data = rng.standard_normal((n, c, h, w))
    weight = rng.standard_normal((f, c // 2, 3, 3))
    bias = rng.standard_normal(f)
    shape = (n, 5, 9, h, w)
    target_h = rng.integers(0, h - 1, shape) + rng.uniform(0.1, 0.9, shape)
    target_w = rng.integers(0, w - 1, shape) + rng.uniform(0.1, 0.9, shape)
    target_h[rng.random(shape) < 0.1] = -3.5
    offset = offsets_for_targets(target_h, target_w, cfg)
    arrays = [data, offset, weight, bias]
    head = rng.standard_normal((n, f, h, w))
    ours, ours_grads = autograd(op_fn(f, False, False, **cfg), arrays, head)

    def contrib(*a):
        return mx.nd.contrib.DeformableConvolution(*a, num_filter=f, **cfg)

    theirs, theirs_grads = autograd(contrib, arrays, head)
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-9)
    for name, a, b in zip(["data", "offset", "weight", "bias"], ours_grads, theirs_grads):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9, err_msg=name)


def test_error_shows_only_its_own_cause():
    # MXNet keeps every library error message of the process; ours drop the earlier ones.
    with pytest.raises(MXNetError, match="layout must be None or NCHW"):
        _call(layout="NHWC")
    with pytest.raises(MXNetError) as err:
        _call(bias_shape=(5,))
    assert "bias shape expected" in str(err.value)
    assert "layout must be" not in str(err.value)
