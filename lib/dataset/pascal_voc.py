"""PASCAL VOC detection dataset, as the original ``pascal_voc.py``; also any VOC-format data.

Layout under ``devkit_path`` (the original README's ``./data/VOCdevkit``)::

    VOC<year>/ImageSets/Main/<set>.txt     one image id per line
    VOC<year>/Annotations/<id>.xml         objects: name, difficult, bndbox (1-based, inclusive)
    VOC<year>/JPEGImages/<id>.jpg

The image set is written ``<year>_<set>`` ('2007_trainval'). Boxes become 0-based (xml - 1).
Objects marked difficult are left out of the roidb unless ``use_diff`` (the original default
excludes them); evaluation reads them back from the xml, where they count as neither hit nor
miss. A custom class list (``classes=``) makes the same loader read any VOC-format data set.
"""

from __future__ import annotations

import logging
import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from typing import Any

import numpy as np
from tqdm import tqdm

from lib.dataset.imdb import IMDB, LimitedWarnings, Roidb, image_size
from lib.evaluation import parse_voc_rec, voc_eval

logger = logging.getLogger(__name__)

VOC_CLASSES: tuple[str, ...] = (
    "__background__",
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)  # fmt: skip


def class_list(classes: Sequence[str] | None) -> list[str]:
    """``['__background__', *names]`` (VOC's 20 classes if None; a leading background is kept)."""
    if classes is None:
        return list(VOC_CLASSES)
    names = [str(c) for c in classes]
    if names and names[0] == "__background__":
        names = names[1:]
    if not names or len({n.lower() for n in names}) != len(names):
        raise ValueError(f"classes must be distinct (case-insensitively) and non-empty: {names}")
    return ["__background__", *names]


def split_image_set(image_set: str) -> tuple[str, str]:
    """'2007_trainval' -> ('2007', 'trainval')."""
    year, sep, rest = image_set.partition("_")
    if not sep or not rest:
        raise ValueError(
            f"VOC image set must be '<year>_<set>' like '2007_trainval'; got {image_set!r}"
        )
    return year, rest


def read_image_set_file(path: str, hint: str) -> list[str]:
    """Image ids of an ImageSets list file (first token of each non-empty line)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image set file {path} does not exist. {hint}")
    with open(path) as f:
        return [line.split()[0] for line in f if line.strip()]


def _int_field(elem: ET.Element | ET.ElementTree, tag: str, filename: str, obj: str = "") -> int:
    """Integer text of ``tag`` under ``elem`` (0 when absent or empty), e.g. ``<width>500</width>``.

    Raises:
        ValueError: the text is not a number; names the file, the tag and the object.
    """
    text = (elem.findtext(tag) or "").strip()
    try:
        return int(float(text)) if text else 0
    except ValueError:
        where = f" of object {obj!r}" if obj else ""
        raise ValueError(f"<{tag}>{text}</{tag}>{where} in {filename} is not a number") from None


class PascalVOC(IMDB):
    """PASCAL VOC (or VOC-format) detection data.

    Args:
        image_set: '<year>_<set>', e.g. '2007_trainval', '2012_trainval', '2007_test'.
        root_path: root of ``cache/``.
        devkit_path: directory holding ``VOC<year>/``.
        result_path: default directory of evaluation results.
        classes: object class names (background is prepended); default the 20 VOC classes.
            Names in the xml files are matched case-insensitively.
        use_diff: keep difficult objects in the roidb (original default False).
        use_07_metric: VOC07 11-point AP; default: year < 2010 (or 'SDS'), as the original.
        name: dataset prefix; ``self.name = f"{name}_{year}_{set}"`` ('voc_2007_trainval').

    Raises:
        FileNotFoundError: ``VOC<year>`` or the ImageSets file is missing.
        ValueError: a malformed image set name, or an empty image set.
    """

    def __init__(
        self,
        image_set: str,
        root_path: str,
        devkit_path: str,
        result_path: str | None = None,
        *,
        classes: Sequence[str] | None = None,
        use_diff: bool = False,
        use_07_metric: bool | None = None,
        name: str = "voc",
    ) -> None:
        year, set_name = split_image_set(image_set)
        super().__init__(f"{name}_{year}", set_name, root_path, devkit_path, result_path)
        self.year = year
        self.devkit_path = str(devkit_path)
        self.data_path = os.path.join(self.devkit_path, "VOC" + year)
        self.classes = class_list(classes)
        self.num_classes = len(self.classes)
        self.use_diff = use_diff
        if use_07_metric is None:
            use_07_metric = year == "SDS" or (year.isdigit() and int(year) < 2010)
        self.use_07_metric = use_07_metric
        self.comp_id = "comp4"
        if not os.path.isdir(self.data_path):
            raise FileNotFoundError(
                f"VOC data directory {self.data_path} does not exist. {self.layout_hint()}"
            )
        set_file = os.path.join(self.data_path, "ImageSets", "Main", set_name + ".txt")
        self._set_index(read_image_set_file(set_file, self.layout_hint()), f"{set_file} is empty")

    def layout_hint(self) -> str:
        return (
            f"Expected {self.devkit_path}/VOC<year>/ImageSets/Main/<set>.txt, "
            "Annotations/<id>.xml and JPEGImages/<id>.jpg (image_set '<year>_<set>')."
        )

    def cache_options(self) -> dict[str, Any]:
        # the class list decides gt_classes: another list must not reuse the cache
        return {"use_diff": self.use_diff, "classes": list(self.classes)}

    def image_path_from_index(self, index: str) -> str:
        """``VOC<year>/JPEGImages/<index>.jpg``."""
        return os.path.join(self.data_path, "JPEGImages", index + ".jpg")

    def annotation_path_from_index(self, index: str) -> str:
        """``VOC<year>/Annotations/<index>.xml``."""
        return os.path.join(self.data_path, "Annotations", index + ".xml")

    def _roidb_sources(self) -> list[str]:
        set_file = os.path.join(self.data_path, "ImageSets", "Main", self.image_set + ".txt")
        return [set_file, *(self.annotation_path_from_index(i) for i in self.image_set_index)]

    def _build_gt_roidb(self) -> Roidb:
        issues = LimitedWarnings(f"invalid boxes clipped or skipped in {self.name}", logger)
        class_to_index = {c.lower(): i for i, c in enumerate(self.classes)}
        roidb = [
            self._load_pascal_annotation(index, class_to_index, issues)
            for index in tqdm(self.image_set_index, desc=self.name, disable=None, leave=False)
        ]
        issues.summary()
        return roidb

    def _load_pascal_annotation(
        self, index: str, class_to_index: dict[str, int], issues: LimitedWarnings
    ) -> dict[str, Any]:
        """One roidb record from ``Annotations/<index>.xml``.

        Boxes are ``xml - 1``, clipped to the image with a warning; an empty box (x2 < x1 or
        y2 < y1) or one entirely outside the image is skipped with a warning.

        Raises:
            ValueError: an object names a class not in ``self.classes``, or malformed xml.
        """
        filename = self.annotation_path_from_index(index)
        try:
            tree = ET.parse(filename)
        except ET.ParseError as err:
            raise ValueError(f"cannot parse VOC annotation {filename}: {err}") from None
        image = self.image_path_from_index(index)
        width = _int_field(tree, "size/width", filename)
        height = _int_field(tree, "size/height", filename)
        if width <= 0 or height <= 0:  # no <size>: read it from the image header
            if not os.path.isfile(image):
                raise FileNotFoundError(
                    f"image file {image} (annotated in {filename}) does not exist"
                )
            height, width = image_size(image)

        rows = []
        for obj in tree.findall("object"):
            name = (obj.findtext("name") or "").strip()
            cls = class_to_index.get(name.lower())
            if cls is None or cls == 0:
                raise ValueError(
                    f"unknown class name {name!r} in {filename}; known classes: "
                    f"{', '.join(self.classes[1:])} (your own classes: list them in the "
                    "config's dataset.CLASSES)"
                )
            if not self.use_diff and _int_field(obj, "difficult", filename, name) != 0:
                continue
            bbox = obj.find("bndbox")
            if bbox is None:
                raise ValueError(f"object {name!r} in {filename} has no <bndbox>")
            try:  # make pixel indices 0-based
                box = [float(bbox.findtext(k)) - 1 for k in ("xmin", "ymin", "xmax", "ymax")]
            except (TypeError, ValueError):
                raise ValueError(
                    f"object {name!r} in {filename} has a malformed <bndbox>"
                ) from None
            clipped = [
                min(max(box[0], 0.0), width - 1.0),
                min(max(box[1], 0.0), height - 1.0),
                min(max(box[2], 0.0), width - 1.0),
                min(max(box[3], 0.0), height - 1.0),
            ]
            empty = box[2] < box[0] or box[3] < box[1]
            outside = box[0] > width - 1 or box[1] > height - 1 or box[2] < 0 or box[3] < 0
            if empty or outside:
                issues.warn(
                    "%s: box %s of %r in %s is empty or outside the %dx%d image; skipped",
                    self.name,
                    box,
                    name,
                    filename,
                    width,
                    height,
                )
                continue
            if clipped != box:
                issues.warn(
                    "%s: box %s of %r in %s extends outside the %dx%d image; clipped",
                    self.name,
                    box,
                    name,
                    filename,
                    width,
                    height,
                )
            rows.append((clipped, cls))

        num_objs = len(rows)
        boxes = np.zeros((num_objs, 4), dtype=np.uint16)
        gt_classes = np.zeros((num_objs,), dtype=np.int32)
        overlaps = np.zeros((num_objs, self.num_classes), dtype=np.float32)
        for ix, (box, cls) in enumerate(rows):
            boxes[ix, :] = box
            gt_classes[ix] = cls
            overlaps[ix, cls] = 1.0
        return {
            "image": image,
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

    def result_file(self, cls: str, output_dir: str | None = None) -> str:
        """``<output_dir>/results/VOC<year>/Main/comp4_det_<set>_<cls>.txt``."""
        folder = os.path.join(output_dir or self.result_path, "results", "VOC" + self.year, "Main")
        return os.path.join(folder, f"{self.comp_id}_det_{self.image_set}_{cls}.txt")

    def write_pascal_results(
        self, all_boxes: Sequence[Sequence[np.ndarray]], output_dir: str | None = None
    ) -> None:
        """One VOC results file per class: ``<id> <score> <x1> <y1> <x2> <y2>``, 1-based."""
        self._check_all_boxes(all_boxes)
        for cls_ind, cls in enumerate(self.classes):
            if cls == "__background__":
                continue
            filename = self.result_file(cls, output_dir)
            os.makedirs(os.path.dirname(filename), exist_ok=True)
            with open(filename, "w") as f:
                for im_ind, index in enumerate(self.image_set_index):
                    dets = np.asarray(all_boxes[cls_ind][im_ind], dtype=np.float64).reshape(-1, 5)
                    # The VOCdevkit expects 1-based indices.
                    f.writelines(
                        f"{index} {score:.3f} {x1 + 1:.1f} {y1 + 1:.1f} {x2 + 1:.1f} {y2 + 1:.1f}\n"
                        for x1, y1, x2, y2, score in dets
                    )
        logger.info(
            "%s: wrote VOC results files to %s",
            self.name,
            os.path.dirname(self.result_file("x", output_dir)),
        )

    def evaluate_detections(
        self, all_boxes: Sequence[Sequence[np.ndarray]], output_dir: str | None = None
    ) -> dict[str, Any]:
        """Write the VOC results files, then per-class AP and mAP at IoU 0.5 and 0.7.

        As the original, AP is computed from the written files (scores rounded to 3 decimals,
        coordinates to 1) against the xml annotations, difficult objects ignored.

        Returns:
            ``{'use_07_metric': bool, 'AP@0.5': {cls: ap}, 'mAP@0.5': float, 'AP@0.7': ...,
            'mAP@0.7': ...}``. The mean skips classes without any non-difficult object (AP
            undefined; the original's mean became NaN).
        """
        self.write_pascal_results(all_boxes, output_dir)
        annotations = {}
        for index in tqdm(
            self.image_set_index, desc="reading annotations", disable=None, leave=False
        ):
            objs = parse_voc_rec(self.annotation_path_from_index(index))
            annotations[index] = [{**o, "name": o["name"].lower()} for o in objs]

        logger.info("VOC07 metric? %s", "Y" if self.use_07_metric else "No")
        info: dict[str, Any] = {"use_07_metric": self.use_07_metric}
        for ovthresh in (0.5, 0.7):
            aps = {}
            for cls in self.classes[1:]:
                dets = []
                with open(self.result_file(cls, output_dir)) as f:
                    for line in f:
                        parts = line.split()
                        if parts:
                            dets.append((parts[0], *map(float, parts[1:])))
                _, _, ap = voc_eval(dets, annotations, cls.lower(), ovthresh, self.use_07_metric)
                aps[cls] = ap
                logger.info("AP for %s = %.4f", cls, ap)
            defined = [ap for ap in aps.values() if not np.isnan(ap)]
            mean_ap = float(np.mean(defined)) if defined else float("nan")
            logger.info("Mean AP@%.1f = %.4f", ovthresh, mean_ap)
            info[f"AP@{ovthresh}"] = aps
            info[f"mAP@{ovthresh}"] = mean_ap
        return info
