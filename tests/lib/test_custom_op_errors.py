"""The Python CustomOps never kill the interpreter: every error is a Python exception.

MXNet 1.9.1 cannot report an exception raised in a ``CustomOpProp`` constructor: the process
dies with "Segmentation fault: 11" (MXNet's signal handler then exits with status 255, so a
positive exit code alone does not prove a clean failure). Each error path therefore runs in a
subprocess (cwd = the repo root, so ``lib`` imports), which must end with exit status 1 (an
uncaught Python exception) and print the op's message on stderr.

To keep this file fast (importing MXNet takes about 2 s), one subprocess drives all the error
paths of one op: each case runs in a ``try`` between markers on stderr, and the last one is left
uncaught, so that the process must exit with status 1 and its traceback. A crash in any case
ends the process early: the missing markers name the case.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import NamedTuple

import pytest

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 120


class Case(NamedTuple):
    name: str
    code: str  # run with mx, v = mx.sym.var, lib.operator_py imported
    message: str  # a regex that stderr must show for this case


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


def assert_clean_failure(proc: subprocess.CompletedProcess, message: str) -> None:
    """Exit status 1 (a negative one is a signal; MXNet's segfault handler exits with 255)
    and ``message`` (a regex) on stderr."""
    tail = proc.stderr[-3000:]
    assert proc.returncode == 1, f"exit status {proc.returncode}, stderr:\n{tail}"
    assert "Segmentation fault" not in proc.stderr, tail
    assert re.search(message, proc.stderr), f"{message!r} not in stderr:\n{tail}"


# ---------------------------------------------------------------------------------------------
# The error paths of each op. Attribute errors surface when the node is built (mx.sym.Custom /
# mx.nd.Custom), shape errors when shapes are inferred or the symbol is bound, and the symbol
# builders raise a plain ValueError before calling MXNet.

PRE = "9 anchors"  # the default scales x ratios


def proposal(**attrs) -> str:
    args = ", ".join(f"{k}={v!r}" for k, v in attrs.items())
    return f"mx.sym.Custom(v('c'), v('b'), v('i'), op_type='proposal', {args})"


def proposal_shapes(cls, bbox) -> str:
    sym = "mx.sym.Custom(v('c'), v('b'), v('i'), op_type='proposal')"
    return f"{sym}.infer_shape(c={cls}, b={bbox})"


PYRAMID_INPUTS = "c4 c8 b4 b8 i"  # cls_prob of each level, bbox_pred of each level, im_info


def pyramid(inputs: str = PYRAMID_INPUTS, **attrs) -> str:
    attrs = {"feat_stride": "(4, 8)", "scales": (8,), **attrs}  # 3 anchors
    syms = ", ".join(f"v({n!r})" for n in inputs.split())
    args = ", ".join(f"{k}={v!r}" for k, v in attrs.items())
    return f"mx.sym.Custom({syms}, op_type='pyramid_proposal', {args})"


def pyramid_shapes(bind: bool = False, feat_stride: str = "(4, 8)", **shapes) -> str:
    """Infers (or binds) with levels 8 x 8 and 4 x 4, ``shapes`` replacing some."""
    shapes = {"c4": (1, 6, 8, 8), "c8": (1, 6, 4, 4), "b4": (1, 12, 8, 8),
              "b8": (1, 12, 4, 4), **shapes}  # fmt: skip
    args = ", ".join(f"{k}={v}" for k, v in shapes.items())
    call = f"simple_bind(mx.cpu(), {args})" if bind else f"infer_shape({args})"
    return f"{pyramid(feat_stride=feat_stride)}.{call}"


def target(**attrs) -> str:
    attrs = {"num_classes": 2, "batch_images": 1, "batch_rois": -1, "class_agnostic": True, **attrs}
    args = ", ".join(f"{k}={v!r}" for k, v in attrs.items() if v is not None)
    return f"mx.sym.Custom(v('r'), v('g'), op_type='proposal_target', {args})"


def target_shapes(rois, gt, **attrs) -> str:
    return f"{target(**attrs)}.infer_shape(r={rois}, g={gt})"


OHEM_INPUTS = "v('cls'), v('pred'), v('label'), v('target'), v('weight')"


def ohem(**attrs) -> str:
    attrs = {"num_classes": 3, "num_reg_classes": 2, "roi_per_img": 4, **attrs}
    args = ", ".join(f"{k}={v!r}" for k, v in attrs.items() if v is not None)
    return f"mx.sym.Custom({OHEM_INPUTS}, op_type='BoxAnnotatorOHEM', {args})"


def ohem_shapes(cls=(8, 3), pred=(8, 8), label=(8,), target=(8, 8), weight=(8, 8), **attrs):
    shapes = f"cls={cls}, pred={pred}, label={label}, target={target}, weight={weight}"
    return f"{ohem(**attrs)}.simple_bind(mx.cpu(), {shapes})"


def cfg_code(path: str, **train) -> str:
    sets = "".join(f"cfg.TRAIN.{k} = {v!r}\n" for k, v in train.items())
    return f"from lib.config import load_config\ncfg = load_config({path!r})\n{sets}"


RFCN_CFG = "experiments/rfcn/cfgs/synthetic_rfcn.yaml"
RCNN_CFG = "experiments/faster_rcnn/cfgs/synthetic_rcnn.yaml"
FPN_CFG = "experiments/fpn/cfgs/resnet_v1_101_coco_trainval_fpn_end2end_ohem.yaml"


def fpn_proposals(cls_levels: int = 5) -> str:
    """pyramid_proposal_symbol on ``cfg`` with the first ``cls_levels`` cls_probs."""
    strides = (4, 8, 16, 32, 64)
    cls_probs = ", ".join(f"v('c{s}')" for s in strides[:cls_levels])
    bbox_preds = ", ".join(f"v('b{s}')" for s in strides)
    return (
        "from lib.operator_py import pyramid_proposal_symbol\n"
        f"pyramid_proposal_symbol(cfg, True, [{cls_probs}], [{bbox_preds}], v('i'))"
    )


INT = "an integer"
STRIDES = "one or more distinct integers >= 1"
CASES: dict[str, list[Case]] = {
    "proposal": [
        Case("feat_stride 0", proposal(feat_stride=0),
             rf"proposal: attribute feat_stride must be {INT} >= 1, got '0'"),
        Case("feat_stride not a number", proposal(feat_stride="sixteen"),
             rf"proposal: attribute feat_stride must be {INT} >= 1, got 'sixteen'"),
        Case("no scales", proposal(scales=()),
             r"proposal: attribute scales must be one or more numbers > 0, got '\(\)'"),
        Case("negative ratio", proposal(ratios=(0.5, -1)),
             r"proposal: attribute ratios must be one or more numbers > 0, got '\(0.5, -1\)'"),
        Case("output_score not a bool", proposal(output_score="maybe"),
             r"proposal: attribute output_score must be True or False, got 'maybe'"),
        Case("pre_nms_top_n not an integer", proposal(rpn_pre_nms_top_n=1.5),
             rf"proposal: attribute rpn_pre_nms_top_n must be {INT}, got '1.5'"),
        Case("post_nms_top_n 0", proposal(rpn_post_nms_top_n=0),
             rf"proposal: attribute rpn_post_nms_top_n must be {INT} >= 1, got '0'"),
        Case("threshold above 1", proposal(threshold=1.5),
             r"proposal: attribute threshold must be a number in \[0, 1\], got '1.5'"),
        Case("negative min_size", proposal(rpn_min_size=-1),
             r"proposal: attribute rpn_min_size must be a number >= 0, got '-1'"),
        Case("unknown attribute", proposal(feat_strid=16),
             r"proposal: unknown attribute feat_strid \(attributes: feat_stride, scales"),
        Case("imperative call", "mx.nd.Custom(mx.nd.zeros((1, 18, 2, 2)), mx.nd.zeros((1, 36, 2, "
             "2)), mx.nd.zeros((1, 3)), op_type='proposal', threshold=-1)",
             r"proposal: attribute threshold must be a number in \[0, 1\], got '-1'"),
        Case("cls_prob channels", proposal_shapes((1, 10, 5, 5), (1, 36, 5, 5)),
             rf"proposal: cls_prob must have shape \(B, 2 \* {PRE}, H, W\), got \(1, 10, 5, 5\)"),
        Case("bbox_pred channels", proposal_shapes((1, 18, 5, 5), (1, 18, 5, 5)),
             rf"proposal: bbox_pred must have shape \(B, 4 \* {PRE}, H, W\), got \(1, 18, 5, 5\)"),
        Case("cls_prob not 4-D", proposal_shapes((1, 18, 5), (1, 36, 5, 5)),
             rf"proposal: cls_prob must have shape \(B, 2 \* {PRE}, H, W\), got \(1, 18, 5\)"),
        Case("map sizes differ", proposal_shapes((1, 18, 5, 5), (1, 36, 5, 6)),
             r"proposal: cls_prob \(1, 18, 5, 5\) and bbox_pred \(1, 36, 5, 6\) must have the "
             r"same batch size and map size"),
        Case("batch sizes differ at bind", "mx.sym.Custom(v('c'), v('b'), v('i'), "
             "op_type='proposal').simple_bind(mx.cpu(), c=(2, 18, 5, 5), b=(1, 36, 5, 5))",
             r"proposal: cls_prob \(2, 18, 5, 5\) and bbox_pred \(1, 36, 5, 5\) must have"),
        Case("builder, C++ op", cfg_code(RFCN_CFG, CXX_PROPOSAL=True, RPN_POST_NMS_TOP_N=0)
             + "from lib.operator_py import proposal_symbol\n"
             "proposal_symbol(cfg, True, v('c'), v('b'), v('i'))",
             rf"ValueError: proposal: attribute rpn_post_nms_top_n must be {INT} >= 1, got '0'"),
        Case("builder, Python op", cfg_code(RFCN_CFG, RPN_NMS_THRESH=2.0)
             + "from lib.operator_py import proposal_symbol\n"
             "proposal_symbol(cfg, True, v('c'), v('b'), v('i'))",
             r"ValueError: proposal: attribute threshold must be a number in \[0, 1\], got "
             r"'2.0'"),
    ],
    "pyramid_proposal": [
        Case("a stride 0", pyramid(feat_stride="(4, 0)"),
             rf"pyramid_proposal: attribute feat_stride must be {STRIDES}, got '\(4, 0\)'"),
        Case("a stride not an integer", pyramid(feat_stride="(4, 8.5)"),
             rf"pyramid_proposal: attribute feat_stride must be {STRIDES}, got '\(4, 8.5\)'"),
        Case("no stride", pyramid(feat_stride="()"),
             rf"pyramid_proposal: attribute feat_stride must be {STRIDES}, got '\(\)'"),
        Case("a stride twice", pyramid(feat_stride="(8, 8)"),
             rf"pyramid_proposal: attribute feat_stride must be {STRIDES}, got '\(8, 8\)'"),
        Case("strides not numbers", pyramid(feat_stride="P2..P6"),
             rf"pyramid_proposal: attribute feat_stride must be {STRIDES}, got 'P2..P6'"),
        Case("no ratios", pyramid(ratios=()),
             r"pyramid_proposal: attribute ratios must be one or more numbers > 0, got '\(\)'"),
        Case("threshold above 1", pyramid(threshold=1.5),
             r"pyramid_proposal: attribute threshold must be a number in \[0, 1\], got '1.5'"),
        Case("the original's unused output_pyramid_rois", pyramid(output_pyramid_rois=False),
             r"pyramid_proposal: unknown attribute output_pyramid_rois \(attributes: "
             r"feat_stride, scales"),
        Case("cls_prob channels of one level", pyramid_shapes(c8=(1, 4, 4, 4)),
             r"pyramid_proposal: rpn_cls_prob_stride8 must have shape \(B, 2 \* 3 anchors, H, "
             r"W\), got \(1, 4, 4, 4\)"),
        Case("bbox_pred channels of one level", pyramid_shapes(b4=(1, 6, 8, 8)),
             r"pyramid_proposal: rpn_bbox_pred_stride4 must have shape \(B, 4 \* 3 anchors, H, "
             r"W\), got \(1, 6, 8, 8\)"),
        Case("map sizes differ on one level", pyramid_shapes(b8=(1, 12, 4, 5)),
             r"pyramid_proposal: rpn_cls_prob_stride8 \(1, 6, 4, 4\) and rpn_bbox_pred_stride8 "
             r"\(1, 12, 4, 5\) must have the same batch size and map size"),
        Case("batch sizes differ between levels at bind",
             pyramid_shapes(bind=True, c8=(2, 6, 4, 4), b8=(2, 12, 4, 4)),
             r"pyramid_proposal: the inputs must have the same batch size, got "
             r"rpn_cls_prob_stride4 \(1, 6, 8, 8\), rpn_cls_prob_stride8 \(2, 6, 4, 4\)"),
        # Fewer inputs than levels: MXNet fills the rest with new variables, so the given ones
        # land on the wrong inputs (here b8 on rpn_bbox_pred_stride4), and their shapes say so
        # at bind time.
        Case("two levels given, three strides",
             pyramid_shapes(bind=True, feat_stride="(4, 8, 16)"),
             r"pyramid_proposal: rpn_cls_prob_stride4 \(1, 6, 8, 8\) and rpn_bbox_pred_stride4 "
             r"\(1, 12, 4, 4\) must have the same batch size and map size"),
        Case("three levels given, two strides", pyramid("c4 c8 c16 b4 b8 b16 i"),
             r"Incorrect number of arguments, requires 5, provided 7"),
        Case("imperative call, one level missing", "mx.nd.Custom(mx.nd.zeros((1, 6, 4, 4)), "
             "mx.nd.zeros((1, 12, 4, 4)), mx.nd.zeros((1, 3)), op_type='pyramid_proposal', "
             "feat_stride=(4, 8), scales=(8,))",
             r"Operator Custom expects 5 inputs, but got 3 instead"),
        Case("builder, bad value", cfg_code(FPN_CFG, RPN_NMS_THRESH=2.0) + fpn_proposals(),
             r"ValueError: pyramid_proposal: attribute threshold must be a number in \[0, 1\], "
             r"got '2.0'"),
        Case("builder, a level missing", cfg_code(FPN_CFG) + fpn_proposals(4),
             r"ValueError: pyramid_proposal: network.RPN_FEAT_STRIDE \[4, 8, 16, 32, 64\] has 5 "
             r"levels, got 4 cls_probs and 5 bbox_preds"),
        Case("builder, C++ op", cfg_code(FPN_CFG, CXX_PROPOSAL=True) + fpn_proposals(),
             r"ValueError: pyramid_proposal: MXNet has no C\+\+ pyramid proposal, the pyramid "
             r"proposal is the Python op: set TRAIN.CXX_PROPOSAL false"),
    ],
    "proposal_target": [
        Case("num_classes 1", target(num_classes=1, class_agnostic=False),
             rf"proposal_target: attribute num_classes must be {INT} >= 2, got '1'"),
        Case("batch_images 0", target(batch_images=0),
             rf"proposal_target: attribute batch_images must be {INT} >= 1, got '0'"),
        Case("batch_rois 0", target(batch_rois=0),
             rf"proposal_target: attribute batch_rois must be {INT} >= 1, or -1, got '0'"),
        Case("batch_rois not a multiple", target(batch_rois=100, batch_images=3),
             r"proposal_target: attribute batch_rois must be -1 or a multiple of batch_images "
             r"\(3\), got '100'"),
        Case("fg_fraction above 1", target(fg_fraction=1.5),
             r"proposal_target: attribute fg_fraction must be a number in \[0, 1\], got '1.5'"),
        Case("negative fg_thresh", target(fg_thresh=-0.1),
             r"proposal_target: attribute fg_thresh must be a number in \[0, 1\], got '-0.1'"),
        Case("bg_thresh_hi above 1", target(bg_thresh_hi=2),
             r"proposal_target: attribute bg_thresh_hi must be a number in \[0, 1\], got '2'"),
        Case("bg_thresh_lo NaN", target(bg_thresh_lo="nan"),
             r"proposal_target: attribute bg_thresh_lo must be a number in \[0, 1\], got 'nan'"),
        Case("three bbox_means", target(bbox_means=(0, 0, 0)),
             r"proposal_target: attribute bbox_means must be 4 finite numbers, got "
             r"'\(0, 0, 0\)'"),
        Case("zero bbox_std", target(bbox_stds=(0.1, 0.1, 0, 0.2)),
             r"proposal_target: attribute bbox_stds must be 4 numbers > 0"),
        Case("negative bbox_weight", target(bbox_weights=(1, 1, -1, 1)),
             r"proposal_target: attribute bbox_weights must be 4 numbers >= 0"),
        Case("normalization flag not a bool", target(bbox_normalization_precomputed="yes"),
             r"proposal_target: attribute bbox_normalization_precomputed must be True or "
             r"False, got 'yes'"),
        Case("class-agnostic with 3 classes", target(num_classes=3),
             r"proposal_target: attribute num_classes must be 2 with class_agnostic "
             r"regression, got '3'"),
        Case("missing attributes", target(batch_images=None, batch_rois=None),
             r"proposal_target: missing attribute batch_images, batch_rois"),
        Case("unknown attribute", target(batch_roi=64),
             r"proposal_target: unknown attribute batch_roi \(attributes: num_classes"),
        Case("rois with 4 columns", target_shapes((10, 4), (3, 5)),
             r"proposal_target: rois must have shape \(B \* N, 5\), got \(10, 4\)"),
        Case("gt_boxes 3-D", target_shapes((10, 5), (1, 3, 5)),
             r"proposal_target: gt_boxes must have shape \(B \* G, 5\), got \(1, 3, 5\)"),
        Case("rois do not split over the images", target_shapes((9, 5), (4, 5), batch_images=2),
             r"proposal_target: rois has 9 rows, which do not split over batch_images=2"),
        Case("gt rows do not split over the images",
             target_shapes((10, 5), (3, 5), batch_images=2),
             r"proposal_target: gt_boxes has 3 rows, which do not split over batch_images=2"),
        Case("builder", cfg_code(RCNN_CFG, BATCH_ROIS=100, BATCH_IMAGES=3)
             + "from lib.operator_py import proposal_target_symbol\n"
             "proposal_target_symbol(cfg, v('r'), v('g'), 5)",
             r"ValueError: proposal_target: attribute batch_rois must be -1 or a multiple of "
             r"batch_images \(3\), got '100'"),
    ],
    "BoxAnnotatorOHEM": [
        Case("num_classes 1", ohem(num_classes=1),
             rf"BoxAnnotatorOHEM: attribute num_classes must be {INT} >= 2, got '1'"),
        Case("num_reg_classes 0", ohem(num_reg_classes=0),
             rf"BoxAnnotatorOHEM: attribute num_reg_classes must be {INT} >= 1, got '0'"),
        Case("roi_per_img 0", ohem(roi_per_img=0),
             rf"BoxAnnotatorOHEM: attribute roi_per_img must be {INT} >= 1, got '0'"),
        Case("batch_images 0", ohem(batch_images=0),
             rf"BoxAnnotatorOHEM: attribute batch_images must be {INT} >= 1, got '0'"),
        Case("missing attribute", ohem(roi_per_img=None),
             r"BoxAnnotatorOHEM: missing attribute roi_per_img"),
        Case("unknown attribute", ohem(rois_per_img=4),
             r"BoxAnnotatorOHEM: unknown attribute rois_per_img"),
        Case("cls_score columns", ohem_shapes(cls=(8, 4)),
             r"BoxAnnotatorOHEM: cls_score must have shape \(R, 3\), got \(8, 4\)"),
        Case("bbox_pred columns", ohem_shapes(pred=(8, 4)),
             r"BoxAnnotatorOHEM: bbox_pred must have shape \(R, 4 \* 2\), got \(8, 4\)"),
        Case("bbox_targets columns", ohem_shapes(target=(8, 12)),
             r"BoxAnnotatorOHEM: bbox_targets must have shape \(R, 4 \* 2\), got \(8, 12\)"),
        Case("bbox_weights columns", ohem_shapes(weight=(8, 4)),
             r"BoxAnnotatorOHEM: bbox_weights must have shape \(R, 4 \* 2\), got \(8, 4\)"),
        Case("labels 2-D", ohem_shapes(label=(8, 1)),
             r"BoxAnnotatorOHEM: labels must have shape \(R,\), got \(8, 1\)"),
        Case("RoI counts differ", ohem_shapes(pred=(6, 8)),
             r"BoxAnnotatorOHEM: the inputs must have the same number of RoIs, got shapes "
             r"cls_score \(8, 3\), bbox_pred \(6, 8\)"),
        Case("RoIs do not split over the images", ohem_shapes(batch_images=3),
             r"BoxAnnotatorOHEM: 8 RoIs do not split over batch_images=3 images"),
        Case("builder", "from lib.operator_py import box_annotator_ohem_symbol\n"
             f"box_annotator_ohem_symbol({OHEM_INPUTS}, num_classes=3, num_reg_classes=2, "
             "roi_per_img=4, batch_images=0)",
             rf"ValueError: BoxAnnotatorOHEM: attribute batch_images must be {INT} >= 1, got '0'"),
    ],
}  # fmt: skip


# fpn_roi_pooling: maps p2..p5 (C = 8), offset weights w2..w5 and biases b2..b5, rois r.
FPN_MAPS = {"p2": (1, 8, 16, 16), "p3": (1, 8, 8, 8), "p4": (1, 8, 4, 4), "p5": (1, 8, 2, 2)}


def fpn(deformable: bool | str = False, **attrs) -> str:
    inputs = [f"data_{p}=v({p!r})" for p in FPN_MAPS]
    if deformable is True:
        inputs += [f"offset_{kind}_{p}=v('{kind[0]}{p[1]}')" for p in FPN_MAPS
                   for kind in ("weight", "bias")]  # fmt: skip
    args = ", ".join([*inputs, "rois=v('r')", f"with_deformable={deformable!r}"]
                     + [f"{k}={v!r}" for k, v in attrs.items()])  # fmt: skip
    return f"mx.sym.Custom(op_type='fpn_roi_pooling', {args})"


def fpn_shapes(deformable: bool = False, method: str = "infer_shape", **shapes) -> str:
    shapes = {**FPN_MAPS, "r": (10, 5), **shapes}
    args = ", ".join(f"{k}={v}" for k, v in shapes.items())
    ctx = "mx.cpu(), " if method == "simple_bind" else ""
    return f"{fpn(deformable)}.{method}({ctx}{args})"


FPN_SAME = r"fpn_roi_pooling: the pyramid levels must have the same batch size and channels, got"
FPN_BUILDER = "from lib.operator_py import fpn_roi_pooling_symbol\nfpn_roi_pooling_symbol"
FPN_FEATS = "[v('p2'), v('p3'), v('p4'), v('p5')]"
CASES["fpn_roi_pooling"] = [
    Case("feat_strides not powers of 2", fpn(feat_strides=(4, 8, 12)),
         r"fpn_roi_pooling: attribute feat_strides must be increasing powers of 2, got "
         r"'\(4, 8, 12\)'"),
    Case("feat_strides decreasing", fpn(feat_strides=(8, 4)),
         r"fpn_roi_pooling: attribute feat_strides must be increasing powers of 2, got "
         r"'\(8, 4\)'"),
    Case("no feat_strides", fpn(feat_strides=()),
         r"fpn_roi_pooling: attribute feat_strides must be one or more numbers >= 1, got '\(\)'"),
    Case("pooled_size 0", fpn(pooled_size=0),
         rf"fpn_roi_pooling: attribute pooled_size must be {INT} >= 1, got '0'"),
    Case("canonical_scale 0", fpn(canonical_scale=0),
         r"fpn_roi_pooling: attribute canonical_scale must be a number > 0, got '0'"),
    Case("canonical_level not an integer", fpn(canonical_level=1.5),
         rf"fpn_roi_pooling: attribute canonical_level must be {INT}, got '1.5'"),
    Case("trans_std above 1", fpn(True, trans_std=2),
         r"fpn_roi_pooling: attribute trans_std must be a number in \[0, 1\], got '2'"),
    Case("sample_per_part 0", fpn(True, sample_per_part=0),
         rf"fpn_roi_pooling: attribute sample_per_part must be {INT} >= 1, got '0'"),
    Case("with_deformable not a bool", fpn("maybe"),
         r"fpn_roi_pooling: attribute with_deformable must be True or False, got 'maybe'"),
    Case("unknown attribute", fpn(output_dim=256),
         r"fpn_roi_pooling: unknown attribute output_dim \(attributes: with_deformable, "
         r"feat_strides"),
    Case("imperative call", "mx.nd.Custom(*[mx.nd.zeros(s) for s in "
         f"{list(FPN_MAPS.values())}], mx.nd.zeros((2, 5)), op_type='fpn_roi_pooling', "
         "pooled_size=0)",
         rf"fpn_roi_pooling: attribute pooled_size must be {INT} >= 1, got '0'"),
    Case("levels with different channels", fpn_shapes(p3=(1, 4, 8, 8)),
         FPN_SAME + r" data_p2 \(1, 8, 16, 16\), data_p3 \(1, 4, 8, 8\), data_p4"),
    Case("levels with different batch sizes", fpn_shapes(p5=(2, 8, 2, 2)),
         FPN_SAME + r" .*, data_p5 \(2, 8, 2, 2\)"),
    Case("rois with 4 columns", fpn_shapes(r=(10, 4)),
         r"fpn_roi_pooling: rois must have shape \(R, 5\), got \(10, 4\)"),
    Case("rois 1-D", fpn_shapes(r=(10,)),
         r"fpn_roi_pooling: rois must have shape \(R, 5\), got \(10,\)"),
    Case("map 3-D", fpn_shapes(p2=(8, 16, 16)),
         r"fpn_roi_pooling: data_p2 must have shape \(N, C, H, W\), got \(8, 16, 16\)"),
    Case("offset weight for other channels", fpn_shapes(True, w3=(98, 196)),
         r"fpn_roi_pooling: offset_weight_p3 must have shape \(2 \* 7 \* 7, 7 \* 7 \* C\) = "
         r"\(98, 392\), got \(98, 196\)"),
    Case("offset bias", fpn_shapes(True, b5=(49,)),
         r"fpn_roi_pooling: offset_bias_p5 must have shape \(98,\), got \(49,\)"),
    Case("dtypes differ", f"{fpn()}.infer_type(p2='float32', r='float64')",
         r"fpn_roi_pooling: the inputs must have the same dtype, got data_p2 float32, "
         r"rois float64"),
    Case("float16", f"{fpn()}.infer_type(p2='float16')",
         r"fpn_roi_pooling: the inputs must be float32 or float64, got float16"),
    Case("channels differ at bind", fpn_shapes(True, "simple_bind", p4=(1, 16, 4, 4)),
         FPN_SAME + r" .*data_p4 \(1, 16, 4, 4\)"),
    Case("builder, one map missing", f"{FPN_BUILDER}({FPN_FEATS}[:3], v('r'), True)",
         r"ValueError: fpn_roi_pooling: 3 feature maps for 4 feat_strides \(4, 8, 16, 32\)"),
    Case("builder, strides", f"{FPN_BUILDER}({FPN_FEATS}, v('r'), True, feat_strides=(4, 6, "
         "16, 32))",
         r"ValueError: fpn_roi_pooling: attribute feat_strides must be increasing powers of 2"),
    Case("builder", f"{FPN_BUILDER}({FPN_FEATS}, v('r'), False, pooled_size=0)",
         rf"ValueError: fpn_roi_pooling: attribute pooled_size must be {INT} >= 1, got '0'"),
]  # fmt: skip

RUNNER = """
import sys
import mxnet as mx
import lib.operator_py
v = mx.sym.var
CASES = {cases!r}
for i, (name, code) in enumerate(CASES):
    print(f"<<< {{name}}", file=sys.stderr, flush=True)
    if i == len(CASES) - 1:
        exec(code)  # uncaught: the process must exit with status 1
    try:
        exec(code)
    except Exception as err:
        print(f">>> {{name}} raised {{type(err).__name__}}: {{err}}", file=sys.stderr, flush=True)
    else:
        print(f">>> {{name}} did not raise", file=sys.stderr, flush=True)
"""

_runs: dict[str, subprocess.CompletedProcess] = {}


def run_cases(op: str) -> subprocess.CompletedProcess:
    """One subprocess for all the cases of ``op`` (cached for the parametrized tests)."""
    if op not in _runs:
        code = RUNNER.format(cases=[(c.name, c.code) for c in CASES[op]])
        _runs[op] = run_python(code)
    return _runs[op]


def section(stderr: str, name: str) -> str | None:
    """The stderr printed while case ``name`` ran (None if it never started)."""
    parts = stderr.split(f"<<< {name}\n", 1)
    if len(parts) == 1:
        return None
    return parts[1].split("\n<<< ", 1)[0]


@pytest.mark.parametrize(
    "op, case",
    [(op, case) for op, cases in CASES.items() for case in cases],
    ids=[f"{op}: {case.name}" for op, cases in CASES.items() for case in cases],
)
def test_error_path_is_a_python_error(op, case):
    proc = run_cases(op)
    text = section(proc.stderr, case.name)
    tail = proc.stderr[-3000:]
    assert text is not None, (
        f"the process ended before this case (status {proc.returncode}):\n{tail}"
    )
    if case is CASES[op][-1]:  # the uncaught one
        assert_clean_failure(proc, case.message)
        assert "Traceback" in text
    else:
        assert f">>> {case.name} did not raise" not in text
        assert f">>> {case.name} raised " in text, (
            f"the process died in this case (status {proc.returncode}):\n{text[-3000:]}"
        )
    assert re.search(case.message, text), f"{case.message!r} not in:\n{text[-3000:]}"


# ---------------------------------------------------------------------------------------------
# The reported case: TRAIN.BATCH_IMAGES=0 killed the interpreter ("Segmentation fault: 11")
# when the training symbol was built, in BoxAnnotatorOHEM (OHEM on) or with a modulo by zero in
# proposal_target (OHEM off).


def test_batch_images_0_is_rejected_when_the_config_loads():
    proc = run_python(
        f"from lib.config import load_config\nload_config({RFCN_CFG!r}, ['TRAIN.BATCH_IMAGES=0'])\n"
    )
    assert_clean_failure(
        proc,
        r"ValueError: bad value for config key TRAIN\.BATCH_IMAGES in --set "
        r"TRAIN\.BATCH_IMAGES=0: expected an integer >= 1, got 0",
    )


@pytest.mark.parametrize(
    "path, arch, ohem",
    [(RFCN_CFG, "rfcn", True), (RCNN_CFG, "faster_rcnn", False)],
    ids=["R-FCN, OHEM on", "Faster R-CNN, OHEM off"],
)
def test_training_symbol_with_batch_images_0_is_a_python_error(path, arch, ohem):
    """The config check bypassed (a config changed in code): building the symbol raises."""
    code = textwrap.dedent(f"""
        from lib.config import load_config
        from {arch}.symbols import SYMBOLS
        cfg = load_config({path!r})
        assert cfg.TRAIN.ENABLE_OHEM is {ohem}
        cfg.TRAIN.BATCH_IMAGES = 0
        sym = SYMBOLS[cfg.symbol](cfg, is_train=True)
        sym.infer_shape(data=(1, 3, 128, 128), im_info=(1, 3), gt_boxes=(1, 5, 5))
    """)
    assert_clean_failure(
        run_python(code),
        r"ValueError: proposal_target: attribute batch_images must be an integer >= 1, got '0'",
    )


# ---------------------------------------------------------------------------------------------
# The MXNet behaviour this design rests on (lib/operator_py/base.py), on a toy op.

TOY = """
import sys
import mxnet as mx
WHERE = sys.argv[1] if len(sys.argv) > 1 else {where!r}

class Op(mx.operator.CustomOp):
    def forward(self, is_train, req, in_data, out_data, aux):
        self.assign(out_data[0], req[0], in_data[0])

@mx.operator.register("toy")
class Prop(mx.operator.CustomOpProp):
    def __init__(self):
        super().__init__(need_top_grad=False)
        if WHERE == "__init__":
            raise ValueError("toy failed in __init__")
    def list_arguments(self):
        if WHERE == "list_arguments":
            raise ValueError("toy failed in list_arguments")
        return ["data"]
    def list_outputs(self):
        return ["output"]
    def infer_shape(self, in_shape):
        if WHERE == "infer_shape":
            raise ValueError("toy failed in infer_shape")
        return in_shape, [in_shape[0]], []
    def infer_type(self, in_type):
        if WHERE == "infer_type":
            raise ValueError("toy failed in infer_type")
        return in_type, [in_type[0]], []
    def create_operator(self, ctx, shapes, dtypes):
        if WHERE == "create_operator":
            raise ValueError("toy failed in create_operator")
        return Op()

sym = mx.sym.Custom(data=mx.sym.var("data"), op_type="toy")
sym.simple_bind(mx.cpu(), data=(2, 3))
"""


def test_mxnet_crashes_on_an_exception_in_a_prop_constructor():
    """Why the props never raise in ``__init__`` (this is MXNet's behaviour, not ours)."""
    proc = run_python(TOY.format(where="__init__"))
    assert proc.returncode != 1 and (proc.returncode < 0 or proc.returncode == 255)
    assert "toy failed in __init__" in proc.stderr
    assert proc.returncode < 0 or "Segmentation fault" in proc.stderr


def test_mxnet_reports_exceptions_in_the_other_prop_callbacks():
    """list_arguments / infer_shape / infer_type / create_operator: an MXNetError (the reason is
    printed to stdout by MXNet), in the calling thread."""
    code = TOY.format(where="none") + textwrap.dedent("""
        for WHERE in ("list_arguments", "infer_shape", "infer_type", "create_operator"):
            try:
                sym = mx.sym.Custom(data=mx.sym.var("data"), op_type="toy")
                sym.simple_bind(mx.cpu(), data=(2, 3))
            except (mx.base.MXNetError, RuntimeError) as err:
                print(f"{WHERE}: {type(err).__name__}", file=sys.stderr)
        WHERE = "infer_shape"
        sym.simple_bind(mx.cpu(), data=(2, 3))
    """)
    proc = run_python(code)
    assert proc.returncode == 1, proc.stderr[-3000:]
    for where in ("list_arguments", "infer_shape", "infer_type", "create_operator"):
        assert f"toy failed in {where}" in proc.stdout
    assert "list_arguments: MXNetError" in proc.stderr
    for where in ("infer_shape", "infer_type", "create_operator"):
        assert f"{where}: RuntimeError" in proc.stderr  # simple_bind wraps the MXNetError
