"""lib.core.tester: im_detect on hand-worked boxes, per-class selection of detections, test
scales and the detections cache (the whole path: test_detection_oracle.py)."""

import logging
import os
import pickle

import mxnet as mx
import numpy as np
import pytest

from fpn.symbols import get_network as fpn_network
from lib.config import default_config, load_config
from lib.core import tester
from lib.core.tester import (
    detection_cache_key,
    detections_path,
    pred_eval,
    rpn_only_params,
    select_detections,
    test_scales,
)
from lib.nms.nms import py_nms_wrapper
from rfcn.symbols import get_network as rfcn_network


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


# ------------------------------------------------------------------------------ im_detect
# Hand-worked boxes: (x1, y1, x2, y2) inclusive, w = x2 - x1 + 1, centre x1 + (w - 1) / 2.


class _FixedOutputs:
    """A predictor returning fixed outputs, one dict per device."""

    def __init__(self, per_device):
        self.per_device = per_device

    def predict(self, batch):
        return [{k: mx.nd.array(v) for k, v in d.items()} for d in self.per_device]


def _device(rois, deltas, scores):
    """Outputs of a device with B images of R RoIs: rois (B, R, 4), deltas (B, R, 4 R_cls)."""
    rois = np.asarray(rois, np.float64)
    b, r = rois.shape[:2]
    with_index = np.concatenate([np.repeat(np.arange(b), r)[:, None], rois.reshape(-1, 4)], 1)
    return {
        "rois_output": with_index,
        "cls_prob_reshape_output": np.asarray(scores, np.float64),
        "bbox_pred_reshape_output": np.asarray(deltas, np.float64),
    }


LN3 = np.log(3.0)


def test_im_detect_decodes_clips_to_the_input_and_divides_by_the_scale():
    # RoI (10, 4, 29, 23): w = h = 20, centre (19.5, 13.5). Deltas (0.5, -0.25, ln 3, 0):
    # centre (29.5, 8.5), w 60, h 20 -> (0, -1, 59, 18); clipped to the 50 x 30 input
    # (0, 0, 49, 18); divided by the scale 0.5 -> (0, 0, 98, 36).
    # Class 0's columns (zero deltas): the RoI itself / 0.5 = (20, 8, 58, 46).
    # RoI (6, 2, 13, 9), zero deltas -> (12, 4, 26, 18).
    deltas = [[[0, 0, 0, 0, 0.5, -0.25, LN3, 0], [0] * 8]]
    scores = [[[0.3, 0.7], [0.6, 0.4]]]
    outputs = _FixedOutputs([_device([[[10, 4, 29, 23], [6, 2, 13, 9]]], deltas, scores)])
    # im_info from the data, as in a plain DataBatch (no image_sizes: no clip to the image)
    batch = mx.io.DataBatch([mx.nd.zeros((1, 3, 30, 50)), mx.nd.array([[30, 50, 0.5]])], pad=0)
    ((got_scores, boxes),) = tester.im_detect(outputs, batch, ["data", "im_info"])
    np.testing.assert_allclose(got_scores, scores[0], rtol=1e-6)
    want = [[20, 8, 58, 46, 0, 0, 98, 36], [12, 4, 26, 18, 12, 4, 26, 18]]
    np.testing.assert_allclose(boxes, want, rtol=0, atol=1e-4)


def test_im_detect_maps_images_to_devices_and_clips_to_the_original_image():
    """2 devices x 2 images, the last a padding entry: image i is row i % 2 of device i // 2."""
    # image 0: im_info 30 x 50 at scale 0.5 of a 61 x 101 image; the RoI of the test above:
    #   (0, -1, 59, 18) -> input clip (0, 0, 49, 18) -> (0, 0, 98, 36); the image clip (100, 60)
    #   alone would give x2 = min(118, 100) = 100.
    # image 1: 25 x 37 at scale 1.6 -> 40 x 59, padded to 40 x 64: RoI (50, 30, 63, 39) in the
    #   padding -> / 1.6 = (31.25, 18.75, 39.375, 24.375) -> image clip (31.25, 18.75, 36, 24).
    # image 2: 10 x 16 at scale 3: RoI (3, 6, 17, 20) -> (1, 2, 17/3, 20/3).
    # Each image's second RoI (0, 0, 3, 3) -> (0, 0, 3, 3) / scale.
    im_info = [[30, 50, 0.5], [40, 64, 1.6], [32, 48, 3.0], [32, 48, 3.0]]
    second = [0, 0, 3, 3]
    zero = [0.0] * 8
    scores = [[[0.1 * i, 1 - 0.1 * i], [0.5, 0.5]] for i in range(4)]
    dev0 = _device([[[10, 4, 29, 23], second], [[50, 30, 63, 39], second]],
                   [[[0] * 4 + [0.5, -0.25, LN3, 0], zero], [zero, zero]], scores[:2])  # fmt: skip
    dev1 = _device([[[3, 6, 17, 20], second], [[0, 0, 40, 40], second]], [[zero, zero]] * 2,
                   scores[2:])  # fmt: skip
    batch = mx.io.DataBatch([mx.nd.zeros((4, 3, 40, 64)), mx.nd.array(im_info)], pad=1)
    batch.im_info = np.array(im_info[:3], np.float32)
    batch.image_sizes = np.array([[61, 101], [25, 37], [10, 16]])
    results = tester.im_detect(_FixedOutputs([dev0, dev1]), batch, ["data", "im_info"])
    assert len(results) == 3  # the padding entry is dropped
    want = [
        [0, 0, 98, 36],
        [31.25, 18.75, 36, 24],
        [1, 2, 17 / 3, 20 / 3],
    ]
    for i, (got_scores, boxes) in enumerate(results):
        np.testing.assert_allclose(got_scores, scores[i], rtol=1e-6)
        np.testing.assert_allclose(boxes[0, 4:], want[i], rtol=0, atol=1e-4)
        np.testing.assert_allclose(boxes[1, 4:], np.array(second) / im_info[i][2], atol=1e-4)
    # the same from a plain DataBatch: im_info from the data, less the padding entry
    del batch.im_info
    again = tester.im_detect(_FixedOutputs([dev0, dev1]), batch, ["data", "im_info"])
    assert len(again) == 3
    for (scores_a, boxes_a), (scores_b, boxes_b) in zip(results, again):
        np.testing.assert_array_equal(scores_a, scores_b)
        np.testing.assert_array_equal(boxes_a, boxes_b)


def test_im_detect_reads_the_rois_input_without_rpn():
    """TEST.HAS_RPN off: the RoIs are the ``rois`` input, each image's first ``num_rois`` rows."""
    rois = [[[0, 4, 6, 10, 12], [0, 0, 0, 0, 0]], [[1, 8, 8, 9, 9], [1, 2, 2, 20, 18]]]
    scores = [[[0.2, 0.8], [1, 0]], [[0.4, 0.6], [0.9, 0.1]]]
    device = {"cls_prob_reshape_output": scores, "bbox_pred_reshape_output": np.zeros((2, 2, 8))}
    outputs = _FixedOutputs([device])
    batch = mx.io.DataBatch([mx.nd.zeros((2, 3, 20, 30)), mx.nd.array(rois)], pad=0)
    batch.im_info = np.array([[20, 30, 2.0], [20, 30, 4.0]], np.float32)
    batch.num_rois = [1, 2]
    first, second = tester.im_detect(outputs, batch, ["data", "rois"])
    np.testing.assert_allclose(first[0], scores[0][:1], rtol=1e-6)
    np.testing.assert_allclose(first[1], [[2, 3, 5, 6] * 2], atol=1e-6)
    np.testing.assert_allclose(second[0], scores[1], rtol=1e-6)
    np.testing.assert_allclose(second[1], [[2, 2, 2.25, 2.25] * 2, [0.5, 0.5, 5, 4.5] * 2],
                               atol=1e-6)  # fmt: skip


def test_truncated_cache_is_recomputed(tmp_path, fake_detect, caplog):
    """A half-written detections pickle (e.g. a killed test) is not an error: it is redone."""
    imdb, cfg = _Imdb(), _cfg()
    key = _key(tmp_path, cfg)
    pred_eval(None, [], imdb, cfg, str(tmp_path), cache_key=key)
    path = detections_path(str(tmp_path), imdb)
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
    with caplog.at_level(logging.WARNING, logger="lib.core.tester"):
        results = pred_eval(None, [], imdb, cfg, str(tmp_path), cache_key=key)
    assert not results["cached"] and len(fake_detect) == 2
    assert "ignoring unreadable cached detections" in caplog.text
    assert pred_eval(None, [], imdb, cfg, str(tmp_path), cache_key=key)["cached"]


#: Config keys that cannot change a checkpoint's detections: how it was trained (the
#: checkpoint's digest covers that), where files go, the devices, and the dataset's location and
#: name (the image records' digest covers the images and boxes). Every other key is in the key
#: (the whole network section, its training-only keys too: a needless recomputation is safe).
NOT_IN_CACHE_KEY = ("MXNET_VERSION", "output_path", "gpus", "cpu_contexts", "default.",
                    "TRAIN.", "TEST.test_epoch", "dataset.dataset", "dataset.image_set",
                    "dataset.test_image_set", "dataset.root_path", "dataset.dataset_path",
                    "dataset.CLASSES", "dataset.annotation_prefix")  # fmt: skip
#: Values to change an empty default to (one that changes what it means).
CHANGED_EMPTY = {"TEST_SCALES": [(200, 300)], "dataset.CLASSES": ["a"]}


def _changed(key, value):
    if key in CHANGED_EMPTY:
        return CHANGED_EMPTY[key]
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, str):
        return value + "x"
    if isinstance(value, np.ndarray):
        return value + 1
    if isinstance(value, (list, tuple)):
        return type(value)([_changed(key, value[0]), *value[1:]])
    raise AssertionError(f"no change for {key}: {value!r}")


def _leaves(tree, prefix=""):
    for name, value in tree.items():
        if isinstance(value, dict):
            yield from _leaves(value, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", value


def test_every_setting_that_can_change_detections_is_in_the_cache_key(tmp_path):
    """Each config value is changed in turn: the detections' key must change exactly when the
    value can change detections (a key left out would reuse stale detections)."""
    key = _key(tmp_path, _cfg())["test settings"]
    for name, value in _leaves(_cfg()):
        changed = _cfg()
        *path, leaf = name.split(".")
        section = changed
        for part in path:
            section = section[part]
        section[leaf] = _changed(name, value)
        in_key = not name.startswith(NOT_IN_CACHE_KEY)
        assert (_key(tmp_path, changed)["test settings"] != key) == in_key, name


def test_params_a_test_on_given_proposals_leaves_out():
    """The network's own RPN (and FPN's P6, which only the RPN reads): nothing else."""

    rpn = {f"{layer}_{kind}" for layer in ("rpn_conv", "rpn_cls_score", "rpn_bbox_pred")
           for kind in ("weight", "bias")}  # fmt: skip
    cfg = load_config("experiments/fpn/cfgs/synthetic_fpn_dcn.yaml", ["TEST.HAS_RPN=false"])
    assert rpn_only_params(cfg, fpn_network(cfg.symbol)) == rpn | {"fpn_p6_weight", "fpn_p6_bias"}
    cfg = load_config("experiments/rfcn/cfgs/synthetic_rfcn.yaml", ["TEST.HAS_RPN=false"])
    assert rpn_only_params(cfg, rfcn_network(cfg.symbol)) == {
        n.replace("rpn_conv", "rpn_conv_3x3") for n in rpn
    }
    cfg.TEST.HAS_RPN = True
    assert rpn_only_params(cfg, rfcn_network(cfg.symbol)) == frozenset()
