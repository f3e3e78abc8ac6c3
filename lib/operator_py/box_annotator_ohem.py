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
keep the lower RoI index first; RoIs already labelled < 0 are never selected.
"""

from __future__ import annotations

import logging

import mxnet as mx
import numpy as np

logger = logging.getLogger(__name__)


def per_roi_loss(
    cls_score: np.ndarray,
    bbox_pred: np.ndarray,
    labels: np.ndarray,
    bbox_targets: np.ndarray,
    bbox_weights: np.ndarray,
) -> np.ndarray:
    """(R,) float64 loss: ``-log softmax(cls_score)[label] + sum(w * smooth_l1(pred - t))``.

    RoIs with a negative label get ``-inf``.
    """
    scores = np.asarray(cls_score, dtype=np.float64)
    scores = scores - scores.max(axis=1, keepdims=True)
    log_prob = scores - np.log(np.exp(scores).sum(axis=1, keepdims=True))
    labels = np.asarray(labels).astype(np.int64)
    valid = labels >= 0
    loss = np.full(labels.shape[0], -np.inf)
    loss[valid] = -log_prob[np.flatnonzero(valid), labels[valid]]

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
        cls_score, bbox_pred, labels, bbox_targets, bbox_weights = (x.asnumpy() for x in in_data)
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
class BoxAnnotatorOHEMProp(mx.operator.CustomOpProp):
    """Attributes: ``num_classes``, ``num_reg_classes``, ``roi_per_img`` (as the original) and
    ``batch_images`` (images per device, default 1)."""

    def __init__(
        self, num_classes: str, num_reg_classes: str, roi_per_img: str, batch_images: str = "1"
    ) -> None:
        super().__init__(need_top_grad=False)
        self._num_classes = int(num_classes)
        self._num_reg_classes = int(num_reg_classes)
        self._roi_per_img = int(roi_per_img)
        self._batch_images = int(batch_images)
        if self._batch_images < 1:
            raise ValueError(f"BoxAnnotatorOHEM: batch_images must be >= 1, got {batch_images}")

    def list_arguments(self):
        return ["cls_score", "bbox_pred", "labels", "bbox_targets", "bbox_weights"]

    def list_outputs(self):
        return ["labels_ohem", "bbox_weights_ohem"]

    def infer_shape(self, in_shape):
        cls_shape, pred_shape, labels_shape, targets_shape, weights_shape = in_shape
        expected = {
            "cls_score": (cls_shape[1:], (self._num_classes,)),
            "bbox_pred": (pred_shape[1:], (4 * self._num_reg_classes,)),
            "bbox_targets": (targets_shape[1:], (4 * self._num_reg_classes,)),
            "bbox_weights": (weights_shape[1:], (4 * self._num_reg_classes,)),
        }
        for name, (got, want) in expected.items():
            if all(d > 0 for d in got) and tuple(got) != want:
                raise ValueError(f"BoxAnnotatorOHEM: {name} expected (R, {want[0]}), got {got}")
        if labels_shape[0] % self._batch_images:
            raise ValueError(
                f"BoxAnnotatorOHEM: {labels_shape[0]} RoIs do not split over "
                f"batch_images={self._batch_images} images"
            )
        return in_shape, [labels_shape, weights_shape], []

    def create_operator(self, ctx, shapes, dtypes):
        return BoxAnnotatorOHEMOperator(
            self._num_classes, self._num_reg_classes, self._roi_per_img, self._batch_images
        )

    def declare_backward_dependency(self, out_grad, in_data, out_data):
        return []
