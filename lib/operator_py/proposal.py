"""RPN proposals as a Python CustomOp (``op_type='proposal'``), from Faster R-CNN (Ren et al.).

Inputs, for the B images of one device (the original took one):

- ``cls_prob`` (B, 2A, H, W): RPN softmax; channels ``[0, A)`` are background, ``[A, 2A)``
  foreground, anchor ``a`` at channel ``A + a``.
- ``bbox_pred`` (B, 4A, H, W): deltas ``(dx, dy, dw, dh)`` of anchor ``a`` at channels
  ``4a..4a+3``.
- ``im_info`` (B, 3): ``(height, width, scale)`` of each (resized, unpadded) image.

Outputs: ``output`` (B * post_nms_top_n, 5) rois ``(batch index b, x1, y1, x2, y2)``, image
after image (rows ``[b * post_nms_top_n, (b + 1) * post_nms_top_n)`` belong to image b), and,
with ``output_score``, ``score`` (B * post_nms_top_n, 1). Each image is processed on its own.

Steps: anchors (py-faster-rcnn, base size = feat_stride) at every position of the feature map
cropped to ``int(im_info[:2] / feat_stride)``; decode; clip to ``[0, W-1] x [0, H-1]``; drop
boxes with a side ``< rpn_min_size * im_info[2]``; top ``rpn_pre_nms_top_n`` by score; NMS at
``threshold``; top ``rpn_post_nms_top_n``; pad to exactly ``rpn_post_nms_top_n`` rows by
repeating the kept boxes cyclically.

Differences from MXNet's C++ ``_contrib_Proposal`` (which uses the same anchors, position-major
proposal order, decoding, clipping and +1 IoU): the C++ op keeps positions outside the
cropped map and boxes below the minimum size but gives them score -1 (enlarging the small ones
by ``min_size / 2`` per side), so they can only fill the output when fewer valid boxes survive;
it computes in float32 and suppresses at IoU ``> threshold`` where the CPU NMS here suppresses
at ``>= threshold``; our decoding clamps ``dw, dh`` at ``log(1000 / 16)``. With enough valid
boxes the outputs agree (``tests/lib/test_operator_py.py``).

Fixes over the original Python op: NMS runs on the CPU (Cython) unless the input lives on a GPU
and the CUDA NMS is built; padding is deterministic (cyclic, as the C++ op) instead of
``npr.choice``; no crash when no box survives the size filter, nor for an image smaller than one
feature cell (its first cell is used); attributes and input shapes are checked when the symbol
is built and bound, never in ``forward`` (see :mod:`lib.operator_py.base`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

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


__all__ = ["ProposalProp", "generate_proposals", "parse_bool", "parse_floats", "proposal_symbol"]


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
    """The proposal computation of one image (see the module docstring).

    Args:
        fg_scores: (A, H, W) foreground probabilities.
        bbox_deltas: (4A, H, W) deltas.
        im_info: ``(height, width, scale)``.
        anchors: (A, 4) reference anchors.
        feat_stride: stride of the feature map in input pixels.
        pre_nms_top_n: boxes kept before NMS (<= 0: all).
        post_nms_top_n: number of output rows (> 0).
        min_size: minimum side, in pixels of the original image (scaled by ``im_info[2]``).
        nms: ``dets (N, 5) float32 -> kept indices``, in descending score order.

    Returns:
        ``(rois, scores)``: (post_nms_top_n, 5) float32 with batch index 0, and
        (post_nms_top_n, 1) float32.
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
    proposals = clip_boxes(bbox_pred(all_anchors, deltas), size)

    keep = filter_boxes(proposals, min_size * im_info[2])
    if keep.size == 0 and proposals.shape[0] > 0:
        logger.warning(
            "proposal: no box has both sides >= %.1f px; keeping the small ones",
            min_size * im_info[2],
        )
        keep = np.arange(proposals.shape[0])
    if keep.size == 0:
        # Only an empty score map gets here (a bound network never has one): no box to
        # propose, so output zero-size boxes at (0, 0) with score 0 rather than raise.
        logger.warning("proposal: empty feature map for im_info %s", tuple(im_info))
        rois = np.zeros((post_nms_top_n, 5), dtype=np.float32)
        return rois, np.zeros((post_nms_top_n, 1), dtype=np.float32)
    proposals, scores = proposals[keep], scores[keep]

    order = np.argsort(-scores, kind="stable")
    if pre_nms_top_n > 0:
        order = order[:pre_nms_top_n]
    proposals, scores = proposals[order], scores[order]

    dets = np.hstack((proposals, scores[:, None])).astype(np.float32)
    keep = np.asarray(nms(dets), dtype=np.int64)[:post_nms_top_n]
    # Pad to a fixed size by cycling through the kept boxes (as the C++ op).
    keep = np.resize(keep, post_nms_top_n)

    rois = np.zeros((post_nms_top_n, 5), dtype=np.float32)
    rois[:, 1:] = proposals[keep]
    return rois, scores[keep].astype(np.float32)[:, None]


class ProposalOperator(mx.operator.CustomOp):
    """Forward: :func:`generate_proposals`; backward: zero gradients."""

    def __init__(
        self,
        feat_stride: int,
        scales: Sequence[float],
        ratios: Sequence[float],
        output_score: bool,
        rpn_pre_nms_top_n: int,
        rpn_post_nms_top_n: int,
        threshold: float,
        rpn_min_size: float,
    ) -> None:
        super().__init__()
        self._feat_stride = feat_stride
        self._anchors = generate_anchors(base_size=feat_stride, scales=scales, ratios=ratios)
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
                    logger.warning("proposal: %s; using the CPU NMS", err)
            if self._nms is None:
                self._nms = cpu_nms_wrapper(self._threshold)
        return self._nms

    def forward(self, is_train, req, in_data, out_data, aux):
        # The shapes were checked by ProposalProp.infer_shape when the symbol was bound.
        num_anchors = self._anchors.shape[0]
        cls_prob = in_data[0].asnumpy()
        bbox_deltas, im_info = in_data[1].asnumpy(), in_data[2].asnumpy()
        if not np.isfinite(im_info).all():
            logger.warning("proposal: non-finite im_info %s", im_info.tolist())
        all_rois, all_scores = [], []
        for b in range(cls_prob.shape[0]):
            rois, scores = generate_proposals(
                fg_scores=cls_prob[b, num_anchors:],
                bbox_deltas=bbox_deltas[b],
                im_info=im_info[b],
                anchors=self._anchors,
                feat_stride=self._feat_stride,
                pre_nms_top_n=self._pre_nms_top_n,
                post_nms_top_n=self._post_nms_top_n,
                min_size=self._min_size,
                nms=self._get_nms(in_data[0].context),
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


@mx.operator.register("proposal")
class ProposalProp(CheckedProp):
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
        self._feat_stride = int_attr("feat_stride", feat_stride, COUNT)
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
        cls_prob_shape, bbox_pred_shape = in_shape[0], in_shape[1]
        a = len(self._scales) * len(self._ratios)
        self.expect_shape(
            "cls_prob", cls_prob_shape, (None, 2 * a, None, None), f"(B, 2 * {a} anchors, H, W)"
        )
        self.expect_shape(
            "bbox_pred", bbox_pred_shape, (None, 4 * a, None, None), f"(B, 4 * {a} anchors, H, W)"
        )
        if known(cls_prob_shape) and known(bbox_pred_shape):
            if (cls_prob_shape[0], *cls_prob_shape[2:]) != (
                bbox_pred_shape[0], *bbox_pred_shape[2:]
            ):  # fmt: skip
                self.fail(
                    f"cls_prob {tuple(cls_prob_shape)} and bbox_pred {tuple(bbox_pred_shape)} "
                    "must have the same batch size and map size"
                )
        batch = next((s[0] for s in (cls_prob_shape, bbox_pred_shape) if s and s[0] > 0), 0)
        if not batch:  # partial inference: nothing known yet
            return in_shape, [()] * len(self.list_outputs()), []
        outputs = [(batch * self._post_nms_top_n, 5)]
        if self._output_score:
            outputs.append((batch * self._post_nms_top_n, 1))
        return [cls_prob_shape, bbox_pred_shape, (batch, 3)], outputs, []

    def create_operator(self, ctx, shapes, dtypes):
        return ProposalOperator(
            self._feat_stride,
            self._scales,
            self._ratios,
            self._output_score,
            self._pre_nms_top_n,
            self._post_nms_top_n,
            self._threshold,
            self._min_size,
        )


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
    attrs = {
        "scales": tuple(float(s) for s in cfg.network.ANCHOR_SCALES),
        "ratios": tuple(float(r) for r in cfg.network.ANCHOR_RATIOS),
        "rpn_pre_nms_top_n": int(phase.RPN_PRE_NMS_TOP_N),
        "rpn_post_nms_top_n": int(phase.RPN_POST_NMS_TOP_N),
        "threshold": float(phase.RPN_NMS_THRESH),
        "rpn_min_size": int(phase.RPN_MIN_SIZE),
        "output_score": bool(output_score),
    }
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
