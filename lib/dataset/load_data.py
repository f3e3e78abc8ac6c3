"""Dataset registry and the roidb / segdb helpers of the original ``utils/load_data.py``.

``cfg.dataset.dataset`` picks the class by name (no ``eval``):

=================  =========================================================================
name               dataset
=================  =========================================================================
``coco``           :class:`~lib.dataset.coco.coco` (detection)
``PascalVOC``      :class:`~lib.dataset.pascal_voc.PascalVOC` (detection) and
                   :class:`~lib.dataset.voc_seg.VOCSegmentation` (segmentation, '2012_train_seg')
``CityScape``      :class:`~lib.dataset.cityscapes.CityScape` (segmentation); alias ``cityscapes``
``synthetic``      the synthetic detection data (``lib.dataset.synthetic``) in COCO format: the
                   coco class with cache prefix 'synthetic'; image sets 'train' / 'val'
``synthetic_voc``  the synthetic data in VOC format ('2007_trainval' / '2007_test'), with the
                   generator's class list; detection and segmentation
``synthetic_seg``  the synthetic segmentation data in the Cityscapes layout (19 train ids);
                   image sets 'leftImg8bit_train' / 'leftImg8bit_val' (or 'train' / 'val')
=================  =========================================================================

For the synthetic names, ``dataset_path`` may be the format directory the generator wrote
(``data/coco``, ``data/VOCdevkit``, ``data/cityscapes``) or the generator's root (``data``).
Names are matched exactly first, then case-insensitively.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from lib.dataset.cityscapes import CityScape
from lib.dataset.coco import coco
from lib.dataset.imdb import IMDB, Roidb
from lib.dataset.pascal_voc import PascalVOC
from lib.dataset.voc_seg import VOCSegmentation

logger = logging.getLogger(__name__)

DatasetFactory = Callable[..., IMDB]


def _synthetic_dir(dataset_path: str, subdir: str, marker: str) -> str:
    """``dataset_path`` if it holds ``marker``, else ``dataset_path/subdir`` if that does."""
    if os.path.exists(os.path.join(dataset_path, marker)):
        return dataset_path
    nested = os.path.join(dataset_path, subdir)
    return nested if os.path.exists(os.path.join(nested, marker)) else dataset_path


def _synthetic_classes() -> tuple[str, ...]:
    from lib.dataset.synthetic import CLASSES  # the generator is only needed for its class list

    return CLASSES


def synthetic_coco(
    image_set: str, root_path: str, dataset_path: str, result_path: str | None = None
) -> coco:
    """The synthetic detection data in COCO format (``<dataset_path>[/coco]/annotations``)."""
    path = _synthetic_dir(dataset_path, "coco", "annotations")
    return coco(image_set, root_path, path, result_path, name="synthetic")


def synthetic_voc(
    image_set: str, root_path: str, dataset_path: str, result_path: str | None = None
) -> PascalVOC:
    """The synthetic detection data in VOC format (``<dataset_path>[/VOCdevkit]/VOC2007``)."""
    path = _synthetic_dir(dataset_path, "VOCdevkit", "VOC" + image_set.split("_")[0])
    return PascalVOC(
        image_set, root_path, path, result_path, classes=_synthetic_classes(), name="synthetic_voc"
    )


def synthetic_voc_seg(
    image_set: str, root_path: str, dataset_path: str, result_path: str | None = None
) -> VOCSegmentation:
    """The synthetic segmentation data in VOC format (``SegmentationClass`` PNGs)."""
    path = _synthetic_dir(dataset_path, "VOCdevkit", "VOC" + image_set.split("_")[0])
    return VOCSegmentation(
        image_set, root_path, path, result_path, classes=_synthetic_classes(), name="synthetic_voc"
    )


def synthetic_seg(
    image_set: str, root_path: str, dataset_path: str, result_path: str | None = None
) -> CityScape:
    """The synthetic segmentation data in the Cityscapes layout (``<path>[/cityscapes]``)."""
    path = _synthetic_dir(dataset_path, "cityscapes", "leftImg8bit")
    return CityScape(image_set, root_path, path, result_path, name="synthetic_seg")


DETECTION_DATASETS: dict[str, DatasetFactory] = {
    "coco": coco,
    "PascalVOC": PascalVOC,
    "synthetic": synthetic_coco,
    "synthetic_voc": synthetic_voc,
}

SEGMENTATION_DATASETS: dict[str, DatasetFactory] = {
    "CityScape": CityScape,
    "cityscapes": CityScape,
    "PascalVOC": VOCSegmentation,
    "synthetic_seg": synthetic_seg,
    "synthetic_voc": synthetic_voc_seg,
}

_REGISTRIES = {"detection": DETECTION_DATASETS, "segmentation": SEGMENTATION_DATASETS}


def get_imdb(
    dataset_name: str,
    image_set: str,
    root_path: str,
    dataset_path: str,
    result_path: str | None = None,
    *,
    task: str = "detection",
) -> IMDB:
    """Build the dataset object named by ``cfg.dataset.dataset``.

    Args:
        dataset_name: a key of ``DETECTION_DATASETS`` / ``SEGMENTATION_DATASETS``.
        image_set: one image set (not '+'-joined).
        root_path, dataset_path, result_path: as the dataset classes.
        task: 'detection' or 'segmentation'.

    Raises:
        ValueError: unknown task or dataset name.
    """
    if task not in _REGISTRIES:
        raise ValueError(f"task must be one of {sorted(_REGISTRIES)}; got {task!r}")
    registry = _REGISTRIES[task]
    factory = registry.get(dataset_name)
    if factory is None:
        lowered = {k.lower(): v for k, v in registry.items()}
        factory = lowered.get(dataset_name.lower())
    if factory is None:
        raise ValueError(
            f"unknown {task} dataset {dataset_name!r}; known: {', '.join(sorted(registry))}"
        )
    return factory(image_set, root_path, dataset_path, result_path)


def load_gt_roidb(
    dataset_name: str,
    image_set: str,
    root_path: str,
    dataset_path: str,
    *,
    flip: bool = False,
    result_path: str | None = None,
) -> Roidb:
    """Ground-truth roidb of one image set, followed by its flipped copy when ``flip``."""
    imdb = get_imdb(dataset_name, image_set, root_path, dataset_path, result_path)
    roidb = imdb.gt_roidb()
    if flip:
        roidb = imdb.append_flipped_images(roidb)
    return roidb


def load_gt_segdb(
    dataset_name: str,
    image_set: str,
    root_path: str,
    dataset_path: str,
    *,
    flip: bool = False,
    result_path: str | None = None,
) -> Roidb:
    """Ground-truth segdb of one image set, followed by its flipped copy when ``flip``."""
    imdb = get_imdb(
        dataset_name, image_set, root_path, dataset_path, result_path, task="segmentation"
    )
    segdb = imdb.gt_segdb()
    if flip:
        segdb = imdb.append_flipped_images_for_segmentation(segdb)
    return segdb


def merge_roidb(roidbs: Sequence[Roidb]) -> Roidb:
    """Concatenate roidbs (a new list; the original extended the first in place)."""
    return [rec for roidb in roidbs for rec in roidb]


def merge_segdb(segdbs: Sequence[Roidb]) -> Roidb:
    """Concatenate segdbs."""
    return [rec for segdb in segdbs for rec in segdb]


def filter_roidb(roidb: Roidb, cfg: Mapping[str, Any]) -> Roidb:
    """Keep the images with at least one foreground or background RoI, as the original.

    A RoI is foreground when its ``max_overlaps >= cfg.TRAIN.FG_THRESH`` and background when
    ``BG_THRESH_LO <= max_overlaps < BG_THRESH_HI``. For a ground-truth roidb (overlaps 1) this
    drops the images without any box.

    Raises:
        ValueError: no image is left (training could not sample anything).
    """
    train = cfg["TRAIN"]
    fg_thresh, bg_hi, bg_lo = train["FG_THRESH"], train["BG_THRESH_HI"], train["BG_THRESH_LO"]

    def is_valid(entry: dict[str, Any]) -> bool:
        overlaps = np.asarray(entry["max_overlaps"])
        fg = overlaps >= fg_thresh
        bg = (overlaps < bg_hi) & (overlaps >= bg_lo)
        return bool(fg.any() or bg.any())

    filtered = [entry for entry in roidb if is_valid(entry)]
    logger.info(
        "filtered %d roidb entries: %d -> %d", len(roidb) - len(filtered), len(roidb), len(filtered)
    )
    if roidb and not filtered:
        raise ValueError(
            f"filter_roidb removed all {len(roidb)} images: none has a ground-truth box "
            "(check the annotations and the class list)"
        )
    return filtered
