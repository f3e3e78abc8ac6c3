"""The region proposal network of the single-scale detectors (R-FCN, Faster R-CNN), original names.

Head: ``rpn_conv_3x3`` (3x3, pad 1) -> ``rpn_relu`` -> ``rpn_cls_score`` (1x1, ``2A`` channels)
and ``rpn_bbox_pred`` (1x1, ``4A`` channels), A anchors per position.

Score layout: channels ``[0, A)`` are background, ``[A, 2A)`` foreground (anchor ``a`` at
``A + a``). ``rpn_cls_score_reshape`` views them as ``(N, 2, A*H, W)`` so that one softmax over
axis 1 scores every anchor; the loader's ``label`` (N, A*H*W) follows that order.

Training adds the two RPN losses of the original:

- ``rpn_cls_prob``: ``SoftmaxOutput(multi_output, normalization='valid', use_ignore,
  ignore_label=-1)`` on the reshaped scores against ``label``;
- ``rpn_bbox_loss``: ``bbox_weight * smooth_l1(rpn_bbox_pred - bbox_target, sigma=3)`` as
  ``MakeLoss(grad_scale=1 / TRAIN.RPN_BATCH_SIZE)``.

Several images per device: the loss is the sum of the images' losses (``RPN_BATCH_SIZE``
anchors are sampled per image; the softmax gets ``grad_scale = TRAIN.BATCH_IMAGES``, see
:func:`softmax_grad_scale`).

Proposals read the softmax probabilities reshaped back to ``(N, 2A, H, W)``; the layers are
named ``rpn_cls_act`` / ``rpn_cls_act_reshape`` in training and ``rpn_cls_prob`` /
``rpn_cls_prob_reshape`` in testing, as in the original.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import mxnet as mx

from lib.operator_py import proposal_symbol

__all__ = [
    "RPNTrainOutputs",
    "RPN_PARAM_PREFIX",
    "rpn_head",
    "rpn_proposals",
    "rpn_train_outputs",
    "softmax_grad_scale",
]


def softmax_grad_scale(batch_images: int) -> dict[str, float]:
    """``grad_scale`` of a ``normalization='valid'`` softmax loss over ``batch_images`` images.

    'valid' divides by the valid labels of the whole batch; scaling by the image count makes
    the loss the sum of the images' losses, each normalised as one image's (see
    :mod:`lib.symbols.rcnn`). Empty for one image (the original symbol, attribute for attribute).
    """
    return {"grad_scale": float(batch_images)} if batch_images > 1 else {}


#: Every parameter of the RPN starts with this (a test on given proposals does not use them).
RPN_PARAM_PREFIX = "rpn_"


def rpn_head(
    feat: mx.sym.Symbol, num_anchors: int, num_channels: int = 512
) -> tuple[mx.sym.Symbol, mx.sym.Symbol]:
    """``(rpn_cls_score, rpn_bbox_pred)`` on the stride-16 feature map ``feat``."""
    x = mx.sym.Convolution(
        data=feat, kernel=(3, 3), pad=(1, 1), num_filter=num_channels, name="rpn_conv_3x3"
    )
    x = mx.sym.Activation(data=x, act_type="relu", name="rpn_relu")
    cls_score = mx.sym.Convolution(
        data=x, kernel=(1, 1), pad=(0, 0), num_filter=2 * num_anchors, name="rpn_cls_score"
    )
    bbox_pred = mx.sym.Convolution(
        data=x, kernel=(1, 1), pad=(0, 0), num_filter=4 * num_anchors, name="rpn_bbox_pred"
    )
    return cls_score, bbox_pred


class RPNTrainOutputs(NamedTuple):
    cls_prob: mx.sym.Symbol  # rpn_cls_prob (SoftmaxOutput), a training output
    bbox_loss: mx.sym.Symbol  # rpn_bbox_loss (MakeLoss), a training output
    rois: mx.sym.Symbol  # proposals (R, 5) for the second stage


def rpn_train_outputs(
    cfg: Any,
    cls_score: mx.sym.Symbol,
    bbox_pred: mx.sym.Symbol,
    im_info: mx.sym.Symbol,
    label: mx.sym.Symbol,
    bbox_target: mx.sym.Symbol,
    bbox_weight: mx.sym.Symbol,
) -> RPNTrainOutputs:
    """The RPN losses and the training proposals (``TRAIN.*`` proposal settings)."""
    num_anchors = cfg.network.NUM_ANCHORS
    score_reshape = mx.sym.Reshape(
        data=cls_score, shape=(0, 2, -1, 0), name="rpn_cls_score_reshape"
    )
    cls_prob = mx.sym.SoftmaxOutput(
        data=score_reshape,
        label=label,
        multi_output=True,
        normalization="valid",
        use_ignore=True,
        ignore_label=-1,
        name="rpn_cls_prob",
        **softmax_grad_scale(cfg.TRAIN.BATCH_IMAGES),
    )
    # sigma 3 (scalar = sigma^2 = 3.0) as the original RPN
    loss = bbox_weight * mx.sym.smooth_l1(
        name="rpn_bbox_loss_", scalar=3.0, data=(bbox_pred - bbox_target)
    )
    bbox_loss = mx.sym.MakeLoss(
        name="rpn_bbox_loss", data=loss, grad_scale=1.0 / cfg.TRAIN.RPN_BATCH_SIZE
    )
    act = mx.sym.SoftmaxActivation(data=score_reshape, mode="channel", name="rpn_cls_act")
    act = mx.sym.Reshape(data=act, shape=(0, 2 * num_anchors, -1, 0), name="rpn_cls_act_reshape")
    rois = proposal_symbol(cfg, True, act, bbox_pred, im_info, name="rois")
    return RPNTrainOutputs(cls_prob, bbox_loss, rois)


def rpn_proposals(
    cfg: Any, cls_score: mx.sym.Symbol, bbox_pred: mx.sym.Symbol, im_info: mx.sym.Symbol
) -> mx.sym.Symbol:
    """Test-time proposals ``rois`` (``TEST.*`` settings): softmax, reshape, proposal layer."""
    num_anchors = cfg.network.NUM_ANCHORS
    score_reshape = mx.sym.Reshape(
        data=cls_score, shape=(0, 2, -1, 0), name="rpn_cls_score_reshape"
    )
    prob = mx.sym.SoftmaxActivation(data=score_reshape, mode="channel", name="rpn_cls_prob")
    prob = mx.sym.Reshape(data=prob, shape=(0, 2 * num_anchors, -1, 0), name="rpn_cls_prob_reshape")
    return proposal_symbol(cfg, False, prob, bbox_pred, im_info, name="rois")
