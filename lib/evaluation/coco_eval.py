"""COCO box AP through pycocotools, with its printed summary routed to ``logging``."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import os
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

logger = logging.getLogger(__name__)

# Names of COCOeval.stats for iouType 'bbox', in order.
COCO_STAT_NAMES = (
    "AP",
    "AP50",
    "AP75",
    "APs",
    "APm",
    "APl",
    "AR1",
    "AR10",
    "AR100",
    "ARs",
    "ARm",
    "ARl",
)


def _log_captured(text: str) -> None:
    for line in text.splitlines():
        if line.strip():
            logger.info("%s", line)


def _load_results(coco_gt: COCO, results: Sequence[Mapping[str, Any]]) -> COCO:
    """``coco_gt.loadRes`` that also accepts an empty list and never mutates ``results``."""
    if len(results) == 0:
        # loadRes indexes results[0]; an empty result set is a COCO object without annotations,
        # so COCOeval scores 0 where there is ground truth and -1 where there is none.
        coco_dt = COCO()
        coco_dt.dataset = {
            "images": list(coco_gt.dataset["images"]),
            "categories": copy.deepcopy(coco_gt.dataset.get("categories", [])),
            "annotations": [],
        }
        coco_dt.createIndex()
        return coco_dt
    unknown = {r["image_id"] for r in results} - set(coco_gt.getImgIds())
    if unknown:
        raise ValueError(f"results for image ids not in the ground truth: {sorted(unknown)[:5]}")
    # loadRes adds 'area', 'id', 'iscrowd' and 'segmentation' to each dict it is given.
    return coco_gt.loadRes(copy.deepcopy(list(results)))


def coco_box_ap(coco_gt: COCO, results: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Run ``COCOeval(gt, dt, 'bbox')`` and return its 12 summary statistics by name.

    Args:
        coco_gt: ground truth.
        results: detections ``{'image_id', 'category_id', 'bbox': [x, y, w, h], 'score'}``
            (COCO json result format; ``bbox`` in absolute pixels). May be empty.

    Returns:
        ``{name: value}`` for the names in ``COCO_STAT_NAMES`` (``AP`` is AP@[.5:.95], ``APs``
        small objects, ``AR100`` recall at 100 detections, ...). As in COCOeval, a statistic with
        no ground truth in its area range is -1. The printed summary and per-category AP are
        logged at INFO level.
    """
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        coco_dt = _load_results(coco_gt, results)
        coco_eval = COCOeval(coco_gt, coco_dt, "bbox")
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    _log_captured(buf.getvalue())
    _log_per_category_ap(coco_gt, coco_eval)
    return {name: float(v) for name, v in zip(COCO_STAT_NAMES, coco_eval.stats)}


def _log_per_category_ap(coco_gt: COCO, coco_eval: COCOeval) -> None:
    """Per-category AP@[.5:.95] (all areas, 100 detections), as the original coco imdb printed."""
    # precision: [T iou thresholds, R recall thresholds, K categories, A areas, M max dets]
    precision = coco_eval.eval["precision"][:, :, :, 0, -1]
    for k, cat_id in enumerate(coco_eval.params.catIds):
        p = precision[:, :, k]
        ap = float(np.mean(p[p > -1])) if np.any(p > -1) else -1.0
        name = coco_gt.cats.get(cat_id, {}).get("name", str(cat_id))
        logger.info("AP %-20s %.4f", name, ap)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def write_coco_results(results: list[Mapping[str, Any]], path: str) -> None:
    """Write detections as a COCO results json, atomically (temp file + ``os.replace``).

    numpy scalars and arrays are converted to plain numbers / lists.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp_", suffix=".json", dir=directory)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(list(results), f, default=_json_default)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    logger.info("wrote %d detections to %s", len(results), path)
