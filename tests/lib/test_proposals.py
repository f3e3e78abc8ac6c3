"""Given proposals (``TEST.HAS_RPN: false``, lib.dataset.proposals): the file's boxes are
checked (non-finite ones are an error) and repaired (clipped to the image, inverted, outside and
duplicate boxes dropped, each counted in one warning) before any of them is tested."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest

from lib.config import default_config
from lib.core.loader import TestLoader
from lib.dataset.proposals import load_proposal_roidb, repair_proposals

LOGGER = "lib.dataset.proposals"
HEIGHT, WIDTH = 60, 80  # every image of the fake dataset


class _Imdb:
    """The part of an IMDB that ``load_proposal_roidb`` uses: 3 images of 80 x 60."""

    name = "fake_val"

    def __init__(self, directory: Path) -> None:
        self.image_set_index = [11, 12, 13]
        self.num_images = len(self.image_set_index)
        self.directory = directory

    def gt_roidb(self) -> list[dict]:
        return [
            {
                "image": str(self.directory / f"{index}.jpg"),
                "height": HEIGHT,
                "width": WIDTH,
                "boxes": np.array([[1, 2, 30, 40]], np.uint16),
                "gt_classes": np.array([1], np.int32),
                "gt_overlaps": np.array([[0, 1]], np.float32),
                "max_classes": np.array([1]),
                "max_overlaps": np.array([1.0], np.float32),
                "flipped": False,
            }
            for index in self.image_set_index
        ]


def _load(tmp_path: Path, boxes_list: list) -> tuple[list[dict], str]:
    path = tmp_path / "proposals.pkl"
    with open(path, "wb") as f:
        pickle.dump(boxes_list, f)
    return load_proposal_roidb(_Imdb(tmp_path), str(path), str(tmp_path)), str(path)


VALID = np.array([[0, 0, 10, 10], [5, 6, 70, 50], [0, 0, WIDTH - 1, HEIGHT - 1]], np.float32)


def test_valid_proposals_are_kept_as_they_are(tmp_path, caplog):
    scored = np.hstack([VALID, [[0.9], [0.5], [0.1]]]).astype(np.float32)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        roidb, _ = _load(tmp_path, [VALID, scored, VALID[:1]])
    for rec, want in zip(roidb, [VALID, VALID, VALID[:1]]):
        np.testing.assert_array_equal(rec["boxes"], want)
        assert rec["boxes"].dtype == np.float32
        assert rec["gt_classes"].tolist() == [0] * len(want)
        assert "gt_overlaps" not in rec
    assert not caplog.records


@pytest.mark.parametrize(
    "bad, column",
    [(np.nan, 2), (np.inf, 0), (-np.inf, 3), (np.nan, 4)],
    ids=["nan-x2", "inf-x1", "-inf-y2", "nan-score"],
)
def test_non_finite_boxes_are_an_error_naming_the_file_image_and_count(tmp_path, bad, column):
    boxes = [np.hstack([VALID, np.ones((3, 1), np.float32)]) for _ in range(3)]
    boxes[1][0, column] = bad
    boxes[1][2, column] = bad
    with pytest.raises(ValueError, match="non-finite") as err:
        _load(tmp_path, boxes)
    message = str(err.value)
    assert str(tmp_path / "proposals.pkl") in message
    assert "image 1 (id 12): 2 of 3" in message
    assert "image 0" not in message and "image 2" not in message


def test_non_finite_error_counts_every_image(tmp_path):
    boxes = [VALID.copy() for _ in range(3)]
    boxes[0][1, 1] = np.nan
    boxes[2][:, 3] = np.inf
    with pytest.raises(ValueError, match=r"in 2 image\(s\): image 0 \(id 11\): 1 of 3; "
                                         r"image 2 \(id 13\): 3 of 3"):  # fmt: skip
        _load(tmp_path, boxes)


def test_boxes_past_the_image_are_clipped_and_counted(tmp_path, caplog):
    past = np.array(
        [[-5, 3, 20, 30], [10, -0.5, WIDTH, 20], [4, 4, 30, HEIGHT + 40], [2, 2, 8, 9]],
        np.float32,
    )
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        roidb, path = _load(tmp_path, [past, VALID, VALID])
    want = [[0, 3, 20, 30], [10, 0, WIDTH - 1, 20], [4, 4, 30, HEIGHT - 1], [2, 2, 8, 9]]
    np.testing.assert_array_equal(roidb[0]["boxes"], want)
    np.testing.assert_array_equal(roidb[1]["boxes"], VALID)
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert record.getMessage() == (
        f"proposal file {path}, 10 boxes: 3 extended past their image and were clipped to it"
    )


def test_inverted_boxes_are_dropped_and_counted(tmp_path, caplog):
    inverted = np.array(
        [[20, 5, 10, 30], [1, 1, 9, 9], [5, 30, 25, 29], [3, 3, 3, 3]], np.float32
    )  # x2 < x1, valid, y2 < y1, one pixel (valid)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        roidb, path = _load(tmp_path, [VALID, inverted, inverted])
    np.testing.assert_array_equal(roidb[1]["boxes"], [[1, 1, 9, 9], [3, 3, 3, 3]])
    assert roidb[1]["gt_classes"].shape == (2,)
    (record,) = caplog.records
    assert record.getMessage() == (
        f"proposal file {path}, 11 boxes: 4 inverted (x2 < x1 or y2 < y1) were dropped"
    )


def test_outside_and_duplicate_boxes_are_dropped_and_counted(tmp_path, caplog):
    boxes = np.array(
        [
            [WIDTH, 5, WIDTH + 10, 20],  # right of the image
            [5, -20, 10, -1],  # above it
            [0, 0, 10, 10],
            [-3, -3, 10, 10],  # (0, 0, 10, 10) once clipped
            [0, 0, 10, 10],
            [WIDTH - 1, HEIGHT - 1, WIDTH + 5, HEIGHT + 5],  # the corner pixel: kept
        ],
        np.float32,
    )
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        roidb, path = _load(tmp_path, [boxes, VALID, VALID])
    np.testing.assert_array_equal(
        roidb[0]["boxes"], [[0, 0, 10, 10], [WIDTH - 1, HEIGHT - 1, WIDTH - 1, HEIGHT - 1]]
    )
    assert caplog.records[0].getMessage() == (
        f"proposal file {path}, 12 boxes: 2 extended past their image and were clipped to it; "
        "2 wholly outside their image, 2 duplicates were dropped"
    )


def test_an_image_left_without_proposals_has_an_empty_record(tmp_path, caplog):
    nothing_valid = np.array([[30, 5, 10, 20], [-9, -9, -1, -1]], np.float32)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        roidb, path = _load(tmp_path, [VALID, nothing_valid, np.zeros((0, 5), np.float32)])
    assert len(roidb) == 3
    for rec in roidb[1:]:
        assert rec["boxes"].shape == (0, 4) and rec["gt_classes"].shape == (0,)
    assert caplog.records[0].getMessage() == (
        f"proposal file {path}, 5 boxes: 1 inverted (x2 < x1 or y2 < y1), 1 wholly outside "
        "their image were dropped; 2 image(s) were left without any (no detections)"
    )


def test_repair_keeps_the_order_and_the_first_duplicate():
    boxes = np.array([[5, 5, 9, 9], [1, 1, 4, 4], [5, 5, 9, 9], [-1, 1, 4, 4]], np.float32)
    repaired, counts = repair_proposals(boxes, height=20, width=20)
    np.testing.assert_array_equal(repaired, [[5, 5, 9, 9], [1, 1, 4, 4], [0, 1, 4, 4]])
    assert (counts.boxes, counts.clipped, counts.duplicates) == (4, 1, 1)


def test_a_batch_of_images_without_proposals_gives_a_bindable_rois_input(tmp_path):
    imdb = _Imdb(tmp_path)
    for rec in imdb.gt_roidb():
        cv2.imwrite(rec["image"], np.full((HEIGHT, WIDTH, 3), 128, np.uint8))
    roidb, _ = _load(tmp_path, [VALID, np.zeros((0, 4), np.float32), VALID])
    cfg = default_config("rfcn")
    cfg.SCALES = [(60, 80)]
    cfg.network.IMAGE_STRIDE = 0
    loader = TestLoader(roidb, cfg, batch_size=1, has_rpn=False, num_workers=1)
    try:
        batches = list(loader)
    finally:
        loader.close()
    assert [b.num_rois for b in batches] == [[3], [0], [3]]
    for batch in batches:
        assert 0 not in batch.data[1].shape  # (1, R >= 1, 5)
