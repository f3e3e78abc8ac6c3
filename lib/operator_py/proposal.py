"""RPN proposals as Python CustomOps: ``proposal`` (one feature map, Faster R-CNN, Ren et al.)
and ``pyramid_proposal`` (all levels of a feature pyramid at once, FPN, Lin et al.).

Inputs of ``proposal``, for the B images of one device (the original took one):

- ``cls_prob`` (B, 2A, H, W): RPN softmax; channels ``[0, A)`` are background, ``[A, 2A)``
  foreground, anchor ``a`` at channel ``A + a``.
- ``bbox_pred`` (B, 4A, H, W): deltas ``(dx, dy, dw, dh)`` of anchor ``a`` at channels
  ``4a..4a+3``.
- ``im_info`` (B, 3): ``(height, width, scale)`` of each (resized, unpadded) image.

``pyramid_proposal`` takes the same per level, level ``l`` of stride ``s_l`` (attribute
``feat_stride``, e.g. ``(4, 8, 16, 32, 64)`` for P2..P6), as ``rpn_cls_prob_stride{s_l}`` (B, 2A,
H_l, W_l) for every level, then ``rpn_bbox_pred_stride{s_l}`` (B, 4A, H_l, W_l) for every level,
then ``im_info`` (the original networks' argument names). Every level has the same A anchors.

Outputs (both ops): ``output`` (B * post_nms_top_n, 5) rois ``(batch index b, x1, y1, x2, y2)``,
image after image (rows ``[b * post_nms_top_n, (b + 1) * post_nms_top_n)`` belong to image b),
and, with ``output_score``, ``score`` (B * post_nms_top_n, 1). Each image is processed on its own.

Steps, per image. For each level (:func:`decode_level`): anchors (py-faster-rcnn, base size =
the level's stride) at every position of the feature map cropped to ``int(im_info[:2] /
stride)``; decode; clip to ``[0, W-1] x [0, H-1]``; mark boxes with a side ``< rpn_min_size *
im_info[2]``. Then once over all levels (:func:`select_proposals`): drop the marked boxes;
top ``rpn_pre_nms_top_n`` by score; NMS at ``threshold``; top ``rpn_post_nms_top_n``; pad to
exactly ``rpn_post_nms_top_n`` rows by repeating the kept boxes cyclically. The pyramid's merge
is global (as the original): one top-N and one NMS over the boxes of every level, so a level
gets as many proposals as its scores earn. ``proposal`` is the one-level case of the same code.

Differences from MXNet's C++ ``_contrib_Proposal`` (which uses the same anchors, position-major
proposal order, decoding, clipping and +1 IoU): the C++ op keeps positions outside the
cropped map and boxes below the minimum size but gives them score -1 (enlarging the small ones
by ``min_size / 2`` per side), so they can only fill the output when fewer valid boxes survive;
it computes in float32 and suppresses at IoU ``> threshold`` where the CPU NMS here suppresses
at ``>= threshold``; our decoding clamps ``dw, dh`` at ``log(1000 / 16)``. With enough valid
boxes the outputs agree (``tests/lib/test_operator_py.py``). MXNet has no pyramid version.

Fixes over the original Python ops: NMS runs on the CPU (Cython) unless the input lives on a GPU
and the CUDA NMS is built; padding is deterministic (cyclic, as the C++ op) instead of
``npr.choice``; several images per device; no crash when no box survives the size filter, nor
for an image smaller than one feature cell (its first cell is used); the pyramid op reads its
levels by position for any ``feat_stride`` order (the original hard-coded ``(4, ..., 64)``);
attributes and input shapes are checked when the symbol is built and bound, never in
``forward`` (see :mod:`lib.operator_py.base`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import mxnet as mx
import numpy as np

from lib.bbox.bbox_transform import bbox_pred, clip_boxes, filter_boxes
from lib.config.defaults import COUNT, FRACTION, Int, Num
from lib.nms.nms import cpu_nms_wrapper, gpu_nms_wrapper
from lib.operator_py.base import (
    CheckedProp,
    bool_attr,
    check_attrs,
    float_attr,
    floats_attr,
    int_attr,
    known,
    parse_bool,
    parse_floats,
)
from lib.rpn.generate_anchor import generate_anchors

logger = logging.getLogger(__name__)

NmsFn = Callable[[np.ndarray], Sequence[int]]


__all__ = [
    "LevelProposals",
    "ProposalProp",
    "PyramidProposalProp",
    "decode_level",
    "generate_proposals",
    "parse_bool",
    "parse_floats",
    "proposal_symbol",
    "pyramid_proposal_arguments",
    "pyramid_proposal_symbol",
    "select_proposals",
]


def shifted_anchors(anchors: np.ndarray, height: int, width: int, stride: int) -> np.ndarray:
    """(height * width * A, 4) anchors at every position, position-major (row, col, anchor)."""
    shift_x, shift_y = np.meshgrid(np.arange(width) * stride, np.arange(height) * stride)
    shifts = np.stack([shift_x.ravel(), shift_y.ravel()] * 2, axis=1).astype(np.float64)
    return (anchors[None, :, :] + shifts[:, None, :]).reshape(-1, 4)


def _cells(size: float, stride: int, limit: int) -> int:
    """Feature cells covering ``size`` input pixels: ``int(size / stride)``, at least 1 (an
    image smaller than one cell still has its first), at most ``limit`` (the map); a
    non-finite size (corrupt ``im_info``) takes the whole map rather than raising."""
    cells = size / stride
    if not math.isfinite(cells):
        return limit
    return min(max(int(cells), 1), limit)


class LevelProposals(NamedTuple):
    """The decoded boxes of one feature map of one image, position-major (row, col, anchor)."""

    #: (N, 4) float64 boxes, clipped to the image.
    boxes: np.ndarray
    #: (N,) foreground probabilities.
    scores: np.ndarray
    #: (N,) bool: both sides >= the minimum size. :func:`select_proposals` applies it, so that
    #: when no box of any level passes it can keep the small ones.
    large: np.ndarray


def decode_level(
    fg_scores: np.ndarray,
    bbox_deltas: np.ndarray,
    im_info: np.ndarray,
    anchors: np.ndarray,
    feat_stride: int,
    min_size: float,
) -> LevelProposals:
    """Anchors, decoding, clipping and the size filter of one feature map of one image.

    Args:
        fg_scores: (A, H, W) foreground probabilities.
        bbox_deltas: (4A, H, W) deltas.
        im_info: ``(height, width, scale)``.
        anchors: (A, 4) reference anchors (base size ``feat_stride``).
        feat_stride: stride of the feature map in input pixels.
        min_size: minimum side, in pixels of the original image (scaled by ``im_info[2]``).
    """
    num_anchors = anchors.shape[0]
    # The real image size, not the padded feature map.
    height = _cells(im_info[0], feat_stride, fg_scores.shape[1])
    width = _cells(im_info[1], feat_stride, fg_scores.shape[2])

    all_anchors = shifted_anchors(anchors, height, width, feat_stride)
    deltas = bbox_deltas[:, :height, :width].reshape(num_anchors, 4, height, width)
    deltas = deltas.transpose(2, 3, 0, 1).reshape(-1, 4).astype(np.float64)
    scores = fg_scores[:, :height, :width].transpose(1, 2, 0).reshape(-1)

    # An empty image (a loader bug) is clipped as one pixel rather than to negative sides.
    size = (max(im_info[0], 1.0), max(im_info[1], 1.0))
    boxes = clip_boxes(bbox_pred(all_anchors, deltas), size)
    large = np.zeros(boxes.shape[0], dtype=bool)
    large[filter_boxes(boxes, min_size * im_info[2])] = True
    return LevelProposals(boxes, scores, large)


def select_proposals(
    levels: Sequence[LevelProposals],
    pre_nms_top_n: int,
    post_nms_top_n: int,
    nms: NmsFn,
    op_type: str = "proposal",
) -> tuple[np.ndarray, np.ndarray]:
    """Merges the levels of one image and selects its proposals (see the module docstring).

    Args:
        levels: the decoded levels, in ``feat_stride`` order (ties in score go to the earlier
            level, then to the earlier position).
        pre_nms_top_n: boxes kept before NMS (<= 0: all).
        post_nms_top_n: number of output rows (> 0).
        nms: ``dets (N, 5) float32 -> kept indices``, in descending score order.
        op_type: names the op in warnings.

    Returns:
        ``(rois, scores)``: (post_nms_top_n, 5) float32 with batch index 0, and
        (post_nms_top_n, 1) float32.
    """
    boxes = np.concatenate([level.boxes for level in levels])
    scores = np.concatenate([level.scores for level in levels])
    keep = np.flatnonzero(np.concatenate([level.large for level in levels]))
    if keep.size == 0 and boxes.shape[0] > 0:
        logger.warning(
            "%s: no box has both sides >= rpn_min_size * im_info[2]; keeping the small ones",
            op_type,
        )
        keep = np.arange(boxes.shape[0])
    if keep.size == 0:
        # Only empty score maps get here (a bound network never has one): no box to propose,
        # so output zero-size boxes at (0, 0) with score 0 rather than raise.
        logger.warning("%s: empty feature map(s), no position to propose from", op_type)
        rois = np.zeros((post_nms_top_n, 5), dtype=np.float32)
        return rois, np.zeros((post_nms_top_n, 1), dtype=np.float32)
    boxes, scores = boxes[keep], scores[keep]

    order = np.argsort(-scores, kind="stable")
    if pre_nms_top_n > 0:
        order = order[:pre_nms_top_n]
    boxes, scores = boxes[order], scores[order]

    dets = np.hstack((boxes, scores[:, None])).astype(np.float32)
    keep = np.asarray(nms(dets), dtype=np.int64)[:post_nms_top_n]
    # Pad to a fixed size by cycling through the kept boxes (as the C++ op).
    keep = np.resize(keep, post_nms_top_n)

    rois = np.zeros((post_nms_top_n, 5), dtype=np.float32)
    rois[:, 1:] = boxes[keep]
    return rois, scores[keep].astype(np.float32)[:, None]


def generate_proposals(
    fg_scores: np.ndarray,
    bbox_deltas: np.ndarray,
    im_info: np.ndarray,
    anchors: np.ndarray,
    feat_stride: int,
    pre_nms_top_n: int,
    post_nms_top_n: int,
    min_size: float,
    nms: NmsFn,
) -> tuple[np.ndarray, np.ndarray]:
    """The proposals of one image from one feature map: :func:`decode_level` then
    :func:`select_proposals` (see both for the arguments and the result)."""
    level = decode_level(fg_scores, bbox_deltas, im_info, anchors, feat_stride, min_size)
    return select_proposals([level], pre_nms_top_n, post_nms_top_n, nms)


class ProposalOperator(mx.operator.CustomOp):
    """Forward of both ops, image by image: :func:`decode_level` for each level, then
    :func:`select_proposals`; backward: zero gradients.

    ``in_data`` is ``[cls_prob of each level, bbox_pred of each level, im_info]``, so
    ``proposal`` is the one-level case.
    """

    def __init__(
        self,
        op_type: str,
        feat_strides: Sequence[int],
        scales: Sequence[float],
        ratios: Sequence[float],
        output_score: bool,
        rpn_pre_nms_top_n: int,
        rpn_post_nms_top_n: int,
        threshold: float,
        rpn_min_size: float,
    ) -> None:
        super().__init__()
        self._op_type = op_type
        self._feat_strides = tuple(feat_strides)
        self._anchors = [
            generate_anchors(base_size=stride, scales=scales, ratios=ratios)
            for stride in self._feat_strides
        ]
        self._output_score = output_score
        self._pre_nms_top_n = rpn_pre_nms_top_n
        self._post_nms_top_n = rpn_post_nms_top_n
        self._threshold = threshold
        self._min_size = rpn_min_size
        self._nms: NmsFn | None = None

    def _get_nms(self, ctx: mx.Context) -> NmsFn:
        if self._nms is None:
            if ctx.device_type == "gpu":
                try:
                    self._nms = gpu_nms_wrapper(self._threshold, ctx.device_id)
                except RuntimeError as err:
                    logger.warning("%s: %s; using the CPU NMS", self._op_type, err)
            if self._nms is None:
                self._nms = cpu_nms_wrapper(self._threshold)
        return self._nms

    def forward(self, is_train, req, in_data, out_data, aux):
        # The shapes were checked by the prop's infer_shape when the symbol was bound.
        num_levels = len(self._feat_strides)
        cls_probs = [x.asnumpy() for x in in_data[:num_levels]]
        deltas = [x.asnumpy() for x in in_data[num_levels : 2 * num_levels]]
        im_info = in_data[2 * num_levels].asnumpy()
        if not np.isfinite(im_info).all():
            logger.warning("%s: non-finite im_info %s", self._op_type, im_info.tolist())
        nms = self._get_nms(in_data[0].context)
        all_rois, all_scores = [], []
        for b in range(cls_probs[0].shape[0]):
            levels = [
                decode_level(
                    fg_scores=cls_prob[b, anchors.shape[0] :],
                    bbox_deltas=delta[b],
                    im_info=im_info[b],
                    anchors=anchors,
                    feat_stride=stride,
                    min_size=self._min_size,
                )
                for cls_prob, delta, anchors, stride in zip(
                    cls_probs, deltas, self._anchors, self._feat_strides
                )
            ]
            rois, scores = select_proposals(
                levels, self._pre_nms_top_n, self._post_nms_top_n, nms, self._op_type
            )
            rois[:, 0] = b
            all_rois.append(rois)
            all_scores.append(scores)
        self.assign(out_data[0], req[0], mx.nd.array(np.concatenate(all_rois)))
        if self._output_score:
            self.assign(out_data[1], req[1], mx.nd.array(np.concatenate(all_scores)))

    def backward(self, req, out_grad, in_data, out_data, in_grad, aux):
        for i in range(len(in_grad)):
            self.assign(in_grad[i], req[i], 0)


class _ProposalPropBase(CheckedProp):
    """What ``proposal`` and ``pyramid_proposal`` share: all attributes but ``feat_stride``,
    the outputs, the shape checks (per level) and the operator. Subclasses set
    ``self._feat_strides`` in ``parse`` and list the inputs as ``[cls_prob of each level,
    bbox_pred of each level, im_info]``."""

    _feat_strides: tuple[int, ...]

    def _parse_common(
        self,
        scales: str,
        ratios: str,
        output_score: str,
        rpn_pre_nms_top_n: str,
        rpn_post_nms_top_n: str,
        threshold: str,
        rpn_min_size: str,
    ) -> None:
        self._scales = floats_attr("scales", scales, Num(above=0))
        self._ratios = floats_attr("ratios", ratios, Num(above=0))
        self._output_score = bool_attr("output_score", output_score)
        self._pre_nms_top_n = int_attr("rpn_pre_nms_top_n", rpn_pre_nms_top_n, Int())
        self._post_nms_top_n = int_attr("rpn_post_nms_top_n", rpn_post_nms_top_n, COUNT)
        self._threshold = float_attr("threshold", threshold, FRACTION)
        self._min_size = float_attr("rpn_min_size", rpn_min_size, Num(min=0))

    def list_outputs(self):
        return ["output", "score"] if self._output_score else ["output"]

    def infer_shape(self, in_shape):
        num_levels = len(self._feat_strides)
        inputs = list(zip(self.list_arguments(), in_shape))[: 2 * num_levels]
        a = len(self._scales) * len(self._ratios)
        for (cls_name, cls_shape), (bbox_name, bbox_shape) in zip(
            inputs[:num_levels], inputs[num_levels:]
        ):
            self.expect_shape(
                cls_name, cls_shape, (None, 2 * a, None, None), f"(B, 2 * {a} anchors, H, W)"
            )
            self.expect_shape(
                bbox_name, bbox_shape, (None, 4 * a, None, None), f"(B, 4 * {a} anchors, H, W)"
            )
            if known(cls_shape) and known(bbox_shape):
                if (cls_shape[0], *cls_shape[2:]) != (bbox_shape[0], *bbox_shape[2:]):
                    self.fail(
                        f"{cls_name} {tuple(cls_shape)} and {bbox_name} {tuple(bbox_shape)} "
                        "must have the same batch size and map size"
                    )
        batches = [(name, shape) for name, shape in inputs if shape and shape[0] > 0]
        if len({shape[0] for _, shape in batches}) > 1:
            self.fail(
                "the inputs must have the same batch size, got "
                + ", ".join(f"{name} {tuple(shape)}" for name, shape in batches)
            )
        if not batches:  # partial inference: nothing known yet
            return in_shape, [()] * len(self.list_outputs()), []
        batch = batches[0][1][0]
        outputs = [(batch * self._post_nms_top_n, 5)]
        if self._output_score:
            outputs.append((batch * self._post_nms_top_n, 1))
        return [*in_shape[: 2 * num_levels], (batch, 3)], outputs, []

    def create_operator(self, ctx, shapes, dtypes):
        return ProposalOperator(
            self.op_type,
            self._feat_strides,
            self._scales,
            self._ratios,
            self._output_score,
            self._pre_nms_top_n,
            self._post_nms_top_n,
            self._threshold,
            self._min_size,
        )


@mx.operator.register("proposal")
class ProposalProp(_ProposalPropBase):
    """Attributes and defaults as the original ``proposal`` op (see :meth:`parse`)."""

    op_type = "proposal"
    arguments = ("cls_prob", "bbox_pred", "im_info")

    def parse(
        self,
        feat_stride: str = "16",
        scales: str = "(8, 16, 32)",
        ratios: str = "(0.5, 1, 2)",
        output_score: str = "False",
        rpn_pre_nms_top_n: str = "6000",
        rpn_post_nms_top_n: str = "300",
        threshold: str = "0.3",
        rpn_min_size: str = "16",
    ) -> None:
        """``feat_stride`` >= 1; ``scales`` and ``ratios`` of the anchors, > 0;
        ``rpn_pre_nms_top_n`` boxes before NMS (<= 0: all); ``rpn_post_nms_top_n`` output rows
        per image, >= 1; NMS ``threshold`` in [0, 1]; ``rpn_min_size`` >= 0 pixels."""
        self._feat_strides = (int_attr("feat_stride", feat_stride, COUNT),)
        self._parse_common(
            scales, ratios, output_score, rpn_pre_nms_top_n, rpn_post_nms_top_n, threshold,
            rpn_min_size,
        )  # fmt: skip


def _strides_attr(text: str) -> tuple[int, ...]:
    """Attribute ``feat_stride`` of ``pyramid_proposal`` (``'(4, 8, 16, 32, 64)'``, ``'16'``)
    as distinct integers >= 1 (distinct: each names two inputs), else ValueError."""
    try:
        values = parse_floats(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        values = ()
    strides = tuple(int(v) for v in values if v.is_integer() and v >= 1)
    if not values or len(strides) != len(values) or len(set(strides)) != len(strides):
        raise ValueError(
            f"attribute feat_stride must be one or more distinct {COUNT.describe(plural=True)}, "
            f"got {text!r}"
        )
    return strides


def pyramid_proposal_arguments(feat_strides: Sequence[int]) -> list[str]:
    """The inputs of ``pyramid_proposal``, as the original networks name them."""
    return (
        [f"rpn_cls_prob_stride{s}" for s in feat_strides]
        + [f"rpn_bbox_pred_stride{s}" for s in feat_strides]
        + ["im_info"]
    )


@mx.operator.register("pyramid_proposal")
class PyramidProposalProp(_ProposalPropBase):
    """The original FPN ``pyramid_proposal`` op (see :meth:`parse`); inputs
    :func:`pyramid_proposal_arguments`."""

    op_type = "pyramid_proposal"

    def parse(
        self,
        feat_stride: str = "(4, 8, 16, 32, 64)",
        scales: str = "(8,)",
        ratios: str = "(0.5, 1, 2)",
        output_score: str = "False",
        rpn_pre_nms_top_n: str = "12000",
        rpn_post_nms_top_n: str = "2000",
        threshold: str = "0.3",
        rpn_min_size: str = "16",
    ) -> None:
        """``feat_stride``: the stride of each level, distinct integers >= 1 (the original's
        default listed them from 64 down, but its forward read the inputs as 4 up to 64: the
        inputs here follow ``feat_stride`` in any order); the others as ``proposal``'s."""
        self._feat_strides = _strides_attr(feat_stride)
        self._parse_common(
            scales, ratios, output_score, rpn_pre_nms_top_n, rpn_post_nms_top_n, threshold,
            rpn_min_size,
        )  # fmt: skip

    def list_arguments(self) -> list[str]:
        super().list_arguments()  # raises the attribute error kept by the constructor
        return pyramid_proposal_arguments(self._feat_strides)


def _phase_attrs(cfg: Any, is_train: bool, output_score: bool) -> dict[str, Any]:
    """The attributes both proposal ops take from the config, but ``feat_stride``."""
    phase = cfg.TRAIN if is_train else cfg.TEST
    return {
        "scales": tuple(float(s) for s in cfg.network.ANCHOR_SCALES),
        "ratios": tuple(float(r) for r in cfg.network.ANCHOR_RATIOS),
        "rpn_pre_nms_top_n": int(phase.RPN_PRE_NMS_TOP_N),
        "rpn_post_nms_top_n": int(phase.RPN_POST_NMS_TOP_N),
        "threshold": float(phase.RPN_NMS_THRESH),
        "rpn_min_size": int(phase.RPN_MIN_SIZE),
        "output_score": bool(output_score),
    }


def proposal_symbol(
    cfg: Any,
    is_train: bool,
    cls_prob: mx.sym.Symbol,
    bbox_pred: mx.sym.Symbol,
    im_info: mx.sym.Symbol,
    name: str = "rois",
    output_score: bool = False,
) -> mx.sym.Symbol:
    """The RPN proposal layer of a detection symbol, configured from ``cfg``.

    Uses MXNet's C++ ``mx.sym.contrib.Proposal`` (``MultiProposal`` for several images per
    device: the phase's ``BATCH_IMAGES`` > 1) when ``cfg.TRAIN.CXX_PROPOSAL`` (training) or
    ``cfg.TEST.CXX_PROPOSAL`` (testing) is set, else the Python ``proposal`` CustomOp; both get
    ``network.RPN_FEAT_STRIDE``, ``ANCHOR_SCALES``, ``ANCHOR_RATIOS`` and the phase's
    ``RPN_PRE_NMS_TOP_N``, ``RPN_POST_NMS_TOP_N``, ``RPN_NMS_THRESH``, ``RPN_MIN_SIZE``. Both
    output ``post_nms_top_n`` rows per image, image after image, with the image's batch index.

    Args:
        cfg: the experiment config.
        is_train: use the ``TRAIN`` (else ``TEST``) settings.
        cls_prob: (B, 2A, H, W) RPN probabilities (background channels first).
        bbox_pred: (B, 4A, H, W) RPN deltas.
        im_info: (B, 3) image info.
        name: layer name (``'rois'`` in the original networks).
        output_score: also output the (N, 1) scores.

    Raises:
        ValueError: a value out of the op's range, e.g. ``proposal: attribute
            rpn_post_nms_top_n must be an integer >= 1, got '0'``.
    """
    phase = cfg.TRAIN if is_train else cfg.TEST
    attrs = _phase_attrs(cfg, is_train, output_score)
    stride = int(cfg.network.RPN_FEAT_STRIDE)
    # The C++ ops take the same values; either way a bad one is a ValueError here.
    check_attrs(ProposalProp, {"feat_stride": stride, **attrs})
    if phase.CXX_PROPOSAL:
        op = mx.sym.contrib.MultiProposal if phase.BATCH_IMAGES > 1 else mx.sym.contrib.Proposal
        return op(
            cls_prob=cls_prob,
            bbox_pred=bbox_pred,
            im_info=im_info,
            name=name,
            feature_stride=stride,
            **attrs,
        )
    return mx.sym.Custom(
        cls_prob=cls_prob,
        bbox_pred=bbox_pred,
        im_info=im_info,
        name=name,
        op_type="proposal",
        feat_stride=stride,
        **attrs,
    )


def pyramid_proposal_symbol(
    cfg: Any,
    is_train: bool,
    cls_probs: Sequence[mx.sym.Symbol],
    bbox_preds: Sequence[mx.sym.Symbol],
    im_info: mx.sym.Symbol,
    name: str = "rois",
    output_score: bool = False,
) -> mx.sym.Symbol:
    """The FPN proposal layer over all pyramid levels (the Python ``pyramid_proposal`` op).

    Configured as :func:`proposal_symbol`, with one level per stride of
    ``network.RPN_FEAT_STRIDE`` (a list for FPN: ``[4, 8, 16, 32, 64]``).

    Args:
        cfg: the experiment config.
        is_train: use the ``TRAIN`` (else ``TEST``) settings.
        cls_probs: per level, in ``RPN_FEAT_STRIDE`` order, (B, 2A, H_l, W_l) RPN probabilities.
        bbox_preds: per level, likewise, (B, 4A, H_l, W_l) RPN deltas.
        im_info: (B, 3) image info.
        name: layer name (``'rois'`` in the original networks).
        output_score: also output the (N, 1) scores.

    Raises:
        ValueError: a value out of the op's range; the phase's ``CXX_PROPOSAL`` set (MXNet has
            no C++ pyramid proposal); not one ``cls_probs`` and ``bbox_preds`` per stride.
    """
    phase_name = "TRAIN" if is_train else "TEST"
    phase = cfg[phase_name]
    strides = cfg.network.RPN_FEAT_STRIDE
    strides = tuple(strides) if isinstance(strides, (list, tuple)) else (strides,)
    attrs = {"feat_stride": strides, **_phase_attrs(cfg, is_train, output_score)}
    check_attrs(PyramidProposalProp, attrs)
    if phase.CXX_PROPOSAL:
        raise ValueError(
            "pyramid_proposal: MXNet has no C++ pyramid proposal, the pyramid proposal is the "
            f"Python op: set {phase_name}.CXX_PROPOSAL false"
        )
    if len(cls_probs) != len(strides) or len(bbox_preds) != len(strides):
        raise ValueError(
            f"pyramid_proposal: network.RPN_FEAT_STRIDE {list(strides)} has {len(strides)} "
            f"levels, got {len(cls_probs)} cls_probs and {len(bbox_preds)} bbox_preds"
        )
    inputs = dict(zip(pyramid_proposal_arguments(strides), [*cls_probs, *bbox_preds, im_info]))
    return mx.sym.Custom(name=name, op_type="pyramid_proposal", **inputs, **attrs)
