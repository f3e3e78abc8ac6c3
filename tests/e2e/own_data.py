"""Data sets "of your own", as users bring them, built from tiny synthetic scenes.

* :func:`make_own_coco`: a COCO-format json whose categories have odd, unsorted ids and free-form
  names, listed in an order of their own, with the images in a folder outside the dataset
  (absolute ``file_name``s, one relative with ``..``);
* :func:`make_own_voc`: a VOC-format tree whose xml files name classes of their own (mixed case);
* :func:`write_own_yaml`: the one new file a user writes: a config over such data (the tiny
  CPU Deformable R-FCN of the synthetic config, shrunk to seconds).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import yaml

from lib.dataset import synthetic

#: The synthetic classes (circle, square, triangle, star) under names and ids of "your own".
OWN_NAMES = ("Round thing", "box", "tri-angle", "sparkle star")
OWN_IDS = (907, 12, 3, 40001)
#: The order of the categories in the json, hence of the classes (indices 1..4).
JSON_ORDER = (1, 3, 0, 2)
JSON_NAMES = tuple(OWN_NAMES[i] for i in JSON_ORDER)

CFG = "experiments/rfcn/cfgs/synthetic_rfcn_dcn.yaml"


def make_own_coco(root: Path, num_train: int = 2, num_val: int = 2) -> tuple[Path, Path]:
    """Writes ``root/mydata/annotations/instances_mine_{train,val}.json`` and ``root/photos/``.

    Returns:
        (the dataset folder, the photo folder).
    """
    synthetic.generate(root / "synth", formats=["coco"], num_train=num_train,
                       num_test=num_val, size=128, seed=7)  # fmt: skip
    photos, dataset = root / "photos", root / "mydata"
    photos.mkdir(parents=True, exist_ok=True)
    (dataset / "annotations").mkdir(parents=True, exist_ok=True)
    new_ids = dict(zip(synthetic.COCO_CATEGORY_IDS, OWN_IDS))
    for old, new in (("train", "mine_train"), ("val", "mine_val")):
        src = root / "synth" / "coco"
        data = json.loads((src / "annotations" / f"instances_{old}.json").read_text())
        data["categories"] = [
            {"id": OWN_IDS[i], "name": OWN_NAMES[i], "supercategory": "mine"} for i in JSON_ORDER
        ]
        for ann in data["annotations"]:
            ann["category_id"] = new_ids[ann["category_id"]]
        for k, im in enumerate(data["images"]):
            photo = photos / f"{new}_{im['id']}.jpg"
            shutil.copy(src / "images" / old / im["file_name"], photo)
            # absolute paths, and one relative to mydata/images/<set>/
            im["file_name"] = f"../../../photos/{photo.name}" if k == 0 else str(photo)
        (dataset / "annotations" / f"instances_{new}.json").write_text(json.dumps(data))
    return dataset, photos


def make_own_voc(root: Path, num_train: int = 2, num_test: int = 2) -> Path:
    """Writes a VOC-format tree ``root/VOCdevkit/VOC2007`` naming the classes :data:`OWN_NAMES`
    (in other cases than the config lists them, as VOC names are matched case-insensitively)."""
    synthetic.generate(root / "synth", formats=["voc"], num_train=num_train,
                       num_test=num_test, size=128, seed=7)  # fmt: skip
    devkit = root / "VOCdevkit"
    shutil.copytree(root / "synth" / "VOCdevkit", devkit)
    renamed = {old: new.upper() for old, new in zip(synthetic.CLASSES, OWN_NAMES)}
    for xml in (devkit / "VOC2007" / "Annotations").glob("*.xml"):
        text = re.sub(r"<name>(\w+)</name>", lambda m: f"<name>{renamed[m[1]]}</name>",
                      xml.read_text())  # fmt: skip
        xml.write_text(text)
    return devkit


def write_own_yaml(path: Path, dataset: dict[str, Any], output: Path) -> Path:
    """The synthetic Deformable R-FCN config over ``dataset`` keys, shrunk to seconds."""
    cfg = yaml.safe_load(Path(CFG).read_text())
    cfg["output_path"] = str(output)
    cfg["SCALES"] = [128, 160]
    cfg["dataset"].update(dataset)
    cfg["TRAIN"].update({
        "end_epoch": 2, "FLIP": False, "warmup": False, "lr_step": "", "lr": 0.01,
        "RPN_BATCH_SIZE": 64, "RPN_PRE_NMS_TOP_N": 200, "RPN_POST_NMS_TOP_N": 50,
        "BATCH_ROIS_OHEM": 32,
    })  # fmt: skip
    cfg["TEST"].update({"RPN_PRE_NMS_TOP_N": 200, "RPN_POST_NMS_TOP_N": 30, "test_epoch": 2})
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path
