"""Box utilities of the dataset code (as the original ``ds_utils.py``)."""

from __future__ import annotations

import numpy as np


def unique_boxes(boxes: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """Sorted indices of the first occurrence of each distinct box.

    Boxes are compared after ``np.round(boxes * scale)``, through the hash
    ``x1 + 1e3 * y1 + 1e6 * x2 + 1e9 * y2`` of the original (exact for coordinates below 1000).

    Args:
        boxes: (N, 4) x1, y1, x2, y2.
        scale: factor applied before rounding (e.g. 1/16 to merge boxes on a stride-16 grid).
    """
    v = np.array([1, 1e3, 1e6, 1e9])
    hashes = np.round(np.asarray(boxes, dtype=np.float64) * scale).dot(v)
    _, index = np.unique(hashes, return_index=True)
    return np.sort(index)


def filter_small_boxes(boxes: np.ndarray, min_size: float) -> np.ndarray:
    """Indices of boxes with ``x2 - x1 >= min_size`` and ``y2 - y1 > min_size``.

    The asymmetric comparison (``>=`` for the width, ``>`` for the height) and the widths
    without the +1 are the original's (inherited from py-faster-rcnn) and kept as they are.
    """
    boxes = np.asarray(boxes, dtype=np.float64)  # uint16 boxes would wrap around below 0
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    return np.where((w >= min_size) & (h > min_size))[0]
