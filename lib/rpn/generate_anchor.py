"""Reference anchors, py-faster-rcnn style.

For each aspect ratio, the ``base_size`` square is reshaped to that ratio keeping its area
(widths and heights rounded), then scaled; the centre stays at ``(base_size - 1) / 2``.
Ratios vary slowest: anchor ``r * len(scales) + s`` has ratio ``ratios[r]`` and scale
``scales[s]``.
"""

from collections.abc import Sequence

import numpy as np


def generate_anchors(
    base_size: int = 16,
    ratios: Sequence[float] = (0.5, 1, 2),
    scales: Sequence[float] = (8, 16, 32),
) -> np.ndarray:
    """(len(ratios) * len(scales), 4) float64 anchors ``(x1, y1, x2, y2)``.

    The defaults (scales ``2 ** np.arange(3, 6)``) give py-faster-rcnn's 9 anchors, the first
    being ``[-84, -40, 99, 55]``.
    """
    base_anchor = np.array([1, 1, base_size, base_size], dtype=np.float64) - 1
    ratio_anchors = _ratio_enum(base_anchor, np.asarray(ratios, dtype=np.float64))
    scales = np.asarray(scales, dtype=np.float64)
    return np.vstack([_scale_enum(anchor, scales) for anchor in ratio_anchors])


def _whctrs(anchor: np.ndarray) -> tuple:
    w = anchor[2] - anchor[0] + 1
    h = anchor[3] - anchor[1] + 1
    return w, h, anchor[0] + 0.5 * (w - 1), anchor[1] + 0.5 * (h - 1)


def _mkanchors(ws: np.ndarray, hs: np.ndarray, x_ctr: float, y_ctr: float) -> np.ndarray:
    ws = ws[:, np.newaxis]
    hs = hs[:, np.newaxis]
    return np.hstack(
        (
            x_ctr - 0.5 * (ws - 1),
            y_ctr - 0.5 * (hs - 1),
            x_ctr + 0.5 * (ws - 1),
            y_ctr + 0.5 * (hs - 1),
        )
    )


def _ratio_enum(anchor: np.ndarray, ratios: np.ndarray) -> np.ndarray:
    w, h, x_ctr, y_ctr = _whctrs(anchor)
    ws = np.round(np.sqrt(w * h / ratios))
    hs = np.round(ws * ratios)
    return _mkanchors(ws, hs, x_ctr, y_ctr)


def _scale_enum(anchor: np.ndarray, scales: np.ndarray) -> np.ndarray:
    w, h, x_ctr, y_ctr = _whctrs(anchor)
    return _mkanchors(w * scales, h * scales, x_ctr, y_ctr)
