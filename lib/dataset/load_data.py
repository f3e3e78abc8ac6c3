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

Classes. The config's ``dataset.CLASSES`` / ``dataset.NUM_CLASSES`` reach the dataset through
``get_imdb(..., classes=, num_classes=)``: a VOC-format tree (``PascalVOC``) reads its objects
with that class list; every dataset is then checked against both (:func:`check_classes`), so a
COCO json whose categories differ from ``CLASSES``, or a class count that differs from
``NUM_CLASSES``, stops with a ``ValueError`` naming both. :func:`class_names` gives the names
the demos draw, with or without the data at hand.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from lib.dataset.cityscapes import CITYSCAPES_CLASSES, CityScape, cityscapes_palette
from lib.dataset.coco import COCO_CLASSES, coco
from lib.dataset.imdb import IMDB, Roidb
from lib.dataset.pascal_voc import VOC_CLASSES, PascalVOC
from lib.dataset.voc_seg import VOCSegmentation, voc_palette

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

#: Factories that read their objects with a given class list (VOC-format trees).
_TAKE_CLASSES = (PascalVOC, VOCSegmentation)


def known_classes(dataset_name: str, task: str = "detection") -> tuple[str, ...] | None:
    """Class names of a known dataset (index = the network's class), for when its data is not
    at hand (the released models' demos); detection lists start with the background."""
    synthetic = ("__background__", *_synthetic_classes())
    table = {
        "detection": {
            "coco": COCO_CLASSES,
            "PascalVOC": VOC_CLASSES,
            "synthetic": synthetic,
            "synthetic_voc": synthetic,
        },
        "segmentation": {
            "CityScape": CITYSCAPES_CLASSES,
            "cityscapes": CITYSCAPES_CLASSES,
            "synthetic_seg": CITYSCAPES_CLASSES,
            "PascalVOC": VOC_CLASSES,
            "synthetic_voc": synthetic,
        },
    }
    return _lookup(table.get(task, {}), dataset_name)


#: Segmentation datasets drawn in the Cityscapes colours (the others in VOC's).
_CITYSCAPES_LIKE = frozenset({"cityscape", "cityscapes", "synthetic_seg"})


def _lookup(registry: Mapping[str, Any], name: str) -> Any:
    """``registry[name]``, else the case-insensitive match, else None."""
    if name in registry:
        return registry[name]
    return {k.lower(): v for k, v in registry.items()}.get(name.lower())


def get_imdb(
    dataset_name: str,
    image_set: str,
    root_path: str,
    dataset_path: str,
    result_path: str | None = None,
    *,
    task: str = "detection",
    classes: Sequence[str] | None = None,
    num_classes: int | None = None,
) -> IMDB:
    """Build the dataset object named by ``cfg.dataset.dataset``.

    Args:
        dataset_name: a key of ``DETECTION_DATASETS`` / ``SEGMENTATION_DATASETS``.
        image_set: one image set (not '+'-joined).
        root_path, dataset_path, result_path: as the dataset classes.
        task: 'detection' or 'segmentation'.
        classes: ``cfg.dataset.CLASSES``: a VOC-format tree reads its objects with this class
            list; any other dataset must have exactly these classes. None or empty: the
            dataset's own.
        num_classes: ``cfg.dataset.NUM_CLASSES``, checked against the dataset's class count
            (background included); None: not checked.

    Raises:
        ValueError: unknown task or dataset name; classes that disagree with ``classes`` or
            ``num_classes`` (:func:`check_classes`).
    """
    if task not in _REGISTRIES:
        raise ValueError(f"task must be one of {sorted(_REGISTRIES)}; got {task!r}")
    registry = _REGISTRIES[task]
    factory = _lookup(registry, dataset_name)
    if factory is None:
        raise ValueError(
            f"unknown {task} dataset {dataset_name!r}; known: {', '.join(sorted(registry))}"
        )
    extra = {"classes": list(classes)} if classes and factory in _TAKE_CLASSES else {}
    imdb = factory(image_set, root_path, dataset_path, result_path, **extra)
    check_classes(imdb, classes, num_classes, task)
    return imdb


def _object_names(names: Sequence[str]) -> list[str]:
    """A class list without its leading '__background__' (VOC's and the detectors' class 0)."""
    names = [str(n) for n in names]
    return names[1:] if names and names[0] == "__background__" else names


def check_classes(
    imdb: IMDB, classes: Sequence[str] | None, num_classes: int | None, task: str = "detection"
) -> None:
    """Checks a dataset's classes against the config's ``dataset.CLASSES`` / ``NUM_CLASSES``.

    Raises:
        ValueError: the names differ from ``classes`` (when given) or the count, background
            included, from ``num_classes`` (when given); the message names both sides.
    """
    have = _object_names(imdb.classes)
    where = f"{imdb.name} ({getattr(imdb, 'data_path', '')})"
    if classes:
        want = _object_names(classes)
        if [n.lower() for n in want] != [n.lower() for n in have]:
            raise ValueError(
                f"dataset.CLASSES {want} disagree with the classes of {where}: {have}. List "
                "the dataset's classes in its order (COCO: the json's categories), or leave "
                "dataset.CLASSES empty to take the dataset's own."
            )
    if num_classes is not None and int(num_classes) != imdb.num_classes:
        counted = f"{len(have)} classes + background" if task == "detection" else "classes"
        raise ValueError(
            f"dataset.NUM_CLASSES is {num_classes} but {where} has {imdb.num_classes} "
            f"({counted}: {', '.join(have)}): set dataset.NUM_CLASSES: {imdb.num_classes}"
            + ("" if classes else ", or list your classes in dataset.CLASSES")
        )


def class_names(cfg: Mapping[str, Any], task: str = "detection") -> list[str]:
    """The name of each class index of a config's network (detection: index 0 '__background__').

    From ``dataset.CLASSES`` when set; else from the test set's annotations when they can be
    read (a COCO json of your own data); else the dataset's known list (:func:`known_classes`,
    e.g. COCO's 80 for the released models); else ``class 1`` ... .

    Raises:
        ValueError: the names found disagree with ``dataset.NUM_CLASSES``.
    """
    ds = cfg["dataset"]
    num_classes = int(ds["NUM_CLASSES"])
    background = ["__background__"] if task == "detection" else []
    names: list[str] | None = None
    if ds.get("CLASSES"):
        names = background + _object_names(ds["CLASSES"]) if background else list(ds["CLASSES"])
    else:
        try:
            imdb = get_imdb(ds["dataset"], ds["test_image_set"], ds["root_path"],
                            ds["dataset_path"], task=task)  # fmt: skip
            names = list(imdb.classes)
        except (OSError, ValueError, KeyError) as err:  # no data here: the known list
            logger.debug("class names: dataset not readable (%s)", err)
            known = known_classes(ds["dataset"], task)
            names = list(known) if known else None
    if names is None:
        names = background + [f"class {i}" for i in range(len(background), num_classes)]
    if len(names) != num_classes:
        raise ValueError(
            f"dataset.NUM_CLASSES is {num_classes} but the classes of {ds['dataset']} are "
            f"{len(names)}: {', '.join(names)}; set dataset.NUM_CLASSES or dataset.CLASSES"
        )
    return names


def dataset_palette(dataset_name: str) -> np.ndarray:
    """(256, 3) uint8 RGB colours of a segmentation dataset's classes: the Cityscapes colours
    for Cityscapes-format data, VOC's colour map otherwise."""
    if dataset_name.lower() in _CITYSCAPES_LIKE:
        return cityscapes_palette()
    return voc_palette()


def load_gt_roidb(
    dataset_name: str,
    image_set: str,
    root_path: str,
    dataset_path: str,
    *,
    flip: bool = False,
    result_path: str | None = None,
    classes: Sequence[str] | None = None,
    num_classes: int | None = None,
) -> Roidb:
    """Ground-truth roidb of one image set, followed by its flipped copy when ``flip``.

    ``classes`` / ``num_classes``: ``dataset.CLASSES`` / ``NUM_CLASSES`` (see :func:`get_imdb`).
    """
    imdb = get_imdb(dataset_name, image_set, root_path, dataset_path, result_path,
                    classes=classes, num_classes=num_classes)  # fmt: skip
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
    classes: Sequence[str] | None = None,
    num_classes: int | None = None,
) -> Roidb:
    """Ground-truth segdb of one image set, followed by its flipped copy when ``flip``.

    ``classes`` / ``num_classes``: ``dataset.CLASSES`` / ``NUM_CLASSES`` (see :func:`get_imdb`).
    """
    imdb = get_imdb(dataset_name, image_set, root_path, dataset_path, result_path,
                    task="segmentation", classes=classes, num_classes=num_classes)  # fmt: skip
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
