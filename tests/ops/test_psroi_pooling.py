"""PSROIPooling (library op) against the float64 reference, central differences and MXNet's
_contrib_PSROIPooling, plus its handling of bad and non-finite input.

The contrib op is never run on bad input: it aborts the process there.
"""

import mxnet as mx
import numpy as np
import pytest
from mxnet.base import MXNetError

from lib import ops
from tests.ops import psroi_reference as ref

# Batch 2, a feature map of 7 x 9 at 1/4 of the image; rois partly outside the image.
N, H, W, SCALE = 2, 7, 9, 0.25

# (output_dim, pooled_size, group_size)
CONFIGS = {
    "square": (3, 3, 3),
    "pooled_gt_group": (2, 3, 2),
    "group_gt_pooled": (2, 2, 3),
    "group_default": (2, 4, 0),  # group_size 0 -> pooled_size
}


@pytest.fixture(scope="module", autouse=True)
def _library():
    ops.load()


def make_case(name, seed=0, num_rois=6):
    od, pooled, group = CONFIGS[name]
    rng = np.random.default_rng(seed)
    data = rng.standard_normal((N, od * (group or pooled) ** 2, H, W))
    x = np.sort(rng.uniform(-6, W / SCALE + 6, (num_rois, 2)), axis=1)
    y = np.sort(rng.uniform(-6, H / SCALE + 6, (num_rois, 2)), axis=1)
    rois = np.stack([np.arange(num_rois) % N, x[:, 0], y[:, 0], x[:, 1], y[:, 1]], axis=1)
    rois[0, 1:] = [-20, -20, -8, -8]  # entirely outside: every bin empty
    rois[1, 1:] = [30, 20, 10, 5]  # x2 < x1: the 0.1-pixel minimum extent
    attrs = {"spatial_scale": SCALE, "output_dim": od, "pooled_size": pooled, "group_size": group}
    return data, rois, attrs


def ours(*arrays, **attrs):
    return mx.nd.PSROIPooling(*arrays, **attrs)


def run(fn, data, rois, attrs, dtype=np.float64, head=None):
    """Output and (with head) the data gradient, as numpy arrays."""
    d, r = mx.nd.array(data, dtype=dtype), mx.nd.array(rois, dtype=dtype)
    d.attach_grad()
    with mx.autograd.record():
        out = fn(d, r, **attrs)
    if head is None:
        return out.asnumpy(), None
    out.backward(mx.nd.array(head, dtype=dtype))
    return out.asnumpy(), d.grad.asnumpy()


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_forward_float64_matches_reference(name):
    data, rois, attrs = make_case(name)
    out, _ = run(ours, data, rois, attrs)
    want, area = ref.psroi_pooling(data, rois, **attrs)
    np.testing.assert_allclose(out, want, rtol=0, atol=1e-9)
    assert (area == 0).any() and (area > 1).any()  # empty and multi-pixel bins both occur


def test_forward_float32_matches_reference():
    data, rois, attrs = make_case("square", seed=1)
    out, _ = run(ours, data, rois, attrs, dtype=np.float32)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, ref.psroi_pooling(data, rois, **attrs)[0], rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_backward_float64_matches_reference(name):
    data, rois, attrs = make_case(name, seed=2)
    head = np.random.default_rng(3).standard_normal(ref.psroi_pooling(data, rois, **attrs)[0].shape)
    _, grad = run(ours, data, rois, attrs, head=head)
    np.testing.assert_allclose(
        grad, ref.psroi_pooling_backward(data.shape, rois, head, **attrs), rtol=0, atol=1e-9
    )


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_forward_and_backward_match_contrib(name):
    data, rois, attrs = make_case(name, seed=4, num_rois=9)
    head = np.random.default_rng(5).standard_normal(ref.psroi_pooling(data, rois, **attrs)[0].shape)
    got = run(ours, data, rois, attrs, np.float32, head)
    want = run(mx.nd.contrib.PSROIPooling, data, rois, attrs, np.float32, head)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[1], want[1], rtol=1e-5, atol=1e-6)


def test_backward_matches_central_differences():
    # The op is linear in data: central differences are exact up to rounding.
    data, rois, attrs = make_case("pooled_gt_group", seed=6, num_rois=4)
    head = np.random.default_rng(7).standard_normal(ref.psroi_pooling(data, rois, **attrs)[0].shape)
    _, grad = run(ours, data, rois, attrs, head=head)

    def loss(d):
        return float((run(ours, d, rois, attrs)[0] * head).sum())

    rng = np.random.default_rng(8)
    for idx in zip(*(rng.integers(0, s, 60) for s in data.shape)):
        dp, dm = data.copy(), data.copy()
        dp[idx] += 1e-3
        dm[idx] -= 1e-3
        assert grad[idx] == pytest.approx((loss(dp) - loss(dm)) / 2e-3, rel=1e-7, abs=1e-9)


def test_backward_is_deterministic_and_overwrites_gradients():
    data, rois, attrs = make_case("square", seed=9, num_rois=12)
    head = np.random.default_rng(10).standard_normal((12, 3, 3, 3))
    d, r = mx.nd.array(data, dtype=np.float32), mx.nd.array(rois, dtype=np.float32)
    d.attach_grad()
    r.attach_grad()
    results = []
    for _ in range(3):
        with mx.autograd.record():
            out = ours(d, r, **attrs)
        out.backward(mx.nd.array(head, dtype=np.float32))
        results.append((d.grad.asnumpy(), r.grad.asnumpy()))
    for gd, gr in results[1:]:
        np.testing.assert_array_equal(gd, results[0][0])
        assert not gr.any()


def test_non_finite_rois_give_zero_bins():
    data, rois, attrs = make_case("square", seed=11)
    rois[2, 1] = np.nan
    rois[3, 4] = np.inf
    rois[4, 1:] = [-1e30, -1e30, 1e30, 1e30]
    for dtype in (np.float32, np.float64):
        out, grad = run(ours, data, rois, attrs, dtype, head=np.ones((6, 3, 3, 3)))
        assert np.isfinite(out).all() and np.isfinite(grad).all()
    out, _ = run(ours, data, rois, attrs)
    assert not out[2].any()  # NaN x1: every bin empty
    np.testing.assert_allclose(
        out[5], ref.psroi_pooling(data, rois[5:], **attrs)[0][0], rtol=0, atol=1e-9
    )


def test_zero_rois_give_an_empty_output():
    data, rois, attrs = make_case("square")
    ours(mx.nd.array(data), mx.nd.array(rois[:0]), **attrs).asnumpy()  # legacy shapes: no error
    with mx.util.np_shape(True):
        out, grad = run(ours, data, rois[:0], attrs, head=np.zeros((0, 3, 3, 3)))
    assert out.shape == (0, 3, 3, 3)
    assert grad.shape == data.shape and not grad.any()


def test_symbol_infers_shapes_like_contrib():
    data, rois = mx.sym.var("data"), mx.sym.var("rois")
    attrs = {"spatial_scale": 0.0625, "output_dim": 81, "pooled_size": 7, "group_size": 7}
    for sym in (
        mx.sym.PSROIPooling(data, rois, name="pool", **attrs),
        mx.sym.contrib.PSROIPooling(data, rois, name="pool", **attrs),
    ):
        assert sym.list_outputs() == ["pool_output"]
        _, out_shapes, _ = sym.infer_shape(data=(1, 81 * 49, 38, 63), rois=(300, 5))
        assert out_shapes == [(300, 81, 7, 7)]


GOOD = {"spatial_scale": 0.25, "output_dim": 2, "pooled_size": 3, "group_size": 3}


def call(data_shape=(2, 18, 7, 9), rois=None, dtype=np.float32, **attrs):
    rois = np.array([[0, 1, 1, 20, 20], [1, 2, 2, 30, 20]]) if rois is None else np.asarray(rois)
    return ours(
        mx.nd.zeros(data_shape, dtype=dtype), mx.nd.array(rois, dtype=dtype), **dict(GOOD, **attrs)
    ).asnumpy()


def test_valid_call_raises_nothing_and_pools_zeros():
    """The control case of the error tests below: the same call with valid arguments passes the
    checks (a check too strict would raise here) and pools the all-zero map to exact zeros."""
    out = call()
    assert out.shape == (2, 2, 3, 3)
    np.testing.assert_array_equal(out, np.zeros((2, 2, 3, 3)))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"rois": np.zeros((2, 4))}, r"rois must be \(R, 5\).*got \(2, 4\)"),
        (
            {"data_shape": (2, 16, 7, 9)},
            (
                r"data has 16 channels, expected output_dim \* "
                r"group_size\^2 = 2 \* 3\^2 = 18"
            ),
        ),
        (
            {"rois": [[0, 1, 1, 5, 5], [2, 1, 1, 5, 5]]},
            (
                r"rois\[1, 0\] = 2 is not a valid batch "
                r"index.*\[0, 2\)"
            ),
        ),
        ({"rois": [[np.inf, 1, 1, 5, 5], [0, 1, 1, 5, 5]]}, r"rois\[0, 0\] = inf is not a valid"),
        ({"rois": [[0, 1, 1, 5, 5], [0.25, 1, 1, 5, 5]]}, r"rois\[1, 0\] = 0.25 is not a valid"),
        ({"pooled_size": 0}, r"pooled_size must be an integer in \[1, "),
        ({"group_size": -1}, r"group_size must be an integer in \[0, "),
        ({"output_dim": 0}, r"output_dim must be an integer in \[1, "),
        ({"spatial_scale": -1}, r"spatial_scale must be a finite number > 0"),
        ({"sample_per_part": 2}, r"unknown attribute 'sample_per_part'"),
        ({"dtype": np.int32}, r"supports float32 and float64, got int32"),
    ],
)
def test_bad_input_raises(kwargs, match):
    with pytest.raises(MXNetError, match=match):
        call(**kwargs)


def test_missing_attribute_raises():
    with pytest.raises(MXNetError, match=r"required attribute 'spatial_scale'"):
        ours(mx.nd.zeros((1, 18, 4, 4)), mx.nd.zeros((1, 5)), output_dim=2, pooled_size=3).asnumpy()
