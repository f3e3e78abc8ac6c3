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

**Pyramid** (FPN, :func:`pyramid_rpn`): the same head on every level ``p2 .. p6`` with one set
of weights (the variables ``rpn_conv_*``, ``rpn_cls_score_*``, ``rpn_bbox_pred_*``; the layers
named ``rpn_conv_p2``, ``rpn_cls_score_p2``, ...). Each level's scores are flattened to
``(N, 2, A*H_l*W_l)`` and its deltas to ``(N, 4A, H_l*W_l)`` and concatenated over the levels,
in the loader's order (:func:`lib.rpn.rpn.assign_pyramid_anchor`), for the same two losses;
the proposals are the ``pyramid_proposal`` op's over every level's probabilities
(``rpn_cls_prob_p2``, ...).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import mxnet as mx

from lib.operator_py import proposal_symbol, pyramid_proposal_symbol

__all__ = [
    "RPNTrainOutputs",
    "pyramid_rpn",
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


def shared_rpn_weights() -> dict[str, mx.sym.Symbol]:
    """The variables of an RPN head shared by every pyramid level (the original FPN's names)."""
    return {
        f"{layer}_{kind}": mx.sym.var(f"{layer}_{kind}")
        for layer in ("rpn_conv", "rpn_cls_score", "rpn_bbox_pred")
        for kind in ("weight", "bias")
    }


def rpn_head(
    feat: mx.sym.Symbol,
    num_anchors: int,
    num_channels: int = 512,
    level: str | None = None,
    weights: Mapping[str, mx.sym.Symbol] | None = None,
) -> tuple[mx.sym.Symbol, mx.sym.Symbol]:
    """``(rpn_cls_score, rpn_bbox_pred)`` on the feature map ``feat``.

    Args:
        level: ``None`` for the single-scale RPN (layers ``rpn_conv_3x3``, ``rpn_relu``,
            ``rpn_cls_score``, ``rpn_bbox_pred`` with their own variables); a pyramid level
            (``'p2'``) names the layers ``rpn_conv_p2``, ``rpn_relu_p2``, ... and uses ``weights``.
        weights: :func:`shared_rpn_weights`, for a pyramid level.
    """

    def layer(base: str, key: str) -> dict[str, Any]:
        if level is None:
            return {"name": base}
        return {"name": f"{key}_{level}", "weight": weights[f"{key}_weight"],
                "bias": weights[f"{key}_bias"]}  # fmt: skip

    x = mx.sym.Convolution(data=feat, kernel=(3, 3), pad=(1, 1), num_filter=num_channels,
                           **layer("rpn_conv_3x3", "rpn_conv"))  # fmt: skip
    x = mx.sym.Activation(data=x, act_type="relu",
                          name="rpn_relu" if level is None else f"rpn_relu_{level}")  # fmt: skip
    cls_score = mx.sym.Convolution(data=x, kernel=(1, 1), pad=(0, 0), num_filter=2 * num_anchors,
                                   **layer("rpn_cls_score", "rpn_cls_score"))  # fmt: skip
    bbox_pred = mx.sym.Convolution(data=x, kernel=(1, 1), pad=(0, 0), num_filter=4 * num_anchors,
                                   **layer("rpn_bbox_pred", "rpn_bbox_pred"))  # fmt: skip
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
    cls_prob, bbox_loss = _rpn_losses(cfg, score_reshape, bbox_pred, label, bbox_target,
                                      bbox_weight, "rpn_bbox_loss_")  # fmt: skip
    act = mx.sym.SoftmaxActivation(data=score_reshape, mode="channel", name="rpn_cls_act")
    act = mx.sym.Reshape(data=act, shape=(0, 2 * num_anchors, -1, 0), name="rpn_cls_act_reshape")
    rois = proposal_symbol(cfg, True, act, bbox_pred, im_info, name="rois")
    return RPNTrainOutputs(cls_prob, bbox_loss, rois)


def _rpn_losses(
    cfg: Any,
    cls_score: mx.sym.Symbol,
    bbox_pred: mx.sym.Symbol,
    label: mx.sym.Symbol,
    bbox_target: mx.sym.Symbol,
    bbox_weight: mx.sym.Symbol,
    l1_name: str,
) -> tuple[mx.sym.Symbol, mx.sym.Symbol]:
    """``(rpn_cls_prob, rpn_bbox_loss)`` on scores (N, 2, ...) and deltas laid out as the labels."""
    cls_prob = mx.sym.SoftmaxOutput(
        data=cls_score,
        label=label,
        multi_output=True,
        normalization="valid",
        use_ignore=True,
        ignore_label=-1,
        name="rpn_cls_prob",
        **softmax_grad_scale(cfg.TRAIN.BATCH_IMAGES),
    )
    # sigma 3 (scalar = sigma^2 = 3.0) as the original RPN
    loss = bbox_weight * mx.sym.smooth_l1(name=l1_name, scalar=3.0, data=(bbox_pred - bbox_target))
    bbox_loss = mx.sym.MakeLoss(
        name="rpn_bbox_loss", data=loss, grad_scale=1.0 / cfg.TRAIN.RPN_BATCH_SIZE
    )
    return cls_prob, bbox_loss


def pyramid_rpn(
    cfg: Any,
    is_train: bool,
    feats: Mapping[str, mx.sym.Symbol],
    num_channels: int,
    im_info: mx.sym.Symbol,
) -> RPNTrainOutputs | mx.sym.Symbol:
    """The RPN of a feature pyramid (see the module docstring).

    Args:
        feats: level name (``'p2'``) -> feature map, in the order of
            ``network.RPN_FEAT_STRIDE``.
        num_channels: channels of the shared ``rpn_conv``.

    Returns:
        Training: the losses and the proposals (``TRAIN.*`` settings) against the ``label``,
        ``bbox_target``, ``bbox_weight`` inputs; testing: the proposals (``TEST.*``).
    """
    num_anchors = cfg.network.NUM_ANCHORS
    weights = shared_rpn_weights()
    scores, probs, bbox_preds = [], [], []
    for level, feat in feats.items():
        score, bbox_pred = rpn_head(feat, num_anchors, num_channels, level, weights)
        score_t = mx.sym.Reshape(data=score, shape=(0, 2, -1, 0), name=f"rpn_cls_score_t1_{level}")
        prob = mx.sym.SoftmaxActivation(data=score_t, mode="channel", name=f"rpn_cls_prob_{level}")
        probs.append(mx.sym.Reshape(data=prob, shape=(0, 2 * num_anchors, -1, 0),
                                    name=f"rpn_cls_prob_t_{level}"))  # fmt: skip
        scores.append(mx.sym.Reshape(data=score_t, shape=(0, 2, -1),
                                     name=f"rpn_cls_score_t2_{level}"))  # fmt: skip
        bbox_preds.append(bbox_pred)
    rois = pyramid_proposal_symbol(cfg, is_train, probs, bbox_preds, im_info, name="rois")
    if not is_train:
        return rois
    flat_preds = [
        mx.sym.Reshape(data=b, shape=(0, 0, -1), name=f"rpn_bbox_pred_t_{level}")
        for level, b in zip(feats, bbox_preds)
    ]
    cls_prob, bbox_loss = _rpn_losses(
        cfg,
        mx.sym.Concat(*scores, dim=2, name="rpn_cls_score_concat"),
        mx.sym.Concat(*flat_preds, dim=2, name="rpn_bbox_pred_concat"),
        mx.sym.var("label"),
        mx.sym.var("bbox_target"),
        mx.sym.var("bbox_weight"),
        "rpn_bbox_loss_l1",
    )
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
