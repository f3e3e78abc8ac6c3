"""Semantic segmentation metrics: confusion matrix, per-class IoU, mean IoU, pixel accuracy.

Follows the original DeepLab ``evaluate_segmentations``: one confusion matrix (rows = ground
truth, columns = prediction) summed over all images, pixels whose ground truth is
``ignore_label`` dropped, and IoU_c = TP_c / (TP_c + FP_c + FN_c) from the summed matrix (not a
mean of per-image IoUs).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def confusion_matrix(
    pred: np.ndarray, gt: np.ndarray, num_classes: int, ignore_label: int = 255
) -> np.ndarray:
    """Confusion matrix of one image.

    Args:
        pred: predicted labels, any integer-valued array; must lie in ``[0, num_classes)``
            wherever the ground truth is not ignored.
        gt: ground-truth labels, same shape; ``ignore_label`` pixels are skipped.
        num_classes: number of classes C.
        ignore_label: ground-truth value to skip.

    Returns:
        (C, C) int64 matrix, ``conf[g, p]`` = number of pixels of class g predicted as p.

    Raises:
        ValueError: shape mismatch, or a label outside ``[0, C)`` on a non-ignored pixel.
    """
    pred = np.asarray(pred)
    gt = np.asarray(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"pred and gt shapes differ: expected {gt.shape}, got {pred.shape}")
    valid = gt != ignore_label
    g = gt[valid].astype(np.int64)
    p = pred[valid].astype(np.int64)
    for name, v in (("gt", g), ("pred", p)):
        if v.size and (v.min() < 0 or v.max() >= num_classes):
            raise ValueError(
                f"{name} labels must be in [0, {num_classes}) or {ignore_label} (ignored); "
                f"got range [{v.min()}, {v.max()}]"
            )
    counts = np.bincount(g * num_classes + p, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def accumulate(
    pairs: Iterable[tuple[np.ndarray, np.ndarray]], num_classes: int, ignore_label: int = 255
) -> np.ndarray:
    """Sum of :func:`confusion_matrix` over ``(pred, gt)`` pairs, one per image."""
    conf = np.zeros((num_classes, num_classes), dtype=np.int64)
    for pred, gt in pairs:
        conf += confusion_matrix(pred, gt, num_classes, ignore_label)
    return conf


def mean_iou(conf: np.ndarray, ignore_absent: bool = True) -> tuple[np.ndarray, float]:
    """Per-class IoU and their mean from a (summed) confusion matrix.

    Args:
        conf: (C, C) confusion matrix, rows ground truth, columns prediction.
        ignore_absent: a class absent from both prediction and ground truth (union 0) gets IoU
            NaN and is left out of the mean (``np.nanmean``). When False, such a class gets IoU 0
            and counts in the mean, which is what the released DeepLab code computed
            (``tp / np.maximum(1.0, union)`` then ``.mean()``); the two agree whenever every
            class occurs, as on the full Cityscapes / VOC validation sets.

    Returns:
        ``(per_class_iou, mean_iou)``; per-class is float64 (C,).
    """
    conf = np.asarray(conf, dtype=np.float64)
    tp = np.diag(conf)
    union = conf.sum(axis=0) + conf.sum(axis=1) - tp
    if ignore_absent:
        with np.errstate(divide="ignore", invalid="ignore"):
            iou = np.where(union > 0, tp / union, np.nan)
        mean = float(np.nanmean(iou)) if np.any(union > 0) else float("nan")
    else:
        iou = tp / np.maximum(1.0, union)
        mean = float(iou.mean())
    return iou, mean


def pixel_accuracy(conf: np.ndarray) -> float:
    """Fraction of non-ignored pixels labelled correctly (NaN if there are none)."""
    conf = np.asarray(conf, dtype=np.float64)
    total = conf.sum()
    return float(np.trace(conf) / total) if total > 0 else float("nan")
