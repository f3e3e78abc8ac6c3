"""RPN training targets: label, regression target and weight for every anchor.

Anchors are laid out as in the original: for feature cell ``(y, x)`` (stride ``s``) the ``A``
reference anchors of :func:`generate_anchors` are shifted by ``(x*s, y*s)``; outputs are in
``(A, H, W)`` order, i.e. anchor ``a`` of cell ``(y, x)`` is label index ``(a*H + y)*W + x``
and its 4 targets are channels ``4a .. 4a+3``.

Labels: 1 foreground, 0 background, -1 ignored. An anchor that crosses the image border by
more than ``allowed_border`` pixels is always ignored. Among the others:

- background: max IoU with any gt ``< TRAIN.RPN_NEGATIVE_OVERLAP``;
- foreground: max IoU ``>= TRAIN.RPN_POSITIVE_OVERLAP``, or the best anchor(s) of some gt
  (ties included); with ``TRAIN.RPN_CLOBBER_POSITIVES`` background wins over these;
- then at most ``RPN_FG_FRACTION * RPN_BATCH_SIZE`` foreground anchors are kept (random) and
  background ones fill the batch up to ``RPN_BATCH_SIZE`` (``-1``: keep all);
- without gt boxes every anchor inside is background before subsampling.

One deliberate difference from the original: a gt box that overlaps no anchor at all does not
turn every zero-overlap anchor into a foreground "best match".
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lib.bbox.bbox_transform import bbox_overlaps, bbox_transform
from lib.rpn.generate_anchor import generate_anchors


def _feat_hw(feat_shape) -> tuple:
    # The original loaders pass infer_shape's output list ([shape]) per level; accept both.
    if len(feat_shape) > 0 and isinstance(feat_shape[0], (tuple, list)):
        feat_shape = feat_shape[0]
    return int(feat_shape[-2]), int(feat_shape[-1])


def _shifted_anchors(base_anchors: np.ndarray, height: int, width: int, stride: int) -> np.ndarray:
    """(H*W*A, 4) anchors in (y, x, a) order."""
    shift_x, shift_y = np.meshgrid(np.arange(width) * stride, np.arange(height) * stride)
    shifts = np.stack((shift_x, shift_y, shift_x, shift_y), axis=-1).reshape(-1, 1, 4)
    return (base_anchors[None, :, :] + shifts).reshape(-1, 4)


def _subsample(labels: np.ndarray, cfg, rng) -> None:
    batch = cfg.TRAIN.RPN_BATCH_SIZE
    num_fg = labels.size if batch == -1 else int(cfg.TRAIN.RPN_FG_FRACTION * batch)
    fg_inds = np.where(labels == 1)[0]
    if len(fg_inds) > num_fg:
        labels[rng.choice(fg_inds, size=len(fg_inds) - num_fg, replace=False)] = -1
    num_bg = labels.size if batch == -1 else batch - int(np.sum(labels == 1))
    bg_inds = np.where(labels == 0)[0]
    if len(bg_inds) > num_bg:
        labels[rng.choice(bg_inds, size=len(bg_inds) - num_bg, replace=False)] = -1


def _assign(
    all_anchors: np.ndarray,
    gt_boxes: np.ndarray,
    im_info,
    cfg,
    allowed_border: float,
    rng: np.random.RandomState | None,
) -> tuple:
    """Labels (M,), targets (M, 4), weights (M, 4) for the anchors ``all_anchors`` (M, 4)."""
    rng = np.random if rng is None else rng
    im_h, im_w = np.asarray(im_info, dtype=np.float64).reshape(-1)[:2]
    inside = np.where(
        (all_anchors[:, 0] >= -allowed_border)
        & (all_anchors[:, 1] >= -allowed_border)
        & (all_anchors[:, 2] < im_w + allowed_border)
        & (all_anchors[:, 3] < im_h + allowed_border)
    )[0]
    anchors = all_anchors[inside]
    gt = np.asarray(gt_boxes, dtype=np.float64)
    gt = gt.reshape(-1, gt.shape[-1])[:, :4] if gt.size else np.zeros((0, 4))

    labels = np.full(len(inside), -1, dtype=np.float32)
    targets = np.zeros((len(inside), 4), dtype=np.float32)
    if len(gt) == 0:
        labels[:] = 0
    elif len(inside) > 0:
        overlaps = bbox_overlaps(anchors, gt)
        argmax_overlaps = overlaps.argmax(axis=1)
        max_overlaps = overlaps[np.arange(len(inside)), argmax_overlaps]
        gt_max_overlaps = overlaps.max(axis=0)
        best_for_some_gt = np.where((overlaps == gt_max_overlaps) & (gt_max_overlaps > 0))[0]

        negative = max_overlaps < cfg.TRAIN.RPN_NEGATIVE_OVERLAP
        if not cfg.TRAIN.RPN_CLOBBER_POSITIVES:
            labels[negative] = 0
        labels[best_for_some_gt] = 1
        labels[max_overlaps >= cfg.TRAIN.RPN_POSITIVE_OVERLAP] = 1
        if cfg.TRAIN.RPN_CLOBBER_POSITIVES:
            labels[negative] = 0
        targets[:] = bbox_transform(anchors, gt[argmax_overlaps])
    _subsample(labels, cfg, rng)

    weights = np.zeros((len(inside), 4), dtype=np.float32)
    weights[labels == 1] = np.asarray(cfg.TRAIN.RPN_BBOX_WEIGHTS, dtype=np.float32)

    out_labels = np.full(len(all_anchors), -1, dtype=np.float32)
    out_targets = np.zeros((len(all_anchors), 4), dtype=np.float32)
    out_weights = np.zeros((len(all_anchors), 4), dtype=np.float32)
    out_labels[inside] = labels
    out_targets[inside] = targets
    out_weights[inside] = weights
    return out_labels, out_targets, out_weights


def _to_ahw(labels, targets, weights, height: int, width: int, num_anchors: int) -> tuple:
    """(H*W*A,) / (H*W*A, 4) -> (1, A*H*W) labels and (1, 4A, H, W) targets / weights."""
    labels = labels.reshape(1, height, width, num_anchors).transpose(0, 3, 1, 2)
    targets = targets.reshape(1, height, width, 4 * num_anchors).transpose(0, 3, 1, 2)
    weights = weights.reshape(1, height, width, 4 * num_anchors).transpose(0, 3, 1, 2)
    return labels.reshape(1, -1), targets, weights


def assign_anchor(
    feat_shape: Sequence[int],
    gt_boxes: np.ndarray,
    im_info: np.ndarray,
    cfg,
    feat_stride: int = 16,
    scales: Sequence[float] = (8, 16, 32),
    ratios: Sequence[float] = (0.5, 1, 2),
    allowed_border: float = 0,
    rng: np.random.RandomState | None = None,
) -> dict:
    """RPN targets for one image and one feature map (see the module docstring).

    Args:
        feat_shape: shape of the RPN score map, ``(..., H, W)``.
        gt_boxes: (G, 4 or 5) ``(x1, y1, x2, y2[, cls])`` in input-image pixels; G may be 0.
        im_info: ``(height, width, scale)`` of the network input, or (1, 3).
        cfg: config; uses the ``TRAIN.RPN_*`` keys.
        feat_stride: anchor spacing in pixels (also the reference anchor size).
        scales: anchor scales (multiples of ``feat_stride``).
        ratios: anchor aspect ratios (h / w).
        allowed_border: how far (pixels) an anchor may cross the border and still be used.
        rng: random state for the fg/bg subsampling; ``None`` uses ``np.random``.

    Returns:
        ``{'label': (1, A*H*W), 'bbox_target': (1, 4A, H, W), 'bbox_weight': (1, 4A, H, W)}``,
        float32. ``bbox_target`` is ``bbox_transform(anchor, best gt)`` for every anchor inside
        the image (0 outside); ``bbox_weight`` is ``TRAIN.RPN_BBOX_WEIGHTS`` on foreground.
    """
    base_anchors = generate_anchors(base_size=feat_stride, ratios=ratios, scales=scales)
    height, width = _feat_hw(feat_shape)
    all_anchors = _shifted_anchors(base_anchors, height, width, feat_stride)
    labels, targets, weights = _assign(all_anchors, gt_boxes, im_info, cfg, allowed_border, rng)
    labels, targets, weights = _to_ahw(labels, targets, weights, height, width, len(base_anchors))
    return {"label": labels, "bbox_target": targets, "bbox_weight": weights}


def assign_pyramid_anchor(
    feat_shapes: Sequence[Sequence[int]],
    gt_boxes: np.ndarray,
    im_info: np.ndarray,
    cfg,
    feat_strides: Sequence[int] = (4, 8, 16, 32, 64),
    scales: Sequence[float] = (8,),
    ratios: Sequence[float] = (0.5, 1, 2),
    allowed_border: float = np.inf,
    rng: np.random.RandomState | None = None,
) -> dict:
    """FPN RPN targets: one labelling and one subsampling over the anchors of all levels.

    Args:
        feat_shapes: per level, the RPN score map shape ``(..., H_l, W_l)`` (or the original's
            ``[shape]``), in the order of ``feat_strides``.
        feat_strides: stride (and reference anchor size) of each level.
        Others: as :func:`assign_anchor`.

    Returns:
        ``{'label': (1, A * sum_l H_l W_l), 'bbox_target': (1, 4A, sum_l H_l W_l),
        'bbox_weight': (1, 4A, sum_l H_l W_l)}``, float32: each level in the layout of
        :func:`assign_anchor`, flattened over (H, W) and concatenated in level order. As in the
        original, ``bbox_target`` is zero except on foreground anchors.
    """
    assert len(feat_shapes) == len(feat_strides), (
        f"{len(feat_shapes)} feature shapes for {len(feat_strides)} strides"
    )
    levels = []
    for feat_shape, stride in zip(feat_shapes, feat_strides):
        base_anchors = generate_anchors(base_size=stride, ratios=ratios, scales=scales)
        height, width = _feat_hw(feat_shape)
        levels.append((_shifted_anchors(base_anchors, height, width, stride), height, width))
    num_anchors = len(base_anchors)
    all_anchors = np.concatenate([anchors for anchors, _, _ in levels])
    labels, targets, weights = _assign(all_anchors, gt_boxes, im_info, cfg, allowed_border, rng)
    targets[labels != 1] = 0

    out_labels, out_targets, out_weights = [], [], []
    start = 0
    for anchors, height, width in levels:
        end = start + len(anchors)
        lab, tgt, wgt = _to_ahw(
            labels[start:end], targets[start:end], weights[start:end], height, width, num_anchors
        )
        out_labels.append(lab)
        out_targets.append(tgt.reshape(1, 4 * num_anchors, -1))
        out_weights.append(wgt.reshape(1, 4 * num_anchors, -1))
        start = end
    return {
        "label": np.concatenate(out_labels, axis=1),
        "bbox_target": np.concatenate(out_targets, axis=2),
        "bbox_weight": np.concatenate(out_weights, axis=2),
    }
