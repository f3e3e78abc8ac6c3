import numpy as np
import pytest
from easydict import EasyDict

from lib.bbox.bbox_transform import bbox_transform
from lib.rpn.generate_anchor import generate_anchors
from lib.rpn.rpn import assign_anchor, assign_pyramid_anchor

PY_FASTER_RCNN_ANCHORS = [
    [-84, -40, 99, 55],
    [-176, -88, 191, 103],
    [-360, -184, 375, 199],
    [-56, -56, 71, 71],
    [-120, -120, 135, 135],
    [-248, -248, 263, 263],
    [-36, -80, 51, 95],
    [-80, -168, 95, 183],
    [-168, -344, 183, 359],
]
IM_INFO = np.array([[64, 64, 1.0]])  # 64x64 input: a 4x4 map at stride 16
WEIGHTS = (1.0, 2.0, 3.0, 4.0)  # distinct, to see them land on the right channels


def make_cfg(**train):
    defaults = {
        "RPN_BATCH_SIZE": 256,
        "RPN_FG_FRACTION": 0.5,
        "RPN_POSITIVE_OVERLAP": 0.7,
        "RPN_NEGATIVE_OVERLAP": 0.3,
        "RPN_CLOBBER_POSITIVES": False,
        "RPN_BBOX_WEIGHTS": WEIGHTS,
    }
    return EasyDict(TRAIN=EasyDict({**defaults, **train}))


# ----------------------------------------------------------------------------- anchors


def test_generate_anchors_py_faster_rcnn_defaults():
    np.testing.assert_array_equal(generate_anchors(), PY_FASTER_RCNN_ANCHORS)
    np.testing.assert_array_equal(
        generate_anchors(16, [0.5, 1, 2], 2 ** np.arange(3, 6)), PY_FASTER_RCNN_ANCHORS
    )


def test_generate_anchors_fpn_p2():
    # stride 4, one scale of 8 (32 px): the well-known FPN / Detectron P2 anchors
    np.testing.assert_array_equal(
        generate_anchors(4, (0.5, 1, 2), (8,)),
        [[-22, -10, 25, 13], [-14, -14, 17, 17], [-10, -22, 13, 25]],
    )


# ----------------------------------------------------------------------------- assign_anchor
#
# Hand-worked case: 4x4 map, stride 16, 64x64 image, A = 2 anchors per cell:
#   a = 0: 16x16, [0, 0, 15, 15] + 16 * (x, y, x, y)  -> all 16 inside the image
#   a = 1: 32x32, [-8, -8, 23, 23] + 16 * (...)       -> inside only for x, y in {1, 2}
# One gt, [8, 8, 39, 39], equal to the a = 1 anchor of cell (1, 1).
#   a = 1: (1,1) IoU 1 -> fg; (1,2), (2,1) IoU 512/1536 = 1/3 -> ignored; (2,2) IoU 1/7 -> bg;
#          the 12 border anchors -> ignored.
#   a = 0: IoU <= 0.25 everywhere -> bg.

SCALES, RATIOS = (1, 2), (1,)
GT = np.array([[8, 8, 39, 39, 1]], dtype=np.float64)


def cell_anchor(a, y, x):
    base = np.array([[0, 0, 15, 15], [-8, -8, 23, 23]], dtype=np.float64)[a]
    return base + 16 * np.array([x, y, x, y])


def test_hand_worked_anchor_layout():
    np.testing.assert_array_equal(
        generate_anchors(16, RATIOS, SCALES), [cell_anchor(0, 0, 0), cell_anchor(1, 0, 0)]
    )


def test_assign_anchor_hand_worked():
    out = assign_anchor((1, 4, 4, 4), GT, IM_INFO, make_cfg(), 16, SCALES, RATIOS, 0)
    assert out["label"].shape == (1, 2 * 4 * 4)
    assert out["bbox_target"].shape == out["bbox_weight"].shape == (1, 8, 4, 4)
    assert all(v.dtype == np.float32 for v in out.values())

    labels = out["label"].reshape(2, 4, 4)  # (A, H, W)
    want = np.full((2, 4, 4), -1.0)
    want[0] = 0
    want[1, 1, 1] = 1
    want[1, 2, 2] = 0
    np.testing.assert_array_equal(labels, want)
    assert out["label"][0, (1 * 4 + 1) * 4 + 1] == 1  # flat index (a*H + y)*W + x

    for a in range(2):
        for y in range(4):
            for x in range(4):
                target = out["bbox_target"][0, 4 * a : 4 * a + 4, y, x]
                weight = out["bbox_weight"][0, 4 * a : 4 * a + 4, y, x]
                inside = a == 0 or (y in (1, 2) and x in (1, 2))
                want_t = bbox_transform(cell_anchor(a, y, x)[None], GT[:, :4])[0] if inside else 0
                np.testing.assert_allclose(target, want_t, rtol=1e-6, atol=1e-7)
                want_w = WEIGHTS if labels[a, y, x] == 1 else (0, 0, 0, 0)
                np.testing.assert_array_equal(weight, want_w)


def test_assign_anchor_at_exactly_the_positive_overlap_is_foreground():
    """IoU >= RPN_POSITIVE_OVERLAP is foreground, the boundary included: the a = 1 anchors of
    cells (1, 2) and (2, 1) overlap the gt by 512 / 1536 exactly (also in floating point), and
    they are not the gt's best anchors."""
    iou = 512 / 1536
    out = assign_anchor((1, 4, 4, 4), GT, IM_INFO, make_cfg(RPN_POSITIVE_OVERLAP=iou), 16,
                        SCALES, RATIOS, 0)  # fmt: skip
    labels = out["label"].reshape(2, 4, 4)
    assert labels[1, 1, 1] == labels[1, 1, 2] == labels[1, 2, 1] == 1
    assert labels[1, 2, 2] == 0 and (labels == 1).sum() == 3
    # just above the overlap: ignored (between the two thresholds), as in the hand-worked case
    above = make_cfg(RPN_POSITIVE_OVERLAP=np.nextafter(iou, 1))
    labels = assign_anchor((1, 4, 4, 4), GT, IM_INFO, above, 16, SCALES, RATIOS, 0)["label"]
    assert (labels == 1).sum() == 1 and labels.reshape(2, 4, 4)[1, 1, 2] == -1


def test_assign_anchor_border_and_no_gt():
    no_gt = np.zeros((0, 5))
    out = assign_anchor((1, 4, 4, 4), no_gt, IM_INFO, make_cfg(), 16, SCALES, RATIOS, 0)
    labels = out["label"].reshape(2, 4, 4)
    assert (labels[0] == 0).all() and (labels[1, 1:3, 1:3] == 0).all()
    assert (labels == 0).sum() == 16 + 4  # border anchors stay ignored
    assert not out["bbox_target"].any() and not out["bbox_weight"].any()

    out = assign_anchor((1, 4, 4, 4), no_gt, IM_INFO, make_cfg(), 16, SCALES, RATIOS, np.inf)
    assert (out["label"] == 0).all()

    rng = np.random.RandomState(0)
    cfg = make_cfg(RPN_BATCH_SIZE=8)
    out = assign_anchor((1, 4, 4, 4), no_gt, IM_INFO, cfg, 16, SCALES, RATIOS, 0, rng=rng)
    assert (out["label"] == 0).sum() == 8 and (out["label"] == 1).sum() == 0


def test_assign_anchor_clobber_positives():
    gt = np.array([[20, 20, 27, 27]], dtype=np.float64)  # best anchor IoU 64/256 < 0.3
    args = ((1, 2, 4, 4), gt, IM_INFO)
    kept = assign_anchor(*args, make_cfg(), 16, (1,), (1,))["label"].reshape(4, 4)
    assert kept[1, 1] == 1 and (kept == 1).sum() == 1 and (kept == 0).sum() == 15
    clobbered = assign_anchor(*args, make_cfg(RPN_CLOBBER_POSITIVES=True), 16, (1,), (1,))
    assert (clobbered["label"] == 0).all()


def test_assign_anchor_subsampling_is_deterministic_with_rng():
    # 16x16 anchors tiling the image; the top 8 are gt boxes -> 8 fg, 8 bg
    gt = np.array([[16 * x, 16 * y, 16 * x + 15, 16 * y + 15] for y in (0, 1) for x in range(4)])
    cfg = make_cfg(RPN_BATCH_SIZE=8, RPN_FG_FRACTION=0.25)

    def run(seed):
        rng = np.random.RandomState(seed)
        return assign_anchor((1, 2, 4, 4), gt, IM_INFO, cfg, 16, (1,), (1,), 0, rng=rng)

    out = run(3)
    labels = out["label"].reshape(4, 4)
    assert (labels[:2] == 1).sum() == 2 and (labels[:2] == 0).sum() == 0  # fg: 0.25 * 8
    assert (labels[2:] == 0).sum() == 6  # bg fills the batch of 8
    assert (out["bbox_weight"][0, 0] == 1).sum() == 2
    for key, value in run(3).items():
        np.testing.assert_array_equal(value, out[key])


# ----------------------------------------------------------------------------- pyramid


def test_pyramid_single_level_equals_assign_anchor():
    cfg = make_cfg()
    single = assign_anchor((1, 4, 4, 4), GT, IM_INFO, cfg, 16, SCALES, RATIOS, 0)
    pyr = assign_pyramid_anchor([(1, 4, 4, 4)], GT, IM_INFO, cfg, (16,), SCALES, RATIOS, 0)
    assert pyr["label"].shape == (1, 32)
    assert pyr["bbox_target"].shape == pyr["bbox_weight"].shape == (1, 8, 16)
    np.testing.assert_array_equal(pyr["label"], single["label"])
    np.testing.assert_array_equal(pyr["bbox_weight"], single["bbox_weight"].reshape(1, 8, 16))
    # as in the original FPN code, targets are only kept on foreground anchors
    fg = np.repeat(single["label"].reshape(2, 1, 16) == 1, 4, axis=1).reshape(1, 8, 16)
    np.testing.assert_array_equal(pyr["bbox_target"], single["bbox_target"].reshape(1, 8, 16) * fg)


def test_pyramid_two_levels():
    # level 0: 8x8 map, stride 8, 16x16 anchors; level 1: 4x4 map, stride 16, 32x32 anchors.
    # The gt is close to the level-1 anchor of cell (2, 2), [24, 24, 55, 55]: IoU 1024/1089.
    gt = np.array([[24, 24, 56, 56]], dtype=np.float64)
    shapes = [(1, 2, 8, 8), (1, 2, 4, 4)]
    args = (gt, IM_INFO, make_cfg(), (8, 16), (2,), (1,))
    out = assign_pyramid_anchor(shapes, *args)
    assert out["label"].shape == (1, 64 + 16)
    assert out["bbox_target"].shape == out["bbox_weight"].shape == (1, 4, 80)
    fg = 64 + 2 * 4 + 2
    assert np.flatnonzero(out["label"] == 1).tolist() == [fg]
    assert (out["label"][0, :64] == 0).all()  # level 0: IoU <= 0.25, border anchors allowed
    np.testing.assert_allclose(
        out["bbox_target"][0, :, fg],
        bbox_transform(np.array([[24, 24, 55, 55]]), gt)[0],
        rtol=1e-6,
    )
    np.testing.assert_array_equal(out["bbox_weight"][0, :, fg], WEIGHTS)
    assert np.count_nonzero(out["bbox_weight"]) == 4
    # the original passes each level's shape wrapped in a list (infer_shape output)
    nested = assign_pyramid_anchor([[s] for s in shapes], *args)
    for key in out:
        np.testing.assert_array_equal(nested[key], out[key])


def test_pyramid_shape_mismatch():
    with pytest.raises(AssertionError, match="2 feature shapes for 5 strides"):
        assign_pyramid_anchor([(1, 2, 4, 4)] * 2, GT, IM_INFO, make_cfg())
