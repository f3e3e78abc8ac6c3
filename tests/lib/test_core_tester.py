"""lib.core.tester: per-class selection of detections, test scales and the detections cache."""

import logging
import os
import pickle

import numpy as np
import pytest

from lib.config import default_config
from lib.core import tester
from lib.core.tester import (
    detection_cache_key,
    detections_path,
    pred_eval,
    select_detections,
    test_scales,
)
from lib.nms.nms import py_nms_wrapper


def _inputs():
    # 4 RoIs, 3 classes (0 = background); class-agnostic boxes in columns 4:8
    scores = np.array([[0.1, 0.8, 0.1], [0.2, 0.7, 0.1], [0.5, 0.05, 0.45], [0.9, 0.0005, 0.0995]])
    boxes = np.zeros((4, 8))
    boxes[:, 4:] = [[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [0, 0, 5, 5]]
    return scores, boxes


def test_per_class_nms_threshold_and_agnostic_boxes():
    scores, boxes = _inputs()
    dets = select_detections(scores, boxes, 3, True, 1e-3, py_nms_wrapper(0.3), 0)
    assert dets[0].shape == (0, 5)
    # class 1: RoIs 0 and 1 overlap (IoU 0.7 > 0.3) -> only the 0.8 one; RoI 2 (0.05) kept;
    # RoI 3 (0.0005) below the threshold
    np.testing.assert_allclose(dets[1], [[0, 0, 10, 10, 0.8], [50, 50, 60, 60, 0.05]], rtol=1e-6)
    assert len(dets[2]) == 3  # 0.1 (RoI 0 suppresses RoI 1), 0.45, 0.0995
    assert all(d.dtype == np.float32 for d in dets)


def test_max_per_image_keeps_the_best_over_all_classes():
    scores, boxes = _inputs()
    dets = select_detections(scores, boxes, 3, True, 1e-3, py_nms_wrapper(0.3), 2)
    kept = sorted(float(s) for d in dets for s in d[:, 4])
    np.testing.assert_allclose(kept, [0.45, 0.8], rtol=1e-6)


def test_class_specific_boxes():
    scores, _ = _inputs()
    boxes = np.arange(4 * 12, dtype=np.float64).reshape(4, 12)
    dets = select_detections(scores, boxes, 3, False, 0.5, py_nms_wrapper(0.3), 0)
    np.testing.assert_array_equal(dets[1][:, :4], boxes[:2, 4:8])  # columns of class 1
    assert dets[2].shape == (0, 5)


class _Imdb:
    name = "toy_val"
    num_classes = 2
    num_images = 1

    def __init__(self):
        self.evaluated = None

    def evaluate_detections(self, all_boxes, output_dir=None):
        self.evaluated = all_boxes
        return {"AP50": 0.5}


def _cfg():
    cfg = default_config("rfcn")
    cfg.symbol = "resnet_v1_50_w16_rfcn"
    return cfg


def _key(tmp_path, cfg, checkpoint=b"weights", thresh=1e-3):
    ckpt = tmp_path / "model-0001.params"
    ckpt.write_bytes(checkpoint)
    image = tmp_path / "a.jpg"
    if not image.exists():
        image.write_bytes(b"jpeg")
    roidb = [{"image": str(image), "height": 10, "width": 10, "flipped": False,
              "boxes": np.zeros((1, 4))}]  # fmt: skip
    return detection_cache_key(cfg, str(ckpt), roidb, thresh)


@pytest.fixture
def fake_detect(monkeypatch):
    """Replaces the network pass: each call returns new boxes and is counted."""
    calls = []

    def detect(predictor, loaders, imdb, cfg, thresh, nms, max_per_image):
        calls.append(thresh)
        return [[np.zeros((0, 5), np.float32)], [np.full((1, 5), len(calls), np.float32)]]

    monkeypatch.setattr(tester, "_detect_all", detect)
    return calls


def test_cached_detections_are_reused_only_under_the_same_key(tmp_path, fake_detect, caplog):
    imdb, cfg = _Imdb(), _cfg()
    key = _key(tmp_path, cfg)
    out = str(tmp_path / "out")
    first = pred_eval(None, [], imdb, cfg, out, cache_key=key)
    assert not first["cached"] and len(fake_detect) == 1
    with caplog.at_level(logging.INFO, logger="lib.core.tester"):
        again = pred_eval(None, [], imdb, cfg, out, cache_key=dict(key))
    assert again["cached"] and len(fake_detect) == 1
    assert "using cached detections" in caplog.text
    np.testing.assert_array_equal(imdb.evaluated[1][0], np.full((1, 5), 1))
    assert again["detections_file"] == str(tmp_path / "out" / "toy_val_detections.pkl")

    # another checkpoint (same path, other content): recomputed, and the log says why
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="lib.core.tester"):
        other = pred_eval(None, [], imdb, cfg, out, cache_key=_key(tmp_path, cfg, b"retrained"))
    assert not other["cached"] and len(fake_detect) == 2
    assert "made with another checkpoint" in caplog.text
    np.testing.assert_array_equal(imdb.evaluated[1][0], np.full((1, 5), 2))
    # --ignore_cache recomputes even under an equal key; no key never reuses
    pred_eval(None, [], imdb, cfg, out, cache_key=_key(tmp_path, cfg, b"retrained"),
              ignore_cache=True)  # fmt: skip
    pred_eval(None, [], imdb, cfg, out, cache_key=None)
    assert len(fake_detect) == 4


def test_cache_of_the_old_format_is_recomputed(tmp_path, fake_detect):
    imdb, cfg = _Imdb(), _cfg()
    all_boxes = [[np.zeros((0, 5), np.float32)], [np.ones((1, 5), np.float32)]]
    with open(detections_path(str(tmp_path), imdb), "wb") as f:
        pickle.dump(all_boxes, f)  # the original's format: no key
    results = pred_eval(None, [], imdb, cfg, str(tmp_path), cache_key=_key(tmp_path, cfg))
    assert not results["cached"] and len(fake_detect) == 1


def test_cache_key_names_what_changes_detections(tmp_path):
    cfg = _cfg()
    key = _key(tmp_path, cfg)
    assert _key(tmp_path, cfg) == key
    assert _key(tmp_path, cfg, b"other weights")["checkpoint"] != key["checkpoint"]
    assert _key(tmp_path, cfg, thresh=0.05)["test settings"] != key["test settings"]
    changes = [
        lambda c: c.TEST.update(NMS=0.5),
        lambda c: c.TEST.update(USE_SOFTNMS=True),
        lambda c: c.update(TEST_SCALES=[(200, 300)]),
        lambda c: c.TEST.update(RPN_POST_NMS_TOP_N=100),
        lambda c: c.network.update(PIXEL_MEANS=np.array([1.0, 2.0, 3.0])),
    ]
    for i, change in enumerate(changes):
        changed = _cfg()
        change(changed)
        assert _key(tmp_path, changed)["test settings"] != key["test settings"], i
    # training settings and the epoch number do not change detections (the file digest does)
    same = _cfg()
    same.TRAIN.lr, same.TEST.test_epoch = 0.5, 7
    assert _key(tmp_path, same) == key
    # a replaced image file (e.g. a corrupt one) changes the image digest
    os.utime(tmp_path / "a.jpg", ns=(1, 1))
    assert _key(tmp_path, cfg)["images"] != key["images"]


def test_test_scales_default_to_the_first_training_scale():
    cfg = _cfg()
    cfg.SCALES = [(256, 384), (300, 500)]
    assert test_scales(cfg) == [(256, 384)]
    cfg.TEST_SCALES = [(100, 200), (300, 400)]
    assert test_scales(cfg) == [(100, 200), (300, 400)]
