# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""IoU between two sets of boxes, with the R-CNN "+1 pixel" convention.

Boxes are ``(x1, y1, x2, y2)`` in inclusive pixel coordinates, so a box's width is
``x2 - x1 + 1``. Extra columns (e.g. a class or score in column 4) are ignored.
"""

import numpy as np


cdef void _overlaps(const double[:, ::1] boxes, const double[:, ::1] query,
                    double[:, ::1] out) noexcept nogil:
    cdef Py_ssize_t n_boxes = boxes.shape[0]
    cdef Py_ssize_t n_query = query.shape[0]
    cdef Py_ssize_t n, k
    cdef double iw, ih, inter, query_area, box_area
    for k in range(n_query):
        query_area = (query[k, 2] - query[k, 0] + 1) * (query[k, 3] - query[k, 1] + 1)
        for n in range(n_boxes):
            iw = min(boxes[n, 2], query[k, 2]) - max(boxes[n, 0], query[k, 0]) + 1
            if iw <= 0:
                continue
            ih = min(boxes[n, 3], query[k, 3]) - max(boxes[n, 1], query[k, 1]) + 1
            if ih <= 0:
                continue
            inter = iw * ih
            box_area = (boxes[n, 2] - boxes[n, 0] + 1) * (boxes[n, 3] - boxes[n, 1] + 1)
            out[n, k] = inter / (box_area + query_area - inter)


def _as_boxes(a, name):
    a = np.asarray(a)
    if a.ndim != 2 or a.shape[1] < 4:
        raise ValueError(f"{name}: expected shape (N, >=4), got {a.shape}")
    return np.ascontiguousarray(a[:, :4], dtype=np.float64)


def bbox_overlaps_cython(boxes, query_boxes):
    """IoU of every box with every query box.

    Args:
        boxes: (N, >=4) array of boxes.
        query_boxes: (K, >=4) array of boxes.

    Returns:
        (N, K) float64 array; 0 where boxes do not intersect.
    """
    b = _as_boxes(boxes, "boxes")
    q = _as_boxes(query_boxes, "query_boxes")
    out = np.zeros((b.shape[0], q.shape[0]), dtype=np.float64)
    _overlaps(b, q, out)
    return out
