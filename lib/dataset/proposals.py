"""Precomputed proposals: the roidb of the original's second test mode (``TEST.HAS_RPN: false``).

The test symbol then reads its RoIs from a ``rois`` input instead of running its own RPN, and
the loader feeds it each image's proposal boxes. ``dataset.proposal`` names them:

* ``rpn`` (the original's default): ``<root_path>/rpn_data/<imdb.name>_rpn.pkl``, where the
  original's ``test_rpn`` wrote its proposals;
* any other value: the path of such a pickle (``.pkl``).

The pickle holds one array per image of the image set, in ``imdb.image_set_index`` order:
(N, 4) ``x1, y1, x2, y2`` in original-image pixels, or (N, 5) with a score column (dropped).
"""

from __future__ import annotations

import logging
import os
import pickle
from typing import Any

import numpy as np

__all__ = ["load_proposal_roidb", "proposal_file"]

logger = logging.getLogger(__name__)

# Per-gt-box fields of a ground-truth record that do not describe proposals.
_GT_ONLY = ("gt_overlaps", "max_classes", "max_overlaps")


def proposal_file(imdb: Any, proposal: str, root_path: str) -> str:
    """The proposal pickle that ``dataset.proposal`` names (see the module docstring)."""
    if proposal == "rpn":
        return os.path.join(root_path, "rpn_data", f"{imdb.name}_rpn.pkl")
    return proposal


def load_proposal_roidb(imdb: Any, proposal: str, root_path: str) -> list[dict[str, Any]]:
    """The test roidb whose ``boxes`` are the proposals of ``dataset.proposal``.

    Each record is the image's ground-truth record with ``boxes`` replaced by its proposals
    (float32) and ``gt_classes`` zero: the loader turns them into the ``rois`` input.

    Raises:
        FileNotFoundError: the proposal file does not exist (the message names it).
        ValueError: it is not a list of one (N, 4) / (N, 5) array per image of the image set.
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
    roidb = []
    for i, (rec, boxes) in enumerate(zip(imdb.gt_roidb(), boxes_list)):
        boxes = np.asarray(boxes, dtype=np.float32)
        if boxes.ndim != 2 or boxes.shape[1] not in (4, 5) or boxes.shape[0] == 0:
            raise ValueError(
                f"proposal file {path}: entry {i} (image {imdb.image_set_index[i]}) has shape "
                f"{boxes.shape}, expected (N > 0, 4) or (N, 5)"
            )
        entry = {k: v for k, v in rec.items() if k not in _GT_ONLY}
        entry["boxes"] = boxes[:, :4].copy()
        entry["gt_classes"] = np.zeros(boxes.shape[0], dtype=np.int32)
        roidb.append(entry)
    logger.info("loaded the proposals of %d images from %s", len(roidb), path)
    return roidb
