"""Python CustomOps: proposal, proposal_target, BoxAnnotatorOHEM."""

import json

import mxnet as mx
import numpy as np
import pytest

import lib.operator_py  # noqa: F401 (registers the ops)
from lib.bbox.bbox_transform import bbox_overlaps_py, bbox_transform
from lib.config import default_config
from lib.nms.nms import cpu_nms_wrapper
from lib.operator_py.box_annotator_ohem import per_roi_loss
from lib.operator_py.proposal import (
    generate_proposals,
    parse_bool,
    parse_floats,
    proposal_symbol,
)
from lib.operator_py.proposal_target import proposal_target_symbol, sample_rois
from lib.rpn.generate_anchor import generate_anchors

SCALES = (4, 8, 16, 32)
RATIOS = (0.5, 1, 2)
A = len(SCALES) * len(RATIOS)


def rpn_outputs(rng, height, width, delta_std=0.2):
    """cls_prob (1, 2A, H, W) as the networks make it (softmax over bg/fg) and deltas."""
    logits = rng.randn(1, 2, A * height, width)
    prob = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    deltas = rng.randn(1, 4 * A, height, width) * delta_std
    return prob.reshape(1, 2 * A, height, width), deltas


def run_proposal(cls_prob, deltas, im_info, cxx=False, **attrs):
    attrs = {"scales": SCALES, "ratios": RATIOS, "output_score": True, **attrs}
    inputs = [mx.nd.array(cls_prob), mx.nd.array(deltas), mx.nd.array([im_info])]
    if cxx:
        rois, scores = mx.nd.contrib.Proposal(*inputs, feature_stride=16, **attrs)
    else:
        rois, scores = mx.nd.Custom(*inputs, op_type="proposal", feat_stride=16, **attrs)
    return rois.asnumpy(), scores.asnumpy()


# ----------------------------------------------------------------------------------------------
# proposal


def test_attribute_parsing():
    assert parse_floats("(4, 8, 16, 32)") == (4.0, 8.0, 16.0, 32.0)
    assert parse_floats("[0.5]") == (0.5,) and parse_floats("8") == (8.0,)
    assert parse_bool("True") and not parse_bool("False") and parse_bool("1")
    with pytest.raises(ValueError):
        parse_bool("maybe")


def test_proposal_shapes_clipping_and_nms():
    rng = np.random.RandomState(0)
    cls_prob, deltas = rpn_outputs(rng, 20, 30, delta_std=0.5)
    im_info = (300.0, 450.0, 1.5)  # smaller than the 20x30 map: positions are cropped
    post, thresh, min_size = 100, 0.6, 16
    rois, scores = run_proposal(
        cls_prob,
        deltas,
        im_info,
        rpn_pre_nms_top_n=3000,
        rpn_post_nms_top_n=post,
        threshold=thresh,
        rpn_min_size=min_size,
    )
    assert rois.shape == (post, 5) and scores.shape == (post, 1)
    assert (rois[:, 0] == 0).all()
    boxes = rois[:, 1:]
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= im_info[1] - 1).all()
    assert (boxes[:, 1] >= 0).all() and (boxes[:, 3] <= im_info[0] - 1).all()
    assert (boxes[:, 2] - boxes[:, 0] + 1 >= min_size * im_info[2]).all()
    assert (boxes[:, 3] - boxes[:, 1] + 1 >= min_size * im_info[2]).all()
    assert len({tuple(b) for b in boxes}) == post  # enough boxes: no padding here
    assert (np.diff(scores[:, 0]) <= 0).all()
    overlaps = bbox_overlaps_py(boxes, boxes)
    np.fill_diagonal(overlaps, 0)
    assert overlaps.max() < thresh


def test_proposal_pads_cyclically_to_post_nms_top_n():
    rng = np.random.RandomState(1)
    cls_prob, deltas = rpn_outputs(rng, 6, 6)
    # 2 x 2 real positions -> 48 boxes, fewer than 200 survive NMS
    rois, scores = run_proposal(
        cls_prob, deltas, (32, 32, 1.0), rpn_post_nms_top_n=200, threshold=0.5, rpn_min_size=0
    )
    assert rois.shape == (200, 5)
    num_kept = len({tuple(r) for r in rois})
    assert 0 < num_kept < 48
    idx = np.arange(200) % num_kept
    np.testing.assert_array_equal(rois, rois[idx])
    np.testing.assert_array_equal(scores, scores[idx])
    assert (np.diff(scores[:num_kept, 0]) <= 0).all()


@pytest.mark.parametrize(
    "im_info, min_size",
    [((320, 480, 1.0), 16), ((300, 450, 1.5), 16), ((150, 200, 0.5), 0)],
)
def test_proposal_matches_cxx_op(im_info, min_size):
    """Same anchors, order, decoding, clipping and NMS as mx.nd.contrib.Proposal: with enough
    valid boxes the outputs agree row by row (also when im_info crops the feature map)."""
    rng = np.random.RandomState(2)
    cls_prob, deltas = rpn_outputs(rng, 20, 30)
    attrs = {
        "rpn_pre_nms_top_n": 2000,
        "rpn_post_nms_top_n": 300,
        "threshold": 0.7,
        "rpn_min_size": min_size,
    }
    ours = run_proposal(cls_prob, deltas, im_info, **attrs)
    cxx = run_proposal(cls_prob, deltas, im_info, cxx=True, **attrs)
    assert cxx[1].min() > 0  # no invalid (-1) box reached the C++ output
    np.testing.assert_allclose(ours[0], cxx[0], atol=1e-3)
    np.testing.assert_allclose(ours[1], cxx[1], atol=1e-6)


def test_proposal_differs_from_cxx_when_too_few_valid_boxes():
    """Documented difference: the C++ op fills the output with invalid boxes (outside the
    cropped map or too small) scored -1; ours repeats the valid ones."""
    rng = np.random.RandomState(3)
    cls_prob, deltas = rpn_outputs(rng, 6, 8)
    attrs = {"rpn_post_nms_top_n": 100, "threshold": 0.7, "rpn_min_size": 16}
    ours = run_proposal(cls_prob, deltas, (64, 96, 1.0), **attrs)
    cxx = run_proposal(cls_prob, deltas, (64, 96, 1.0), cxx=True, **attrs)
    assert ours[1].min() > 0
    assert cxx[1].min() == -1
    valid = cxx[1][:, 0] > 0
    num_valid = int(valid.argmin())  # the valid boxes come first, then the -1 ones
    assert 1 < num_valid < 100 and not valid[num_valid]
    np.testing.assert_allclose(ours[0][:num_valid], cxx[0][:num_valid], atol=1e-3)
    np.testing.assert_array_equal(ours[0], ours[0][np.arange(100) % num_valid])


def test_proposal_batch_of_images_is_each_image_on_its_own():
    """Several images per device: each image's rows are its proposals alone, with its index."""
    rng = np.random.RandomState(4)
    (p0, d0), (p1, d1) = rpn_outputs(rng, 6, 8), rpn_outputs(rng, 6, 8)
    infos = [(96.0, 128.0, 1.0), (80.0, 100.0, 0.8)]  # the second image is smaller (padded)
    post = 40
    rois, scores = mx.nd.Custom(
        mx.nd.array(np.concatenate([p0, p1])),
        mx.nd.array(np.concatenate([d0, d1])),
        mx.nd.array(infos),
        op_type="proposal", feat_stride=16, scales=SCALES, ratios=RATIOS, output_score=True,
        rpn_pre_nms_top_n=200, rpn_post_nms_top_n=post, rpn_min_size=0,
    )  # fmt: skip
    rois, scores = rois.asnumpy(), scores.asnumpy()
    assert rois.shape == (2 * post, 5) and scores.shape == (2 * post, 1)
    for b, (prob, deltas) in enumerate([(p0, d0), (p1, d1)]):
        alone, alone_scores = run_proposal(
            prob, deltas, infos[b], rpn_pre_nms_top_n=200, rpn_post_nms_top_n=post,
            rpn_min_size=0,
        )  # fmt: skip
        rows = slice(b * post, (b + 1) * post)
        assert (rois[rows, 0] == b).all()
        np.testing.assert_array_equal(rois[rows, 1:], alone[:, 1:])
        np.testing.assert_array_equal(scores[rows], alone_scores)
    # the second image's boxes stay inside its own (smaller) image
    assert rois[post:, 3].max() <= infos[1][1] - 1 and rois[post:, 4].max() <= infos[1][0] - 1


def _layer(sym, name):
    nodes = json.loads(sym.tojson())["nodes"]
    return next(n for n in nodes if n["name"] == name)


@pytest.mark.parametrize("batch_images", [1, 2])
@pytest.mark.parametrize("cxx", [True, False])
@pytest.mark.parametrize("is_train", [True, False])
def test_proposal_symbol_from_config(cxx, is_train, batch_images):
    cfg = default_config("rfcn")
    cfg.network.ANCHOR_SCALES = SCALES
    cfg.TRAIN.CXX_PROPOSAL = cfg.TEST.CXX_PROPOSAL = cxx
    cfg.TRAIN.BATCH_IMAGES = cfg.TEST.BATCH_IMAGES = batch_images
    phase = cfg.TRAIN if is_train else cfg.TEST
    sym = proposal_symbol(
        cfg, is_train, mx.sym.var("cls_prob"), mx.sym.var("bbox_pred"), mx.sym.var("im_info")
    )
    layer = _layer(sym, "rois")
    attrs = layer["attrs"]
    if cxx:
        op = "_contrib_MultiProposal" if batch_images > 1 else "_contrib_Proposal"
        assert layer["op"] == op and attrs["feature_stride"] == "16"
    else:
        assert layer["op"] == "Custom" and attrs["op_type"] == "proposal"
        assert attrs["feat_stride"] == "16"
    assert parse_floats(attrs["scales"]) == SCALES
    assert int(attrs["rpn_pre_nms_top_n"]) == phase.RPN_PRE_NMS_TOP_N
    assert int(attrs["rpn_post_nms_top_n"]) == phase.RPN_POST_NMS_TOP_N
    assert float(attrs["threshold"]) == pytest.approx(phase.RPN_NMS_THRESH)
    assert int(attrs["rpn_min_size"]) == phase.RPN_MIN_SIZE
    b = batch_images
    _, out_shapes, _ = sym.infer_shape(
        cls_prob=(b, 2 * A, 38, 63), bbox_pred=(b, 4 * A, 38, 63), im_info=(b, 3)
    )
    assert out_shapes == [(b * phase.RPN_POST_NMS_TOP_N, 5)]


# ----------------------------------------------------------------------------------------------
# proposal_target

GT = np.array([[20, 30, 120, 150, 3], [200, 100, 300, 220, 7]], dtype=np.float64)
MEANS, STDS = (0.0, 0.0, 0.0, 0.0), (0.1, 0.1, 0.2, 0.2)


def jittered_rois(rng, n=300):
    """Proposals around the gt boxes (a range of IoUs) and random boxes."""
    base = GT[rng.randint(0, len(GT), n), :4]
    wh = base[:, 2:] - base[:, :2]
    boxes = base + rng.uniform(-0.6, 0.6, (n, 4)) * np.hstack([wh, wh])
    boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 4)
    return np.hstack([np.zeros((n, 1)), boxes])


def check_targets(rois, labels, targets, weights, class_agnostic, num_reg):
    overlaps = bbox_overlaps_py(rois[:, 1:], GT[:, :4])
    assignment = overlaps.argmax(axis=1)
    for i in range(rois.shape[0]):
        expected = np.zeros(4 * num_reg)
        expected_w = np.zeros(4 * num_reg)
        if labels[i] > 0:
            assert labels[i] == GT[assignment[i], 4]
            slot = 1 if class_agnostic else int(labels[i])
            delta = bbox_transform(rois[i : i + 1, 1:], GT[assignment[i] : assignment[i] + 1, :4])
            expected[4 * slot : 4 * slot + 4] = (delta[0] - MEANS) / STDS
            expected_w[4 * slot : 4 * slot + 4] = 1
        np.testing.assert_allclose(targets[i], expected, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(weights[i], expected_w)


@pytest.mark.parametrize("class_agnostic", [True, False])
def test_sample_rois_fractions_labels_and_targets(class_agnostic):
    rng = np.random.RandomState(5)
    candidates = np.vstack([jittered_rois(rng), np.hstack([np.zeros((2, 1)), GT[:, :4]])])
    num_reg = 2 if class_agnostic else 8
    rois, labels, targets, weights = sample_rois(
        candidates,
        32,
        128,
        num_reg,
        GT,
        bg_thresh_lo=0.1,
        class_agnostic=class_agnostic,
        bbox_means=MEANS,
        bbox_stds=STDS,
        rng=np.random.RandomState(0),
    )
    assert rois.shape == (128, 5) and labels.shape == (128,)
    assert targets.shape == weights.shape == (128, 4 * num_reg)
    overlaps = bbox_overlaps_py(rois[:, 1:], GT[:, :4]).max(axis=1)
    num_fg = int((labels > 0).sum())
    assert num_fg == 32  # plenty of fg candidates: exactly the fg fraction
    assert (labels[:num_fg] > 0).all() and (labels[num_fg:] == 0).all()
    assert (overlaps[:num_fg] >= 0.5).all()
    assert ((overlaps[num_fg:] < 0.5) & (overlaps[num_fg:] >= 0.1)).all()
    assert len({tuple(r) for r in rois}) == 128  # enough candidates: no repeats
    check_targets(rois, labels, targets, weights, class_agnostic, num_reg)


def test_sample_rois_pads_with_background_when_short():
    rng = np.random.RandomState(6)
    candidates = jittered_rois(rng, 20)
    rois, labels, _, weights = sample_rois(
        candidates,
        16,
        64,
        2,
        GT,
        bg_thresh_lo=0.0,
        class_agnostic=True,
        rng=np.random.RandomState(0),
    )
    assert rois.shape == (64, 5)
    num_fg = int((labels > 0).sum())
    assert num_fg <= 16 and (labels[num_fg:] == 0).all()
    assert (weights[num_fg:] == 0).all()
    # the filling repeats the sampled background RoIs, in order
    overlaps = bbox_overlaps_py(rois[:, 1:], GT[:, :4]).max(axis=1)
    assert (overlaps[num_fg:] < 0.5).all()
    num_bg = len({tuple(r) for r in rois[num_fg:]})
    np.testing.assert_array_equal(
        rois[num_fg + num_bg :],
        np.resize(rois[num_fg : num_fg + num_bg], (64 - num_fg - num_bg, 5)),
    )


def test_sample_rois_without_gt_is_all_background():
    rois, labels, _targets, weights = sample_rois(
        jittered_rois(np.random.RandomState(7), 10),
        5,
        10,
        2,
        np.zeros((0, 5)),
        class_agnostic=True,
    )
    assert (labels == 0).all() and (weights == 0).all() and rois.shape == (10, 5)


def test_proposal_target_op_keeps_everything_with_batch_rois_minus_one():
    rng = np.random.RandomState(8)
    proposals = jittered_rois(rng, 50)
    gt = np.vstack([GT, [[0, 0, 0, 0, 0]]])  # a padding row (class 0)
    rois, label, target, weight = mx.nd.Custom(
        mx.nd.array(proposals),
        mx.nd.array(gt),
        op_type="proposal_target",
        num_classes=2,
        batch_images=1,
        batch_rois=-1,
        fg_fraction=0.25,
        bbox_means=MEANS,
        bbox_stds=STDS,
        bbox_normalization_precomputed=True,
        class_agnostic=True,
    )
    rois, label = rois.asnumpy(), label.asnumpy()
    assert rois.shape == (53, 5) and label.shape == (53,)
    assert target.shape == weight.shape == (53, 8)
    # every proposal and both real gt boxes are there (plus one repeat for the padding row)
    expected = {
        tuple(np.float32(r)) for r in np.vstack([proposals, np.hstack([[[0], [0]], GT[:, :4]])])
    }
    assert {tuple(r) for r in rois} == expected
    check_targets(rois, label, target.asnumpy(), weight.asnumpy(), True, 2)


def test_proposal_target_samples_each_image_of_a_batch_on_its_own():
    """Two images per device: image b's RoIs are sampled against image b's gt only."""
    rng = np.random.RandomState(12)
    props = [jittered_rois(rng, 30), jittered_rois(rng, 30) + [0, 300, 0, 300, 0]]
    props[1][:, 0] = 1
    gt1 = GT + [300, 0, 300, 0, 0]  # image 1's objects sit elsewhere, and one fewer (padding)
    gt = np.stack([GT, np.vstack([gt1[:1], [[-1, -1, -1, -1, -1]]])])  # the loader's (B, G, 5)

    def run(rois, gt_boxes, batch_images):
        out = mx.nd.Custom(
            mx.nd.array(rois), mx.nd.array(gt_boxes.reshape(-1, 5)), op_type="proposal_target",
            num_classes=2, batch_images=batch_images, batch_rois=-1, class_agnostic=True,
            bbox_normalization_precomputed=True,
        )  # fmt: skip
        return [o.asnumpy() for o in out]

    both = run(np.vstack(props), gt, 2)
    rows = 30 + 2  # per image: its proposals + G gt rows
    assert both[0].shape == (2 * rows, 5)
    for b in range(2):
        alone_rois = props[b].copy()
        alone_rois[:, 0] = 0
        alone = run(alone_rois, gt[b : b + 1], 1)
        part = [o[b * rows : (b + 1) * rows] for o in both]
        assert (part[0][:, 0] == b).all()
        np.testing.assert_array_equal(part[0][:, 1:], alone[0][:, 1:])
        for got, want in zip(part[1:], alone[1:]):
            np.testing.assert_array_equal(got, want)
    # image 1 was matched against its own single gt box only
    assert set(both[1][rows:][both[1][rows:] > 0]) == {gt1[0, 4]}
    assert set(both[1][:rows][both[1][:rows] > 0]) == set(GT[:, 4])


def test_proposal_target_symbol_from_config():
    cfg = default_config("rfcn")
    cfg.TRAIN.BATCH_IMAGES, cfg.TRAIN.BATCH_ROIS = 2, 128
    cfg.TRAIN.BBOX_NORMALIZATION_PRECOMPUTED = True
    cfg.CLASS_AGNOSTIC = False
    outputs = proposal_target_symbol(cfg, mx.sym.var("rois"), mx.sym.var("gt_boxes"), 21)
    assert len(outputs.list_outputs()) == 4
    _, shapes, _ = outputs.infer_shape(rois=(600, 5), gt_boxes=(20, 5))
    assert shapes == [(128, 5), (128,), (128, 84), (128, 84)]  # 128 // 2 per image, 2 images
    attrs = json.loads(outputs.tojson())["nodes"][-1]["attrs"]
    assert attrs["op_type"] == "proposal_target"
    assert parse_floats(attrs["bbox_stds"]) == tuple(cfg.TRAIN.BBOX_STDS)
    assert parse_floats(attrs["bbox_weights"]) == (1.0, 1.0, 1.0, 1.0)
    assert parse_bool(attrs["bbox_normalization_precomputed"])
    assert not parse_bool(attrs["class_agnostic"])


# Distinct thresholds: a RoI with IoU in [BG_HI, FG) is neither foreground nor background, one
# below BG_LO neither; with FG_FRACTION 0.3 a sample of 20 RoIs holds 6 foreground ones.
FG, BG_HI, BG_LO, FG_FRACTION = 0.6, 0.4, 0.1, 0.3
SQUARE_GT = np.array([[0, 0, 99, 99, 3]], dtype=np.float64)


def rois_with_ious(percents, batch_index=0):
    """RoIs inside the gt box (0, 0, 99, 99), p px high: IoU exactly p / 100 (+1 convention);
    p = 0 is a RoI far from it (IoU 0)."""
    rows = [[0, 0, 99, p - 1] if p else [200, 200, 250, 250] for p in percents]
    return np.hstack([np.full((len(rows), 1), batch_index), np.array(rows, np.float64)])


def ious_of(rois):
    return bbox_overlaps_py(rois[:, 1:], SQUARE_GT[:, :4])[:, 0]


@pytest.mark.parametrize("seed", range(5))
def test_sample_rois_uses_distinct_thresholds_and_the_fg_fraction(seed):
    candidates = rois_with_ious(range(101))  # IoU 0, 0.01, ..., 1: plenty of each kind
    np.testing.assert_array_equal(ious_of(candidates), np.arange(101) / 100)
    num_fg = int(round(FG_FRACTION * 20))
    rois, labels, _, weights = sample_rois(
        candidates, num_fg, 20, 2, SQUARE_GT, fg_thresh=FG, bg_thresh_hi=BG_HI,
        bg_thresh_lo=BG_LO, class_agnostic=True, rng=np.random.RandomState(seed),
    )  # fmt: skip
    ious = ious_of(rois)
    assert num_fg == 6 and (labels[:6] == 3).all() and (labels[6:] == 0).all()
    assert (ious[:6] >= FG).all()
    assert ((ious[6:] >= BG_LO) & (ious[6:] < BG_HI)).all()
    assert len({tuple(r) for r in rois}) == 20  # enough of each: no repeats
    assert (weights[:6, 4:] == 1).all() and (weights[6:] == 0).all()


def test_sample_rois_never_samples_between_the_thresholds():
    """Fewer candidates than the quotas, so nothing is drawn at random: all foreground RoIs
    (IoU >= 0.6, 0.6 included), then all background ones (0.1 <= IoU < 0.4: 0.1 in, 0.4 out)
    repeated in order; IoU in [0.4, 0.6) and below 0.1 never."""
    fg, gray, bg, low = [60, 70, 85, 100], [40, 45, 50, 55, 59], [10, 20, 30, 39], [0, 5, 9]
    candidates = rois_with_ious(low + bg + gray + fg)
    rois, labels, _, _ = sample_rois(
        candidates, 6, 20, 2, SQUARE_GT, fg_thresh=FG, bg_thresh_hi=BG_HI, bg_thresh_lo=BG_LO,
        class_agnostic=True,
    )  # fmt: skip
    want = rois_with_ious(fg + bg * 4)
    np.testing.assert_array_equal(rois, want)
    np.testing.assert_array_equal(labels, [3] * 4 + [0] * 16)


@pytest.mark.parametrize("normalized, agnostic", [(True, False), (False, True)])
def test_proposal_target_symbol_passes_every_train_value(normalized, agnostic):
    """Every TRAIN value set to a non-default value, and the two flags both ways, reach the op:
    as its attributes, and in its output, which equals sample_rois called with the values."""
    cfg = default_config("rfcn")
    values = {
        "FG_THRESH": FG, "BG_THRESH_HI": BG_HI, "BG_THRESH_LO": BG_LO,
        "FG_FRACTION": FG_FRACTION, "BATCH_IMAGES": 1, "BATCH_ROIS": 20,
        "BBOX_MEANS": (0.01, -0.02, 0.03, -0.04), "BBOX_STDS": (0.11, 0.12, 0.21, 0.22),
        "BBOX_WEIGHTS": (0.5, 0.6, 0.7, 0.8),
    }  # fmt: skip
    for key, value in values.items():
        assert np.all(cfg.TRAIN[key] != value), f"TRAIN.{key} is the default {value}"
        cfg.TRAIN[key] = value
    cfg.TRAIN.BBOX_NORMALIZATION_PRECOMPUTED, cfg.CLASS_AGNOSTIC = normalized, agnostic
    num_reg = 2 if agnostic else 5
    sym = proposal_target_symbol(cfg, mx.sym.var("rois"), mx.sym.var("gt_boxes"), num_reg)

    attrs = _layer(sym, sym.name)["attrs"]
    assert float(attrs["fg_thresh"]) == FG and float(attrs["bg_thresh_hi"]) == BG_HI
    assert float(attrs["bg_thresh_lo"]) == BG_LO and float(attrs["fg_fraction"]) == FG_FRACTION
    assert int(attrs["batch_images"]) == 1 and int(attrs["batch_rois"]) == 20
    assert int(attrs["num_classes"]) == num_reg
    for name in ("BBOX_MEANS", "BBOX_STDS", "BBOX_WEIGHTS"):
        assert parse_floats(attrs[name.lower()]) == values[name]
    assert parse_bool(attrs["bbox_normalization_precomputed"]) == normalized
    assert parse_bool(attrs["class_agnostic"]) == agnostic

    # 5 proposals + the gt make 6 foreground RoIs, exactly the quota round(0.3 * 20): nothing
    # is drawn at random. Each other threshold, fraction or flag changes this sample.
    proposals = rois_with_ious([0, 5, 9, 10, 20, 39, 40, 45, 50, 55, 59, 60, 70, 85, 90, 99])
    outputs = sym.eval(mx.cpu(), rois=mx.nd.array(proposals), gt_boxes=mx.nd.array(SQUARE_GT))
    got = [o.asnumpy() for o in outputs]
    want = sample_rois(
        np.vstack([proposals, rois_with_ious([100])]), 6, 20, num_reg, SQUARE_GT, fg_thresh=FG,
        bg_thresh_hi=BG_HI, bg_thresh_lo=BG_LO, bbox_means=values["BBOX_MEANS"],
        bbox_stds=values["BBOX_STDS"], bbox_weights=values["BBOX_WEIGHTS"],
        normalize_targets=normalized, class_agnostic=agnostic,
    )  # fmt: skip
    assert [g.shape for g in got] == [(20, 5), (20,), (20, 4 * num_reg), (20, 4 * num_reg)]
    assert (got[1] == 3).sum() == 6
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-7)
    # the foreground targets (class 3's slot, or slot 1 when class-agnostic) are normalised with
    # the means / stds only when BBOX_NORMALIZATION_PRECOMPUTED, and weighted as configured
    delta = bbox_transform(got[0][:6, 1:], SQUARE_GT[[0] * 6, :4])
    if normalized:
        delta = (delta - values["BBOX_MEANS"]) / values["BBOX_STDS"]
    slot = 4 if agnostic else 12
    np.testing.assert_allclose(got[2][:6, slot : slot + 4], delta, rtol=1e-5, atol=1e-6)
    weights = np.tile(np.float32(values["BBOX_WEIGHTS"]), (6, 1))
    np.testing.assert_array_equal(got[3][:6, slot : slot + 4], weights)
    assert (got[3][6:] == 0).all()


# ----------------------------------------------------------------------------------------------
# BoxAnnotatorOHEM


def test_box_annotator_ohem_keeps_the_top_losses():
    rng = np.random.RandomState(9)
    num_rois, num_classes, roi_per_img = 40, 5, 12
    cls_score = rng.randn(num_rois, num_classes) * 2
    bbox_pred = rng.randn(num_rois, 8)
    labels = rng.randint(0, num_classes, num_rois).astype(np.float64)
    bbox_targets = rng.randn(num_rois, 8)
    bbox_weights = np.zeros((num_rois, 8))
    bbox_weights[labels > 0, 4:] = 1.0

    # the loss from its definition, with MXNet's softmax and smooth_l1
    prob = mx.nd.softmax(mx.nd.array(cls_score, dtype="float64")).asnumpy()
    ce = -np.log(prob[np.arange(num_rois), labels.astype(int)])
    sl1 = mx.nd.smooth_l1(mx.nd.array(bbox_pred - bbox_targets, dtype="float64"), scalar=1.0)
    loss = ce + (bbox_weights * sl1.asnumpy()).sum(axis=1)
    np.testing.assert_allclose(
        per_roi_loss(cls_score, bbox_pred, labels, bbox_targets, bbox_weights), loss, rtol=1e-10
    )
    top = set(np.argsort(-loss)[:roi_per_img].tolist())

    labels_ohem, weights_ohem = mx.nd.Custom(
        mx.nd.array(cls_score),
        mx.nd.array(bbox_pred),
        mx.nd.array(labels),
        mx.nd.array(bbox_targets),
        mx.nd.array(bbox_weights),
        op_type="BoxAnnotatorOHEM",
        num_classes=num_classes,
        num_reg_classes=2,
        roi_per_img=roi_per_img,
    )
    labels_ohem, weights_ohem = labels_ohem.asnumpy(), weights_ohem.asnumpy()
    kept = set(np.flatnonzero(labels_ohem >= 0).tolist())
    assert kept == top
    for i in range(num_rois):
        if i in top:
            assert labels_ohem[i] == labels[i]
            np.testing.assert_array_equal(weights_ohem[i], bbox_weights[i])
        else:
            assert labels_ohem[i] == -1 and (weights_ohem[i] == 0).all()


def test_box_annotator_ohem_selects_per_image():
    """With batch_images=2 each image keeps its own roi_per_img hardest RoIs."""
    rng = np.random.RandomState(10)
    per_image, num_classes, roi_per_img = 20, 4, 5
    cls_score = rng.randn(2 * per_image, num_classes)
    cls_score[:per_image] *= 10  # image 0's losses dominate: a global top-k would take only it
    labels = rng.randint(0, num_classes, 2 * per_image).astype(np.float64)
    zeros = np.zeros((2 * per_image, 8))
    labels_ohem, _ = mx.nd.Custom(
        mx.nd.array(cls_score), mx.nd.array(zeros), mx.nd.array(labels), mx.nd.array(zeros),
        mx.nd.array(zeros), op_type="BoxAnnotatorOHEM", num_classes=num_classes,
        num_reg_classes=2, roi_per_img=roi_per_img, batch_images=2,
    )  # fmt: skip
    labels_ohem = labels_ohem.asnumpy()
    loss = per_roi_loss(cls_score, zeros, labels, zeros, zeros)
    for b in range(2):
        rows = slice(b * per_image, (b + 1) * per_image)
        kept = np.flatnonzero(labels_ohem[rows] >= 0)
        assert set(kept) == set(np.argsort(-loss[rows])[:roi_per_img])


def test_box_annotator_ohem_shape_check():
    sym = mx.sym.Custom(
        *[mx.sym.var(n) for n in ("cls", "pred", "label", "target", "weight")],
        op_type="BoxAnnotatorOHEM",
        num_classes=21,
        num_reg_classes=2,
        roi_per_img=128,
    )
    _, shapes, _ = sym.infer_shape(
        cls=(300, 21), pred=(300, 8), label=(300,), target=(300, 8), weight=(300, 8)
    )
    assert shapes == [(300,), (300, 8)]
    with pytest.raises(mx.base.MXNetError):
        sym.infer_shape(
            cls=(300, 20), pred=(300, 8), label=(300,), target=(300, 8), weight=(300, 8)
        )


def test_box_annotator_ohem_shape_errors_name_the_input():
    sym = mx.sym.Custom(
        *[mx.sym.var(n) for n in ("cls", "pred", "label", "target", "weight")],
        op_type="BoxAnnotatorOHEM", num_classes=21, num_reg_classes=2, roi_per_img=128,
        batch_images=2,
    )  # fmt: skip
    shapes = {"cls": (300, 21), "pred": (300, 8), "label": (300,), "target": (300, 8)}
    with pytest.raises(mx.base.MXNetError):
        sym.infer_shape(**shapes, weight=(300, 84))
    with pytest.raises(mx.base.MXNetError):
        sym.infer_shape(**{**shapes, "cls": (301, 21)}, weight=(301, 8))
    # the messages themselves (logged; MXNet's exception only says "Check failed"): see
    # tests/lib/test_custom_op_errors.py


# ----------------------------------------------------------------------------------------------
# Nothing is left to fail in forward: attributes and shapes are checked when the symbol is
# built and bound (tests/lib/test_custom_op_errors.py), and what only the data can show is
# handled without raising.


def _ohem_inputs():
    return [mx.sym.var(n) for n in ("cls", "pred", "label", "target", "weight")]


@pytest.mark.parametrize(
    "sym",
    [
        lambda: mx.sym.Custom(*[mx.sym.var(n) for n in "cbi"], op_type="proposal"),
        lambda: mx.sym.Custom(
            *[mx.sym.var(n) for n in "rg"],
            op_type="proposal_target",
            **{"num_classes": 2, "batch_images": 2, "batch_rois": -1},
        ),
        lambda: mx.sym.Custom(
            *_ohem_inputs(),
            op_type="BoxAnnotatorOHEM",
            **{"num_classes": 3, "num_reg_classes": 2, "roi_per_img": 4},
        ),
    ],
    ids=["proposal", "proposal_target", "BoxAnnotatorOHEM"],
)
def test_partial_shape_inference_with_nothing_known(sym):
    """infer_shape is also called with unknown (empty) shapes: no error, unknown outputs."""
    sym = sym()
    _, out_shapes, _ = sym.infer_shape_partial()
    assert all(s == () for s in out_shapes)


@pytest.mark.parametrize("im_info", [(10.0, 12.0, 1.0), (0.0, 0.0, 1.0), (np.nan, 50.0, 1.0)])
def test_proposal_image_smaller_than_a_cell_or_corrupt_im_info(im_info, caplog):
    """The original crashed on an image smaller than one feature cell (an empty crop of the
    map); its first cell is used. A NaN size takes the whole map (and is logged)."""
    rng = np.random.RandomState(11)
    cls_prob, deltas = rpn_outputs(rng, 4, 5)
    with caplog.at_level("WARNING", logger="lib.operator_py.proposal"):
        rois, scores = run_proposal(
            cls_prob, deltas, im_info, rpn_post_nms_top_n=20, threshold=0.7, rpn_min_size=16
        )
    assert rois.shape == (20, 5) and scores.shape == (20, 1)
    if np.isfinite(im_info).all():
        assert (scores > 0).all()  # real proposals of the first cell, not the empty-map zeros
        assert (rois[:, 1:3] >= 0).all()
        assert (rois[:, 3] <= max(im_info[1] - 1, 0)).all()
        assert (rois[:, 4] <= max(im_info[0] - 1, 0)).all()
    else:
        assert "non-finite im_info" in caplog.text


def test_generate_proposals_on_an_empty_map_returns_zero_boxes():
    anchors = generate_anchors(base_size=16, scales=SCALES, ratios=RATIOS)
    rois, scores = generate_proposals(
        np.zeros((A, 0, 0)), np.zeros((4 * A, 0, 0)), np.array([100.0, 100.0, 1.0]), anchors,
        16, 100, 7, 0, cpu_nms_wrapper(0.7),
    )  # fmt: skip
    assert rois.shape == (7, 5) and (rois == 0).all() and (scores == 0).all()


def test_proposal_target_finds_each_image_by_position():
    """Image b's proposals are rows [b * N, (b + 1) * N) (the proposal ops' layout); a wrong
    batch index column no longer changes the output size (the original selected by it)."""
    rng = np.random.RandomState(13)
    props = np.vstack([jittered_rois(rng, 20), jittered_rois(rng, 20)])
    props[:, 0] = 0  # every row claims image 0
    gt = np.stack([GT, GT]).reshape(-1, 5)
    outputs = mx.nd.Custom(
        mx.nd.array(props), mx.nd.array(gt), op_type="proposal_target", num_classes=2,
        batch_images=2, batch_rois=-1, class_agnostic=True,
    )  # fmt: skip
    rois = outputs[0].asnumpy()
    assert rois.shape == (2 * (20 + 2), 5)
    assert set(rois[22:, 0]) <= {0.0, 1.0}  # gt rows get their image's index


def test_proposal_target_ignores_gt_of_a_class_it_has_no_slot_for(caplog):
    """Class-specific regression with 5 classes and a gt box of class 7: the original failed
    in forward (no target slot); the box is ignored and logged."""
    rng = np.random.RandomState(14)
    gt = np.array([[20, 30, 120, 150, 3], [200, 100, 300, 220, 7]], dtype=np.float64)
    with caplog.at_level("WARNING", logger="lib.operator_py.proposal_target"):
        _, label, target, weight = mx.nd.Custom(
            mx.nd.array(jittered_rois(rng, 40)), mx.nd.array(gt), op_type="proposal_target",
            num_classes=5, batch_images=1, batch_rois=32,
        )  # fmt: skip
        label = label.asnumpy()
    assert set(label.tolist()) <= {0.0, 3.0} and (label == 3).any()
    assert target.shape == weight.shape == (32, 20)
    assert "ignoring gt boxes of classes [7.0] (num_classes=5)" in caplog.text


def test_box_annotator_ohem_ignores_labels_outside_the_classes(caplog):
    """A label >= num_classes (or NaN) has no score: the original failed in forward; the RoI
    is ignored (-1, no box weight) and logged."""
    rng = np.random.RandomState(15)
    cls_score = rng.randn(6, 4)
    labels = np.array([1, 0, 4, 2, np.nan, 3], dtype=np.float64)
    weights = np.ones((6, 8))
    with caplog.at_level("WARNING", logger="lib.operator_py.box_annotator_ohem"):
        labels_ohem, weights_ohem = mx.nd.Custom(
            mx.nd.array(cls_score), mx.nd.zeros((6, 8)), mx.nd.array(labels), mx.nd.zeros((6, 8)),
            mx.nd.array(weights), op_type="BoxAnnotatorOHEM", num_classes=4, num_reg_classes=2,
            roi_per_img=3,
        )  # fmt: skip
        labels_ohem, weights_ohem = labels_ohem.asnumpy(), weights_ohem.asnumpy()
    assert labels_ohem[2] == -1 and labels_ohem[4] == -1
    assert (weights_ohem[[2, 4]] == 0).all()
    assert sorted(np.flatnonzero(labels_ohem >= 0)) == sorted(
        np.argsort(-per_roi_loss(cls_score, np.zeros((6, 8)), labels, np.zeros((6, 8)), weights))[
            :3
        ]
    )
    assert "ignoring 2 RoIs labelled outside [0, 4)" in caplog.text


@pytest.mark.parametrize(
    "build, key, value, message",
    [
        ("proposal", "RPN_POST_NMS_TOP_N", 0, "rpn_post_nms_top_n must be an integer >= 1"),
        ("proposal", "RPN_NMS_THRESH", -0.5, r"threshold must be a number in \[0, 1\]"),
        ("proposal_target", "BATCH_IMAGES", 0, "batch_images must be an integer >= 1"),
        ("proposal_target", "FG_FRACTION", 2.0, r"fg_fraction must be a number in \[0, 1\]"),
        ("proposal_target", "BBOX_STDS", (0.1, 0.1, 0.0, 0.2), "bbox_stds must be 4 numbers > 0"),
    ],
)
def test_symbol_builders_reject_bad_values_before_mxnet(build, key, value, message):
    """A config changed in code (so not checked by load_config): a plain ValueError."""
    cfg = default_config("rfcn")
    cfg.TRAIN[key] = value
    cfg.TRAIN.CXX_PROPOSAL = False
    with pytest.raises(ValueError, match=rf"^{build}: attribute {message}"):
        if build == "proposal":
            proposal_symbol(cfg, True, *[mx.sym.var(n) for n in "cbi"])
        else:
            proposal_target_symbol(cfg, mx.sym.var("rois"), mx.sym.var("gt"), 2)
