"""Your own data with only a new yaml: train, test and the demo, as a user runs them.

A COCO-format json (odd category ids, names of its own, images in another folder) and a
VOC-format tree with its own class list each get one new config (:mod:`tests.e2e.own_data`),
and the README's commands run on it: the train-and-test driver (a subprocess, as from a shell:
it also writes the training curves beside its log), then ``rfcn/demo.py``, whose pictures must
name the data's classes.
"""

from __future__ import annotations

import json
import subprocess
import sys

import cv2

from lib.utils import vis
from rfcn import demo as rfcn_demo
from tests.e2e.detection import REPO
from tests.e2e.own_data import JSON_NAMES, OWN_NAMES, make_own_coco, make_own_voc, write_own_yaml

DRIVER = "experiments/rfcn/rfcn_end2end_train_test.py"


def _train_test_and_demo(cfg_path, tmp_path, train_set, image, names):
    run = subprocess.run(
        [sys.executable, DRIVER, "--cfg", str(cfg_path), "--seed", "0"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert "results of" in run.stderr  # the test pass evaluated the checkpoint
    (log,) = (tmp_path / "out" / cfg_path.stem / train_set).glob("*.log")  # the training log
    curves = cv2.imread(str(log).replace(".log", "_curves.png"))
    assert curves is not None and curves.std() > 10

    out = tmp_path / "demo"
    code = rfcn_demo.main(["--cfg", str(cfg_path), str(image), "--thresh", "0", "--out", str(out),
                           "--warmup", "0"])  # fmt: skip
    assert code == 0
    (entry,) = json.loads((out / "results.json").read_text())["written"]
    drawn = {d["class"] for d in entry["detections"]}
    assert drawn and drawn <= set(names)
    scale = vis.display_scale(entry["height"], entry["width"])  # small: enlarged
    assert cv2.imread(entry["output"]).shape[:2] == (round(entry["height"] * scale),
                                                     round(entry["width"] * scale))  # fmt: skip


def test_own_coco_json(tmp_path):
    data, photos = make_own_coco(tmp_path)
    cfg_path = write_own_yaml(tmp_path / "my_shapes.yaml", {
        "dataset": "coco", "dataset_path": str(data), "root_path": str(tmp_path),
        "image_set": "mine_train", "test_image_set": "mine_val", "NUM_CLASSES": 5,
        "CLASSES": list(JSON_NAMES),
    }, tmp_path / "out")  # fmt: skip
    image = next(photos.glob("mine_val_*.jpg"))
    _train_test_and_demo(cfg_path, tmp_path, "mine_train", image, JSON_NAMES)


def test_own_voc_tree(tmp_path):
    devkit = make_own_voc(tmp_path)
    cfg_path = write_own_yaml(tmp_path / "my_voc_shapes.yaml", {
        "dataset": "PascalVOC", "dataset_path": str(devkit), "root_path": str(tmp_path),
        "image_set": "2007_trainval", "test_image_set": "2007_test", "NUM_CLASSES": 5,
        "CLASSES": list(OWN_NAMES),
    }, tmp_path / "out")  # fmt: skip
    image = next((devkit / "VOC2007" / "JPEGImages").glob("*.jpg"))
    _train_test_and_demo(cfg_path, tmp_path, "2007_trainval", image, OWN_NAMES)
