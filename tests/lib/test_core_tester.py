"""lib.core.tester: per-class selection of detections and the detections cache."""

import pickle

import numpy as np

from lib.core.tester import detections_path, pred_eval, select_detections
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


def test_cached_detections_are_reused(tmp_path):
    imdb = _Imdb()
    all_boxes = [[np.zeros((0, 5), np.float32)], [np.ones((1, 5), np.float32)]]
    with open(detections_path(str(tmp_path), imdb), "wb") as f:
        pickle.dump(all_boxes, f)
    results = pred_eval(None, None, imdb, None, str(tmp_path), ignore_cache=False)
    assert results["AP50"] == 0.5
    assert results["detections_file"] == str(tmp_path / "toy_val_detections.pkl")
    np.testing.assert_array_equal(imdb.evaluated[1][0], all_boxes[1][0])
