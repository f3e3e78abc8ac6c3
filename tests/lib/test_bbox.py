import importlib

import numpy as np
import pytest
from easydict import EasyDict

from lib.bbox.bbox_regression import (
    add_bbox_regression_targets,
    compute_bbox_regression_targets,
    expand_bbox_regression_targets,
)
from lib.bbox.bbox_transform import (
    BBOX_XFORM_CLIP,
    bbox_overlaps,
    bbox_overlaps_py,
    bbox_pred,
    bbox_transform,
    clip_boxes,
    filter_boxes,
    iou_pred,
    iou_transform,
)


def random_boxes(rng, n, size=100.0, extra_cols=0):
    xy = rng.uniform(-10, size, (n, 2))
    wh = rng.uniform(0, size / 2, (n, 2))
    return np.hstack((xy, xy + wh, rng.rand(n, extra_cols)))


def make_cfg(agnostic=True, precomputed=True):
    return EasyDict(
        CLASS_AGNOSTIC=agnostic,
        TRAIN=EasyDict(
            BBOX_REGRESSION_THRESH=0.5,
            BBOX_NORMALIZATION_PRECOMPUTED=precomputed,
            BBOX_MEANS=(0.1, -0.1, 0.0, 0.5),
            BBOX_STDS=(0.1, 0.1, 0.2, 0.2),
            BBOX_WEIGHTS=np.array([1.0, 1.0, 1.0, 1.0]),
        ),
    )


def test_cython_extension_is_built():
    try:
        importlib.import_module("lib.bbox.bbox")
    except ImportError as err:
        pytest.fail(f"lib.bbox.bbox is not built ({err}): run `sh init.sh`")


# ----------------------------------------------------------------------------- overlaps


def test_overlaps_hand_worked():
    boxes = np.array([[0, 0, 9, 9]], dtype=np.float64)
    query = np.array(
        [
            [5, 5, 14, 14],  # 5x5 overlap of two 10x10 boxes: 25 / 175
            [9, 0, 18, 9],  # one shared pixel column: 10 / 190
            [10, 0, 19, 9],  # touching only: 0
            [0, 0, 9, 9],  # identical: 1
            [2, 3, 4, 5],  # inside: 9 / 100
        ],
        dtype=np.float64,
    )
    expected = np.array([[25 / 175, 10 / 190, 0.0, 1.0, 9 / 100]])
    np.testing.assert_allclose(bbox_overlaps(boxes, query), expected, rtol=0, atol=1e-15)
    np.testing.assert_allclose(bbox_overlaps_py(boxes, query), expected, rtol=0, atol=1e-15)


def test_overlaps_cython_matches_numpy():
    rng = np.random.RandomState(0)
    boxes = random_boxes(rng, 57)
    query = random_boxes(rng, 31, extra_cols=1)  # a 5th column (class) is ignored
    got = bbox_overlaps(boxes, query)
    assert got.shape == (57, 31) and got.dtype == np.float64
    assert (got > 0).sum() > 50  # the test exercises real overlaps
    np.testing.assert_allclose(got, bbox_overlaps_py(boxes, query), rtol=0, atol=1e-12)
    # any numeric dtype is accepted
    got32 = bbox_overlaps(boxes.astype(np.float32), query.astype(np.int64))
    want32 = bbox_overlaps_py(boxes.astype(np.float32), query.astype(np.int64))
    np.testing.assert_allclose(got32, want32, rtol=0, atol=1e-12)


def test_overlaps_empty_and_bad_shape():
    assert bbox_overlaps(np.zeros((0, 4)), np.ones((3, 4))).shape == (0, 3)
    assert bbox_overlaps(np.ones((3, 4)), np.zeros((0, 4))).shape == (3, 0)
    with pytest.raises(ValueError, match=r"expected shape \(N, >=4\), got \(3, 3\)"):
        bbox_overlaps(np.ones((3, 3)), np.ones((3, 4)))


# ----------------------------------------------------------------------------- transforms


def test_bbox_transform_hand_worked():
    ex = np.array([[0, 0, 9, 9]], dtype=np.float64)  # w = h = 10, centre (4.5, 4.5)
    gt = np.array([[5, 10, 24, 29]], dtype=np.float64)  # w = h = 20, centre (14.5, 19.5)
    np.testing.assert_allclose(
        bbox_transform(ex, gt), [[1.0, 1.5, np.log(2), np.log(2)]], rtol=0, atol=1e-12
    )
    np.testing.assert_allclose(bbox_pred(ex, bbox_transform(ex, gt)), gt, rtol=0, atol=1e-9)


def test_bbox_transform_pred_round_trip_multiclass():
    rng = np.random.RandomState(1)
    ex = random_boxes(rng, 40)
    gts = [random_boxes(rng, 40) for _ in range(3)]
    deltas = np.hstack([bbox_transform(ex, gt) for gt in gts])  # (40, 12): 3 classes
    np.testing.assert_allclose(bbox_pred(ex, deltas), np.hstack(gts), rtol=0, atol=1e-8)
    assert bbox_pred(np.zeros((0, 4)), np.zeros((0, 12))).shape == (0, 12)


def test_bbox_pred_huge_deltas_stay_finite():
    boxes = np.array([[0, 0, 15, 15], [10, 20, 30, 40]], dtype=np.float64)
    deltas = np.array([[0, 0, 1e4, 1e30], [1e3, -1e3, 800.0, -1e4]], dtype=np.float32)
    with np.errstate(over="raise", invalid="raise"):
        pred = bbox_pred(boxes, deltas)
    assert np.isfinite(pred).all()
    # the clamp bounds the size at exp(BBOX_XFORM_CLIP) = 62.5 times the input box
    np.testing.assert_allclose(pred[0, 2] - pred[0, 0] + 1, 16 * np.exp(BBOX_XFORM_CLIP))
    np.testing.assert_allclose(pred[0, 2] - pred[0, 0] + 1, 1000.0)


def test_clip_boxes_any_multiple_of_four():
    boxes = np.array([[-5, -5, 120, 60, 10, 20, 30, 40]], dtype=np.float64)
    out = clip_boxes(boxes, (50, 100, 3))
    np.testing.assert_array_equal(out, [[0, 0, 99, 49, 10, 20, 30, 40]])
    assert out is boxes  # in place, as the original


def test_filter_boxes():
    boxes = np.array([[0, 0, 15, 15], [0, 0, 14, 20], [0, 0, 20, 20]], dtype=np.float64)
    np.testing.assert_array_equal(filter_boxes(boxes, 16), [0, 2])


def test_iou_transform_pred():
    ex = np.array([[0, 0, 9, 9]], dtype=np.float64)
    gt = np.array([[1, 2, 13, 14]], dtype=np.float64)
    np.testing.assert_array_equal(iou_transform(ex, gt), gt)
    np.testing.assert_array_equal(iou_pred(ex, np.array([[1, 2, 4, 5]])), gt)


# ----------------------------------------------------------------------------- regression


def one_image_roidb():
    # row 0: gt of class 3; row 1: IoU 81/119 with it; row 2: background
    boxes = np.array([[0, 0, 9, 9], [1, 1, 10, 10], [50, 50, 60, 60]], dtype=np.float64)
    return {
        "boxes": boxes,
        "max_overlaps": np.array([1.0, 81 / 119, 0.0]),
        "max_classes": np.array([3, 3, 0]),
        "gt_overlaps": np.zeros((3, 5)),
    }


def test_compute_bbox_regression_targets():
    entry = one_image_roidb()
    t = compute_bbox_regression_targets(
        entry["boxes"], entry["max_overlaps"], entry["max_classes"], make_cfg()
    )
    assert t.dtype == np.float32
    np.testing.assert_allclose(t, [[3, 0, 0, 0, 0], [3, -0.1, -0.1, 0, 0], [0, 0, 0, 0, 0]])
    # no gt in the image: all zero, no crash
    t = compute_bbox_regression_targets(
        entry["boxes"][1:], np.array([0.6, 0.0]), np.array([3, 0]), make_cfg()
    )
    np.testing.assert_array_equal(t, 0)


def test_add_bbox_regression_targets_precomputed():
    roidb = [one_image_roidb()]
    means, stds = add_bbox_regression_targets(roidb, make_cfg(agnostic=True, precomputed=True))
    np.testing.assert_allclose(means, [0.1, -0.1, 0.0, 0.5] * 2)
    np.testing.assert_allclose(stds, [0.1, 0.1, 0.2, 0.2] * 2)
    # (t - mean) / std on foreground rows only
    np.testing.assert_allclose(
        roidb[0]["bbox_targets"],
        [[3, -1, 1, 0, -2.5], [3, -2, 0, 0, -2.5], [0, 0, 0, 0, 0]],
        rtol=0,
        atol=1e-6,
    )


def test_add_bbox_regression_targets_from_data():
    roidb = [one_image_roidb(), one_image_roidb()]
    for entry in roidb:  # an 11x11 roi, so class 3 has spread in all four targets
        entry["boxes"][1] = [1, 1, 11, 11]
        entry["max_overlaps"][1] = 81 / 140
    means, stds = add_bbox_regression_targets(roidb, make_cfg(agnostic=False, precomputed=False))
    assert means.shape == stds.shape == (5 * 4,)
    # class 3 targets are {0, t} twice, t = (-1.5/11, -1.5/11, log(10/11), log(10/11)):
    # mean t/2, std |t|/2 (t < 0), so they normalise to +1 and -1
    t = np.array([-1.5 / 11, -1.5 / 11, np.log(10 / 11), np.log(10 / 11)])
    np.testing.assert_allclose(means.reshape(5, 4)[3], t / 2, rtol=1e-6)
    np.testing.assert_allclose(stds.reshape(5, 4)[3], np.abs(t) / 2, rtol=1e-5)
    np.testing.assert_allclose(means.reshape(5, 4)[[0, 1, 2, 4]], 0)
    for entry in roidb:
        np.testing.assert_allclose(entry["bbox_targets"][:2, 1:], [[1] * 4, [-1] * 4], atol=1e-4)


def test_expand_bbox_regression_targets():
    data = np.array([[3, 1, 2, 3, 4], [0, 0, 0, 0, 0], [1, 5, 6, 7, 8]], dtype=np.float32)
    targets, weights = expand_bbox_regression_targets(data, 5, make_cfg(agnostic=True))
    assert targets.shape == weights.shape == (3, 8)
    np.testing.assert_array_equal(targets[:, 4:], data[:, 1:])  # slot 1 of 2
    np.testing.assert_array_equal(targets[:, :4], 0)
    np.testing.assert_array_equal(weights, [[0] * 4 + [1] * 4, [0] * 8, [0] * 4 + [1] * 4])

    targets, weights = expand_bbox_regression_targets(data, 5, make_cfg(agnostic=False))
    assert targets.shape == (3, 20)
    np.testing.assert_array_equal(targets[0, 12:16], [1, 2, 3, 4])
    np.testing.assert_array_equal(targets[2, 4:8], [5, 6, 7, 8])
    assert weights.sum() == 8 and weights[0, 12:16].sum() == 4
