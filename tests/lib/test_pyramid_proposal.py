"""The FPN ``pyramid_proposal`` CustomOp and ``pyramid_proposal_symbol``.

The reference below is written from the definition (the original FPN op: per level, anchors of
base size = the level's stride at every position of the map cropped to the image, decoded,
clipped and size-filtered; then all levels merged, one pre-NMS top-N, one greedy NMS, post-NMS
top-N, padded): it loops over levels, positions and anchors, and uses the op's code only for the
anchor shapes and the delta decoding, which have their own tests (tests/lib/test_rpn.py,
tests/lib/test_bbox.py). Error paths are in tests/lib/test_custom_op_errors.py.
"""

import ast
import json

import mxnet as mx
import numpy as np
import pytest

import lib.operator_py  # noqa: F401 (registers the ops)
from lib.bbox.bbox_transform import bbox_pred
from lib.config import load_config
from lib.operator_py import pyramid_proposal_symbol
from lib.rpn.generate_anchor import generate_anchors

SCALES = (2, 4)
RATIOS = (0.5, 1, 2)
A = len(SCALES) * len(RATIOS)
FPN_CFG = "experiments/fpn/cfgs/resnet_v1_101_coco_trainval_fpn_end2end_ohem.yaml"


def rpn_level(rng, batch, height, width, delta_std=0.3):
    """float32 cls_prob (B, 2A, H, W) (softmax over bg/fg) and deltas (B, 4A, H, W)."""
    logits = rng.randn(batch, 2, A, height, width)
    prob = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    deltas = rng.randn(batch, 4 * A, height, width) * delta_std
    return prob.reshape(batch, 2 * A, height, width).astype(np.float32), deltas.astype(np.float32)


def run_pyramid(cls_probs, deltas, im_info, strides, **attrs):
    attrs = {"scales": SCALES, "ratios": RATIOS, "output_score": True, **attrs}
    inputs = [mx.nd.array(x) for x in [*cls_probs, *deltas]] + [mx.nd.array(im_info)]
    rois, scores = mx.nd.Custom(
        *inputs, op_type="pyramid_proposal", feat_stride=tuple(strides), **attrs
    )
    return rois.asnumpy(), scores.asnumpy()


def iou(box, boxes):
    """IoU of ``box`` with each of ``boxes`` (R-CNN +1 pixel areas)."""
    w = np.maximum(0.0, np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]) + 1)
    h = np.maximum(0.0, np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]) + 1)
    inter = w * h
    area = (box[2] - box[0] + 1) * (box[3] - box[1] + 1)
    areas = (boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1)
    return inter / (area + areas - inter)


def reference(cls_probs, deltas, im_info, strides, pre, post, thresh, min_size):
    """(B * post, 5) rois and (B * post, 1) scores, image by image, from the definition."""
    all_rois, all_scores = [], []
    for b, (im_h, im_w, im_scale) in enumerate(im_info):
        boxes, scores = [], []
        for prob, delta, stride in zip(cls_probs, deltas, strides):
            anchors = generate_anchors(base_size=stride, scales=SCALES, ratios=RATIOS)
            rows = min(max(int(im_h / stride), 1), prob.shape[2])
            cols = min(max(int(im_w / stride), 1), prob.shape[3])
            for y in range(rows):
                for x in range(cols):
                    for a in range(A):
                        anchor = anchors[a] + np.array([x, y, x, y], dtype=np.float64) * stride
                        d = delta[b, 4 * a : 4 * a + 4, y, x].astype(np.float64)
                        x1, y1, x2, y2 = bbox_pred(anchor[None], d[None])[0]
                        x1, x2 = (min(max(v, 0.0), im_w - 1) for v in (x1, x2))
                        y1, y2 = (min(max(v, 0.0), im_h - 1) for v in (y1, y2))
                        side = min_size * im_scale
                        if x2 - x1 + 1 >= side and y2 - y1 + 1 >= side:
                            boxes.append((x1, y1, x2, y2))
                            scores.append(prob[b, A + a, y, x])
        # Highest score first; ties keep the level / position / anchor order.
        order = sorted(range(len(scores)), key=lambda i: -scores[i])[:pre]
        # NMS sees float32 boxes (as the op's dets); suppress at IoU >= thresh.
        cand = np.array([boxes[i] for i in order], dtype=np.float32).astype(np.float64)
        kept = []
        for i in range(len(cand)):
            if not kept or iou(cand[i], cand[kept]).max() < thresh:
                kept.append(i)
        kept = kept[:post]
        for r in range(post):
            i = order[kept[r % len(kept)]]  # cyclic padding
            all_rois.append((b, *boxes[i]))
            all_scores.append((scores[i],))
    return np.array(all_rois, dtype=np.float32), np.array(all_scores, dtype=np.float32)


@pytest.mark.parametrize(
    "strides, sizes",
    [((4, 8, 16), [(16, 20), (8, 10), (4, 5)]), ((16, 4), [(4, 5), (16, 20)])],
    ids=["3 levels, 4 to 16", "2 levels, 16 then 4"],
)
@pytest.mark.parametrize(
    "pre, post",
    [(300, 60), (200, 250), (0, 3000)],
    ids=["post-NMS cut", "pre-NMS cut, padded", "no cut, padded"],
)
def test_pyramid_proposal_matches_the_reference(strides, sizes, pre, post):
    """Three images: one filling the 64 x 80 padded input, one cropping the maps, one scaled
    (min size 3 * 1.5 px). With post > pre every box that survives NMS is in the output, so
    the pre-NMS top-N must be the global one."""
    rng = np.random.RandomState(0)
    levels = [rpn_level(rng, 3, h, w) for h, w in sizes]
    cls_probs, deltas = [p for p, _ in levels], [d for _, d in levels]
    im_info = np.array([[64, 80, 1.0], [45, 70, 0.8], [60, 52, 1.5]], dtype=np.float32)
    thresh, min_size = 0.6, 3
    rois, scores = run_pyramid(
        cls_probs, deltas, im_info, strides, rpn_pre_nms_top_n=pre, rpn_post_nms_top_n=post,
        threshold=thresh, rpn_min_size=min_size,
    )  # fmt: skip
    ref_rois, ref_scores = reference(
        cls_probs, deltas, im_info.astype(np.float64), strides, pre or None, post, thresh,
        min_size,
    )  # fmt: skip
    assert rois.shape == (3 * post, 5) and scores.shape == (3 * post, 1)
    np.testing.assert_array_equal(rois, ref_rois)
    np.testing.assert_array_equal(scores, ref_scores)
    padded = len({tuple(r) for r in rois[:post]}) < post
    assert padded == (post > 60)


def test_one_level_pyramid_is_the_proposal_op():
    rng = np.random.RandomState(1)
    prob, delta = rpn_level(rng, 2, 20, 30)
    im_info = np.array([[300, 450, 1.5], [320, 480, 1.0]], dtype=np.float32)
    attrs = {
        "scales": SCALES, "ratios": RATIOS, "output_score": True, "rpn_pre_nms_top_n": 2000,
        "rpn_post_nms_top_n": 300, "threshold": 0.7, "rpn_min_size": 16,
    }  # fmt: skip
    single = mx.nd.Custom(
        mx.nd.array(prob), mx.nd.array(delta), mx.nd.array(im_info), op_type="proposal",
        feat_stride=16, **attrs,
    )  # fmt: skip
    pyramid = run_pyramid([prob], [delta], im_info, (16,), **attrs)
    for ours, theirs in zip(pyramid, single):
        np.testing.assert_array_equal(ours, theirs.asnumpy())


def two_levels(fg_small, fg_big, dwdh=0.0):
    """Strides 4 (16 x 16 map) and 16 (4 x 4 map) over a 64 x 64 image, with the given
    foreground probabilities everywhere, and deltas ``(0, 0, dwdh, dwdh)``."""
    cls_probs, deltas = [], []
    for size, fg in ((16, fg_small), (4, fg_big)):
        prob = np.stack([np.full((A, size, size), 1 - fg), np.full((A, size, size), fg)])
        cls_probs.append(prob.reshape(1, 2 * A, size, size))
        delta = np.zeros((1, A, 4, size, size))
        delta[:, :, 2:] = dwdh
        deltas.append(delta.reshape(1, 4 * A, size, size))
    return cls_probs, deltas


@pytest.mark.parametrize("winner", ["stride 4", "stride 16"])
def test_the_merge_is_global(winner):
    """The post-NMS top-N all come from the better-scored level, whichever it is (a per-level
    selection would give every level its share)."""
    rng = np.random.RandomState(2)
    fg_small, fg_big = (0.9, 0.2) if winner == "stride 4" else (0.2, 0.9)
    cls_probs, deltas = two_levels(fg_small, fg_big)
    for prob in cls_probs:  # distinct scores, each level keeping its range
        prob[:, A:] += rng.uniform(0, 0.05, prob[:, A:].shape)
    rois, scores = run_pyramid(
        cls_probs, deltas, [(64, 64, 1.0)], (4, 16), rpn_pre_nms_top_n=-1,
        rpn_post_nms_top_n=20, threshold=0.7, rpn_min_size=0,
    )  # fmt: skip
    assert len({tuple(r) for r in rois}) == 20  # no padding
    assert (scores >= 0.9).all()


def test_one_nms_over_all_levels():
    """Boxes grown past the image on every level all clip to the whole image: one NMS keeps one
    box (the best score of any level), repeated; per-level NMS would keep one per level."""
    cls_probs, deltas = two_levels(0.6, 0.7, dwdh=5.0)
    cls_probs[0][0, A, 3, 3] = 0.8  # the best score, on the small level
    rois, scores = run_pyramid(
        cls_probs, deltas, [(64, 64, 1.0)], (4, 16), rpn_pre_nms_top_n=-1,
        rpn_post_nms_top_n=10, threshold=0.7, rpn_min_size=0,
    )  # fmt: skip
    np.testing.assert_array_equal(rois, np.tile([[0, 0, 0, 63, 63]], (10, 1)))
    np.testing.assert_allclose(scores, 0.8)


def test_min_size_is_in_original_image_pixels():
    """``rpn_min_size`` is scaled by im_info[2] on every level: zero deltas make every box an
    anchor, 8 / 16 / 32 px with scale 4 at strides 2 / 4 / 8 (ratio 1); at image scale 2 a min
    size of 5 px keeps only the sides >= 10."""
    strides = (2, 4, 8)
    levels = [
        (np.full((1, 2, 32 // s, 32 // s), 0.5), np.zeros((1, 4, 32 // s, 32 // s)))
        for s in strides
    ]
    rois, _ = run_pyramid(
        [p for p, _ in levels], [d for _, d in levels], [(32, 32, 2.0)], strides, scales=(4,),
        ratios=(1,), rpn_pre_nms_top_n=-1, rpn_post_nms_top_n=100, threshold=1.0, rpn_min_size=5,
    )  # fmt: skip
    sides = np.minimum(rois[:, 3] - rois[:, 1], rois[:, 4] - rois[:, 2]) + 1
    assert sides.min() >= 10
    assert sides.max() > 16  # the stride-8 anchors (clipped) are in


@pytest.mark.parametrize("min_size", [40, 1000])
def test_the_size_filter_and_its_fallback_are_over_all_levels(min_size, caplog):
    """A min size only the big level's boxes pass keeps those alone; one that no box of any
    level passes keeps every box (as min size 0), with a warning."""
    rng = np.random.RandomState(4)
    cls_probs, deltas = two_levels(0.5, 0.5)
    for prob in cls_probs:
        prob[:, A:] = rng.uniform(0, 1, prob[:, A:].shape)
    attrs = {"rpn_pre_nms_top_n": -1, "rpn_post_nms_top_n": 30, "threshold": 0.5}
    with caplog.at_level("WARNING", logger="lib.operator_py.proposal"):
        rois, scores = run_pyramid(
            cls_probs, deltas, [(64, 64, 1.0)], (4, 16), rpn_min_size=min_size, **attrs
        )
    if min_size == 40:
        sides = np.minimum(rois[:, 3] - rois[:, 1], rois[:, 4] - rois[:, 2]) + 1
        assert sides.min() >= 40
        assert "keeping the small ones" not in caplog.text
    else:
        assert "pyramid_proposal: no box has both sides" in caplog.text
        everything = run_pyramid(
            cls_probs, deltas, [(64, 64, 1.0)], (4, 16), rpn_min_size=0, **attrs
        )
        np.testing.assert_array_equal(rois, everything[0])
        np.testing.assert_array_equal(scores, everything[1])


def test_several_images_per_device_are_each_on_their_own():
    rng = np.random.RandomState(3)
    strides, sizes = (8, 16, 32), [(12, 16), (6, 8), (3, 4)]
    levels = [rpn_level(rng, 3, h, w) for h, w in sizes]
    cls_probs, deltas = [p for p, _ in levels], [d for _, d in levels]
    im_info = np.array([[96, 128, 1.0], [80, 100, 0.8], [50, 128, 1.2]], dtype=np.float32)
    attrs = {"rpn_pre_nms_top_n": 200, "rpn_post_nms_top_n": 40, "rpn_min_size": 4}
    rois, scores = run_pyramid(cls_probs, deltas, im_info, strides, **attrs)
    assert rois.shape == (3 * 40, 5) and scores.shape == (3 * 40, 1)
    for b in range(3):
        alone, alone_scores = run_pyramid(
            [p[b : b + 1] for p in cls_probs], [d[b : b + 1] for d in deltas], im_info[b : b + 1],
            strides, **attrs,
        )  # fmt: skip
        rows = slice(b * 40, (b + 1) * 40)
        assert (rois[rows, 0] == b).all()
        np.testing.assert_array_equal(rois[rows, 1:], alone[:, 1:])
        np.testing.assert_array_equal(scores[rows], alone_scores)
        assert rois[rows, 3].max() <= im_info[b, 1] - 1
        assert rois[rows, 4].max() <= im_info[b, 0] - 1


def test_shape_inference_and_partial_inference():
    names = ["c4", "c8", "b4", "b8", "im"]
    sym = mx.sym.Custom(
        *[mx.sym.var(n) for n in names], op_type="pyramid_proposal", feat_stride=(4, 8),
        scales=(8,), rpn_post_nms_top_n=7, output_score=True,
    )  # fmt: skip
    arg_shapes, out_shapes, _ = sym.infer_shape(
        c4=(2, 6, 10, 12), c8=(2, 6, 5, 6), b4=(2, 12, 10, 12), b8=(2, 12, 5, 6)
    )
    assert arg_shapes[-1] == (2, 3)
    assert out_shapes == [(14, 5), (14, 1)]
    _, out_shapes, _ = sym.infer_shape_partial()
    assert out_shapes == [(), ()]
    _, out_shapes, _ = sym.infer_shape_partial(c8=(2, 6, 5, 6))
    assert out_shapes == [(14, 5), (14, 1)]


# ----------------------------------------------------------------------------------------------
# pyramid_proposal_symbol

# The original COCO FPN network's node (refs/params/resnet_v1_101_fpn_rcnn__{train,test}.json).
ORIGINAL_ATTRS = {
    "feat_stride": "(4, 8, 16, 32, 64)",
    "ratios": "(0.5, 1, 2)",
    "rpn_min_size": "0",
    "rpn_post_nms_top_n": "2000",
    "rpn_pre_nms_top_n": "12000",
    "scales": "(8,)",
    "threshold": "0.7",
}
FPN_STRIDES = (4, 8, 16, 32, 64)
INPUTS = [f"rpn_cls_prob_stride{s}" for s in FPN_STRIDES] + [
    f"rpn_bbox_pred_stride{s}" for s in FPN_STRIDES
]


def fpn_symbol(cfg, is_train, **kwargs):
    cls_probs = [mx.sym.var(f"cls{s}") for s in FPN_STRIDES]
    bbox_preds = [mx.sym.var(f"bbox{s}") for s in FPN_STRIDES]
    return pyramid_proposal_symbol(
        cfg, is_train, cls_probs, bbox_preds, mx.sym.var("im_info"), **kwargs
    )


@pytest.mark.parametrize("is_train", [True, False])
def test_pyramid_proposal_symbol_from_the_coco_fpn_config(is_train):
    cfg = load_config(FPN_CFG)
    sym = fpn_symbol(cfg, is_train)
    nodes = json.loads(sym.tojson())["nodes"]
    node = next(n for n in nodes if n["name"] == "rois")
    assert node["op"] == "Custom" and node["attrs"]["op_type"] == "pyramid_proposal"
    for key, value in ORIGINAL_ATTRS.items():
        assert ast.literal_eval(node["attrs"][key]) == ast.literal_eval(value), key
    # the inputs by the original names, in feat_stride order
    inputs = [nodes[i]["name"] for i, *_ in node["inputs"]]
    assert inputs == [f"cls{s}" for s in FPN_STRIDES] + [f"bbox{s}" for s in FPN_STRIDES] + [
        "im_info"
    ]
    a = 3  # 1 scale x 3 ratios
    shapes = {f"cls{s}": (2, 2 * a, 800 // s, 1280 // s) for s in FPN_STRIDES}
    shapes.update({f"bbox{s}": (2, 4 * a, 800 // s, 1280 // s) for s in FPN_STRIDES})
    _, out_shapes, _ = sym.infer_shape(**shapes)
    assert out_shapes == [(2 * 2000, 5)]


def test_pyramid_proposal_argument_names():
    """The op's inputs keep the original networks' names, in feat_stride order."""
    sym = mx.sym.Custom(op_type="pyramid_proposal", feat_stride="(4, 8, 16, 32, 64)", name="p")
    assert sym.list_arguments() == [f"p_{n}" for n in [*INPUTS, "im_info"]]
    sym = mx.sym.Custom(op_type="pyramid_proposal", feat_stride="(16, 4)", name="p")
    assert sym.list_arguments() == [
        "p_rpn_cls_prob_stride16", "p_rpn_cls_prob_stride4", "p_rpn_bbox_pred_stride16",
        "p_rpn_bbox_pred_stride4", "p_im_info",
    ]  # fmt: skip


@pytest.mark.parametrize("is_train", [True, False])
def test_pyramid_proposal_symbol_refuses_the_cxx_proposal(is_train):
    cfg = load_config(FPN_CFG)
    phase = "TRAIN" if is_train else "TEST"
    cfg[phase].CXX_PROPOSAL = True
    with pytest.raises(ValueError, match=rf"Python op: set {phase}\.CXX_PROPOSAL false"):
        fpn_symbol(cfg, is_train)


def test_pyramid_proposal_symbol_needs_one_input_per_stride():
    cfg = load_config(FPN_CFG)
    with pytest.raises(
        ValueError, match=r"RPN_FEAT_STRIDE \[4, 8, 16, 32, 64\] has 5 levels, got 4"
    ):
        pyramid_proposal_symbol(
            cfg, True, [mx.sym.var(f"c{i}") for i in range(4)],
            [mx.sym.var(f"b{i}") for i in range(5)], mx.sym.var("im_info"),
        )  # fmt: skip
