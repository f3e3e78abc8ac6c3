# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Greedy NMS on the CPU (the original ``cpu_nms``).

Boxes use the R-CNN "+1 pixel" areas. A box is suppressed when its IoU with an already kept
box is ``>= thresh`` (the numpy ``nms`` suppresses ``> thresh``; they differ only at equality).
"""

import numpy as np


cdef Py_ssize_t _greedy(const double[:, ::1] dets, const Py_ssize_t[::1] order, double thresh,
                        char[::1] suppressed, Py_ssize_t[::1] keep) noexcept nogil:
    cdef Py_ssize_t n = order.shape[0]
    cdef Py_ssize_t num_keep = 0
    cdef Py_ssize_t _i, _j, i, j
    cdef double ix1, iy1, ix2, iy2, iarea, w, h, inter
    for _i in range(n):
        i = order[_i]
        if suppressed[i]:
            continue
        keep[num_keep] = i
        num_keep += 1
        ix1 = dets[i, 0]
        iy1 = dets[i, 1]
        ix2 = dets[i, 2]
        iy2 = dets[i, 3]
        iarea = (ix2 - ix1 + 1) * (iy2 - iy1 + 1)
        for _j in range(_i + 1, n):
            j = order[_j]
            if suppressed[j]:
                continue
            w = max(0.0, min(ix2, dets[j, 2]) - max(ix1, dets[j, 0]) + 1)
            h = max(0.0, min(iy2, dets[j, 3]) - max(iy1, dets[j, 1]) + 1)
            inter = w * h
            if inter / (iarea + (dets[j, 2] - dets[j, 0] + 1) * (dets[j, 3] - dets[j, 1] + 1)
                        - inter) >= thresh:
                suppressed[j] = 1
    return num_keep


def cpu_nms(dets, double thresh):
    """Greedy NMS.

    Args:
        dets: (N, >=5) ``(x1, y1, x2, y2, score, ...)``, any float dtype.
        thresh: IoU at or above which the lower-scored box is dropped.

    Returns:
        List of kept row indices, highest score first (ties: lower index first; NaN scores
        last).
    """
    dets = np.asarray(dets)
    if dets.ndim != 2 or dets.shape[1] < 5:
        raise ValueError(f"dets: expected shape (N, >=5), got {dets.shape}")
    if dets.shape[0] == 0:
        return []
    boxes = np.ascontiguousarray(dets[:, :4], dtype=np.float64)
    order = np.argsort(-dets[:, 4].astype(np.float64), kind="stable").astype(np.intp)
    suppressed = np.zeros(dets.shape[0], dtype=np.int8)
    keep = np.empty(dets.shape[0], dtype=np.intp)
    num_keep = _greedy(boxes, order, thresh, suppressed, keep)
    return keep[:num_keep].tolist()
