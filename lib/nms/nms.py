"""Non-maximum suppression: numpy, Cython and CUDA greedy NMS, and soft-NMS.

``dets`` is always (N, >=5) ``(x1, y1, x2, y2, score, ...)`` with the R-CNN "+1 pixel" areas.
Greedy variants return the kept row indices (a list, highest score first); soft-NMS returns the
re-scored rows. Boxes are visited by descending score, ties by row index, NaN scores last.

Suppression boundary, as in the original: ``nms`` and ``gpu_nms`` drop a box when its IoU with
a kept box is ``> thresh``; ``cpu_nms`` drops it when ``>= thresh``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

try:
    from lib.nms.cpu_nms import cpu_nms
except ImportError:  # reported when cpu_nms_wrapper is called
    cpu_nms = None

_CPU_NOT_BUILT = (
    "lib.nms.cpu_nms (Cython) is not built: run `sh init.sh` "
    "(or `python setup.py build_ext --inplace` in the repo root)"
)
_GPU_NOT_BUILT = "GPU NMS was not built: install a CUDA MXNet and re-run sh init.sh"


def py_nms_wrapper(thresh: float) -> Callable[[np.ndarray], list[int]]:
    """``dets -> keep`` using the numpy :func:`nms`."""

    def _nms(dets: np.ndarray) -> list[int]:
        return nms(dets, thresh)

    return _nms


def py_softnms_wrapper(thresh: float, max_dets: int = -1) -> Callable[[np.ndarray], np.ndarray]:
    """``dets -> rescored dets`` using gaussian :func:`soft_nms` (sigma = ``thresh``)."""

    def _nms(dets: np.ndarray) -> np.ndarray:
        return soft_nms(dets, thresh, max_dets)

    return _nms


def cpu_nms_wrapper(thresh: float) -> Callable[[np.ndarray], list[int]]:
    """``dets -> keep`` using the Cython ``cpu_nms``."""
    if cpu_nms is None:
        raise ImportError(_CPU_NOT_BUILT)

    def _nms(dets: np.ndarray) -> list[int]:
        return cpu_nms(dets, thresh)

    return _nms


def gpu_nms_wrapper(thresh: float, device_id: int) -> Callable[[np.ndarray], list[int]]:
    """``dets -> keep`` using the CUDA bitmask NMS on GPU ``device_id``.

    Raises:
        RuntimeError: the CUDA extension ``lib.nms.gpu_nms`` was not built.
    """
    try:
        from lib.nms.gpu_nms import gpu_nms
    except ImportError as err:
        raise RuntimeError(_GPU_NOT_BUILT) from err

    def _nms(dets: np.ndarray) -> list[int]:
        return gpu_nms(dets, thresh, device_id)

    return _nms


def _score_order(scores: np.ndarray) -> np.ndarray:
    # -NaN is NaN, which argsort puts last; "stable" breaks ties by row index.
    return np.argsort(-scores, kind="stable")


def _iou_with(dets: np.ndarray, areas: np.ndarray, i: int, others: np.ndarray) -> np.ndarray:
    """IoU of row ``i`` with the rows ``others`` (+1 convention)."""
    w = np.maximum(
        0.0, np.minimum(dets[i, 2], dets[others, 2]) - np.maximum(dets[i, 0], dets[others, 0]) + 1
    )
    h = np.maximum(
        0.0, np.minimum(dets[i, 3], dets[others, 3]) - np.maximum(dets[i, 1], dets[others, 1]) + 1
    )
    inter = w * h
    with np.errstate(invalid="ignore", divide="ignore"):  # zero-area boxes give NaN, kept
        return inter / (areas[i] + areas[others] - inter)


def _areas(dets: np.ndarray) -> np.ndarray:
    return (dets[:, 2] - dets[:, 0] + 1) * (dets[:, 3] - dets[:, 1] + 1)


def nms(dets: np.ndarray, thresh: float) -> list[int]:
    """Greedy NMS in numpy: drop boxes whose IoU with a kept box is ``> thresh``."""
    dets = np.asarray(dets, dtype=np.float64)
    if dets.shape[0] == 0:
        return []
    areas = _areas(dets)
    order = _score_order(dets[:, 4])
    keep = []
    while order.size > 0:
        i = order[0]
        keep.append(int(i))
        ovr = _iou_with(dets, areas, i, order[1:])
        order = order[1:][~(ovr > thresh)]
    return keep


def soft_nms(
    dets: np.ndarray,
    thresh: float,
    max_dets: int = -1,
    method: str = "gaussian",
    sigma: float | None = None,
) -> np.ndarray:
    """Soft-NMS (Bodla et al., 2017): decay the scores of overlapping boxes instead of dropping.

    Repeatedly takes the highest-scored remaining box and rescales the others by their IoU
    ``o`` with it:

    - ``'gaussian'``: ``s * exp(-o**2 / sigma)``; as in the original, ``sigma`` defaults to
      ``thresh`` (TEST.SOFTNMS_THRESH = 0.6).
    - ``'linear'``: ``s * (1 - o)`` where ``o > thresh``, unchanged elsewhere.

    Args:
        dets: (N, >=5) detections; not modified.
        thresh: see ``method``.
        max_dets: keep at most this many rows (-1: all).
        method: ``'gaussian'`` or ``'linear'``.
        sigma: gaussian width; ``None`` means ``thresh``.

    Returns:
        (M, dets.shape[1]) float64 copy of the selected rows with column 4 replaced by the
        rescored score, in selection order (descending score).
    """
    if method not in ("gaussian", "linear"):
        raise ValueError(f"soft_nms method must be 'gaussian' or 'linear', got {method!r}")
    dets = np.array(dets, dtype=np.float64)
    if dets.ndim != 2 or dets.shape[0] == 0:
        return np.zeros((0, dets.shape[1] if dets.ndim == 2 else 5), dtype=np.float64)
    sigma = thresh if sigma is None else sigma
    max_dets = dets.shape[0] if max_dets < 0 else min(max_dets, dets.shape[0])
    areas = _areas(dets)
    scores = dets[:, 4].copy()
    order = _score_order(scores)
    keep = []
    while order.size > 0 and len(keep) < max_dets:
        i = order[0]
        keep.append(i)
        dets[i, 4] = scores[i]
        order = order[1:]
        ovr = np.nan_to_num(_iou_with(dets, areas, i, order), nan=0.0)  # degenerate boxes
        if method == "linear":
            decay = np.where(ovr > thresh, 1.0 - ovr, 1.0)
        else:
            decay = np.exp(-(ovr**2) / sigma)
        scores[order] *= decay
        order = order[_score_order(scores[order])]
    return dets[keep]
