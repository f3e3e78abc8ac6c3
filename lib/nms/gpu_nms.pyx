# cython: language_level=3, boundscheck=False, wraparound=False
# distutils: language = c++
"""Greedy NMS on the GPU (CUDA bitmask kernel in nms_kernel.cu).

Suppresses a box when its IoU (+1 pixel areas, float32) with a kept box is ``> thresh``.
"""

import numpy as np


cdef extern from "gpu_nms.hpp":
    void _nms(int* keep_out, int* num_out, const float* boxes_host, int boxes_num,
              float nms_overlap_thresh, int device_id) except + nogil


def gpu_nms(dets, float thresh, int device_id=0):
    """Greedy NMS on GPU ``device_id``.

    Args:
        dets: (N, >=5) ``(x1, y1, x2, y2, score, ...)``.
        thresh: IoU above which the lower-scored box is dropped.
        device_id: CUDA device ordinal.

    Returns:
        List of kept row indices, highest score first (ties: lower index first; NaN scores
        last).

    Raises:
        RuntimeError: a CUDA call failed.
    """
    dets = np.asarray(dets)
    if dets.ndim != 2 or dets.shape[1] < 5:
        raise ValueError(f"dets: expected shape (N, >=5), got {dets.shape}")
    if dets.shape[0] == 0:
        return []
    order = np.argsort(-dets[:, 4].astype(np.float64), kind="stable")
    cdef float[:, ::1] boxes = np.ascontiguousarray(dets[order, :4], dtype=np.float32)
    cdef int[::1] keep = np.zeros(dets.shape[0], dtype=np.intc)
    cdef int num_out = 0
    cdef int boxes_num = boxes.shape[0]
    with nogil:
        _nms(&keep[0], &num_out, &boxes[0, 0], boxes_num, thresh, device_id)
    return order[np.asarray(keep)[:num_out]].tolist()
