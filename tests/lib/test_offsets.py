"""Offset geometry of the visualisations, checked against the operators themselves.

Sampling a linear ramp (value = coordinate) with bilinear interpolation returns the coordinate
sampled, so a convolution whose weights pick one tap of a ramp channel outputs where that tap
sampled, and deformable PS-RoI pooling of a ramp outputs the mean sampling coordinate of each
bin. :mod:`lib.utils.offsets` must agree with both, for several offset groups and classes.
"""

from __future__ import annotations

import mxnet as mx
import numpy as np
import pytest

from lib import ops
from lib.utils import offsets
from lib.utils.offsets import DeformConvLayer, conv_sampling_locations, psroi_bins

H = W = 20


def _ramps(channels: int) -> np.ndarray:
    """(1, channels, H, W): even channels hold y, odd channels x."""
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float64)
    return np.stack([yy if c % 2 == 0 else xx for c in range(channels)])[np.newaxis]


@pytest.mark.parametrize("group", [0, 1])
def test_conv_sampling_matches_the_operator(group):
    rng = np.random.default_rng(group)
    groups, k = 2, 3
    offset = rng.uniform(-1.5, 1.5, (1, groups * 2 * k * k, H, W))
    data = mx.sym.var("data")
    sym = ops.deformable_convolution(
        data, mx.sym.var("offset"), kernel=(k, k), num_filter=2 * k * k, pad=(2, 2),
        dilate=(2, 2), num_deformable_group=groups, no_bias=True, name="dconv",
    )  # fmt: skip
    (layer,) = offsets.deformable_convolutions(sym)
    assert (layer.name, layer.offset, layer.groups) == ("dconv", "offset", groups)
    assert layer.kernel == (3, 3) and layer.dilate == (2, 2) and layer.pad == (2, 2)

    # filter 2t reads channel y of the group's half of the input at tap t, filter 2t+1 its x
    weight = np.zeros((2 * k * k, 4, k, k))
    for t in range(k * k):
        weight[2 * t, 2 * group, t // k, t % k] = 1
        weight[2 * t + 1, 2 * group + 1, t // k, t % k] = 1
    out = ops.deformable_convolution(
        mx.nd.array(_ramps(4), dtype="float64"), mx.nd.array(offset, dtype="float64"),
        mx.nd.array(weight, dtype="float64"), kernel=(k, k), num_filter=2 * k * k, pad=(2, 2),
        dilate=(2, 2), num_deformable_group=groups, no_bias=True,
    ).asnumpy()[0]  # fmt: skip
    checked = 0
    for h in range(4, H - 4):
        for w in range(4, W - 4):
            yx = conv_sampling_locations([layer], [offset[0]], (h, w), group)
            assert yx.shape == (9, 2)
            np.testing.assert_allclose(yx[:, 0], out[0::2, h, w], atol=1e-9)
            np.testing.assert_allclose(yx[:, 1], out[1::2, h, w], atol=1e-9)
            checked += 1
    assert checked == (H - 8) * (W - 8)


def _layer(groups: int = 1) -> DeformConvLayer:
    return DeformConvLayer("c", "c_offset", (3, 3), (1, 1), (2, 2), (2, 2), groups)


def test_three_stacked_layers_give_729_points_on_the_dilated_grid():
    layers = [_layer(4) for _ in range(3)]
    offsets = [np.zeros((4 * 18, 30, 30)) for _ in layers]
    yx = conv_sampling_locations(layers, offsets, (15, 12))
    assert yx.shape == (729, 2)
    # every level adds -2, 0 or +2 per axis: 7 distinct values, -6..6 around the activation
    assert set(np.unique(yx[:, 0] - 15)) == set(range(-6, 7, 2))
    assert set(np.unique(yx[:, 1] - 12)) == set(range(-6, 7, 2))

    # a constant offset (dy = 1, dx = -0.5 of group 2) moves every level's points by it
    for off in offsets:
        off[2 * 18 : 3 * 18 : 2] = 1.0
        off[2 * 18 + 1 : 3 * 18 : 2] = -0.5
    shifted = conv_sampling_locations(layers, offsets, (15, 12), group=2)
    np.testing.assert_allclose(np.sort(shifted[:, 0]), np.sort(yx[:, 0]) + 3)
    # x: rounded back onto the grid between levels (-0.5 rounds to even), -0.5 only at the last
    assert shifted[:, 1].max() <= yx[:, 1].max() and np.allclose(shifted[:, 1] % 1, 0.5)
    assert np.array_equal(conv_sampling_locations(layers, offsets, (15, 12), group=0), yx)


def test_points_leaving_the_map_are_not_followed():
    layers = [_layer() for _ in range(3)]
    offsets = [np.zeros((18, 8, 8)) for _ in layers]
    corner = conv_sampling_locations(layers, offsets, (0, 0))
    # from (0, 0): 4 of res5c's 9 points lie on the map ((0|2, 0|2)); from those 4 + 6 + 6 +
    # 9 = 25 of res5b's; each gives res5a's 9 (the last level's points are all kept)
    assert len(corner) == 25 * 9
    with pytest.raises(ValueError, match="channels"):
        conv_sampling_locations(layers, [np.zeros((17, 8, 8))] * 3, (0, 0))
    with pytest.raises(ValueError, match="one grid"):
        conv_sampling_locations(layers[:2], [offsets[0], np.zeros((18, 9, 8))], (0, 0))


def test_feature_and_pixel_coordinates_invert():
    x = np.array([0.0, 7.5, 100.0])
    np.testing.assert_allclose(offsets.pixel_to_feature(offsets.feature_to_pixel(x, 16), 16), x)
    assert offsets.feature_to_pixel(0, 16) == 7.5  # cell 0 covers pixels 0..15


@pytest.mark.parametrize("num_trans", [1, 2])
def test_psroi_bins_match_the_operator(num_trans):
    """Pooling [x, y, x, y] ramps (feature coordinates): each output is the mean sampling
    coordinate of its bin, i.e. ``start + (spp - 1) / 2 * bin / spp`` (the operator samples the
    top-left corners of a bin's spp x spp sub-bins)."""
    rng = np.random.default_rng(num_trans)
    k, spp, scale, trans_std = 3, 4, 1.0 / 8, 0.1
    rois = np.array([[0, 30.2, 41.0, 101.7, 99.4], [0, 10.0, 20.0, 60.0, 40.0]])
    trans = rng.uniform(-0.8, 0.8, (2, 2 * num_trans, k, k))
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float64)
    data = np.stack([xx, yy, xx, yy])[np.newaxis]  # output channel 2c, 2c+1: x, y of class c
    sym = ops.deformable_psroi_pooling(
        mx.sym.var("data"), mx.sym.var("rois"), mx.sym.var("trans"), spatial_scale=scale,
        output_dim=4, group_size=1, pooled_size=k, part_size=k, sample_per_part=spp,
        trans_std=trans_std, name="pool",
    )  # fmt: skip
    (layer,) = offsets.deformable_psroi_poolings(sym)
    assert (layer.trans, layer.pooled_size, layer.trans_std, layer.spatial_scale) == (
        "trans",
        k,
        trans_std,
        scale,
    )
    out = ops.deformable_psroi_pooling(
        *(mx.nd.array(a, dtype="float64") for a in (data, rois, trans)), spatial_scale=scale,
        output_dim=4, group_size=1, pooled_size=k, part_size=k, sample_per_part=spp,
        trans_std=trans_std,
    ).asnumpy()  # fmt: skip
    for r in range(len(rois)):
        for cls in range(2):
            bins = psroi_bins(layer, rois[r, 1:], trans[r], cls)
            start = bins[..., :2] * scale - 0.5  # back to feature coordinates (x, y)
            size = (bins[..., 2:] - bins[..., :2]) * scale
            expected = start + (spp - 1) / 2 * size / spp
            c = 2 * cls if num_trans == 2 else 0  # shared offsets move every class alike
            np.testing.assert_allclose(out[r, c], expected[..., 0], atol=1e-9)
            np.testing.assert_allclose(out[r, c + 1], expected[..., 1], atol=1e-9)


def test_psroi_bins_without_offsets_tile_the_roi():
    sym = ops.deformable_psroi_pooling(
        mx.sym.var("data"), mx.sym.var("rois"), mx.sym.var("trans"), spatial_scale=1 / 16,
        output_dim=5, group_size=7, pooled_size=7, part_size=7, sample_per_part=4,
        trans_std=0.1, name="p",
    )  # fmt: skip
    (layer,) = offsets.deformable_psroi_poolings(sym)
    bins = psroi_bins(layer, (10.4, 20.0, 79.6, 90.0), np.zeros((10, 7, 7)), 3)
    np.testing.assert_allclose(bins[0, 0, :2], (10, 20))  # round(x1), round(y1)
    np.testing.assert_allclose(bins[-1, -1, 2:], (81, 91))  # round(x2) + 1, round(y2) + 1
    np.testing.assert_allclose(bins[0, 1, 0], bins[0, 0, 2])  # bins touch
    with pytest.raises(ValueError, match="class 5"):
        psroi_bins(layer, (0, 0, 10, 10), np.zeros((10, 7, 7)), 5)
