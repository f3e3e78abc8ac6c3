"""Box overlaps, clipping and the R-CNN box encodings.

Conventions (as in the original release and py-faster-rcnn): boxes are ``(x1, y1, x2, y2)`` in
inclusive pixel coordinates, so ``w = x2 - x1 + 1`` and the centre is ``x1 + 0.5 * (w - 1)``.
Delta arrays hold 4 columns per class: ``(dx, dy, dw, dh)`` repeated.
"""

import numpy as np

try:
    from lib.bbox.bbox import bbox_overlaps_cython
except ImportError:  # reported when bbox_overlaps is called, so pure-numpy helpers stay usable
    bbox_overlaps_cython = None

# dw/dh are clamped here before exp(), so a diverging regressor gives huge but finite boxes
# instead of inf/NaN (the original's "RPNL1Loss=nan" reports). Same value as Detectron.
BBOX_XFORM_CLIP = np.log(1000.0 / 16.0)

_NOT_BUILT = (
    "lib.bbox.bbox (Cython) is not built: run `sh init.sh` "
    "(or `python setup.py build_ext --inplace` in the repo root)"
)


def bbox_overlaps(boxes: np.ndarray, query_boxes: np.ndarray) -> np.ndarray:
    """IoU matrix (N, K) between ``boxes`` (N, >=4) and ``query_boxes`` (K, >=4), float64."""
    if bbox_overlaps_cython is None:
        raise ImportError(_NOT_BUILT)
    return bbox_overlaps_cython(boxes, query_boxes)


def bbox_overlaps_py(boxes: np.ndarray, query_boxes: np.ndarray) -> np.ndarray:
    """Pure-numpy IoU matrix with the same +1 convention as :func:`bbox_overlaps`."""
    b = np.asarray(boxes, dtype=np.float64)[:, None, :4]
    q = np.asarray(query_boxes, dtype=np.float64)[None, :, :4]
    iw = np.minimum(b[..., 2], q[..., 2]) - np.maximum(b[..., 0], q[..., 0]) + 1
    ih = np.minimum(b[..., 3], q[..., 3]) - np.maximum(b[..., 1], q[..., 1]) + 1
    inter = np.maximum(iw, 0) * np.maximum(ih, 0)
    b_area = (b[..., 2] - b[..., 0] + 1) * (b[..., 3] - b[..., 1] + 1)
    q_area = (q[..., 2] - q[..., 0] + 1) * (q[..., 3] - q[..., 1] + 1)
    union = np.where(inter > 0, b_area + q_area - inter, 1.0)
    return inter / union


def clip_boxes(boxes: np.ndarray, im_shape: tuple) -> np.ndarray:
    """Clip boxes to ``[0, W-1] x [0, H-1]`` in place and return them.

    Args:
        boxes: (N, 4k) boxes, k >= 1 (e.g. one box per class).
        im_shape: ``(H, W, ...)``.
    """
    h, w = im_shape[0], im_shape[1]
    boxes[:, 0::4] = np.clip(boxes[:, 0::4], 0, w - 1)
    boxes[:, 1::4] = np.clip(boxes[:, 1::4], 0, h - 1)
    boxes[:, 2::4] = np.clip(boxes[:, 2::4], 0, w - 1)
    boxes[:, 3::4] = np.clip(boxes[:, 3::4], 0, h - 1)
    return boxes


def filter_boxes(boxes: np.ndarray, min_size: float) -> np.ndarray:
    """Indices of boxes whose width and height are both ``>= min_size``."""
    ws = boxes[:, 2] - boxes[:, 0] + 1
    hs = boxes[:, 3] - boxes[:, 1] + 1
    return np.where((ws >= min_size) & (hs >= min_size))[0]


def _whctr(boxes: np.ndarray) -> tuple:
    w = boxes[:, 2] - boxes[:, 0] + 1.0
    h = boxes[:, 3] - boxes[:, 1] + 1.0
    return w, h, boxes[:, 0] + 0.5 * (w - 1.0), boxes[:, 1] + 0.5 * (h - 1.0)


def nonlinear_transform(ex_rois: np.ndarray, gt_rois: np.ndarray) -> np.ndarray:
    """Encode ``gt_rois`` relative to ``ex_rois`` as (N, 4) deltas ``(dx, dy, dw, dh)``."""
    assert ex_rois.shape[0] == gt_rois.shape[0], "inconsistent rois number"
    ex_w, ex_h, ex_cx, ex_cy = _whctr(np.asarray(ex_rois, dtype=np.float64))
    gt_w, gt_h, gt_cx, gt_cy = _whctr(np.asarray(gt_rois, dtype=np.float64))
    dx = (gt_cx - ex_cx) / (ex_w + 1e-14)
    dy = (gt_cy - ex_cy) / (ex_h + 1e-14)
    dw = np.log(gt_w / ex_w)
    dh = np.log(gt_h / ex_h)
    return np.stack((dx, dy, dw, dh), axis=1)


def nonlinear_pred(boxes: np.ndarray, box_deltas: np.ndarray) -> np.ndarray:
    """Decode (N, 4k) deltas against (N, >=4) ``boxes``; the inverse of nonlinear_transform.

    ``dw`` and ``dh`` are clamped at ``BBOX_XFORM_CLIP`` so the result is always finite for
    finite input.
    """
    if boxes.shape[0] == 0:
        return np.zeros((0, box_deltas.shape[1]), dtype=np.float64)
    w, h, cx, cy = _whctr(np.asarray(boxes, dtype=np.float64))
    dx = box_deltas[:, 0::4]
    dy = box_deltas[:, 1::4]
    dw = np.minimum(box_deltas[:, 2::4], BBOX_XFORM_CLIP)
    dh = np.minimum(box_deltas[:, 3::4], BBOX_XFORM_CLIP)

    pred_cx = dx * w[:, None] + cx[:, None]
    pred_cy = dy * h[:, None] + cy[:, None]
    pred_w = np.exp(dw) * w[:, None]
    pred_h = np.exp(dh) * h[:, None]

    pred = np.zeros(box_deltas.shape, dtype=np.float64)
    pred[:, 0::4] = pred_cx - 0.5 * (pred_w - 1.0)
    pred[:, 1::4] = pred_cy - 0.5 * (pred_h - 1.0)
    pred[:, 2::4] = pred_cx + 0.5 * (pred_w - 1.0)
    pred[:, 3::4] = pred_cy + 0.5 * (pred_h - 1.0)
    return pred


def iou_transform(ex_rois: np.ndarray, gt_rois: np.ndarray) -> np.ndarray:
    """Targets for an IoU loss: the gt boxes themselves."""
    assert ex_rois.shape[0] == gt_rois.shape[0], "inconsistent rois number"
    return gt_rois


def iou_pred(boxes: np.ndarray, box_deltas: np.ndarray) -> np.ndarray:
    """Decode additive corner deltas (N, 4k): ``(x1 + dx1, y1 + dy1, x2 + dx2, y2 + dy2)``."""
    if boxes.shape[0] == 0:
        return np.zeros((0, box_deltas.shape[1]), dtype=np.float64)
    boxes = np.asarray(boxes, dtype=np.float64)
    pred = np.zeros(box_deltas.shape, dtype=np.float64)
    for c in range(4):
        pred[:, c::4] = box_deltas[:, c::4] + boxes[:, c, None]
    return pred


bbox_transform = nonlinear_transform
bbox_pred = nonlinear_pred
