"""The R-CNN stage shared by the two-stage detectors (R-FCN, Faster R-CNN), original names.

Between the RPN and a head: :func:`rcnn_rois` gives the RoIs the head pools (training: the
proposals sampled by ``proposal_target`` against the gt boxes; testing: the RPN proposals, or
the ``rois`` input when ``TEST.HAS_RPN`` is off). After the head's ``cls_score`` (R, C) and
``bbox_pred`` (R, 4 * R_cls): :func:`rcnn_train_outputs` (losses, OHEM) or
:func:`rcnn_test_outputs` (probabilities).

Several images per device (``BATCH_IMAGES`` = B): the RoIs are image after image, each with its
batch index. The losses of a device's batch are the **sum** of its images' losses, each
normalised as in the original for one image: the softmaxes keep ``normalization='valid'``
(which divides by the valid labels of the whole batch, B times one image's) and get
``grad_scale=B``; ``bbox_loss`` is scaled by the RoIs of one image. With gradients summed over
devices (the original's ``rescale_grad=1``), B images on one device then train exactly as one
image on each of B devices.
"""

from __future__ import annotations

from typing import Any

import mxnet as mx

from lib.operator_py import box_annotator_ohem_symbol, proposal_target_symbol
from lib.symbols.rpn import softmax_grad_scale

__all__ = ["rcnn_rois", "rcnn_test_outputs", "rcnn_train_outputs"]


def rcnn_rois(
    cfg: Any, is_train: bool, num_reg_classes: int, rpn_rois: mx.sym.Symbol | None = None
) -> tuple[mx.sym.Symbol, ...]:
    """The RoIs of the head.

    Training: ``(rois, label, bbox_target, bbox_weight)`` from ``proposal_target`` over the
    training proposals ``rpn_rois`` and the ``gt_boxes`` input (reshaped to (-1, 5) as
    ``gt_boxes_reshape``). Testing: ``(rois,)``: the test proposals ``rpn_rois``, or with
    ``TEST.HAS_RPN`` off (``rpn_rois`` None) the ``rois`` input (B, R, 5) reshaped to (-1, 5) as
    ``rois_reshape`` (the original's ``get_symbol_rfcn`` / ``get_symbol_rcnn``).
    """
    if is_train:
        gt_boxes = mx.sym.Reshape(
            data=mx.sym.var("gt_boxes"), shape=(-1, 5), name="gt_boxes_reshape"
        )
        targets = proposal_target_symbol(
            cfg, rpn_rois, gt_boxes, num_reg_classes, name="proposal_target"
        )
        return tuple(targets[i] for i in range(4))
    if rpn_rois is None:
        return (mx.sym.Reshape(data=mx.sym.var("rois"), shape=(-1, 5), name="rois_reshape"),)
    return (rpn_rois,)


def rcnn_test_outputs(
    cfg: Any,
    cls_score: mx.sym.Symbol,
    bbox_pred: mx.sym.Symbol,
    num_classes: int,
    num_reg_classes: int,
) -> tuple[mx.sym.Symbol, mx.sym.Symbol]:
    """``cls_prob_reshape`` (B, R, C) and ``bbox_pred_reshape`` (B, R, 4 * R_cls)."""
    batch_images = cfg.TEST.BATCH_IMAGES
    cls_prob = mx.sym.SoftmaxActivation(name="cls_prob", data=cls_score)
    cls_prob = mx.sym.Reshape(
        data=cls_prob, shape=(batch_images, -1, num_classes), name="cls_prob_reshape"
    )
    bbox_pred = mx.sym.Reshape(
        data=bbox_pred, shape=(batch_images, -1, 4 * num_reg_classes), name="bbox_pred_reshape"
    )
    return cls_prob, bbox_pred


def rcnn_train_outputs(
    cfg: Any,
    cls_score: mx.sym.Symbol,
    bbox_pred: mx.sym.Symbol,
    label: mx.sym.Symbol,
    bbox_target: mx.sym.Symbol,
    bbox_weight: mx.sym.Symbol,
    num_classes: int,
    num_reg_classes: int,
) -> list[mx.sym.Symbol]:
    """``[cls_prob_reshape, bbox_loss_reshape, blockgrad0]``: the R-CNN losses of the original.

    Classification: ``SoftmaxOutput(normalization='valid')``; with ``TRAIN.ENABLE_OHEM`` the
    ``BoxAnnotatorOHEM`` op first keeps the ``BATCH_ROIS_OHEM`` hardest RoIs per image (the
    others get label -1, ignored). Regression: ``bbox_weight * smooth_l1(bbox_pred -
    bbox_target, sigma 1)`` as ``MakeLoss`` scaled by one image's RoI count (``BATCH_ROIS_OHEM``,
    ``BATCH_ROIS / BATCH_IMAGES``, or ``RPN_POST_NMS_TOP_N`` for ``BATCH_ROIS = -1``).
    ``blockgrad0`` holds the labels used (the original's auto-name of this layer).
    """
    train = cfg.TRAIN
    batch_images = train.BATCH_IMAGES
    scale = softmax_grad_scale(batch_images)
    if train.ENABLE_OHEM:
        label, bbox_weight = box_annotator_ohem_symbol(
            cls_score,
            bbox_pred,
            label,
            bbox_target,
            bbox_weight,
            name="box_annotator_ohem",
            num_classes=num_classes,
            num_reg_classes=num_reg_classes,
            roi_per_img=train.BATCH_ROIS_OHEM,
            batch_images=batch_images,
        )
        cls_prob = mx.sym.SoftmaxOutput(
            name="cls_prob",
            data=cls_score,
            label=label,
            normalization="valid",
            use_ignore=True,
            ignore_label=-1,
            **scale,
        )
        rois_per_image = train.BATCH_ROIS_OHEM
    else:
        cls_prob = mx.sym.SoftmaxOutput(
            name="cls_prob", data=cls_score, label=label, normalization="valid", **scale
        )
        rois_per_image = (
            train.BATCH_ROIS // batch_images if train.BATCH_ROIS > 0 else train.RPN_POST_NMS_TOP_N
        )
    bbox_loss_ = bbox_weight * mx.sym.smooth_l1(
        name="bbox_loss_", scalar=1.0, data=(bbox_pred - bbox_target)
    )
    bbox_loss = mx.sym.MakeLoss(name="bbox_loss", data=bbox_loss_, grad_scale=1.0 / rois_per_image)

    rcnn_label = mx.sym.Reshape(data=label, shape=(batch_images, -1), name="label_reshape")
    cls_prob = mx.sym.Reshape(
        data=cls_prob, shape=(batch_images, -1, num_classes), name="cls_prob_reshape"
    )
    bbox_loss = mx.sym.Reshape(
        data=bbox_loss, shape=(batch_images, -1, 4 * num_reg_classes), name="bbox_loss_reshape"
    )
    # 'blockgrad0' is the auto-name this layer gets in the original (a fresh name counter).
    return [cls_prob, bbox_loss, mx.sym.BlockGrad(rcnn_label, name="blockgrad0")]
