"""Tests for lib.evaluation: VOC AP, COCO box AP and segmentation IoU on hand-worked examples."""

import json
import logging

import numpy as np
import pytest
from pycocotools.coco import COCO

from lib.evaluation import (
    COCO_STAT_NAMES,
    accumulate,
    coco_box_ap,
    confusion_matrix,
    mean_iou,
    parse_voc_rec,
    pixel_accuracy,
    voc_ap,
    voc_eval,
    write_coco_results,
)

# ------------------------------------------------------------------------------------------------
# PASCAL VOC

# Two images, class "car": A and B in img1 (B difficult), C and D in img2; npos = 3 (A, C, D).
# The dog in img2 must be ignored when evaluating "car".
ANNOTATIONS = {
    "img1": [
        {"name": "car", "bbox": [0, 0, 9, 9], "difficult": 0},  # A
        {"name": "car", "bbox": [20, 20, 29, 29], "difficult": 1},  # B (difficult)
    ],
    "img2": [
        {"name": "car", "bbox": [0, 0, 9, 9], "difficult": 0},  # C
        {"name": "car", "bbox": [50, 50, 59, 59], "difficult": 0},  # D
        {"name": "dog", "bbox": [100, 100, 109, 109], "difficult": 0},
    ],
}

# Given out of score order on purpose. In descending score:
#   .9 img1 on A          -> TP
#   .8 img1 on B          -> difficult: neither TP nor FP
#   .7 img2 on the dog    -> FP (no car there)
#   .6 img1 on A again    -> FP (duplicate)
#   .5 img2 on C          -> TP
#   .4 img2 on D          -> TP
DETECTIONS = [
    ("img2", 0.5, 0, 0, 9, 9),
    ("img1", 0.9, 0, 0, 9, 9),
    ("img2", 0.4, 50, 50, 59, 59),
    ("img1", 0.8, 20, 20, 29, 29),
    ("img1", 0.6, 0, 0, 9, 9),
    ("img2", 0.7, 100, 100, 109, 109),
]
# cum TP = 1 1 1 1 2 3, cum FP = 0 0 1 2 2 2
# rec  = 1/3 1/3 1/3 1/3 2/3 1
# prec = 1   1   1/2 1/3 1/2 3/5
EXPECTED_REC = [1 / 3, 1 / 3, 1 / 3, 1 / 3, 2 / 3, 1]
EXPECTED_PREC = [1, 1, 1 / 2, 1 / 3, 1 / 2, 3 / 5]
# Area metric: envelope (running max from the right) = 1 1 .6 .6 .6 .6; recall steps 0->1/3 at
# precision 1, 1/3->2/3 at .6, 2/3->1 at .6:  AP = 1/3 * (1 + 3/5 + 3/5) = 11/15.
AP_AREA = 11 / 15
# 11-point: t = 0, .1, .2, .3 -> max prec at rec >= t = 1 (4 points);
#           t = .4 ... 1.0 -> max(1/2, 3/5) = 3/5 (7 points):  AP = (4 + 7 * 3/5) / 11 = 41/55.
AP_07 = 41 / 55


def test_voc_eval_hand_worked_area_metric():
    rec, prec, ap = voc_eval(DETECTIONS, ANNOTATIONS, "car")
    np.testing.assert_allclose(rec, EXPECTED_REC)
    np.testing.assert_allclose(prec, EXPECTED_PREC)
    assert ap == pytest.approx(AP_AREA)


def test_voc_eval_hand_worked_07_metric():
    _, _, ap = voc_eval(DETECTIONS, ANNOTATIONS, "car", use_07_metric=True)
    assert ap == pytest.approx(AP_07)


def test_voc_ap_direct():
    assert voc_ap(np.array(EXPECTED_REC), np.array(EXPECTED_PREC)) == pytest.approx(AP_AREA)
    assert voc_ap(np.array(EXPECTED_REC), np.array(EXPECTED_PREC), True) == pytest.approx(AP_07)
    # Perfect curve; and no detections at all.
    assert voc_ap(np.array([0.5, 1.0]), np.array([1.0, 1.0])) == pytest.approx(1.0)
    assert voc_ap(np.array([0.5, 1.0]), np.array([1.0, 1.0]), True) == pytest.approx(1.0)
    assert voc_ap(np.zeros(0), np.zeros(0)) == 0.0


def test_voc_difficult_is_ignored():
    # Only a detection of the difficult object: no TP, no FP, so recall 0 and precision 0 (eps).
    _, prec, ap = voc_eval([("img1", 0.9, 20, 20, 29, 29)], ANNOTATIONS, "car")
    assert ap == 0.0
    assert prec[0] == 0.0
    # A difficult hit before a TP does not lower the TP's precision.
    dets = [("img1", 0.9, 20, 20, 29, 29), ("img1", 0.8, 0, 0, 9, 9)]
    _, prec, _ = voc_eval(dets, ANNOTATIONS, "car")
    np.testing.assert_allclose(prec, [0.0, 1.0])


def test_voc_duplicate_is_false_positive():
    dets = [("img1", 0.9, 0, 0, 9, 9), ("img1", 0.8, 1, 1, 9, 9)]
    rec, prec, _ = voc_eval(dets, ANNOTATIONS, "car")
    np.testing.assert_allclose(rec, [1 / 3, 1 / 3])
    np.testing.assert_allclose(prec, [1.0, 0.5])


def test_voc_plus_one_iou_convention():
    # gt [0,0,9,9] vs det [0,0,9,18]: with +1 widths IoU = 100 / 190 > 0.5 (TP); without the +1
    # it would be 81 / 162 = 0.5 exactly, which does not exceed the threshold.
    rec, _, _ = voc_eval([("img1", 0.9, 0, 0, 9, 18)], ANNOTATIONS, "car")
    assert rec[-1] == pytest.approx(1 / 3)
    # IoU must exceed ovthresh strictly: [0,0,9,19] has IoU 100 / 200 = 0.5 -> FP.
    rec, _, _ = voc_eval([("img1", 0.9, 0, 0, 9, 19)], ANNOTATIONS, "car")
    assert rec[-1] == 0.0


def test_voc_eval_no_detections_and_unknown_image():
    rec, prec, ap = voc_eval([], ANNOTATIONS, "car")
    assert rec.size == prec.size == 0 and ap == 0.0
    with pytest.raises(ValueError, match="not in annotations"):
        voc_eval([("img9", 0.9, 0, 0, 9, 9)], ANNOTATIONS, "car")


def test_parse_voc_rec(tmp_path):
    xml = """<annotation><filename>000001.jpg</filename>
      <object><name>dog</name><pose>Left</pose><truncated>1</truncated><difficult>0</difficult>
        <bndbox><xmin>48</xmin><ymin>240</ymin><xmax>195</xmax><ymax>371</ymax></bndbox></object>
      <object><name>person</name><difficult>1</difficult>
        <bndbox><xmin>8.0</xmin><ymin>12</ymin><xmax>352</xmax><ymax>498</ymax></bndbox></object>
    </annotation>"""
    path = tmp_path / "000001.xml"
    path.write_text(xml)
    objs = parse_voc_rec(str(path))
    assert objs == [
        {"name": "dog", "bbox": [48, 240, 195, 371], "difficult": 0, "truncated": 1},
        {"name": "person", "bbox": [8, 12, 352, 498], "difficult": 1, "truncated": 0},
    ]
    # Round trip into voc_eval (1-based coordinates on both sides).
    _, _, ap = voc_eval([("000001", 0.9, 48, 240, 195, 371)], {"000001": objs}, "dog")
    assert ap == pytest.approx(1.0)


# ------------------------------------------------------------------------------------------------
# COCO


@pytest.fixture()
def coco_gt():
    # Two 100x100 images, one 40x40 box each (area 1600: "medium").
    dataset = {
        "images": [{"id": i, "width": 100, "height": 100, "file_name": f"{i}.jpg"} for i in (1, 2)],
        "categories": [{"id": 3, "name": "car"}],
        "annotations": [
            {
                "id": i,
                "image_id": i,
                "category_id": 3,
                "bbox": [10, 10, 40, 40],
                "area": 1600,
                "iscrowd": 0,
            }
            for i in (1, 2)
        ],
    }
    gt = COCO()
    gt.dataset = dataset
    gt.createIndex()
    return gt


def _dets(dx=0.0, images=(1, 2)):
    return [
        {"image_id": i, "category_id": 3, "bbox": [10.0 + dx, 10.0, 40.0, 40.0], "score": 0.9}
        for i in images
    ]


def test_coco_perfect(coco_gt, caplog, capsys):
    results = _dets()
    with caplog.at_level(logging.INFO):
        stats = coco_box_ap(coco_gt, results)
    assert set(stats) == set(COCO_STAT_NAMES)
    for key in ("AP", "AP50", "AP75", "APm", "AR1", "AR100", "ARm"):
        assert stats[key] == pytest.approx(1.0), key
    # No small / large ground truth: COCOeval reports -1.
    assert stats["APs"] == stats["APl"] == stats["ARs"] == stats["ARl"] == -1.0
    # The summary goes to logging, not stdout; the caller's dicts are not modified.
    assert capsys.readouterr().out == ""
    assert "Average Precision" in caplog.text
    assert set(results[0]) == {"image_id", "category_id", "bbox", "score"}


def test_coco_shifted_boxes(coco_gt):
    # Shift by 8 px: IoU = 32*40 / (48*40) = 2/3, a match at thresholds .50 .55 .60 .65 only,
    # each with precision 1 at every recall: AP = 4/10, AP50 = 1, AP75 = 0.
    stats = coco_box_ap(coco_gt, _dets(dx=8.0))
    assert stats["AP50"] == pytest.approx(1.0)
    assert stats["AP75"] == pytest.approx(0.0)
    assert stats["AP"] == pytest.approx(0.4)


def test_coco_half_detected(coco_gt):
    # Only image 1 detected: recall 1/2 at precision 1. Interpolated precision is 1 at the 51
    # recall thresholds 0, .01, ..., .50 and 0 at the other 50: AP = 51/101 at every IoU.
    stats = coco_box_ap(coco_gt, _dets(images=(1,)))
    assert stats["AP"] == pytest.approx(51 / 101)
    assert stats["AR100"] == pytest.approx(0.5)


def test_coco_empty_results(coco_gt, capsys):
    stats = coco_box_ap(coco_gt, [])
    assert stats["AP"] == stats["AP50"] == stats["APm"] == stats["AR100"] == 0.0
    assert stats["APs"] == stats["APl"] == -1.0
    assert capsys.readouterr().out == ""


def test_coco_unknown_image(coco_gt):
    with pytest.raises(ValueError, match="not in the ground truth"):
        coco_box_ap(coco_gt, _dets(images=(7,)))


def test_write_coco_results(tmp_path, coco_gt):
    results = [
        {
            "image_id": np.int64(1),
            "category_id": 3,
            "bbox": np.array([10.0, 10, 40, 40]),
            "score": np.float32(0.5),
        }
    ]
    path = tmp_path / "sub" / "detections.json"
    write_coco_results(results, str(path))
    loaded = json.loads(path.read_text())
    assert loaded == [
        {"image_id": 1, "category_id": 3, "bbox": [10.0, 10.0, 40.0, 40.0], "score": 0.5}
    ]
    assert [p.name for p in path.parent.iterdir()] == ["detections.json"]  # no temp left
    assert coco_box_ap(coco_gt, loaded)["AP50"] == pytest.approx(51 / 101)  # image 1 only


# ------------------------------------------------------------------------------------------------
# Segmentation

GT = np.array([[0, 0, 1], [1, 2, 255]])
PRED = np.array([[0, 1, 1], [1, 2, 0]])
# Valid pixels (gt != 255): (g0,p0) (g0,p1) (g1,p1) (g1,p1) (g2,p2); the 255 pixel is dropped.
# conf (rows gt, cols pred) = [[1,1,0],[0,2,0],[0,0,1]]
# IoU0 = 1/(2+1-1) = 1/2, IoU1 = 2/(2+3-2) = 2/3, IoU2 = 1/1; mean = 13/18; pixel acc = 4/5.
EXPECTED_CONF = [[1, 1, 0], [0, 2, 0], [0, 0, 1]]


def test_confusion_matrix_and_miou():
    conf = confusion_matrix(PRED, GT, 3)
    np.testing.assert_array_equal(conf, EXPECTED_CONF)
    iou, miou = mean_iou(conf)
    np.testing.assert_allclose(iou, [1 / 2, 2 / 3, 1])
    assert miou == pytest.approx(13 / 18)
    assert pixel_accuracy(conf) == pytest.approx(4 / 5)


def test_absent_class_is_nan_and_excluded():
    # Class 3 in neither gt nor pred: NaN IoU, mean unchanged; the released code's convention
    # (IoU 0, counted) gives (1/2 + 2/3 + 1 + 0) / 4 = 13/24.
    conf = confusion_matrix(PRED, GT, 4)
    iou, miou = mean_iou(conf)
    assert np.isnan(iou[3])
    assert miou == pytest.approx(13 / 18)
    iou0, miou0 = mean_iou(conf, ignore_absent=False)
    assert iou0[3] == 0.0 and miou0 == pytest.approx(13 / 24)


def test_accumulate_over_images():
    # Split the example into two "images" (rows); the sums match the single-image matrix.
    pairs = [(PRED[0], GT[0]), (PRED[1].astype(np.int8), GT[1].astype(np.float32))]
    np.testing.assert_array_equal(accumulate(pairs, 3), EXPECTED_CONF)


def test_confusion_matrix_errors():
    with pytest.raises(ValueError, match="shapes differ"):
        confusion_matrix(PRED[:, :2], GT, 3)
    with pytest.raises(ValueError, match="pred labels"):
        confusion_matrix(PRED + 1, GT, 3)
