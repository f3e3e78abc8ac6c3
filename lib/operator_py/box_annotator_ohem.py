"""Online hard example mining over R-CNN RoIs (``op_type='BoxAnnotatorOHEM'``).

OHEM (Shrivastava et al., CVPR 2016) as in the original R-FCN code: every RoI's loss is the
softmax cross-entropy of its label plus its weighted smooth-L1 (sigma 1) box loss; the
``roi_per_img`` RoIs with the largest loss keep their label and box weights, all others get
label -1 (ignored by ``SoftmaxOutput(use_ignore=True, ignore_label=-1)``) and box weight 0.

Inputs: ``cls_score`` (R, num_classes) logits, ``bbox_pred`` (R, 4 * num_reg_classes),
``labels`` (R,), ``bbox_targets`` and ``bbox_weights`` (R, 4 * num_reg_classes), for the
``batch_images`` images of one device, image after image (R / batch_images rows each, the
layout of ``proposal_target``'s outputs). The top ``roi_per_img`` are taken per image (the
original had one image per device).

Outputs: ``labels_ohem`` (R,), ``bbox_weights_ohem`` (R, 4 * num_reg_classes).

Differences from the original: the cross-entropy is an exact log-softmax in float64 (the
original took ``-log(softmax + 1e-14)`` in float32, which saturates at 32.2); ties in the loss
keep the lower RoI index first; RoIs already labelled < 0 are never selected, and labels >=
``num_classes`` (or NaN), which have no score, are ignored (-1) with a warning instead of failing
in ``forward``; attributes and input shapes are checked when the symbol is built and bound (see
:mod:`lib.operator_py.base`).
"""

from __future__ import annotations

import logging
from typing import Any

import mxnet as mx
import numpy as np

from lib.config.defaults import COUNT, Int
from lib.operator_py.base import CheckedProp, check_attrs, int_attr

__all__ = ["BoxAnnotatorOHEMProp", "box_annotator_ohem_symbol", "ohem_select", "per_roi_loss"]

logger = logging.getLogger(__name__)


def per_roi_loss(
    cls_score: np.ndarray,
    bbox_pred: np.ndarray,
    labels: np.ndarray,
    bbox_targets: np.ndarray,
    bbox_weights: np.ndarray,
) -> np.ndarray:
    """(R,) float64 loss: ``-log softmax(cls_score)[label] + sum(w * smooth_l1(pred - t))``.

    RoIs whose label is not a class (negative, >= C or NaN) get ``-inf``.
    """
    scores = np.asarray(cls_score, dtype=np.float64)
    scores = scores - scores.max(axis=1, keepdims=True)
    log_prob = scores - np.log(np.exp(scores).sum(axis=1, keepdims=True))
    labels = np.asarray(labels, dtype=np.float64)
    valid = (labels >= 0) & (labels < scores.shape[1])
    loss = np.full(labels.shape[0], -np.inf)
    loss[valid] = -log_prob[np.flatnonzero(valid), labels[valid].astype(np.int64)]

    diff = np.abs(np.asarray(bbox_pred, dtype=np.float64) - bbox_targets)
    smooth_l1 = np.where(diff < 1.0, 0.5 * diff**2, diff - 0.5)
    return loss + (np.asarray(bbox_weights, dtype=np.float64) * smooth_l1).sum(axis=1)


def ohem_select(
    loss: np.ndarray, labels: np.ndarray, bbox_weights: np.ndarray, roi_per_img: int
) -> tuple[np.ndarray, np.ndarray]:
    """Keep the ``roi_per_img`` largest losses: others get label -1 and zero box weights.

    Returns:
        ``(labels_ohem, bbox_weights_ohem)`` as new float32 arrays.
    """
    order = np.argsort(-loss, kind="stable")
    dropped = order[roi_per_img:]
    labels_ohem = np.array(labels, dtype=np.float32)
    weights_ohem = np.array(bbox_weights, dtype=np.float32)
    labels_ohem[dropped] = -1
    weights_ohem[dropped] = 0
    return labels_ohem, weights_ohem


class BoxAnnotatorOHEMOperator(mx.operator.CustomOp):
    """Forward: :func:`per_roi_loss` then :func:`ohem_select`; backward: zero gradients."""

    def __init__(
        self, num_classes: int, num_reg_classes: int, roi_per_img: int, batch_images: int = 1
    ) -> None:
        super().__init__()
        self._num_classes = num_classes
        self._num_reg_classes = num_reg_classes
        self._roi_per_img = roi_per_img
        self._batch_images = batch_images

    def forward(self, is_train, req, in_data, out_data, aux):
        # BoxAnnotatorOHEMProp.infer_shape checked the shapes and that the RoIs split evenly
        # over batch_images images.
        cls_score, bbox_pred, labels, bbox_targets, bbox_weights = (x.asnumpy() for x in in_data)
        unknown = ~(labels < self._num_classes)  # >= num_classes, or NaN
        if unknown.any():
            logger.warning(
                "BoxAnnotatorOHEM: ignoring %d RoIs labelled outside [0, %d): %s",
                int(unknown.sum()),
                self._num_classes,
                sorted(set(labels[unknown].tolist()))[:10],
            )
            labels = np.where(unknown, -1, labels)
        loss = per_roi_loss(cls_score, bbox_pred, labels, bbox_targets, bbox_weights)
        per_image = np.array_split(np.arange(loss.shape[0]), self._batch_images)
        labels_ohem, weights_ohem = zip(
            *(
                ohem_select(loss[i], labels[i], bbox_weights[i], self._roi_per_img)
                for i in per_image
            )
        )
        self.assign(out_data[0], req[0], mx.nd.array(np.concatenate(labels_ohem)))
        self.assign(out_data[1], req[1], mx.nd.array(np.concatenate(weights_ohem)))

    def backward(self, req, out_grad, in_data, out_data, in_grad, aux):
        for i in range(len(in_grad)):
            self.assign(in_grad[i], req[i], 0)


@mx.operator.register("BoxAnnotatorOHEM")
class BoxAnnotatorOHEMProp(CheckedProp):
    """Attributes: ``num_classes``, ``num_reg_classes``, ``roi_per_img`` (as the original) and
    ``batch_images`` (images per device, default 1); see :meth:`parse`."""

    op_type = "BoxAnnotatorOHEM"
    arguments = ("cls_score", "bbox_pred", "labels", "bbox_targets", "bbox_weights")

    def parse(
        self, num_classes: str, num_reg_classes: str, roi_per_img: str, batch_images: str = "1"
    ) -> None:
        """``num_classes`` >= 2 (background included), ``num_reg_classes`` >= 1,
        ``roi_per_img`` >= 1, ``batch_images`` >= 1."""
        self._num_classes = int_attr("num_classes", num_classes, Int(min=2))
        self._num_reg_classes = int_attr("num_reg_classes", num_reg_classes, COUNT)
        self._roi_per_img = int_attr("roi_per_img", roi_per_img, COUNT)
        self._batch_images = int_attr("batch_images", batch_images, COUNT)

    def list_outputs(self):
        return ["labels_ohem", "bbox_weights_ohem"]

    def infer_shape(self, in_shape):
        cls_shape, pred_shape, labels_shape, targets_shape, weights_shape = in_shape
        c, r4 = self._num_classes, 4 * self._num_reg_classes
        self.expect_shape("cls_score", cls_shape, (None, c), f"(R, {c})")
        self.expect_shape("labels", labels_shape, (None,), "(R,)")
        for name, shape in (
            ("bbox_pred", pred_shape),
            ("bbox_targets", targets_shape),
            ("bbox_weights", weights_shape),
        ):
            self.expect_shape(name, shape, (None, r4), f"(R, 4 * {self._num_reg_classes})")
        rows = {s[0] for s in in_shape if s and s[0] > 0}
        if len(rows) > 1:
            self.fail(
                "the inputs must have the same number of RoIs, got shapes "
                + ", ".join(f"{n} {tuple(s)}" for n, s in zip(self.arguments, in_shape))
            )
        num = rows.pop() if rows else 0
        if not num:  # partial inference: nothing known yet
            return in_shape, [(), ()], []
        if num % self._batch_images:
            self.fail(f"{num} RoIs do not split over batch_images={self._batch_images} images")
        return in_shape, [(num,), (num, r4)], []

    def create_operator(self, ctx, shapes, dtypes):
        return BoxAnnotatorOHEMOperator(
            self._num_classes, self._num_reg_classes, self._roi_per_img, self._batch_images
        )


def box_annotator_ohem_symbol(
    cls_score: mx.sym.Symbol,
    bbox_pred: mx.sym.Symbol,
    labels: mx.sym.Symbol,
    bbox_targets: mx.sym.Symbol,
    bbox_weights: mx.sym.Symbol,
    name: str | None = None,
    **attrs: Any,
) -> mx.sym.Symbol:
    """``BoxAnnotatorOHEM`` over the five inputs, with ``attrs`` (``num_classes``,
    ``num_reg_classes``, ``roi_per_img``, ``batch_images``) checked first.

    Returns:
        The 2-output symbol ``labels_ohem, bbox_weights_ohem``.

    Raises:
        ValueError: an attribute out of range, e.g. ``BoxAnnotatorOHEM: attribute batch_images
            must be an integer >= 1, got '0'``.
    """
    check_attrs(BoxAnnotatorOHEMProp, attrs)
    return mx.sym.Custom(
        cls_score=cls_score,
        bbox_pred=bbox_pred,
        labels=labels,
        bbox_targets=bbox_targets,
        bbox_weights=bbox_weights,
        op_type="BoxAnnotatorOHEM",
        name=name,
        **attrs,
    )
