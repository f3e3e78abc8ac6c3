"""PASCAL VOC detection average precision, as in the original ``pascal_voc_eval.py``.

The matching rules are those of py-faster-rcnn / the VOC devkit:

* detections of one class are sorted by descending score and matched greedily, in that order, to
  the unmatched ground-truth box of the same image with the highest IoU;
* IoU uses the inclusive-pixel convention (``w = x2 - x1 + 1``) and a match needs IoU strictly
  greater than ``ovthresh``;
* a detection whose best match is a *difficult* object counts as neither TP nor FP, and difficult
  objects are not counted in the number of positives;
* a second detection of an already matched object is a false positive.

Unlike the original, which read detection files and a pickled annotation cache, ``voc_eval`` works
on in-memory data; the dataset code does the file handling.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

# (image_id, score, x1, y1, x2, y2)
Detection = Sequence[Any]


def parse_voc_rec(filename: str) -> list[dict[str, Any]]:
    """Read the objects of one VOC xml annotation file.

    Coordinates are kept **as written in the xml, i.e. 1-based** (this is what the original
    ``pascal_voc_eval.parse_rec`` did, and detections evaluated against it must be in the same
    frame). The PascalVOC imdb, by contrast, subtracts 1 to get 0-based boxes for training; its
    ``evaluate_detections`` adds the 1 back when it writes the result files.

    Returns:
        One dict per ``<object>``: ``name`` (str), ``bbox`` ([xmin, ymin, xmax, ymax], 1-based),
        ``difficult`` (int 0/1, 0 if absent) and ``truncated`` (int 0/1, 0 if absent).
    """
    tree = ET.parse(filename)
    objects = []
    for obj in tree.findall("object"):
        box = obj.find("bndbox")
        objects.append(
            {
                "name": obj.findtext("name", "").strip(),
                # A few VOC2012 files write coordinates such as "273.0"; int(float()) accepts both.
                "bbox": [int(float(box.findtext(k))) for k in ("xmin", "ymin", "xmax", "ymax")],
                "difficult": int(obj.findtext("difficult", "0") or 0),
                "truncated": int(obj.findtext("truncated", "0") or 0),
            }
        )
    return objects


def voc_ap(rec: np.ndarray, prec: np.ndarray, use_07_metric: bool = False) -> float:
    """Average precision from a recall / precision curve.

    Args:
        rec: cumulative recall, in detection order (non-decreasing).
        prec: cumulative precision, same length.
        use_07_metric: VOC2007 11-point metric: mean over t in {0, 0.1, ..., 1} of the maximum
            precision at recall >= t (0 where no such point). Otherwise (VOC2010+), the area under
            the monotone (right-to-left running max) precision envelope.
    """
    rec = np.asarray(rec, dtype=np.float64)
    prec = np.asarray(prec, dtype=np.float64)
    if use_07_metric:
        ap = 0.0
        for t in np.arange(0.0, 1.1, 0.1):
            p = np.max(prec[rec >= t]) if np.any(rec >= t) else 0.0
            ap += p / 11.0
        return float(ap)

    # Sentinels, then the precision envelope, then sum (delta recall) * precision where recall
    # changes.
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def _box_iou(box: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """IoU of one box (4,) with gt boxes (K, 4), inclusive-pixel (+1) convention."""
    iw = np.maximum(np.minimum(gt[:, 2], box[2]) - np.maximum(gt[:, 0], box[0]) + 1.0, 0.0)
    ih = np.maximum(np.minimum(gt[:, 3], box[3]) - np.maximum(gt[:, 1], box[1]) + 1.0, 0.0)
    inters = iw * ih
    union = (
        (box[2] - box[0] + 1.0) * (box[3] - box[1] + 1.0)
        + (gt[:, 2] - gt[:, 0] + 1.0) * (gt[:, 3] - gt[:, 1] + 1.0)
        - inters
    )
    return inters / union


def voc_eval(
    detections: Sequence[Detection],
    annotations: Mapping[Any, Sequence[Mapping[str, Any]]],
    classname: str,
    ovthresh: float = 0.5,
    use_07_metric: bool = False,
) -> tuple[np.ndarray, np.ndarray, float]:
    """VOC AP of one class.

    Args:
        detections: detections of ``classname`` only, each ``(image_id, score, x1, y1, x2, y2)``,
            in the same coordinate frame as the annotations.
        annotations: ``image_id -> objects`` for every image of the test set (images without
            objects of this class still matter: their detections are false positives). Each
            object is a dict with ``name``, ``bbox`` [x1, y1, x2, y2] and optionally
            ``difficult`` (default 0); objects of other classes are skipped.
        classname: the class to evaluate.
        ovthresh: IoU a detection must exceed to match.
        use_07_metric: 11-point VOC2007 AP instead of the area under the curve.

    Returns:
        ``(rec, prec, ap)``: cumulative recall and precision in descending-score order, and AP.
        With no non-difficult object of the class, recall is 0/0 (NaN) and AP is what the
        original gave (NaN for the area metric, 0 for the 11-point one or without detections);
        a warning is logged.

    Raises:
        ValueError: a detection names an image missing from ``annotations``, or is malformed.
    """
    class_recs = {}
    npos = 0
    for image_id, objects in annotations.items():
        objs = [o for o in objects if o["name"] == classname]
        difficult = np.array([bool(o.get("difficult", 0)) for o in objs], dtype=bool)
        class_recs[image_id] = {
            "bbox": np.array([o["bbox"] for o in objs], dtype=np.float64).reshape(-1, 4),
            "difficult": difficult,
            "det": np.zeros(len(objs), dtype=bool),
        }
        npos += int(np.sum(~difficult))

    nd = len(detections)
    image_ids = [d[0] for d in detections]
    confidence = np.array([float(d[1]) for d in detections], dtype=np.float64)
    boxes = np.array([[float(v) for v in d[2:]] for d in detections], dtype=np.float64)
    if nd and boxes.shape != (nd, 4):
        raise ValueError(
            f"detections must be (image_id, score, x1, y1, x2, y2); got rows of length "
            f"{boxes.shape[1:] or 'varying'}"
        )
    missing = set(image_ids) - set(class_recs)
    if missing:
        raise ValueError(f"detections for images not in annotations: {sorted(missing)[:5]}")

    # Default (quicksort) argsort as in the original, so ties resolve identically.
    order = np.argsort(-confidence)
    tp = np.zeros(nd)
    fp = np.zeros(nd)
    for d, k in enumerate(order):
        r = class_recs[image_ids[k]]
        ovmax = -np.inf
        if r["bbox"].size > 0:
            overlaps = _box_iou(boxes[k], r["bbox"])
            jmax = int(np.argmax(overlaps))
            ovmax = overlaps[jmax]
        if ovmax > ovthresh:
            if r["difficult"][jmax]:
                continue  # neither TP nor FP
            if not r["det"][jmax]:
                tp[d] = 1.0
                r["det"][jmax] = True
            else:
                fp[d] = 1.0  # duplicate detection
        else:
            fp[d] = 1.0

    fp = np.cumsum(fp)
    tp = np.cumsum(tp)
    if npos == 0:
        logger.warning(
            "voc_eval: no non-difficult '%s' objects; recall and AP undefined", classname
        )
    with np.errstate(divide="ignore", invalid="ignore"):
        rec = tp / float(npos)
    # eps: the first detections may all hit difficult objects (tp + fp == 0).
    prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    return rec, prec, voc_ap(rec, prec, use_07_metric)
