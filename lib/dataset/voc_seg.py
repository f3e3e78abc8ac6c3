"""PASCAL VOC 2012 semantic segmentation (the DeepLab VOC12 experiments).

Layout under ``devkit_path``::

    VOC<year>/ImageSets/Main/<set>_seg.txt  or  VOC<year>/ImageSets/Segmentation/<set>.txt
    VOC<year>/SegmentationClass/<id>.png    palette (or grey) PNG of class indices, 255 = ignore
    VOC<year>/JPEGImages/<id>.jpg

The image set is written as in the original yamls, '2012_train_seg'. The original read the list
from ``ImageSets/Main/train_seg.txt`` (where its README puts the SBD-augmented lists); that file
wins when present, otherwise the standard ``ImageSets/Segmentation/train.txt`` is used.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import numpy as np
from tqdm import tqdm

from lib.dataset.imdb import IMDB, Roidb, check_label_size, image_size
from lib.dataset.pascal_voc import class_list, read_image_set_file, split_image_set

logger = logging.getLogger(__name__)


def voc_palette() -> np.ndarray:
    """The PASCAL VOC colour map, (256, 3) uint8 RGB (255, 'void', is (224, 224, 192))."""
    palette = np.zeros((256, 3), dtype=np.uint8)
    for i in range(256):
        c, rgb = i, [0, 0, 0]
        for bit in range(7, -1, -1):
            for ch in range(3):
                rgb[ch] |= ((c >> ch) & 1) << bit
            c >>= 3
        palette[i] = rgb
    return palette


class VOCSegmentation(IMDB):
    """PASCAL VOC (or VOC-format) segmentation data.

    Args:
        image_set: '<year>_<set>_seg' (or '<year>_<set>'), e.g. '2012_train_seg'.
        root_path: root of ``cache/``.
        devkit_path: directory holding ``VOC<year>/``.
        result_path: default directory of evaluation results.
        classes: object class names (background is prepended); default the 20 VOC classes.
        name: dataset prefix; ``self.name = f"{name}_{year}_{set}"`` ('voc_2012_train_seg').

    Raises:
        FileNotFoundError: ``VOC<year>`` or both list files are missing.
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
        name: str = "voc",
    ) -> None:
        year, rest = split_image_set(image_set)
        super().__init__(f"{name}_{year}", rest, root_path, devkit_path, result_path)
        self.year = year
        self.devkit_path = str(devkit_path)
        self.data_path = os.path.join(self.devkit_path, "VOC" + year)
        self.classes = class_list(classes)
        self.num_classes = len(self.classes)
        if not os.path.isdir(self.data_path):
            raise FileNotFoundError(
                f"VOC data directory {self.data_path} does not exist. {self.layout_hint()}"
            )
        set_name = rest.removesuffix("_seg")
        candidates = [os.path.join(self.data_path, "ImageSets", "Segmentation", set_name + ".txt")]
        if rest != set_name:
            candidates.insert(0, os.path.join(self.data_path, "ImageSets", "Main", rest + ".txt"))
        existing = [p for p in candidates if os.path.isfile(p)]
        if not existing:
            raise FileNotFoundError(
                f"no image set file for {image_set!r}: none of {', '.join(candidates)} exists. "
                f"{self.layout_hint()}"
            )
        self.set_file = existing[0]
        logger.info("%s: image list %s", self.name, self.set_file)
        index = read_image_set_file(self.set_file, self.layout_hint())
        self._set_index(index, f"{self.set_file} is empty")

    def layout_hint(self) -> str:
        return (
            f"Expected {self.devkit_path}/VOC<year>/ImageSets/Segmentation/<set>.txt (or "
            "ImageSets/Main/<set>_seg.txt), SegmentationClass/<id>.png and JPEGImages/<id>.jpg "
            "(image_set '<year>_<set>_seg')."
        )

    def image_path_from_index(self, index: str) -> str:
        """``VOC<year>/JPEGImages/<index>.jpg``."""
        return os.path.join(self.data_path, "JPEGImages", index + ".jpg")

    def label_path_from_index(self, index: str) -> str:
        """``VOC<year>/SegmentationClass/<index>.png``."""
        return os.path.join(self.data_path, "SegmentationClass", index + ".png")

    def _segdb_sources(self) -> list[str]:
        sources = [self.set_file]
        for index in self.image_set_index:
            sources.append(self.image_path_from_index(index))
            sources.append(self.label_path_from_index(index))
        return sources

    def _build_gt_segdb(self) -> Roidb:
        segdb = []
        for index in tqdm(self.image_set_index, desc=self.name, disable=None, leave=False):
            image = self.image_path_from_index(index)
            label = self.label_path_from_index(index)
            height, width = image_size(image)
            check_label_size(label, image, height, width)
            segdb.append(
                {
                    "image": image,
                    "seg_cls_path": label,
                    "height": height,
                    "width": width,
                    "flipped": False,
                }
            )
        return segdb

    def palette(self) -> np.ndarray:
        return voc_palette()
