"""Precomputed proposals: the roidb of the original's second test mode (``TEST.HAS_RPN: false``).

The test symbol then reads its RoIs from a ``rois`` input instead of running its own RPN, and
the loader feeds it each image's proposal boxes. ``dataset.proposal`` names them:

* ``rpn`` (the original's default): ``<root_path>/rpn_data/<imdb.name>_rpn.pkl``, where the
  original's ``test_rpn`` wrote its proposals;
* any other value: the path of such a pickle (``.pkl``).

The pickle holds one array per image of the image set, in ``imdb.image_set_index`` order:
(N, 4) ``x1, y1, x2, y2`` in original-image pixels (0-based, inclusive), or (N, 5) with a score
column (checked, then dropped); N may be 0.

Checks and repairs, per file (:func:`repair_proposals` does one image):

* a non-finite (NaN / inf) coordinate or score is an error naming the file, the images and
  their counts: such a file is broken, and its boxes would otherwise reach the detections;
* as the original's selective-search roidbs (and the RPN's own ``clip_boxes``), boxes are
  clipped to ``[0, W - 1] x [0, H - 1]``; inverted boxes (``x2 < x1`` or ``y2 < y1``) and boxes
  wholly outside their image are dropped (the original's ``filter_small_boxes`` removed the
  former; the latter are slivers on the border once clipped), then exact duplicates (the
  original's ``unique_boxes``). One warning per file counts each repair;
* an image left without proposals stays in the roidb with none: it gets no detections.
"""

from __future__ import annotations

import logging
import os
import pickle
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["RepairCounts", "load_proposal_roidb", "proposal_file", "repair_proposals"]

logger = logging.getLogger(__name__)

# Per-gt-box fields of a ground-truth record that do not describe proposals.
_GT_ONLY = ("gt_overlaps", "max_classes", "max_overlaps")

# Images named in the non-finite error; the rest are counted.
_SHOWN = 5


@dataclass
class RepairCounts:
    """What :func:`repair_proposals` did to one image's (or, summed, a file's) proposals."""

    boxes: int = 0  # proposals read
    clipped: int = 0  # extended past the image, clipped to it
    inverted: int = 0  # x2 < x1 or y2 < y1, dropped
    outside: int = 0  # wholly outside the image, dropped
    duplicates: int = 0  # equal to an earlier box once clipped, dropped
    empty_images: int = 0  # images left without proposals

    def add(self, other: RepairCounts) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def summary(self, path: str) -> str | None:
        """One line on the repairs made to ``path``'s proposals, or None when there were none."""
        parts = []
        if self.clipped:
            parts.append(f"{self.clipped} extended past their image and were clipped to it")
        dropped = [
            f"{count} {what}"
            for count, what in (
                (self.inverted, "inverted (x2 < x1 or y2 < y1)"),
                (self.outside, "wholly outside their image"),
                (self.duplicates, "duplicates"),
            )
            if count
        ]
        if dropped:
            parts.append(", ".join(dropped) + " were dropped")
        if self.empty_images:
            parts.append(f"{self.empty_images} image(s) were left without any (no detections)")
        if not parts:
            return None
        return f"proposal file {path}, {self.boxes} boxes: " + "; ".join(parts)


def proposal_file(imdb: Any, proposal: str, root_path: str) -> str:
    """The proposal pickle that ``dataset.proposal`` names (see the module docstring)."""
    if proposal == "rpn":
        return os.path.join(root_path, "rpn_data", f"{imdb.name}_rpn.pkl")
    return proposal


def repair_proposals(boxes: np.ndarray, height: int, width: int) -> tuple[np.ndarray, RepairCounts]:
    """One image's finite proposals made valid for an image of ``height`` x ``width``.

    Inverted boxes and boxes wholly outside the image are dropped, the rest clipped to
    ``[0, width - 1] x [0, height - 1]`` (as ``clip_boxes``), then exact duplicates dropped
    (the first one kept); the order is kept otherwise.

    Args:
        boxes: (N, 4) float ``x1, y1, x2, y2``, all finite.

    Returns:
        The (M, 4) float32 boxes and the counts of each repair.
    """
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    counts = RepairCounts(boxes=len(boxes))
    x1, y1, x2, y2 = boxes.T
    inverted = (x2 < x1) | (y2 < y1)
    outside = ~inverted & ((x1 > width - 1) | (y1 > height - 1) | (x2 < 0) | (y2 < 0))
    boxes = boxes[~inverted & ~outside]
    counts.inverted, counts.outside = int(inverted.sum()), int(outside.sum())
    x1, y1, x2, y2 = boxes.T
    past = (x1 < 0) | (y1 < 0) | (x2 > width - 1) | (y2 > height - 1)
    counts.clipped = int(past.sum())
    if counts.clipped:
        boxes = boxes.copy()
        boxes[:, 0::2] = np.clip(boxes[:, 0::2], 0, width - 1)
        boxes[:, 1::2] = np.clip(boxes[:, 1::2], 0, height - 1)
    # exact comparison (ds_utils.unique_boxes hashes coordinates, exact only below 1000 px)
    _, first = np.unique(boxes, axis=0, return_index=True)
    counts.duplicates = len(boxes) - len(first)
    if counts.duplicates:
        boxes = boxes[np.sort(first)]
    counts.empty_images = int(len(boxes) == 0)
    return np.ascontiguousarray(boxes, dtype=np.float32), counts


def load_proposal_roidb(imdb: Any, proposal: str, root_path: str) -> list[dict[str, Any]]:
    """The test roidb whose ``boxes`` are the proposals of ``dataset.proposal``.

    Each record is the image's ground-truth record with ``boxes`` replaced by its proposals
    (float32), checked and repaired as the module docstring says, and ``gt_classes`` zero: the
    loader turns them into the ``rois`` input.

    Raises:
        FileNotFoundError: the proposal file does not exist (the message names it).
        ValueError: it is not a list of one (N, 4) / (N, 5) array per image of the image set,
            or it holds non-finite coordinates or scores (the message names the file, the
            images and how many boxes of each).
    """
    path = proposal_file(imdb, proposal, root_path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"proposal file {path} does not exist (dataset.proposal={proposal!r}, needed because "
            "TEST.HAS_RPN is false): write one array of (N, 4) boxes per image of "
            f"{imdb.name} there, or set TEST.HAS_RPN=true to use the network's own RPN"
        )
    try:
        with open(path, "rb") as f:
            boxes_list = pickle.load(f)
    except Exception as err:
        raise ValueError(f"cannot read proposal file {path}: {type(err).__name__}: {err}") from err
    if not isinstance(boxes_list, (list, tuple)) or len(boxes_list) != imdb.num_images:
        count = len(boxes_list) if isinstance(boxes_list, (list, tuple)) else "no list"
        raise ValueError(
            f"proposal file {path} must hold a list of {imdb.num_images} arrays (one per image "
            f"of {imdb.name}), got {count}"
        )
    arrays, non_finite = [], []
    for i, boxes in enumerate(boxes_list):
        boxes = np.asarray(boxes, dtype=np.float32)
        if boxes.ndim != 2 or boxes.shape[1] not in (4, 5):
            raise ValueError(
                f"proposal file {path}: entry {i} (image {imdb.image_set_index[i]}) has shape "
                f"{boxes.shape}, expected (N, 4) or (N, 5)"
            )
        bad = int((~np.isfinite(boxes)).any(axis=1).sum())
        if bad:
            non_finite.append(f"image {i} (id {imdb.image_set_index[i]}): {bad} of {len(boxes)}")
        arrays.append(boxes)
    if non_finite:
        more = len(non_finite) - _SHOWN
        raise ValueError(
            f"proposal file {path} holds boxes with non-finite (NaN or inf) coordinates or "
            f"scores in {len(non_finite)} image(s): "
            + "; ".join(non_finite[:_SHOWN])
            + (f"; and {more} more image(s)" if more > 0 else "")
            + ". Such proposals cannot be tested: fix or regenerate the file"
        )
    roidb, total = [], RepairCounts()
    for rec, boxes in zip(imdb.gt_roidb(), arrays):
        boxes, counts = repair_proposals(boxes[:, :4], int(rec["height"]), int(rec["width"]))
        total.add(counts)
        entry = {k: v for k, v in rec.items() if k not in _GT_ONLY}
        entry["boxes"] = boxes
        entry["gt_classes"] = np.zeros(len(boxes), dtype=np.int32)
        roidb.append(entry)
    summary = total.summary(path)
    if summary:
        logger.warning("%s", summary)
    logger.info(
        "loaded %d proposals of %d images from %s",
        sum(len(r["boxes"]) for r in roidb), len(roidb), path,
    )  # fmt: skip
    return roidb
