"""Dataset loaders on tiny generated data: COCO, PASCAL VOC, Cityscapes, VOC segmentation.

The synthetic generator (``lib.dataset.synthetic.generate``) writes the three real layouts; hand
written VOC / COCO fixtures cover the cases it never produces (difficult flags under control,
bad boxes, unknown classes, missing files).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from lib.config import default_config
from lib.dataset import (
    CityScape,
    PascalVOC,
    VOCSegmentation,
    coco,
    filter_roidb,
    get_imdb,
    label_ids_to_train_ids,
    load_gt_roidb,
    load_gt_segdb,
    merge_roidb,
    merge_segdb,
)
from lib.dataset.cityscapes import LABEL_TO_TRAIN_ID
from lib.dataset.ds_utils import filter_small_boxes, unique_boxes
from lib.dataset.imdb import read_label_png
from lib.dataset.synthetic import CLASSES, generate
from lib.utils.image import prepare_roi_image, prepare_seg_image

NUM_TRAIN, NUM_TEST = 8, 6


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Synthetic data in all three formats (read-only: tests that modify it copy it first)."""
    root = tmp_path_factory.mktemp("synth")
    generate(root, num_train=NUM_TRAIN, num_test=NUM_TEST, seed=0, size=96)
    return root


@pytest.fixture
def cache_root(tmp_path: Path) -> str:
    return str(tmp_path / "data")


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _perfect_detections(imdb, roidb) -> list[list[np.ndarray]]:
    """all_boxes[cls][image] holding each ground-truth box with score 1."""
    all_boxes = [[np.zeros((0, 5)) for _ in roidb] for _ in range(imdb.num_classes)]
    for i, rec in enumerate(roidb):
        for c in range(1, imdb.num_classes):
            boxes = rec["boxes"][rec["gt_classes"] == c].astype(np.float64)
            all_boxes[c][i] = np.hstack([boxes, np.ones((len(boxes), 1))])
    return all_boxes


# ------------------------------------------------------------------------------ hand fixtures


def _write_jpg(path: Path, height: int = 40, width: int = 50) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((height, width, 3), 128, np.uint8))


def _write_voc(
    devkit: Path,
    images: dict[str, list[tuple]],
    sets: dict[str, list[str]],
    year: str = "2007",
    size: tuple[int, int] = (40, 50),
    write_images: bool = True,
) -> Path:
    """A VOC<year> tree. Objects are (name, xmin, ymin, xmax, ymax, difficult), 1-based."""
    base = devkit / f"VOC{year}"
    (base / "Annotations").mkdir(parents=True, exist_ok=True)
    (base / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
    height, width = size
    for image_id, objects in images.items():
        if write_images:
            _write_jpg(base / "JPEGImages" / f"{image_id}.jpg", height, width)
        objs = "".join(
            f"<object><name>{n}</name><difficult>{d}</difficult><bndbox><xmin>{x1}</xmin>"
            f"<ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
            for n, x1, y1, x2, y2, d in objects
        )
        xml = (
            f"<annotation><filename>{image_id}.jpg</filename><size><width>{width}</width>"
            f"<height>{height}</height><depth>3</depth></size>{objs}</annotation>"
        )
        (base / "Annotations" / f"{image_id}.xml").write_text(xml)
    for name, ids in sets.items():
        (base / "ImageSets" / "Main" / f"{name}.txt").write_text("".join(f"{i}\n" for i in ids))
    return devkit


def _write_coco(data: Path, set_name: str, images: list[dict], anns: list[dict], cats=None):
    """A COCO tree; images {'id', 'height', 'width'} get files unless 'missing' is set."""
    cats = cats or [{"id": 7, "name": "b"}, {"id": 2, "name": "a"}]
    (data / "annotations").mkdir(parents=True, exist_ok=True)
    records = []
    for im in images:
        name = f"COCO_{set_name}_{im['id']:012d}.jpg"
        if not im.get("missing"):
            _write_jpg(data / "images" / set_name / name, im["height"], im["width"])
        records.append(
            {"id": im["id"], "file_name": name, "height": im["height"], "width": im["width"]}
        )
    anns = [{"id": k + 1, "iscrowd": 0, "area": 10.0, **a} for k, a in enumerate(anns)]
    blob = {"images": records, "annotations": anns, "categories": cats}
    (data / "annotations" / f"instances_{set_name}.json").write_text(json.dumps(blob))
    return data


# ---------------------------------------------------------------------------------------- COCO


def test_coco_roidb_matches_json(synth: Path, cache_root: str) -> None:
    data = synth / "coco"
    blob = json.loads((data / "annotations" / "instances_train.json").read_text())
    imdb = coco("train", cache_root, str(data))
    assert imdb.name == "COCO_train"
    assert imdb.classes == ["__background__", *CLASSES]
    # Non-contiguous category ids (1, 3, 5, 7) map to 1..4, in the json's order, and back.
    assert imdb._coco_ind_to_class_ind == {1: 1, 3: 2, 5: 3, 7: 4}
    assert imdb._class_to_coco_ind == dict(zip(CLASSES, (1, 3, 5, 7)))
    assert imdb.image_set_index == [im["id"] for im in blob["images"]]

    roidb = imdb.gt_roidb()
    assert len(roidb) == len(blob["images"]) == NUM_TRAIN
    crowd = [a for a in blob["annotations"] if a["iscrowd"]]
    assert crowd, "the generator should write at least one crowd box in train"
    cat_to_cls = {1: 1, 3: 2, 5: 3, 7: 4}
    for im, rec in zip(blob["images"], roidb):
        anns = [a for a in blob["annotations"] if a["image_id"] == im["id"] and not a["iscrowd"]]
        expected = [
            [x, y, min(x + w - 1, im["width"] - 1), min(y + h - 1, im["height"] - 1)]
            for x, y, w, h in (a["bbox"] for a in anns)
        ]
        assert rec["image"] == str(data / "images" / "train" / im["file_name"])
        assert (rec["height"], rec["width"]) == (im["height"], im["width"])
        assert rec["boxes"].dtype == np.uint16
        np.testing.assert_array_equal(rec["boxes"], np.array(expected).reshape(-1, 4))
        np.testing.assert_array_equal(
            rec["gt_classes"], [cat_to_cls[a["category_id"]] for a in anns]
        )
        assert rec["gt_overlaps"].shape == (len(anns), 5)
        np.testing.assert_array_equal(rec["max_classes"], rec["gt_classes"])
        np.testing.assert_array_equal(rec["max_overlaps"], 1.0)
        assert rec["flipped"] is False
    assert sum(len(r["boxes"]) for r in roidb) == len(blob["annotations"]) - len(crowd)


def test_coco_flipped_copies(synth: Path, cache_root: str) -> None:
    roidb = load_gt_roidb("coco", "train", cache_root, str(synth / "coco"), flip=True)
    assert len(roidb) == 2 * NUM_TRAIN
    for rec, flip in zip(roidb[:NUM_TRAIN], roidb[NUM_TRAIN:]):
        assert not rec["flipped"] and flip["flipped"]
        assert flip["image"] == rec["image"] and flip["boxes"].dtype == rec["boxes"].dtype
        w = rec["width"]
        b, f = rec["boxes"].astype(int), flip["boxes"].astype(int)
        np.testing.assert_array_equal(f[:, 0], w - b[:, 2] - 1)
        np.testing.assert_array_equal(f[:, 2], w - b[:, 0] - 1)
        np.testing.assert_array_equal(f[:, [1, 3]], b[:, [1, 3]])
        np.testing.assert_array_equal(flip["gt_classes"], rec["gt_classes"])


def test_flip_rejects_box_wider_than_image(synth: Path, cache_root: str) -> None:
    imdb = coco("train", cache_root, str(synth / "coco"))
    rec = {
        "image": "x.jpg",
        "width": 10,
        "height": 10,
        "boxes": np.array([[2, 0, 12, 5]], np.uint16),
    }
    with pytest.raises(ValueError, match="x.jpg"):
        imdb.append_flipped_images([rec])


def test_cache_reused_and_rebuilt_when_annotations_change(
    synth: Path, tmp_path: Path, cache_root: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _copy(synth / "coco", tmp_path / "coco")
    ann = data / "annotations" / "instances_train.json"
    builds = []
    original = coco._build_gt_roidb
    monkeypatch.setattr(coco, "_build_gt_roidb", lambda self: builds.append(1) or original(self))

    first = coco("train", cache_root, str(data)).gt_roidb()
    cache_file = Path(cache_root) / "cache" / "COCO_train_gt_roidb.pkl"
    assert cache_file.is_file() and len(builds) == 1
    second = coco("train", cache_root, str(data)).gt_roidb()
    assert len(builds) == 1  # reused
    np.testing.assert_array_equal(first[0]["boxes"], second[0]["boxes"])

    st = ann.stat()
    os.utime(ann, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))  # touch
    coco("train", cache_root, str(data)).gt_roidb()
    assert len(builds) == 2

    blob = json.loads(ann.read_text())
    first_image = blob["images"][0]["id"]
    blob["annotations"] = [a for a in blob["annotations"] if a["image_id"] != first_image]
    ann.write_text(json.dumps(blob))
    changed = coco("train", cache_root, str(data)).gt_roidb()
    assert len(builds) == 3 and len(changed[0]["boxes"]) == 0

    cache_file.write_bytes(b"not a pickle")
    coco("train", cache_root, str(data)).gt_roidb()
    assert len(builds) == 4


def test_coco_evaluate_perfect_detections(synth: Path, tmp_path: Path, cache_root: str) -> None:
    imdb = coco("val", cache_root, str(synth / "coco"))
    roidb = imdb.gt_roidb()
    stats = imdb.evaluate_detections(_perfect_detections(imdb, roidb), str(tmp_path / "out"))
    assert stats["AP"] == pytest.approx(1.0) and stats["AP50"] == pytest.approx(1.0)
    results = json.loads((tmp_path / "out" / "results" / "detections_val_results.json").read_text())
    assert len(results) == sum(len(r["boxes"]) for r in roidb)
    blob = json.loads((synth / "coco" / "annotations" / "instances_val.json").read_text())
    gt = {(a["image_id"], a["category_id"], tuple(a["bbox"])) for a in blob["annotations"]}
    assert {(r["image_id"], r["category_id"], tuple(r["bbox"])) for r in results} == gt


def test_coco_test_sets_and_view_map(synth: Path, tmp_path: Path, cache_root: str) -> None:
    data = _copy(synth / "coco", tmp_path / "coco")
    blob = (data / "annotations" / "instances_val.json").read_text()
    (data / "annotations" / "image_info_test-dev2015.json").write_text(blob)
    imdb = coco("test-dev2015", cache_root, str(data))
    assert imdb.data_name == "test2015"
    assert imdb.image_path_from_index(42).endswith(
        os.path.join("images", "test2015", "COCO_test2015_000000000042.jpg")
    )
    empty = [[np.zeros((0, 5))] * imdb.num_images for _ in range(imdb.num_classes)]
    assert imdb.evaluate_detections(empty, str(tmp_path / "out")) == {}  # no COCOeval for test
    assert (tmp_path / "out" / "results" / "detections_test-dev2015_results.json").is_file()


def test_coco_bad_boxes_warn_and_are_dropped_or_clipped(
    tmp_path: Path, cache_root: str, caplog: pytest.LogCaptureFixture
) -> None:
    anns = [
        {"image_id": 1, "category_id": 2, "bbox": [5, 5, 10, 10]},  # fine
        {"image_id": 1, "category_id": 7, "bbox": [5, 5, 0, 10]},  # zero width
        {"image_id": 1, "category_id": 7, "bbox": [5, 5, 10, 10], "area": 0.0},  # zero area
        {"image_id": 1, "category_id": 7, "bbox": [80, 5, 10, 10]},  # outside the image
        {"image_id": 1, "category_id": 7, "bbox": [40, 30, 20, 20]},  # clipped to the image
        {"image_id": 1, "category_id": 2, "bbox": [0, 0, 4, 4], "iscrowd": 1},  # crowd
    ]
    data = _write_coco(tmp_path / "c", "s", [{"id": 1, "height": 40, "width": 50}], anns)
    with caplog.at_level(logging.WARNING):
        roidb = coco("s", cache_root, str(data)).gt_roidb()
    # Categories in json order: 7 -> 1 ('b'), 2 -> 2 ('a').
    np.testing.assert_array_equal(roidb[0]["boxes"], [[5, 5, 14, 14], [40, 30, 49, 39]])
    np.testing.assert_array_equal(roidb[0]["gt_classes"], [2, 1])
    messages = caplog.messages
    assert sum("zero area" in m for m in messages) == 2
    assert sum("outside" in m for m in messages) == 1


def test_coco_missing_paths_and_empty_sets(tmp_path: Path, cache_root: str) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere.*does not exist"):
        coco("train", cache_root, str(tmp_path / "nowhere"))
    data = _write_coco(tmp_path / "c", "s", [{"id": 1, "height": 40, "width": 50}], [])
    with pytest.raises(FileNotFoundError, match=r"instances_t\.json.*found in .*instances_s\.json"):
        coco("t", cache_root, str(data))
    empty = _write_coco(tmp_path / "e", "s", [], [])
    with pytest.raises(ValueError, match="empty"):
        coco("s", cache_root, str(empty))
    missing = _write_coco(
        tmp_path / "m",
        "s",
        [{"id": 1, "height": 9, "width": 9}, {"id": 2, "height": 9, "width": 9, "missing": True}],
        [],
    )
    with pytest.raises(FileNotFoundError, match="COCO_s_000000000002.jpg"):
        coco("s", cache_root, str(missing)).gt_roidb()


def _edit_json(data: Path, set_name: str, edit) -> Path:
    path = data / "annotations" / f"instances_{set_name}.json"
    blob = json.loads(path.read_text())
    edit(blob)
    path.write_text(json.dumps(blob))
    return path


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda b: b["annotations"][1].update(category_id=99),
            r"instances_s\.json: annotation 2 \(image 1\) has unknown category_id 99; "
            r"the json's categories have ids \[2, 7\]",
        ),
        (
            lambda b: b["annotations"][1].update(bbox=[5, 5, 10]),
            r"instances_s\.json: annotation 2 \(image 1\) has bbox \[5, 5, 10\]; "
            r"expected \[x, y, width, height\]",
        ),
        (
            lambda b: b["images"][0].pop("width"),
            r"instances_s\.json: image 1 \(COCO_s_000000000001\.jpg\) has width None",
        ),
    ],
    ids=["unknown_category", "bbox_of_3", "image_without_width"],
)
def test_coco_json_errors_name_the_file_and_entry(
    tmp_path: Path, cache_root: str, edit, message: str
) -> None:
    anns = [
        {"image_id": 1, "category_id": 2, "bbox": [5, 5, 10, 10]},
        {"image_id": 1, "category_id": 7, "bbox": [5, 5, 10, 10]},
    ]
    data = _write_coco(tmp_path / "c", "s", [{"id": 1, "height": 40, "width": 50}], anns)
    _edit_json(data, "s", edit)
    with pytest.raises(ValueError, match=message):
        coco("s", cache_root, str(data)).gt_roidb()


def test_coco_half_written_json_names_the_file(tmp_path: Path, cache_root: str) -> None:
    data = _write_coco(tmp_path / "c", "s", [{"id": 1, "height": 40, "width": 50}], [])
    path = data / "annotations" / "instances_s.json"
    text = path.read_text()
    path.write_text(text[: len(text) // 2])
    with pytest.raises(ValueError, match=r"cannot read COCO annotation file .*instances_s\.json: "
                       r"JSONDecodeError") as info:  # fmt: skip
        coco("s", cache_root, str(data))
    assert isinstance(info.value.__cause__, json.JSONDecodeError)
    path.write_text("[]")
    with pytest.raises(ValueError, match=r"cannot read COCO annotation file .*instances_s\.json"):
        coco("s", cache_root, str(data))


def test_coco_annotations_of_unknown_images_are_counted(
    tmp_path: Path, cache_root: str, caplog: pytest.LogCaptureFixture
) -> None:
    anns = [
        {"image_id": 1, "category_id": 2, "bbox": [5, 5, 10, 10]},
        {"image_id": 5, "category_id": 2, "bbox": [5, 5, 10, 10]},
        {"image_id": 6, "category_id": 99, "bbox": [5, 5]},  # not checked: dropped anyway
        {"image_id": 6, "category_id": 7, "bbox": [5, 5, 10, 10]},
    ]
    data = _write_coco(tmp_path / "c", "s", [{"id": 1, "height": 40, "width": 50}], anns)
    _edit_json(data, "s", lambda b: b["annotations"][0].pop("iscrowd"))  # 0 by default
    with caplog.at_level(logging.WARNING):
        roidb = coco("s", cache_root, str(data)).gt_roidb()
    assert len(roidb) == 1 and len(roidb[0]["boxes"]) == 1
    warnings = [m for m in caplog.messages if "not in its 'images'" in m]
    assert len(warnings) == 1
    expected = r"3 annotation\(s\) in .*instances_s\.json .*\(first: annotation 2\); dropped"
    assert re.search(expected, warnings[0])


def test_decoded_size_must_match_the_annotation(tmp_path: Path, cache_root: str) -> None:
    cfg = default_config()
    anns = [{"image_id": 1, "category_id": 2, "bbox": [5, 5, 10, 10]}]
    data = _write_coco(tmp_path / "c", "s", [{"id": 1, "height": 40, "width": 50}], anns)
    rec = coco("s", cache_root, str(data)).gt_roidb()[0]
    prepare_roi_image(rec, cfg, (40, 50))  # sizes agree
    _write_jpg(Path(rec["image"]), height=40, width=60)  # the json still says 50 x 40
    with pytest.raises(ValueError, match=r"_000000000001\.jpg is 60x40 .*annotation says 50x40"):
        prepare_roi_image(rec, cfg, (40, 50))

    # VOC: the <size> of the xml against the JPEG.
    devkit = _write_voc(tmp_path / "devkit", {"a": [("dog", 1, 1, 5, 5, 0)]}, {"s": ["a"]})
    rec = PascalVOC("2007_s", cache_root, str(devkit)).gt_roidb()[0]
    _write_jpg(devkit / "VOC2007" / "JPEGImages" / "a.jpg", height=30, width=50)
    with pytest.raises(ValueError, match=r"JPEGImages/a\.jpg is 50x30 .*annotation says 50x40"):
        prepare_roi_image({**rec, "flipped": True}, cfg, (40, 50))


# ------------------------------------------------------------------------------------ PASCAL VOC


def test_voc_roidb_from_synthetic_xml(synth: Path, cache_root: str) -> None:
    devkit = synth / "VOCdevkit"
    imdb = PascalVOC("2007_trainval", cache_root, str(devkit), classes=CLASSES)
    ids = (devkit / "VOC2007" / "ImageSets" / "Main" / "trainval.txt").read_text().split()
    assert imdb.name == "voc_2007_trainval" and imdb.image_set_index == ids
    assert imdb.classes == ["__background__", *CLASSES]
    roidb = imdb.gt_roidb()
    for image_id, rec in zip(ids, roidb):
        root = ET.parse(devkit / "VOC2007" / "Annotations" / f"{image_id}.xml").getroot()
        objs = [o for o in root.iter("object") if o.findtext("difficult") == "0"]
        boxes = [
            [int(o.findtext(f"bndbox/{k}")) - 1 for k in ("xmin", "ymin", "xmax", "ymax")]
            for o in objs
        ]
        np.testing.assert_array_equal(rec["boxes"], np.array(boxes).reshape(-1, 4))
        names = [o.findtext("name") for o in objs]
        np.testing.assert_array_equal(rec["gt_classes"], [CLASSES.index(n) + 1 for n in names])
        assert rec["width"] == int(root.findtext("size/width"))
        assert rec["image"] == str(devkit / "VOC2007" / "JPEGImages" / f"{image_id}.jpg")


def test_voc_difficult_imagesets_and_default_classes(tmp_path: Path, cache_root: str) -> None:
    images = {
        "a": [("dog", 1, 1, 10, 10, 0), ("Cat", 11, 11, 20, 30, 1)],
        "b": [("person", 5, 6, 7, 8, 0)],
        "c": [("car", 5, 6, 7, 8, 0)],
    }
    devkit = _write_voc(tmp_path / "devkit", images, {"trainval": ["b", "a"]})
    imdb = PascalVOC("2007_trainval", cache_root, str(devkit))
    assert imdb.num_classes == 21 and imdb.image_set_index == ["b", "a"]
    roidb = imdb.gt_roidb()
    np.testing.assert_array_equal(roidb[0]["boxes"], [[4, 5, 6, 7]])
    np.testing.assert_array_equal(roidb[1]["boxes"], [[0, 0, 9, 9]])  # difficult cat dropped
    assert roidb[1]["gt_classes"].tolist() == [imdb.classes.index("dog")]
    with_diff = PascalVOC("2007_trainval", cache_root, str(devkit), use_diff=True).gt_roidb()
    assert with_diff[1]["gt_classes"].tolist() == [imdb.classes.index(c) for c in ("dog", "cat")]
    np.testing.assert_array_equal(with_diff[1]["boxes"], [[0, 0, 9, 9], [10, 10, 19, 29]])


def test_voc07_metric_selection(tmp_path: Path, cache_root: str) -> None:
    devkit = tmp_path / "devkit"
    for year in ("2007", "2012"):
        _write_voc(devkit, {"a": [("dog", 1, 1, 5, 5, 0)]}, {"test": ["a"]}, year=year)
    assert PascalVOC("2007_test", cache_root, str(devkit)).use_07_metric is True
    assert PascalVOC("2012_test", cache_root, str(devkit)).use_07_metric is False
    assert (
        PascalVOC("2007_test", cache_root, str(devkit), use_07_metric=False).use_07_metric is False
    )


def test_voc_evaluate_perfect_detections(synth: Path, tmp_path: Path, cache_root: str) -> None:
    imdb = get_imdb("synthetic_voc", "2007_test", cache_root, str(synth))
    roidb = imdb.gt_roidb()
    all_boxes = _perfect_detections(imdb, roidb)
    info = imdb.evaluate_detections(all_boxes, str(tmp_path / "out"))
    assert info["use_07_metric"] is True
    for thresh in ("0.5", "0.7"):
        assert info[f"mAP@{thresh}"] == pytest.approx(1.0)
        assert all(ap == pytest.approx(1.0) for ap in info[f"AP@{thresh}"].values())
    result = tmp_path / "out" / "results" / "VOC2007" / "Main" / "comp4_det_test_circle.txt"
    first = result.read_text().splitlines()[0].split()
    i = imdb.image_set_index.index(first[0])
    c = imdb.classes.index("circle")
    box = roidb[i]["boxes"][roidb[i]["gt_classes"] == c][0] + 1  # 1-based in the files
    assert first[1:] == ["1.000", *(f"{v:.1f}" for v in box)]

    # One missed object: AP of its class drops below 1.
    all_boxes[c][i] = all_boxes[c][i][1:]
    worse = imdb.evaluate_detections(all_boxes, str(tmp_path / "out"))
    assert worse["AP@0.5"]["circle"] < 1.0


def test_voc_evaluation_ignores_difficult_objects(tmp_path: Path, cache_root: str) -> None:
    images = {"a": [("dog", 1, 1, 10, 10, 0), ("dog", 21, 21, 30, 30, 1)]}
    devkit = _write_voc(tmp_path / "devkit", images, {"test": ["a"]})
    imdb = PascalVOC("2007_test", cache_root, str(devkit), classes=["dog"])
    boxes = np.array([[0, 0, 9, 9, 0.9], [20, 20, 29, 29, 0.8]])  # the second hits the difficult
    info = imdb.evaluate_detections([[np.zeros((0, 5))], [boxes]], str(tmp_path / "out"))
    assert info["AP@0.5"]["dog"] == pytest.approx(1.0)


def test_voc_unknown_class_names_the_file(tmp_path: Path, cache_root: str) -> None:
    devkit = _write_voc(tmp_path / "devkit", {"a": [("unicorn", 1, 1, 5, 5, 1)]}, {"s": ["a"]})
    with pytest.raises(ValueError, match=r"'unicorn'.*a\.xml"):
        PascalVOC("2007_s", cache_root, str(devkit)).gt_roidb()


def test_voc_bad_boxes_are_clipped_or_skipped(
    tmp_path: Path, cache_root: str, caplog: pytest.LogCaptureFixture
) -> None:
    objs = [
        ("dog", 0, 1, 5, 5, 0),  # xmin 0 -> x1 = -1: clipped to 0
        ("dog", 40, 30, 60, 45, 0),  # beyond the 50x40 image: clipped
        ("dog", 9, 1, 5, 5, 0),  # xmax < xmin: skipped
        ("dog", 70, 1, 80, 5, 0),  # fully outside: skipped
    ]
    devkit = _write_voc(tmp_path / "devkit", {"a": objs}, {"s": ["a"]})
    with caplog.at_level(logging.WARNING):
        roidb = PascalVOC("2007_s", cache_root, str(devkit)).gt_roidb()
    np.testing.assert_array_equal(roidb[0]["boxes"], [[0, 0, 4, 4], [39, 29, 49, 39]])
    endings = [m.rsplit("; ", 1)[-1] for m in caplog.messages]
    assert endings.count("clipped") == 2 and endings.count("skipped") == 2


def test_voc_missing_paths_and_empty_sets(tmp_path: Path, cache_root: str) -> None:
    devkit = _write_voc(
        tmp_path / "devkit",
        {"a": [("dog", 1, 1, 5, 5, 0)]},
        {"s": ["a"], "empty": [], "ghost": ["zz"]},
    )
    with pytest.raises(FileNotFoundError, match="VOC2012 does not exist.*ImageSets/Main"):
        PascalVOC("2012_s", cache_root, str(devkit))
    with pytest.raises(FileNotFoundError, match=r"nope\.txt does not exist"):
        PascalVOC("2007_nope", cache_root, str(devkit))
    with pytest.raises(ValueError, match="empty"):
        PascalVOC("2007_empty", cache_root, str(devkit))
    with pytest.raises(ValueError, match="<year>_<set>"):
        PascalVOC("trainval", cache_root, str(devkit))
    with pytest.raises(FileNotFoundError, match=r"zz\.xml does not exist"):
        PascalVOC("2007_ghost", cache_root, str(devkit)).gt_roidb()
    os.remove(devkit / "VOC2007" / "JPEGImages" / "a.jpg")
    with pytest.raises(FileNotFoundError, match=r"JPEGImages/a\.jpg"):
        PascalVOC("2007_s", cache_root, str(devkit)).gt_roidb()


def test_voc_non_numeric_fields_name_the_file(tmp_path: Path, cache_root: str) -> None:
    devkit = _write_voc(tmp_path / "devkit", {"a": [("dog", 1, 1, 5, 5, 0)]}, {"s": ["a"]})
    xml = devkit / "VOC2007" / "Annotations" / "a.xml"
    xml.write_text(xml.read_text().replace("<width>50</width>", "<width>fifty</width>"))
    with pytest.raises(ValueError, match=r"<size/width>fifty</size/width> in .*a\.xml"):
        PascalVOC("2007_s", cache_root, str(devkit)).gt_roidb()
    xml.write_text(xml.read_text().replace("<width>fifty</width>", "<width>50</width>")
                   .replace("<difficult>0</difficult>", "<difficult>no</difficult>"))  # fmt: skip
    with pytest.raises(ValueError, match=r"<difficult>no</difficult> of object 'dog' in .*a\.xml"):
        PascalVOC("2007_s", cache_root, str(devkit)).gt_roidb()


# ------------------------------------------------------------------------------------ Cityscapes


def test_label_ids_to_train_ids() -> None:
    assert len(LABEL_TO_TRAIN_ID) == 34
    assert sorted(v for v in LABEL_TO_TRAIN_ID.values() if v != 255) == list(range(19))
    ids = np.array([[0, 7, 8, 11, 26], [33, 24, 23, 34, 255]], np.uint8)
    expected = [[255, 0, 1, 2, 13], [18, 11, 10, 255, 255]]
    np.testing.assert_array_equal(label_ids_to_train_ids(ids), expected)


def test_cityscapes_segdb_and_label_conversion(
    synth: Path, tmp_path: Path, cache_root: str
) -> None:
    data = synth / "cityscapes"
    imdb = CityScape("leftImg8bit_train", cache_root, str(data))
    assert imdb.name == "cityscape_leftImg8bit_train" and imdb.num_classes == 19
    stems = sorted(
        p.name[: -len("_leftImg8bit.png")]
        for p in (data / "leftImg8bit" / "train").rglob("*_leftImg8bit.png")
    )
    assert imdb.image_set_index == stems and len(stems) == NUM_TRAIN
    segdb = imdb.gt_segdb()
    for stem, rec in zip(stems, segdb):
        city = stem.split("_")[0]
        assert rec["image"] == str(
            data / "leftImg8bit" / "train" / city / f"{stem}_leftImg8bit.png"
        )
        assert rec["seg_cls_path"] == str(
            data / "gtFine" / "train" / city / f"{stem}_gtFine_labelTrainIds.png"
        )
        h, w = cv2.imread(rec["image"]).shape[:2]
        assert (rec["height"], rec["width"], rec["flipped"]) == (h, w, False)

    # Without labelTrainIds the labelIds are converted into the cache.
    copy = _copy(data, tmp_path / "cityscapes")
    for path in (copy / "gtFine").rglob("*_labelTrainIds.png"):
        path.unlink()
    converted = load_gt_segdb("CityScape", "train", cache_root, str(copy), flip=True)
    assert len(converted) == 2 * NUM_TRAIN and [r["flipped"] for r in converted[::NUM_TRAIN]] == [
        False,
        True,
    ]
    for rec, orig in zip(converted, segdb):
        assert rec["seg_cls_path"].startswith(os.path.join(cache_root, "cache"))
        np.testing.assert_array_equal(
            read_label_png(rec["seg_cls_path"]), read_label_png(orig["seg_cls_path"])
        )

    # Evaluation converts on demand when no segdb was built in this cache.
    fresh = CityScape("train", str(tmp_path / "other"), str(copy))
    preds = [np.where(g == 255, 0, g) for g in (read_label_png(r["seg_cls_path"]) for r in segdb)]
    assert fresh.evaluate_segmentations(preds, str(tmp_path / "out"))["meanIU"] == 1.0


def test_cityscapes_evaluate_segmentations(synth: Path, tmp_path: Path, cache_root: str) -> None:
    imdb = CityScape("leftImg8bit_val", cache_root, str(synth / "cityscapes"))
    labels = [read_label_png(r["seg_cls_path"]) for r in imdb.gt_segdb()]
    preds = [np.where(gt == 255, 0, gt) for gt in labels]
    out = str(tmp_path / "out")
    res = imdb.evaluate_segmentations(preds, out)
    assert res["meanIU"] == pytest.approx(1.0)
    present = np.unique(np.concatenate([gt[gt != 255] for gt in labels]))
    assert np.isnan(res["IU_array"]).sum() == 19 - len(present)
    first = imdb.image_set_index[0]
    assert os.path.isfile(os.path.join(out, "results", first.split("_")[0], first + ".png"))
    assert imdb.evaluate_segmentations(None, out)["meanIU"] == pytest.approx(1.0)  # re-read

    # Sky predicted as road everywhere: both IoUs drop; a half-size prediction is resized.
    bad = [np.where(p == 10, 0, p) for p in preds]
    bad[0] = bad[0][::2, ::2]
    res = imdb.evaluate_segmentations(bad, out)
    assert res["IU_array"][10] == 0 and res["IU_array"][0] < 1
    assert res["confusion_matrix"][10, 0] > 0
    original = imdb.evaluate_segmentations(bad, out, ignore_absent=False)["meanIU"]
    assert original < res["meanIU"]  # absent classes count as 0, as the released code


def test_cityscapes_missing_paths(synth: Path, tmp_path: Path, cache_root: str) -> None:
    with pytest.raises(FileNotFoundError, match="leftImg8bit/test does not exist"):
        CityScape("leftImg8bit_test", cache_root, str(synth / "cityscapes"))
    (tmp_path / "cs" / "leftImg8bit" / "train" / "x").mkdir(parents=True)
    with pytest.raises(ValueError, match="empty"):
        CityScape("leftImg8bit_train", cache_root, str(tmp_path / "cs"))
    copy = _copy(synth / "cityscapes", tmp_path / "cityscapes")
    for path in (copy / "gtFine" / "val").rglob("gammaburg_000000_000002_gtFine_label*.png"):
        path.unlink()
    with pytest.raises(FileNotFoundError, match="neither .*000002_gtFine_labelTrainIds.png"):
        CityScape("leftImg8bit_val", cache_root, str(copy)).gt_segdb()


# ------------------------------------------------------------------------- VOC segmentation


def test_voc_seg_labels_are_class_indices(synth: Path, tmp_path: Path, cache_root: str) -> None:
    segdb = load_gt_segdb("synthetic_voc", "2007_train_seg", cache_root, str(synth))
    base = synth / "VOCdevkit" / "VOC2007"
    ids = (base / "ImageSets" / "Segmentation" / "train.txt").read_text().split()
    assert len(segdb) == len(ids)
    for image_id, rec in zip(ids, segdb):
        assert rec["seg_cls_path"] == str(base / "SegmentationClass" / f"{image_id}.png")
        with Image.open(rec["seg_cls_path"]) as im:
            assert im.mode == "P"
        label = read_label_png(rec["seg_cls_path"])
        assert label.shape == (rec["height"], rec["width"])
        root = ET.parse(base / "Annotations" / f"{image_id}.xml").getroot()
        names = {o.findtext("name") for o in root.iter("object")}
        assert set(np.unique(label)) - {0, 255} == {CLASSES.index(n) + 1 for n in names}

    # The original's ImageSets/Main/<set>_seg.txt wins when present.
    devkit = _copy(synth / "VOCdevkit", tmp_path / "VOCdevkit")
    (devkit / "VOC2007" / "ImageSets" / "Main" / "train_seg.txt").write_text(f"{ids[1]}\n")
    imdb = VOCSegmentation("2007_train_seg", cache_root, str(devkit), classes=CLASSES)
    assert imdb.name == "voc_2007_train_seg" and imdb.image_set_index == [ids[1]]

    rgb = devkit / "VOC2007" / "SegmentationClass" / f"{ids[1]}.png"
    with Image.open(rgb) as im:
        im.convert("RGB").save(rgb)
    with pytest.raises(ValueError, match="mode RGB"):
        imdb.evaluate_segmentations([np.zeros((2, 2), np.uint8)], str(tmp_path / "out"))


def test_voc_seg_evaluate(synth: Path, tmp_path: Path, cache_root: str) -> None:
    imdb = get_imdb("synthetic_voc", "2007_test_seg", cache_root, str(synth), task="segmentation")
    assert isinstance(imdb, VOCSegmentation) and imdb.num_classes == len(CLASSES) + 1
    preds = [
        np.where(g == 255, 0, g)
        for g in (read_label_png(r["seg_cls_path"]) for r in imdb.gt_segdb())
    ]
    res = imdb.evaluate_segmentations(preds, str(tmp_path / "out"))
    assert res["meanIU"] == pytest.approx(1.0)
    np.testing.assert_allclose(res["IU_array"], 1.0)
    assert os.path.isfile(tmp_path / "out" / "results" / f"{imdb.image_set_index[0]}.png")


def _first_seg_id(devkit: Path) -> str:
    return (devkit / "VOC2007" / "ImageSets" / "Segmentation" / "train.txt").read_text().split()[0]


def _resave_label(path: Path, transform) -> None:
    with Image.open(path) as im:
        palette = im.getpalette()
        label = transform(np.array(im))
    out = Image.fromarray(label.astype(np.uint8))
    if palette:
        out.putpalette(palette)
    out.save(path)


def test_segmentation_label_size_must_match_the_image(
    synth: Path, tmp_path: Path, cache_root: str
) -> None:
    devkit = _copy(synth / "VOCdevkit", tmp_path / "VOCdevkit")
    image_id = _first_seg_id(devkit)
    label = devkit / "VOC2007" / "SegmentationClass" / f"{image_id}.png"
    h, w = cv2.imread(str(devkit / "VOC2007" / "JPEGImages" / f"{image_id}.jpg")).shape[:2]
    _resave_label(label, lambda a: a[:, :-2])
    with pytest.raises(ValueError, match=rf"label .*{image_id}\.png is {w - 2}x{h} \(width x "
                       rf"height\) but its image .*{image_id}\.jpg is {w}x{h}"):  # fmt: skip
        load_gt_segdb("synthetic_voc", "2007_train_seg", cache_root, str(devkit))

    cs = _copy(synth / "cityscapes", tmp_path / "cityscapes")
    label = sorted((cs / "gtFine" / "val").rglob("*_labelTrainIds.png"))[0]
    _resave_label(label, lambda a: a[1:])
    with pytest.raises(ValueError, match=rf"label .*{label.name} is .* but its image .*8bit"):
        CityScape("leftImg8bit_val", cache_root, str(cs)).gt_segdb()


def test_voc_seg_missing_label_names_the_file(synth: Path, tmp_path: Path, cache_root: str) -> None:
    devkit = _copy(synth / "VOCdevkit", tmp_path / "VOCdevkit")
    image_id = _first_seg_id(devkit)
    (devkit / "VOC2007" / "SegmentationClass" / f"{image_id}.png").unlink()
    with pytest.raises(FileNotFoundError, match=rf"Class/{image_id}\.png does not exist"):
        load_gt_segdb("synthetic_voc", "2007_train_seg", cache_root, str(devkit))


def test_label_ids_outside_the_classes_become_ignore(
    synth: Path, tmp_path: Path, cache_root: str, caplog: pytest.LogCaptureFixture
) -> None:
    cs = _copy(synth / "cityscapes", tmp_path / "cityscapes")
    imdb = CityScape("leftImg8bit_val", cache_root, str(cs))
    rec = imdb.gt_segdb()[0]
    original = read_label_png(rec["seg_cls_path"])
    _resave_label(Path(rec["seg_cls_path"]), lambda a: np.where(np.arange(a.shape[1]) < 3, 40, a))
    cfg = default_config("deeplab")  # 19 classes
    full = (rec["height"], rec["width"])
    with caplog.at_level(logging.WARNING, logger="lib.dataset.imdb"):
        _, label, _ = prepare_seg_image(rec, cfg, (min(full), max(full)))
        prepare_seg_image({**rec, "flipped": True}, cfg, (min(full), max(full)))
    label = label[0, 0, : full[0], : full[1]]
    assert (label[:, :3] == 255).all()
    np.testing.assert_array_equal(label[:, 3:], original[:, 3:])
    warnings = [m for m in caplog.messages if rec["seg_cls_path"] in m]
    assert len(warnings) == 1  # once per file
    assert re.search(r"ids \[40\] outside the 19 classes .*mapped to 255", warnings[0])
    # The evaluation reads the labels the same way instead of failing on id 40.
    labels = [read_label_png(r["seg_cls_path"]) for r in imdb.gt_segdb()]
    res = imdb.evaluate_segmentations([np.zeros_like(a) for a in labels], str(tmp_path / "out"))
    counted = sum(int(((a != 255) & (a != 40)).sum()) for a in labels)
    assert res["confusion_matrix"].sum() == counted > 0


@pytest.mark.parametrize("mode", ["L", "P"])
def test_label_ids_at_the_class_count_boundary(tmp_path: Path, mode: str) -> None:
    """Ids 0 .. C-1 are classes; C (the first id past the table) and above become 255."""
    ids = np.array([[0, 18, 19, 20, 254, 255]], np.uint8)
    path = tmp_path / "label.png"
    Image.fromarray(ids, mode="L").convert(mode).save(path)
    np.testing.assert_array_equal(read_label_png(str(path), 19), [[0, 18, 255, 255, 255, 255]])
    np.testing.assert_array_equal(read_label_png(str(path)), ids)  # no class count: as stored


# --------------------------------------------------------------------------- load_data, utils


def test_registry(synth: Path, cache_root: str) -> None:
    # 'synthetic' is the COCO loader; dataset_path may be the data root or its coco directory.
    a = get_imdb("synthetic", "train", cache_root, str(synth))
    b = get_imdb("synthetic", "train", cache_root, str(synth / "coco"))
    assert isinstance(a, coco) and a.name == "synthetic_train" and a.data_path == b.data_path
    assert isinstance(
        get_imdb("pascalvoc", "2007_test", cache_root, str(synth / "VOCdevkit")), PascalVOC
    )
    seg = get_imdb("synthetic_seg", "val", cache_root, str(synth), task="segmentation")
    assert isinstance(seg, CityScape) and seg.name == "synthetic_seg_val"
    assert isinstance(
        get_imdb(
            "cityscapes",
            "leftImg8bit_val",
            cache_root,
            str(synth / "cityscapes"),
            task="segmentation",
        ),
        CityScape,
    )
    with pytest.raises(ValueError, match="unknown detection dataset 'kitti'.*PascalVOC"):
        get_imdb("kitti", "train", cache_root, str(synth))
    with pytest.raises(ValueError, match="task"):
        get_imdb("coco", "train", cache_root, str(synth), task="depth")


def test_filter_and_merge_roidb(synth: Path, tmp_path: Path, cache_root: str) -> None:
    cfg = default_config()
    data = _write_coco(
        tmp_path / "c",
        "s",
        [{"id": i, "height": 20, "width": 20} for i in (1, 2, 3)],
        [
            {"image_id": 1, "category_id": 2, "bbox": [1, 1, 5, 5]},
            {"image_id": 3, "category_id": 7, "bbox": [2, 2, 5, 5]},
        ],
    )
    roidb = load_gt_roidb("coco", "s", cache_root, str(data))
    kept = filter_roidb(roidb, cfg)
    assert [r["image"] for r in kept] == [roidb[0]["image"], roidb[2]["image"]]
    with pytest.raises(ValueError, match="removed all"):
        filter_roidb([roidb[1]], cfg)

    merged = merge_roidb([roidb, kept])
    assert len(merged) == 5 and merged[3] is kept[0] and len(roidb) == 3
    assert merge_segdb([[{"a": 1}], [{"b": 2}, {"c": 3}]]) == [{"a": 1}, {"b": 2}, {"c": 3}]


def test_ds_utils() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 5, 5], [0, 0, 10, 10], [0.2, 0, 10, 10.4]])
    np.testing.assert_array_equal(unique_boxes(boxes), [0, 1])
    near = np.array([[0, 0, 10, 10], [0, 0, 11, 11]])
    np.testing.assert_array_equal(unique_boxes(near), [0, 1])
    np.testing.assert_array_equal(unique_boxes(near, scale=0.1), [0])  # same box on a 10-px grid
    small = np.array([[0, 0, 4, 5], [0, 0, 5, 4], [0, 0, 5, 5], [5, 0, 0, 9]], np.uint16)
    np.testing.assert_array_equal(filter_small_boxes(small, 4), [0, 2])  # w >= 4 and h > 4
