"""Bounding-box regression targets for R-CNN training (proposal-based roidbs).

``bbox_targets`` rows are ``(class, dx, dy, dw, dh)``; class 0 means "no target".
"""

import logging

import numpy as np

from lib.bbox.bbox_transform import bbox_overlaps, bbox_transform

logger = logging.getLogger(__name__)


def compute_bbox_regression_targets(
    rois: np.ndarray, overlaps: np.ndarray, labels: np.ndarray, cfg
) -> np.ndarray:
    """Regression targets of the rois of one image towards their best gt.

    Args:
        rois: (N, 4) boxes; gt boxes are the rows whose ``overlaps`` is exactly 1.
        overlaps: (N,) max overlap of each roi with any gt.
        labels: (N,) class of that gt.
        cfg: config; uses ``TRAIN.BBOX_REGRESSION_THRESH``.

    Returns:
        (N, 5) float32 ``(class, dx, dy, dw, dh)``; rows below the threshold are all zero.
    """
    rois = np.asarray(rois, dtype=np.float64)
    assert len(rois) == len(overlaps), f"{len(rois)} rois but {len(overlaps)} overlaps"
    targets = np.zeros((rois.shape[0], 5), dtype=np.float32)

    gt_inds = np.where(overlaps == 1)[0]
    ex_inds = np.where(overlaps >= cfg.TRAIN.BBOX_REGRESSION_THRESH)[0]
    if len(gt_inds) == 0 or len(ex_inds) == 0:
        if len(gt_inds) == 0:
            logger.warning("bbox regression: image has no ground-truth rois")
        return targets

    ex_gt_overlaps = bbox_overlaps(rois[ex_inds, :], rois[gt_inds, :])
    gt_rois = rois[gt_inds[ex_gt_overlaps.argmax(axis=1)], :]
    targets[ex_inds, 0] = labels[ex_inds]
    targets[ex_inds, 1:] = bbox_transform(rois[ex_inds, :], gt_rois)
    return targets


def _class_rows(targets: np.ndarray, cls: int, class_agnostic: bool) -> np.ndarray:
    if class_agnostic:
        return np.where(targets[:, 0] > 0)[0]
    return np.where(targets[:, 0] == cls)[0]


def add_bbox_regression_targets(roidb: list, cfg) -> tuple:
    """Add normalised ``bbox_targets`` to every roidb entry.

    Normalisation uses ``TRAIN.BBOX_MEANS`` / ``TRAIN.BBOX_STDS`` when
    ``TRAIN.BBOX_NORMALIZATION_PRECOMPUTED``, else the per-class statistics of the targets.

    Args:
        roidb: list of dicts with ``boxes``, ``max_overlaps``, ``max_classes`` and
            ``gt_overlaps`` (only its number of columns is used). Modified in place.
        cfg: config; uses ``CLASS_AGNOSTIC`` and ``TRAIN.*`` above.

    Returns:
        ``(means, stds)``, each flattened from (num_classes, 4); num_classes is 2 when
        class-agnostic.
    """
    assert len(roidb) > 0, "empty roidb"
    assert "max_classes" in roidb[0], "roidb entries need max_classes"
    agnostic = bool(cfg.CLASS_AGNOSTIC)
    num_classes = 2 if agnostic else roidb[0]["gt_overlaps"].shape[1]

    for entry in roidb:
        entry["bbox_targets"] = compute_bbox_regression_targets(
            entry["boxes"], entry["max_overlaps"], entry["max_classes"], cfg
        )

    if cfg.TRAIN.BBOX_NORMALIZATION_PRECOMPUTED:
        means = np.tile(np.asarray(cfg.TRAIN.BBOX_MEANS, dtype=np.float64), (num_classes, 1))
        stds = np.tile(np.asarray(cfg.TRAIN.BBOX_STDS, dtype=np.float64), (num_classes, 1))
    else:
        counts = np.zeros((num_classes, 1)) + 1e-14
        sums = np.zeros((num_classes, 4))
        squared_sums = np.zeros((num_classes, 4))
        for entry in roidb:
            targets = entry["bbox_targets"]
            for cls in range(1, num_classes):
                rows = _class_rows(targets, cls, agnostic)
                counts[cls] += rows.size
                sums[cls] += targets[rows, 1:].sum(axis=0)
                squared_sums[cls] += (targets[rows, 1:] ** 2).sum(axis=0)
        means = sums / counts
        # var(x) = E(x^2) - E(x)^2
        stds = np.sqrt(squared_sums / counts - means**2)

    logger.info("bbox target means (fg classes): %s", means[1:].mean(axis=0))
    logger.info("bbox target stds (fg classes): %s", stds[1:].mean(axis=0))

    for entry in roidb:
        targets = entry["bbox_targets"]
        for cls in range(1, num_classes):
            rows = _class_rows(targets, cls, agnostic)
            targets[rows, 1:] -= means[cls]
            targets[rows, 1:] /= stds[cls]
    return means.ravel(), stds.ravel()


def expand_bbox_regression_targets(bbox_targets_data: np.ndarray, num_classes: int, cfg) -> tuple:
    """Spread (N, 5) compact targets into per-class slots.

    Class-agnostic models (``cfg.CLASS_AGNOSTIC``) have 2 slots and every foreground target goes
    to slot 1; otherwise a target of class c goes to slot c.

    Returns:
        ``(bbox_targets, bbox_weights)``, both (N, 4 * slots) float32; weights are
        ``TRAIN.BBOX_WEIGHTS`` on the filled slot and 0 elsewhere.
    """
    classes = bbox_targets_data[:, 0]
    if cfg.CLASS_AGNOSTIC:
        num_classes = 2
    bbox_targets = np.zeros((classes.size, 4 * num_classes), dtype=np.float32)
    bbox_weights = np.zeros(bbox_targets.shape, dtype=np.float32)
    for index in np.where(classes > 0)[0]:
        start = 4 if cfg.CLASS_AGNOSTIC else int(4 * classes[index])
        bbox_targets[index, start : start + 4] = bbox_targets_data[index, 1:]
        bbox_weights[index, start : start + 4] = cfg.TRAIN.BBOX_WEIGHTS
    return bbox_targets, bbox_weights
