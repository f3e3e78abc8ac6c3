"""IMDB: the base class of the dataset loaders (an "image database").

A dataset object knows its image set (the list of image indices), where each image lives, and
how to read the ground truth. It produces one of two record lists:

* ``gt_roidb()`` for detection: one dict per image ::

      {'image': str path, 'height': int, 'width': int,
       'boxes': (N, 4) uint16 x1, y1, x2, y2 (0-based, inclusive pixel coordinates),
       'gt_classes': (N,) int32 in 1..K (0 = background),
       'gt_overlaps': (N, num_classes) float32 (1 at the box's class; -1 rows for crowd boxes),
       'max_classes': (N,) argmax of gt_overlaps, 'max_overlaps': (N,) max of gt_overlaps,
       'flipped': bool}

* ``gt_segdb()`` for segmentation: ``{'image', 'seg_cls_path', 'height', 'width', 'flipped'}``,
  where ``seg_cls_path`` is a single-channel PNG of class indices (255 = ignore).

Both lists are cached as pickles in ``root_path/cache/<name>_gt_roidb.pkl`` (``_gt_segdb.pkl``).
Unlike the original, whose cache was trusted forever (a stale cache after editing the
annotations was a classic pitfall), the cache stores a fingerprint of its sources: path, mtime
and size of every annotation file, plus the loader's options. Any change rebuilds it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import tempfile
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import cv2
import numpy as np
from PIL import Image

from lib.evaluation import accumulate, mean_iou

logger = logging.getLogger(__name__)

# Bump when the layout of cached records changes, so old caches are rebuilt.
CACHE_VERSION = 1

# Segmentation label value that the loss and the evaluation ignore (Cityscapes' and VOC's void).
IGNORE_LABEL = 255

Roidb = list[dict[str, Any]]
Fingerprint = list[tuple[str, int, int]]


def file_fingerprint(paths: Iterable[str], hint: str = "") -> Fingerprint:
    """(absolute path, mtime in ns, size) of each file, in order.

    Raises:
        FileNotFoundError: a file is missing; the message names it and adds ``hint``.
    """
    out = []
    for path in paths:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise FileNotFoundError(f"{path} does not exist. {hint}".strip()) from None
        out.append((os.path.abspath(path), st.st_mtime_ns, st.st_size))
    return out


def load_cache(path: str, key: Any) -> Any | None:
    """The data pickled at ``path`` by :func:`save_cache` if stored under an equal ``key``."""
    if not os.path.isfile(path):
        return None
    try:
        with open(path, "rb") as f:
            blob = pickle.load(f)
    # A truncated, foreign or outdated pickle (e.g. a Python 2 cache of the original) is stale.
    except (
        pickle.UnpicklingError,
        EOFError,
        AttributeError,
        ImportError,
        IndexError,
        KeyError,
        TypeError,
        ValueError,
        UnicodeDecodeError,
    ) as err:
        logger.warning("ignoring unreadable cache %s (%s); rebuilding", path, err)
        return None
    if not isinstance(blob, dict) or blob.get("key") != key:
        logger.info("cache %s is stale (annotations or options changed); rebuilding", path)
        return None
    return blob["data"]


def save_cache(path: str, key: Any, data: Any) -> None:
    """Pickle ``{'key': key, 'data': data}`` to ``path`` atomically (temp file + rename)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp_", suffix=".pkl", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            pickle.dump({"key": key, "data": data}, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def image_size(path: str) -> tuple[int, int]:
    """(height, width) of an image, read from its header only."""
    with Image.open(path) as im:
        width, height = im.size
    return height, width


_warned_label_files: set[str] = set()
_warned_lock = threading.Lock()


def read_label_png(path: str, num_classes: int | None = None) -> np.ndarray:
    """A label PNG as an (H, W) uint8 array of class indices (palette or grey PNGs only).

    With ``num_classes``, ids outside the class table (``num_classes <= id < 255``) become 255
    (ignored), with one warning per file naming the file and the ids: the loss and the
    evaluation then skip those pixels instead of failing on them (or, on a GPU, reading out of
    bounds).

    Raises:
        ValueError: a colour (RGB) label image, whose values are not class indices.
    """
    with Image.open(path) as im:
        if im.mode not in ("P", "L"):
            raise ValueError(
                f"label image {path} has mode {im.mode}; expected a palette ('P') or grey ('L') "
                "PNG of class indices (colour-coded labels must be converted first)"
            )
        label = np.array(im, dtype=np.uint8)
    if num_classes is not None:
        unknown = (label >= num_classes) & (label != IGNORE_LABEL)
        if unknown.any():
            with _warned_lock:
                first = path not in _warned_label_files
                _warned_label_files.add(path)
            if first:
                logger.warning(
                    "label image %s holds ids %s outside the %d classes (%d pixels); "
                    "mapped to %d (ignored)",
                    path,
                    np.unique(label[unknown]).tolist(),
                    num_classes,
                    int(unknown.sum()),
                    IGNORE_LABEL,
                )
            label[unknown] = IGNORE_LABEL
    return label


def check_label_size(label: str, image: str, height: int, width: int) -> None:
    """Raises ValueError naming both files and sizes unless ``label`` is ``height x width``.

    Reads the label's header only.
    """
    label_height, label_width = image_size(label)
    if (label_height, label_width) != (height, width):
        raise ValueError(
            f"label {label} is {label_width}x{label_height} (width x height) but its image "
            f"{image} is {width}x{height}"
        )


def write_label_png(path: str, labels: np.ndarray, palette: np.ndarray | None = None) -> None:
    """Write (H, W) class indices as a PNG, with an optional (256, 3) uint8 RGB palette."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    im = Image.fromarray(np.asarray(labels, dtype=np.uint8))  # 2-D uint8: mode "L"
    if palette is not None:  # turns the 'L' image into 'P' with the same indices
        im.putpalette(np.asarray(palette, dtype=np.uint8).tobytes())
    im.save(path)


def check_images_exist(records: Sequence[dict[str, Any]], what: str) -> None:
    """Raise FileNotFoundError naming the missing ``'image'`` files of ``records``."""
    missing = [r["image"] for r in records if not os.path.isfile(r["image"])]
    if missing:
        shown = "\n  ".join(missing[:5])
        more = f"\n  ... and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise FileNotFoundError(
            f"{len(missing)} image file(s) referenced by {what} do not exist:\n  {shown}{more}"
        )


class LimitedWarnings:
    """Log the first ``limit`` warnings of a kind, then only count them; ``summary`` at the end."""

    def __init__(self, what: str, log: logging.Logger, limit: int = 10) -> None:
        self.what = what
        self.log = log
        self.limit = limit
        self.count = 0

    def warn(self, msg: str, *args: Any) -> None:
        self.count += 1
        if self.count <= self.limit:
            self.log.warning(msg, *args)

    def summary(self) -> None:
        if self.count > self.limit:
            self.log.warning("%d %s in total (first %d shown)", self.count, self.what, self.limit)


class IMDB:
    """Base class of the datasets.

    Subclasses set ``classes``, ``num_classes``, ``image_set_index`` and ``num_images`` in their
    constructor, and implement ``image_path_from_index`` plus the ``_build_*`` /
    ``_*_sources`` hooks of the records they support.

    Args:
        name: dataset prefix; ``self.name = f"{name}_{image_set}"`` names the cache files.
        image_set: image set, e.g. 'train2014', 'trainval', 'leftImg8bit_train'.
        root_path: root of caches (``root_path/cache``), the original's ``./data``.
        dataset_path: directory of the dataset itself.
        result_path: where evaluation files go by default (``cache_path`` if None).
    """

    def __init__(
        self,
        name: str,
        image_set: str,
        root_path: str,
        dataset_path: str,
        result_path: str | None = None,
    ) -> None:
        self.name = f"{name}_{image_set}"
        self.image_set = image_set
        self.root_path = str(root_path)
        self.data_path = str(dataset_path)
        self._result_path = None if result_path is None else str(result_path)
        self.classes: list[str] = []
        self.num_classes = 0
        self.image_set_index: list[Any] = []
        self.num_images = 0

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, num_images={self.num_images}, "
            f"num_classes={self.num_classes}, data_path={self.data_path!r})"
        )

    @property
    def cache_path(self) -> str:
        """``root_path/cache``, created on first use."""
        path = os.path.join(self.root_path, "cache")
        os.makedirs(path, exist_ok=True)
        return path

    @property
    def result_path(self) -> str:
        """The given result path if it exists, else ``cache_path`` (as the original)."""
        if self._result_path and os.path.isdir(self._result_path):
            return self._result_path
        return self.cache_path

    def image_path_from_index(self, index: Any) -> str:
        """Path of the image with this index."""
        raise NotImplementedError

    def layout_hint(self) -> str:
        """One sentence on the expected on-disk layout, appended to file-not-found errors."""
        return ""

    def cache_options(self) -> dict[str, Any]:
        """Loader options that change the records (part of the cache key)."""
        return {}

    def _set_index(self, index: list[Any], source: str) -> None:
        if not index:
            raise ValueError(f"image set '{self.image_set}' of {self.name} is empty ({source})")
        self.image_set_index = index
        self.num_images = len(index)
        logger.info("%s: %d images", self.name, self.num_images)

    # ------------------------------------------------------------------------------- caching

    def _cached(
        self,
        kind: str,
        sources: Callable[[], list[str]],
        build: Callable[[], Roidb],
        valid: Callable[[Roidb], bool] | None = None,
    ) -> Roidb:
        """Records from ``cache/<name>_<kind>.pkl`` if its key matches, else built and saved."""
        cache_file = os.path.join(self.cache_path, f"{self.name}_{kind}.pkl")
        key = {
            "version": CACHE_VERSION,
            "class": type(self).__name__,
            "classes": list(self.classes),
            "index": list(self.image_set_index),
            "options": self.cache_options(),
            "sources": file_fingerprint(sources(), self.layout_hint()),
        }
        data = load_cache(cache_file, key)
        if data is not None and (valid is None or valid(data)):
            logger.info("%s %s loaded from %s", self.name, kind, cache_file)
            return data
        data = build()
        save_cache(cache_file, key, data)
        logger.info("wrote %s %s to %s", self.name, kind, cache_file)
        return data

    def gt_roidb(self) -> Roidb:
        """Detection ground truth, one record per image (cached; see the module docstring)."""
        return self._cached("gt_roidb", self._roidb_sources, self._checked_gt_roidb)

    def _checked_gt_roidb(self) -> Roidb:
        roidb = self._build_gt_roidb()
        check_images_exist(roidb, f"the annotations of {self.name}")
        return roidb

    def _roidb_sources(self) -> list[str]:
        raise NotImplementedError(f"{type(self).__name__} has no detection annotations")

    def _build_gt_roidb(self) -> Roidb:
        raise NotImplementedError(f"{type(self).__name__} has no detection annotations")

    def gt_segdb(self) -> Roidb:
        """Segmentation ground truth, one record per image (cached)."""
        return self._cached(
            "gt_segdb",
            self._segdb_sources,
            self._checked_gt_segdb,
            valid=lambda segdb: all(os.path.isfile(r["seg_cls_path"]) for r in segdb),
        )

    def _checked_gt_segdb(self) -> Roidb:
        segdb = self._build_gt_segdb()
        check_images_exist(segdb, f"the image set of {self.name}")
        return segdb

    def _segdb_sources(self) -> list[str]:
        raise NotImplementedError(f"{type(self).__name__} has no segmentation labels")

    def _build_gt_segdb(self) -> Roidb:
        raise NotImplementedError(f"{type(self).__name__} has no segmentation labels")

    # ------------------------------------------------------------------------------ flipping

    def append_flipped_images(self, roidb: Roidb) -> Roidb:
        """``roidb`` followed by a horizontally flipped copy of every record.

        x1' = W - x2 - 1 and x2' = W - x1 - 1; the image itself is flipped by the loader when
        ``flipped`` is True. Unlike the original, the input list is not extended in place and
        ``image_set_index`` is not doubled.

        Raises:
            ValueError: a flipped box has x2 < x1 (a box wider than its image).
        """
        logger.info("%s: appending flipped images to the roidb", self.name)
        flipped = []
        for rec in roidb:
            boxes = rec["boxes"]
            x1 = boxes[:, 0].astype(np.int64) if boxes.dtype.kind in "ui" else boxes[:, 0]
            x2 = boxes[:, 2].astype(np.int64) if boxes.dtype.kind in "ui" else boxes[:, 2]
            new = boxes.copy()
            new_x1 = rec["width"] - x2 - 1
            new_x2 = rec["width"] - x1 - 1
            if not (new_x2 >= new_x1).all() or (new_x1 < 0).any():
                raise ValueError(
                    f"flipping the boxes of {rec['image']} (width {rec['width']}) gives x2 < x1 "
                    "or x1 < 0: boxes must lie inside the image"
                )
            new[:, 0] = new_x1
            new[:, 2] = new_x2
            entry = dict(rec)
            entry["boxes"] = new
            entry["flipped"] = True
            flipped.append(entry)
        return list(roidb) + flipped

    def append_flipped_images_for_segmentation(self, segdb: Roidb) -> Roidb:
        """``segdb`` followed by a copy of every record with ``flipped=True``."""
        logger.info("%s: appending flipped images to the segdb", self.name)
        return list(segdb) + [{**rec, "flipped": True} for rec in segdb]

    # ---------------------------------------------------------------------------- evaluation

    def _check_all_boxes(self, all_boxes: Sequence[Sequence[np.ndarray]]) -> None:
        if len(all_boxes) != self.num_classes or any(
            len(per_class) != self.num_images for per_class in all_boxes
        ):
            raise ValueError(
                f"all_boxes must be [num_classes={self.num_classes}][num_images="
                f"{self.num_images}] arrays of (N, 5) [x1, y1, x2, y2, score]; got "
                f"[{len(all_boxes)}][{', '.join(str(len(c)) for c in all_boxes[:3])}...]"
            )

    def evaluate_detections(
        self, all_boxes: Sequence[Sequence[np.ndarray]], output_dir: str | None = None
    ) -> dict[str, Any]:
        """Write detections in the dataset's result format and score them.

        Args:
            all_boxes: ``all_boxes[cls][image]`` = (N, 5) array ``[x1, y1, x2, y2, score]``
                (0-based pixels), for every class (index 0, background, is ignored) and image of
                ``image_set_index``.
            output_dir: results go under ``output_dir/results`` (default ``result_path``).
        """
        raise NotImplementedError

    def label_path_from_index(self, index: Any) -> str:
        """Ground-truth label PNG (class indices, 255 ignored) of an image."""
        raise NotImplementedError

    def segmentation_result_path(self, index: Any, output_dir: str) -> str:
        """Where the predicted label PNG of an image is written."""
        return os.path.join(output_dir, "results", f"{index}.png")

    def palette(self) -> np.ndarray | None:
        """(256, 3) uint8 RGB palette of the written prediction PNGs (None: grey PNGs)."""
        return None

    def evaluate_segmentations(
        self,
        pred_segmentations: Sequence[np.ndarray] | None = None,
        output_dir: str | None = None,
        ignore_absent: bool = True,
    ) -> dict[str, Any]:
        """Confusion matrix, per-class IoU and mean IoU over the image set.

        As the original, predictions are written as palette PNGs under ``output_dir/results``
        (``pred_segmentations`` None: read back from there), resized to the ground truth with
        nearest neighbour if their size differs, and scored against the labels with 255
        ignored, from one confusion matrix summed over all images. Label ids outside the class
        table count as 255, with a warning (:func:`read_label_png`), as in training.

        Args:
            pred_segmentations: one (H, W) integer class map per image of ``image_set_index``.
            output_dir: default ``result_path``.
            ignore_absent: leave classes absent from both ground truth and prediction out of
                the mean (the original counted them as IoU 0; identical when every class occurs,
                but on small or synthetic sets the original mean is meaningless).

        Returns:
            ``{'meanIU': float, 'IU_array': (C,) float64, 'confusion_matrix': (C, C) int64}``.
        """
        output_dir = output_dir or self.result_path
        if pred_segmentations is not None and len(pred_segmentations) != self.num_images:
            raise ValueError(
                f"expected {self.num_images} predictions for {self.name}, "
                f"got {len(pred_segmentations)}"
            )
        palette = self.palette()

        def pairs():
            for i, index in enumerate(self.image_set_index):
                res_path = self.segmentation_result_path(index, output_dir)
                if pred_segmentations is not None:
                    pred = np.squeeze(np.asarray(pred_segmentations[i]))
                    write_label_png(res_path, pred.astype(np.uint8), palette)
                else:
                    if not os.path.isfile(res_path):
                        raise FileNotFoundError(f"prediction {res_path} does not exist")
                    pred = read_label_png(res_path)
                gt = read_label_png(self.label_path_from_index(index), self.num_classes)
                if pred.shape != gt.shape:
                    pred = cv2.resize(
                        pred.astype(np.uint8),
                        (gt.shape[1], gt.shape[0]),
                        interpolation=cv2.INTER_NEAREST,
                    )
                yield pred, gt

        conf = accumulate(pairs(), self.num_classes)
        iou, miou = mean_iou(conf, ignore_absent=ignore_absent)
        for name, value in zip(self.classes, iou):
            logger.info("IoU %-20s %.4f", name, value)
        logger.info("%s: mean IoU %.4f over %d images", self.name, miou, self.num_images)
        return {"meanIU": miou, "IU_array": iou, "confusion_matrix": conf}
