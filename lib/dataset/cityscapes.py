"""Cityscapes semantic segmentation (19 train classes), as the original ``cityscape.py``.

Layout under ``dataset_path`` (the original README's ``./data/cityscapes``)::

    leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelTrainIds.png

The image set is ``leftImg8bit_<split>`` ('leftImg8bit_train'); a bare split ('train') means
the same. ``*_labelTrainIds.png`` (written by cityscapesScripts' ``createTrainIdLabelImgs``) are
what the original read. When they are absent, the official ``*_labelIds.png`` are converted
once with :data:`LABEL_TO_TRAIN_ID` into ``root_path/cache/<name>_labelTrainIds/`` and the
segdb points there.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np
from tqdm import tqdm

from lib.dataset.imdb import (
    IGNORE_LABEL,
    IMDB,
    Roidb,
    check_label_size,
    image_size,
    read_label_png,
    write_label_png,
)

logger = logging.getLogger(__name__)

# The 19 evaluation classes, in train-id order.
CITYSCAPES_CLASSES: tuple[str, ...] = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle",
)  # fmt: skip

# Official colours of the train ids (cityscapesScripts helpers/labels.py), RGB.
CITYSCAPES_COLORS: tuple[tuple[int, int, int], ...] = (
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
    (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
    (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100),
    (0, 80, 100), (0, 0, 230), (119, 11, 32),
)  # fmt: skip

# Official labelId -> trainId table (cityscapesScripts helpers/labels.py); 255 = ignored.
# (License plate, id -1, never occurs in the uint8 labelIds images.)
LABEL_TO_TRAIN_ID: dict[int, int] = {
    0: 255,  # unlabeled
    1: 255,  # ego vehicle
    2: 255,  # rectification border
    3: 255,  # out of roi
    4: 255,  # static
    5: 255,  # dynamic
    6: 255,  # ground
    7: 0,  # road
    8: 1,  # sidewalk
    9: 255,  # parking
    10: 255,  # rail track
    11: 2,  # building
    12: 3,  # wall
    13: 4,  # fence
    14: 255,  # guard rail
    15: 255,  # bridge
    16: 255,  # tunnel
    17: 5,  # pole
    18: 255,  # polegroup
    19: 6,  # traffic light
    20: 7,  # traffic sign
    21: 8,  # vegetation
    22: 9,  # terrain
    23: 10,  # sky
    24: 11,  # person
    25: 12,  # rider
    26: 13,  # car
    27: 14,  # truck
    28: 15,  # bus
    29: 255,  # caravan
    30: 255,  # trailer
    31: 16,  # train
    32: 17,  # motorcycle
    33: 18,  # bicycle
}


def _train_id_lut() -> np.ndarray:
    lut = np.full(256, IGNORE_LABEL, dtype=np.uint8)
    for label_id, train_id in LABEL_TO_TRAIN_ID.items():
        lut[label_id] = train_id
    return lut


_LUT = _train_id_lut()


def label_ids_to_train_ids(label_ids: np.ndarray) -> np.ndarray:
    """Map Cityscapes label ids (uint8 array) to train ids 0..18, everything else to 255."""
    return _LUT[np.asarray(label_ids, dtype=np.uint8)]


def cityscapes_palette() -> np.ndarray:
    """(256, 3) uint8 RGB palette: the official colours for train ids 0..18, black elsewhere."""
    palette = np.zeros((256, 3), dtype=np.uint8)
    palette[: len(CITYSCAPES_COLORS)] = CITYSCAPES_COLORS
    return palette


class CityScape(IMDB):
    """Cityscapes segmentation data.

    Args:
        image_set: 'leftImg8bit_<split>' (or just '<split>'), split in train / val / test / ...
        root_path: root of ``cache/``.
        dataset_path: the Cityscapes directory (see the module docstring).
        result_path: default directory of evaluation results.
        annotation_prefix: label directory and file infix, 'gtFine' or 'gtCoarse'.
        name: dataset prefix of ``self.name`` ('cityscape' as the original).

    Raises:
        FileNotFoundError: the image directory of the split does not exist.
        ValueError: it holds no ``*_<image folder>.png`` image.
    """

    def __init__(
        self,
        image_set: str,
        root_path: str,
        dataset_path: str,
        result_path: str | None = None,
        *,
        annotation_prefix: str = "gtFine",
        name: str = "cityscape",
    ) -> None:
        super().__init__(name, image_set, root_path, dataset_path, result_path)
        if "_" in image_set:
            self.image_folder, self.split = image_set.split("_", 1)
        else:
            self.image_folder, self.split = "leftImg8bit", image_set
        self.annotation_prefix = annotation_prefix
        self.classes = list(CITYSCAPES_CLASSES)
        self.num_classes = len(self.classes)
        self._city: dict[str, str] = {}
        self._set_index(self._load_image_set_index(), f"no *_{self.image_folder}.png images")

    def layout_hint(self) -> str:
        return (
            f"Expected {self.data_path}/{self.image_folder}/<split>/<city>/"
            f"<city>_<seq>_<frame>_{self.image_folder}.png and {self.data_path}/"
            f"{self.annotation_prefix}/<split>/<city>/<...>_{self.annotation_prefix}_"
            "labelTrainIds.png (or _labelIds.png); image_set 'leftImg8bit_<split>'."
        )

    def cache_options(self) -> dict[str, Any]:
        return {"annotation_prefix": self.annotation_prefix}

    def _load_image_set_index(self) -> list[str]:
        """Image stems ('<city>_<seq>_<frame>'), sorted, from the split's city directories."""
        split_dir = os.path.join(self.data_path, self.image_folder, self.split)
        if not os.path.isdir(split_dir):
            raise FileNotFoundError(
                f"Cityscapes image directory {split_dir} does not exist. {self.layout_hint()}"
            )
        suffix = f"_{self.image_folder}.png"
        for parent, _, files in os.walk(split_dir):
            for filename in files:
                if filename.endswith(suffix):
                    self._city[filename[: -len(suffix)]] = os.path.basename(parent)
        return sorted(self._city)

    def image_path_from_index(self, index: str) -> str:
        """``<image folder>/<split>/<city>/<index>_<image folder>.png``."""
        return os.path.join(
            self.data_path,
            self.image_folder,
            self.split,
            self._city[index],
            f"{index}_{self.image_folder}.png",
        )

    def _annotation_path(self, index: str, kind: str) -> str:
        return os.path.join(
            self.data_path,
            self.annotation_prefix,
            self.split,
            self._city[index],
            f"{index}_{self.annotation_prefix}_{kind}.png",
        )

    def _converted_path(self, index: str) -> str:
        return os.path.join(
            self.cache_path,
            f"{self.name}_labelTrainIds",
            self._city[index],
            f"{index}_{self.annotation_prefix}_labelTrainIds.png",
        )

    def _label_source(self, index: str) -> tuple[str, bool]:
        """(label file, whether it holds label ids that need converting)."""
        train_ids = self._annotation_path(index, "labelTrainIds")
        if os.path.isfile(train_ids):
            return train_ids, False
        label_ids = self._annotation_path(index, "labelIds")
        if os.path.isfile(label_ids):
            return label_ids, True
        raise FileNotFoundError(
            f"no label for {index}: neither {train_ids} nor {label_ids} exists. "
            f"{self.layout_hint()}"
        )

    def label_path_from_index(self, index: str) -> str:
        """The train-id label PNG (the converted one if only label ids exist)."""
        path, needs_conversion = self._label_source(index)
        if not needs_conversion:
            return path
        target = self._converted_path(index)
        if not os.path.isfile(target):
            self._convert(path, target)
        return target

    @staticmethod
    def _convert(label_ids_path: str, target: str) -> None:
        write_label_png(target, label_ids_to_train_ids(read_label_png(label_ids_path)))

    def _segdb_sources(self) -> list[str]:
        sources = []
        for index in self.image_set_index:
            sources.append(self.image_path_from_index(index))
            sources.append(self._label_source(index)[0])
        return sources

    def _build_gt_segdb(self) -> Roidb:
        segdb = []
        converted = 0
        for index in tqdm(self.image_set_index, desc=self.name, disable=None, leave=False):
            image = self.image_path_from_index(index)
            label, needs_conversion = self._label_source(index)
            if needs_conversion:
                target = self._converted_path(index)
                self._convert(label, target)  # always: the labelIds may have changed
                label = target
                converted += 1
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
        if converted:
            logger.info(
                "%s: converted %d labelIds images to train ids under %s",
                self.name,
                converted,
                os.path.join(self.cache_path, f"{self.name}_labelTrainIds"),
            )
        return segdb

    def segmentation_result_path(self, index: str, output_dir: str) -> str:
        """``<output_dir>/results/<city>/<index>.png``, as the original."""
        return os.path.join(output_dir, "results", self._city[index], f"{index}.png")

    def palette(self) -> np.ndarray:
        return cityscapes_palette()
