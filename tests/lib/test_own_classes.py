"""Data of your own classes: dataset.CLASSES against NUM_CLASSES and against the data, COCO
jsons with any category ids, names and image folders, VOC trees with their own class list, and
the class names the demos draw (:func:`lib.dataset.load_data.class_names`)."""

from __future__ import annotations

import os

import pytest

from lib.config import load_config
from lib.dataset.coco import COCO_CLASSES
from lib.dataset.load_data import class_names, get_imdb, load_gt_roidb
from lib.utils.image import read_image
from tests.e2e.own_data import (
    CFG,
    JSON_NAMES,
    OWN_NAMES,
    make_own_coco,
    make_own_voc,
    write_own_yaml,
)


def _coco(data, **kwargs):
    return get_imdb("coco", "mine_train", str(data.parent), str(data), **kwargs)


def test_config_checks_classes_against_num_classes():
    five = ["dataset.NUM_CLASSES=5"]
    cfg = load_config(CFG, five + ["dataset.CLASSES=[a, b, c, d]"])
    assert cfg.dataset.CLASSES == ["a", "b", "c", "d"]
    load_config(CFG, five + ["dataset.CLASSES=[__background__, a, b, c, d]"])  # accepted too
    with pytest.raises(ValueError, match=r"NUM_CLASSES is 5 but CLASSES lists 3 classes \+ "
                       r"background = 4 \(a, b, c\)"):  # fmt: skip
        load_config(CFG, five + ["dataset.CLASSES=[a, b, c]"])
    with pytest.raises(ValueError, match="distinct"):
        load_config(CFG, five + ["dataset.CLASSES=[a, b, A, d]"])
    with pytest.raises(ValueError, match="dataset.CLASSES"):
        load_config(CFG, ["dataset.CLASSES=car"])  # not a list of names
    # segmentation lists every class (class 0 is a class): NUM_CLASSES = len(CLASSES)
    seg = "experiments/deeplab/cfgs/synthetic_deeplab.yaml"
    load_config(seg, ["dataset.NUM_CLASSES=3", "dataset.CLASSES=[road, car, sky]"])
    with pytest.raises(ValueError, match="NUM_CLASSES is 19 but CLASSES lists 3 classes"):
        load_config(seg, ["dataset.CLASSES=[road, car, sky]"])


def test_coco_json_with_own_ids_names_and_image_folder(tmp_path):
    data, photos = make_own_coco(tmp_path)
    imdb = _coco(data)
    assert imdb.classes == ["__background__", *JSON_NAMES]  # the json's order
    roidb = imdb.gt_roidb()
    assert len(roidb) == 2 and all(rec["boxes"].shape[0] > 0 for rec in roidb)
    for rec in roidb:  # absolute and ../ file names both lead to the photos
        assert os.path.samefile(os.path.dirname(rec["image"]), photos)
        assert read_image(rec["image"]).shape[:2] == (rec["height"], rec["width"])
        assert set(rec["gt_classes"]) <= {1, 2, 3, 4}
    # the config's list and count are checked against the json, naming both sides
    _coco(data, classes=list(JSON_NAMES), num_classes=5)
    with pytest.raises(
        ValueError,
        match=r"dataset.CLASSES \['Round thing', 'box'.*disagree "
        r"with the classes of .*\['box', 'sparkle star', 'Round thing'",
    ):
        _coco(data, classes=list(OWN_NAMES))
    with pytest.raises(ValueError, match=r"NUM_CLASSES is 81 but .* has 5 \(4 classes \+ "
                       r"background: box, sparkle star, Round thing, tri-angle\)"):  # fmt: skip
        _coco(data, num_classes=81)


def test_voc_tree_with_its_own_class_list(tmp_path):
    devkit = make_own_voc(tmp_path)
    args = ("PascalVOC", "2007_trainval", str(tmp_path), str(devkit))
    with pytest.raises(
        ValueError,
        match=r"unknown class name '(BOX|ROUND THING|TRI-ANGLE|SPARKLE STAR)'.*dataset.CLASSES",
    ):
        load_gt_roidb(*args)  # VOC's 20 classes do not know them
    roidb = load_gt_roidb(*args, classes=list(OWN_NAMES), num_classes=5)
    assert {int(c) for rec in roidb for c in rec["gt_classes"]} <= {1, 2, 3, 4}
    # another class order is another roidb, never the cached one of the first
    reordered = load_gt_roidb(*args, classes=list(reversed(OWN_NAMES)))
    assert [list(5 - r["gt_classes"]) for r in roidb] == [list(r["gt_classes"]) for r in reordered]
    with pytest.raises(ValueError, match="NUM_CLASSES is 4 but"):
        load_gt_roidb(*args, classes=list(OWN_NAMES), num_classes=4)


def test_class_names_for_the_demos(tmp_path):
    data, _ = make_own_coco(tmp_path)
    own = {"dataset": "coco", "dataset_path": str(data), "root_path": str(tmp_path),
           "test_image_set": "mine_val", "NUM_CLASSES": 5}  # fmt: skip
    cfg = load_config(write_own_yaml(tmp_path / "mine.yaml", own, tmp_path / "out"))
    assert class_names(cfg) == ["__background__", *JSON_NAMES]  # read from the json
    cfg.dataset.CLASSES = ["w", "x", "y", "z"]
    assert class_names(cfg) == ["__background__", "w", "x", "y", "z"]

    released = load_config("experiments/rfcn/cfgs/rfcn_coco_demo.yaml")  # no COCO data here
    assert class_names(released) == list(COCO_CLASSES) and len(COCO_CLASSES) == 81
    seg = load_config("experiments/deeplab/cfgs/deeplab_cityscapes_demo.yaml")
    assert class_names(seg, "segmentation")[:3] == ["road", "sidewalk", "building"]
    cfg.dataset.CLASSES = []
    cfg.dataset.dataset_path = str(tmp_path / "nowhere")
    cfg.dataset.dataset = "unknown_format"
    assert class_names(cfg) == ["__background__", "class 1", "class 2", "class 3", "class 4"]
    released.dataset.NUM_CLASSES = 21
    with pytest.raises(ValueError, match="NUM_CLASSES is 21 but the classes of coco are 81"):
        class_names(released)
