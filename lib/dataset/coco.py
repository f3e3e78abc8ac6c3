"""MS COCO detection dataset (pycocotools), as the original ``coco.py``.

Layout under ``data_path`` (the original README's ``./data/coco``)::

    annotations/instances_<image_set>.json     (image_info_<image_set>.json for 'test' sets)
    images/<data_name>/COCO_<data_name>_%012d.jpg   (or each image's ``file_name``: see
                                                      ``image_path_from_index``)

``data_name`` is the image set, except that minival2014 and valminusminival2014 live in
val2014 and test-dev2015 in test2015.

COCO category ids (1..90, not contiguous) map to class indices 1..K in the order of the json's
category list (0 is background); ``evaluate_detections`` maps them back.

Bad data. A json that does not parse (e.g. half written) raises ``ValueError`` naming the file.
When the roidb is built, the json is checked against itself: an image entry without a positive
``width`` / ``height``, an annotation with a ``category_id`` not in ``categories`` or a ``bbox``
that is not ``[x, y, w, h]`` raise ``ValueError`` naming the file and the entry (image id,
annotation id); annotations whose ``image_id`` is not an image of the json are dropped with one
warning giving their count. The real size of each image is checked when the loaders decode it
(:func:`lib.utils.image.prepare_roi_image`).
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from tqdm import tqdm

from lib.dataset.imdb import IMDB, LimitedWarnings, Roidb
from lib.evaluation import coco_box_ap, write_coco_results

logger = logging.getLogger(__name__)

# The 80 COCO categories in the order of the official json (class indices 1..80), as the
# original rfcn/demo.py hard-coded them: the demos name the released models' classes with it
# when no COCO annotations are at hand.
COCO_CLASSES: tuple[str, ...] = (
    "__background__",
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich",
    "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote",
    "keyboard", "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book",
    "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip

# Image sets whose images live in another set's directory.
VIEW_MAP = {
    "minival2014": "val2014",
    "valminusminival2014": "val2014",
    "test-dev2015": "test2015",
}


def _quiet_coco(ann_file: str) -> COCO:
    """``COCO(ann_file)`` with its prints routed to the log.

    Raises:
        ValueError: the file is not a COCO json (truncated, malformed, an entry without ``id``,
            ...); the message names the file, the cause is chained.
    """
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf):
            coco = COCO(ann_file)
    # json.JSONDecodeError is a ValueError; pycocotools asserts a dict and indexes by key.
    except (ValueError, KeyError, TypeError, AttributeError, AssertionError) as err:
        raise ValueError(
            f"cannot read COCO annotation file {ann_file}: {type(err).__name__}: {err} "
            "(truncated, or not a COCO instances json?)"
        ) from err
    for line in buf.getvalue().splitlines():
        if line.strip():
            logger.debug("%s", line)
    return coco


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class coco(IMDB):
    """COCO detection data.

    Args:
        image_set: e.g. 'train2014', 'minival2014', 'test-dev2015'.
        root_path: root of ``cache/`` (the original's ``./data``).
        data_path: the COCO directory (see the module docstring).
        result_path: default directory of evaluation results.
        name: dataset prefix of ``self.name`` and the cache files ('COCO' as the original;
            the synthetic data uses 'synthetic').

    Raises:
        FileNotFoundError: ``data_path`` or the annotation file does not exist.
        ValueError: the annotation file is not a readable COCO json, or lists no images.
    """

    def __init__(
        self,
        image_set: str,
        root_path: str,
        data_path: str,
        result_path: str | None = None,
        *,
        name: str = "COCO",
    ) -> None:
        super().__init__(name, image_set, root_path, data_path, result_path)
        self.data_name = VIEW_MAP.get(image_set, image_set)
        ann_file = self._get_ann_file()
        if not os.path.isdir(self.data_path):
            raise FileNotFoundError(
                f"COCO data directory {self.data_path} does not exist. {self.layout_hint()}"
            )
        if not os.path.isfile(ann_file):
            ann_dir = os.path.join(self.data_path, "annotations")
            found = sorted(os.listdir(ann_dir)) if os.path.isdir(ann_dir) else []
            raise FileNotFoundError(
                f"COCO annotation file {ann_file} does not exist (found in {ann_dir}: "
                f"{', '.join(found) or 'nothing'}). {self.layout_hint()}"
            )
        self.coco = _quiet_coco(ann_file)

        cat_ids = self.coco.getCatIds()
        cats = [cat["name"] for cat in self.coco.loadCats(cat_ids)]
        self.classes = ["__background__", *cats]
        self.num_classes = len(self.classes)
        self._class_to_ind = {c: i for i, c in enumerate(self.classes)}
        self._class_to_coco_ind = dict(zip(cats, cat_ids))
        self._coco_ind_to_class_ind = {cid: i + 1 for i, cid in enumerate(cat_ids)}
        self._set_index(list(self.coco.getImgIds()), f"no images in {ann_file}")

    def _get_ann_file(self) -> str:
        prefix = "image_info" if "test" in self.image_set else "instances"
        return os.path.join(self.data_path, "annotations", f"{prefix}_{self.image_set}.json")

    def layout_hint(self) -> str:
        return (
            f"Expected {self.data_path}/annotations/instances_<image_set>.json (image_info_ for "
            f"test sets) and {self.data_path}/images/<set>/COCO_<set>_%012d.jpg; "
            "'python -m lib.tools.make_synthetic --root data' writes a small example to data/coco."
        )

    def image_path_from_index(self, index: int) -> str:
        """The image's ``file_name`` in the json, under ``data_path/images/<data_name>/``.

        ``file_name`` may be absolute, or relative with ``..`` (a json of your own data can
        point at images in any folder). Without one: ``COCO_<data_name>_%012d.jpg``, the
        official name (which the official jsons also give).
        """
        filename = self.coco.imgs.get(index, {}).get("file_name") or (
            f"COCO_{self.data_name}_{index:012d}.jpg"
        )
        path = os.path.join(self.data_path, "images", self.data_name, filename)
        # resolved here: the folder a '..' climbs out of need not exist
        return os.path.normpath(path) if ".." in filename else path

    def _roidb_sources(self) -> list[str]:
        return [self._get_ann_file()]

    def _check_json(self) -> None:
        """Checks the annotation json against itself (see the module docstring).

        Raises:
            ValueError: naming the file and the image or annotation entry.
        """
        ann_file = self._get_ann_file()
        for im in self.coco.dataset.get("images", []):
            for key in ("width", "height"):
                value = im.get(key)
                if not _is_number(value) or value <= 0:
                    raise ValueError(
                        f"{ann_file}: image {im.get('id')} ({im.get('file_name', '?')}) has "
                        f"{key} {value!r}; expected a positive number"
                    )
        orphans = []
        for ann in self.coco.dataset.get("annotations", []):
            ann_id, image_id = ann.get("id"), ann.get("image_id")
            if image_id not in self.coco.imgs:
                orphans.append(ann_id)
                continue
            if ann.get("category_id") not in self._coco_ind_to_class_ind:
                raise ValueError(
                    f"{ann_file}: annotation {ann_id} (image {image_id}) has unknown category_id "
                    f"{ann.get('category_id')!r}; the json's categories have ids "
                    f"{sorted(self._coco_ind_to_class_ind)}"
                )
            bbox = ann.get("bbox")
            if not (
                isinstance(bbox, (list, tuple))
                and len(bbox) == 4
                and all(_is_number(v) and math.isfinite(v) for v in bbox)
            ):
                raise ValueError(
                    f"{ann_file}: annotation {ann_id} (image {image_id}) has bbox {bbox!r}; "
                    "expected [x, y, width, height] (4 numbers)"
                )
        if orphans:
            logger.warning(
                "%s: %d annotation(s) in %s refer to image ids that are not in its 'images' "
                "(first: annotation %s); dropped",
                self.name,
                len(orphans),
                ann_file,
                orphans[0],
            )

    def _build_gt_roidb(self) -> Roidb:
        self._check_json()
        issues = LimitedWarnings(f"invalid boxes dropped from {self.name}", logger)
        roidb = [
            self._load_coco_annotation(index, issues)
            for index in tqdm(self.image_set_index, desc=self.name, disable=None, leave=False)
        ]
        issues.summary()
        return roidb

    def _load_coco_annotation(self, index: int, issues: LimitedWarnings) -> dict[str, Any]:
        """One roidb record. Crowd annotations are not loaded (``iscrowd=False``), as the original.

        Boxes ``[x, y, w, h]`` become ``x1 = max(0, x)``, ``x2 = min(W - 1, x1 + max(0, w - 1))``
        (same for y); a box with ``area <= 0``, ``w <= 0`` or ``h <= 0``, or lying outside the
        image (x2 < x1 after clipping) is dropped with a warning.
        """
        im_ann = self.coco.loadImgs(index)[0]
        width, height = int(im_ann["width"]), int(im_ann["height"])
        # getAnnIds(iscrowd=False) would fail on an annotation without 'iscrowd' (0 by default)
        objs = [obj for obj in self.coco.imgToAnns.get(index, []) if not obj.get("iscrowd", 0)]

        valid = []
        for obj in objs:
            x, y, w, h = obj["bbox"]
            x1, y1 = max(0.0, x), max(0.0, y)
            x2 = min(width - 1.0, x1 + max(0.0, w - 1.0))
            y2 = min(height - 1.0, y1 + max(0.0, h - 1.0))
            if obj.get("area", 1) <= 0 or w <= 0 or h <= 0:
                issues.warn(
                    "%s: annotation %s has zero area (bbox %s); skipped",
                    self.name,
                    obj.get("id"),
                    obj["bbox"],
                )
            elif x2 < x1 or y2 < y1:
                issues.warn(
                    "%s: annotation %s (bbox %s) lies outside the %dx%d image %s; skipped",
                    self.name,
                    obj.get("id"),
                    obj["bbox"],
                    width,
                    height,
                    index,
                )
            else:
                valid.append((obj, [x1, y1, x2, y2]))

        num_objs = len(valid)
        boxes = np.zeros((num_objs, 4), dtype=np.uint16)
        gt_classes = np.zeros((num_objs,), dtype=np.int32)
        overlaps = np.zeros((num_objs, self.num_classes), dtype=np.float32)
        for ix, (obj, box) in enumerate(valid):
            cls = self._coco_ind_to_class_ind[obj["category_id"]]
            boxes[ix, :] = box
            gt_classes[ix] = cls
            # Never true given the iscrowd=False query; kept from the original for callers that
            # load crowd boxes: their overlaps are -1 so they are neither fg nor bg.
            if obj.get("iscrowd", 0):
                overlaps[ix, :] = -1.0
            else:
                overlaps[ix, cls] = 1.0

        return {
            "image": self.image_path_from_index(index),
            "height": height,
            "width": width,
            "boxes": boxes,
            "gt_classes": gt_classes,
            "gt_overlaps": overlaps,
            "max_classes": overlaps.argmax(axis=1),
            "max_overlaps": overlaps.max(axis=1),
            "flipped": False,
        }

    # ---------------------------------------------------------------------------- evaluation

    def coco_results(self, all_boxes: Sequence[Sequence[np.ndarray]]) -> list[dict[str, Any]]:
        """Detections in the COCO results format, ``bbox = [x1, y1, x2 - x1 + 1, y2 - y1 + 1]``."""
        self._check_all_boxes(all_boxes)
        results = []
        for cls_ind, cls in enumerate(self.classes):
            if cls == "__background__":
                continue
            cat_id = self._class_to_coco_ind[cls]
            for im_ind, index in enumerate(self.image_set_index):
                dets = np.asarray(all_boxes[cls_ind][im_ind], dtype=np.float64).reshape(-1, 5)
                for x1, y1, x2, y2, score in dets:
                    results.append(
                        {
                            "image_id": int(index),
                            "category_id": int(cat_id),
                            "bbox": [float(x1), float(y1), float(x2 - x1 + 1), float(y2 - y1 + 1)],
                            "score": float(score),
                        }
                    )
        return results

    def evaluate_detections(
        self, all_boxes: Sequence[Sequence[np.ndarray]], output_dir: str | None = None
    ) -> dict[str, Any]:
        """Write ``<output_dir>/results/detections_<image_set>_results.json`` and run COCOeval.

        Args:
            all_boxes: ``all_boxes[cls][image]`` = (N, 5) ``[x1, y1, x2, y2, score]``.
            output_dir: default ``result_path``.

        Returns:
            The 12 COCOeval statistics by name (``AP``, ``AP50``, ...); empty for image sets with
            'test' in their name, which have no public ground truth (only the json is written).
        """
        res_file = os.path.join(
            output_dir or self.result_path, "results", f"detections_{self.image_set}_results.json"
        )
        results = self.coco_results(all_boxes)
        write_coco_results(results, res_file)
        if "test" in self.image_set:
            logger.info("%s: no ground truth for a test set; results written only", self.name)
            return {}
        stats = coco_box_ap(self.coco, results)
        logger.info(
            "%s: AP %.4f, AP50 %.4f, AP75 %.4f",
            self.name,
            stats["AP"],
            stats["AP50"],
            stats["AP75"],
        )
        return stats
