"""Synthetic data generator: determinism, format validity, honest boxes, real deformation."""

from __future__ import annotations

import json
import logging
import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from lib.config import load_config
from lib.core.trainer import prepare_synthetic_data
from lib.dataset import load_gt_segdb, synthetic
from lib.dataset.cityscapes import LABEL_TO_TRAIN_ID
from lib.dataset.imdb import read_label_png
from lib.dataset.synthetic import (
    CITYSCAPES_CLASS_IDS,
    CLASSES,
    COCO_CATEGORY_IDS,
    generate,
    make_scene,
    meta_path,
    write_coco,
)
from lib.tools.make_synthetic import main

SMALL = {"num_train": 6, "num_test": 3, "size": 128}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    generate(root, seed=0, **SMALL)
    return root


def _tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "meta.json"
    }


def test_same_seed_same_bytes_other_seed_differs(data_root: Path, tmp_path: Path) -> None:
    generate(tmp_path / "a", seed=0, **SMALL)
    generate(tmp_path / "b", seed=1, **SMALL)
    ref, same, other = _tree(data_root), _tree(tmp_path / "a"), _tree(tmp_path / "b")
    assert len(ref) > 50 and ref == same
    meta_ref, meta_same = (
        json.loads(meta_path(r).read_text()) for r in (data_root, tmp_path / "a")
    )
    for meta in (meta_ref, meta_same):  # the fingerprints hold the files' times
        for record in meta["trees"].values():
            assert record.pop("fingerprint")["files"] > 0
    assert meta_ref == meta_same
    for name in (
        "coco/annotations/instances_train.json",
        "coco/images/train/COCO_train_000000000001.jpg",
        "VOCdevkit/VOC2007/Annotations/000001.xml",
        "cityscapes/gtFine/val/gammaburg/gammaburg_000000_000000_gtFine_labelIds.png",
    ):
        assert ref[name] != other[name], name


def test_one_format_alone_matches(data_root: Path, tmp_path: Path) -> None:
    generate(tmp_path, formats=("voc",), seed=0, **SMALL)
    alone = _tree(tmp_path)
    assert alone and all(alone[k] == v for k, v in _tree(data_root).items() if k in alone)


def test_coco(data_root: Path) -> None:
    for set_name, num in (("train", SMALL["num_train"]), ("val", SMALL["num_test"])):
        coco = COCO(str(data_root / "coco/annotations" / f"instances_{set_name}.json"))
        assert coco.getCatIds() == list(COCO_CATEGORY_IDS) == [1, 3, 5, 7]
        assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(CLASSES)
        assert len(coco.getImgIds()) == num
        assert coco.getAnnIds(), "no annotations"
        for img in coco.loadImgs(coco.getImgIds()):
            assert re.fullmatch(rf"COCO_{set_name}_\d{{12}}\.jpg", img["file_name"])
            assert int(img["file_name"][-16:-4]) == img["id"]
            im = cv2.imread(str(data_root / "coco/images" / set_name / img["file_name"]))
            assert im.shape == (img["height"], img["width"], 3)
            for ann in coco.loadAnns(coco.getAnnIds(imgIds=img["id"])):
                x, y, w, h = ann["bbox"]
                assert x >= 0 and y >= 0 and w >= 1 and h >= 1
                assert x + w <= img["width"] and y + h <= img["height"]
                assert 0 < ann["area"] <= w * h
                m = coco.annToMask(ann)
                ys, xs = np.nonzero(m)
                assert abs(m.sum() - ann["area"]) <= 0.1 * ann["area"]
                tol = 0 if ann["iscrowd"] else 1  # a polygon's raster may differ by a pixel
                assert abs(xs.min() - x) <= tol and abs(xs.max() - (x + w - 1)) <= tol
                assert abs(ys.min() - y) <= tol and abs(ys.max() - (y + h - 1)) <= tol


def test_coco_crowd_rle_is_the_mask(tmp_path: Path) -> None:
    scenes = [make_scene(3, "train", i, size=96) for i in range(3)]
    write_coco(tmp_path, {"train": scenes}, crowd_every=2)
    coco = COCO(str(tmp_path / "coco/annotations/instances_train.json"))
    objects = [obj for scene in scenes for obj in scene.objects]
    anns = coco.loadAnns(coco.getAnnIds())
    assert len(anns) == len(objects) and any(a["iscrowd"] for a in anns)
    for ann, obj in zip(anns, objects):
        assert ann["iscrowd"] == (isinstance(ann["segmentation"], dict))
        if ann["iscrowd"]:
            assert np.array_equal(coco.annToMask(ann), obj.mask)
            rle = coco.annToRLE(ann)
            assert mask_utils.area(rle) == ann["area"]


def test_voc(data_root: Path) -> None:
    devkit = data_root / "VOCdevkit/VOC2007"
    ids = sorted(p.stem for p in (devkit / "JPEGImages").glob("*.jpg"))
    assert ids == [f"{i:06d}" for i in range(1, 10)]

    def listed(kind: str, name: str) -> list[str]:
        return (devkit / "ImageSets" / kind / f"{name}.txt").read_text().split()

    main_sets = {name: listed("Main", name) for name in ("train", "val", "trainval", "test")}
    assert sorted(main_sets["trainval"] + main_sets["test"]) == ids
    assert sorted(main_sets["train"] + main_sets["val"]) == sorted(main_sets["trainval"])
    assert main_sets["val"] and not set(main_sets["train"]) & set(main_sets["val"])
    for name, listed_ids in main_sets.items():
        assert listed("Segmentation", name) == listed_ids
        flags = (devkit / "ImageSets/Main" / f"circle_{name}.txt").read_text().split()
        assert flags[::2] == listed_ids and set(flags[1::2]) <= {"1", "-1", "0"}

    palette = synthetic.voc_palette()
    assert palette[1].tolist() == [128, 0, 0] and palette[255].tolist() == [224, 224, 192]
    for image_id in ids:
        root = ET.parse(devkit / "Annotations" / f"{image_id}.xml").getroot()
        assert root.findtext("filename") == f"{image_id}.jpg"
        width, height = int(root.findtext("size/width")), int(root.findtext("size/height"))
        assert cv2.imread(str(devkit / "JPEGImages" / f"{image_id}.jpg")).shape == (
            height,
            width,
            3,
        )
        seg = Image.open(devkit / "SegmentationClass" / f"{image_id}.png")
        assert seg.mode == "P" and seg.size == (width, height)
        seg = np.array(seg)
        assert set(np.unique(seg)) <= {0, 1, 2, 3, 4, 255}
        for obj in root.iter("object"):
            assert obj.findtext("name") in CLASSES
            assert obj.findtext("difficult") in ("0", "1")
            box = [int(obj.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax")]
            assert 1 <= box[0] <= box[2] <= width and 1 <= box[1] <= box[3] <= height
            # The object's class is painted inside its (1-based) box.
            inside = seg[box[1] - 1 : box[3], box[0] - 1 : box[2]]
            assert (inside == CLASSES.index(obj.findtext("name")) + 1).any()


def test_cityscapes(data_root: Path) -> None:
    base = data_root / "cityscapes"
    lut = np.full(256, -1)
    for label_id, train_id in LABEL_TO_TRAIN_ID.items():
        lut[label_id] = train_id
    # A few entries of the official table, as a check on the table itself.
    assert (lut[7], lut[11], lut[23], lut[24], lut[26], lut[33], lut[0], lut[4]) == (
        0, 2, 10, 11, 13, 18, 255, 255
    )  # fmt: skip
    seen = set()
    for split, num in (("train", SMALL["num_train"]), ("val", SMALL["num_test"])):
        images = sorted((base / "leftImg8bit" / split).glob("*/*_leftImg8bit.png"))
        assert len(images) == num
        for path in images:
            city, seq, frame, _ = path.name.split("_")
            assert path.parent.name == city and len(seq) == len(frame) == 6
            gt = base / "gtFine" / split / city / path.name.replace("leftImg8bit", "gtFine_{}")
            image = cv2.imread(str(path))
            label_ids = cv2.imread(str(gt).format("labelIds"), cv2.IMREAD_UNCHANGED)
            train_ids = cv2.imread(str(gt).format("labelTrainIds"), cv2.IMREAD_UNCHANGED)
            instances = cv2.imread(str(gt).format("instanceIds"), cv2.IMREAD_UNCHANGED)
            assert label_ids.dtype == train_ids.dtype == np.uint8 and instances.dtype == np.uint16
            assert image.shape[:2] == label_ids.shape == train_ids.shape == instances.shape
            assert np.all(lut[label_ids] >= 0), "not a Cityscapes label id"
            assert np.array_equal(lut[label_ids], train_ids)
            assert np.array_equal(
                np.where(instances >= 1000, instances // 1000, instances), label_ids
            )
            seen |= set(np.unique(label_ids).tolist())
    assert set(CITYSCAPES_CLASS_IDS) & seen and {7, 23} <= seen and {0, 4} & seen


def test_scenes_are_honest_and_deformed() -> None:
    widths, heights = [], []
    for i in range(50):
        scene = make_scene(0, "train", i, size=128)
        assert 1 <= len(scene.objects) <= 4
        for obj in scene.objects:
            ys, xs = np.nonzero(obj.mask)
            assert obj.box == (xs.min(), ys.min(), xs.max(), ys.max())
            assert obj.visibility >= synthetic.MIN_VISIBILITY
            assert np.all(scene.label_ids[obj.mask] == CITYSCAPES_CLASS_IDS[obj.label])
            widths.append(xs.max() - xs.min() + 1)
            heights.append(ys.max() - ys.min() + 1)
    widths, heights = np.array(widths), np.array(heights)
    aspect, scale = widths / heights, np.sqrt(widths * heights)
    assert aspect.max() / aspect.min() > 3, "aspect ratios barely vary"
    assert scale.max() / scale.min() > 3, "object sizes barely vary"
    assert len({make_scene(0, "train", i, size=128).image.shape for i in range(5)}) > 1


def test_skip_and_force(tmp_path: Path) -> None:
    args = {"formats": ("coco",), "num_train": 2, "num_test": 1, "size": 64}
    generate(tmp_path, **args)
    image = tmp_path / "coco/images/train/COCO_train_000000000001.jpg"
    stamp = image.stat().st_mtime_ns
    generate(tmp_path, **args)  # up to date: nothing rewritten
    assert image.stat().st_mtime_ns == stamp
    generate(tmp_path, force=True, **args)  # the generator's own, unchanged: rewritten
    assert image.stat().st_mtime_ns != stamp
    meta = json.loads(meta_path(tmp_path).read_text())
    assert meta["params"]["num_train"] == 2 and meta["classes"] == list(CLASSES)
    assert meta["trees"]["coco"]["counts"] == meta["counts"]["coco"]
    assert synthetic.tree_state(tmp_path, "coco").status == "generated"
    with pytest.raises(ValueError, match="unknown synthetic formats"):
        generate(tmp_path, formats=("kitti",))


def test_cli(tmp_path: Path) -> None:
    argv = ["--root", str(tmp_path), "--formats", "voc,cityscapes", "--num-train", "2"]
    meta = main([*argv, "--num-test", "1", "--size", "64", "--fixed-size", "--seed", "5"])
    assert meta["params"]["formats"] == ["voc", "cityscapes"] and meta["params"]["seed"] == 5
    image = cv2.imread(str(tmp_path / "VOCdevkit/VOC2007/JPEGImages/000003.jpg"))
    assert image.shape == (64, 64, 3)
    assert not (tmp_path / "coco").exists()
    with pytest.raises(SystemExit):
        main(["--root", str(tmp_path), "--formats", "kitti"])


# ------------------------------------------------------- never delete what a user made (#17)

TINY = {"num_train": 3, "num_test": 1, "size": 64}


def _snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``root``: its bytes and modification time."""
    return {
        str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _deeplab_cfg(dataset_path: Path, cache: Path):
    return load_config(
        "experiments/deeplab/cfgs/synthetic_deeplab.yaml",
        [f"dataset.dataset_path={dataset_path}", f"dataset.root_path={cache}"],
    )


def _edit_label(path: Path) -> np.ndarray:
    """Paint a block of train id 3 into a label PNG, as a user fixing labels would."""
    label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    label[:8, :8] = 3
    cv2.imwrite(str(path), label)
    return label


def test_an_edited_copy_is_trained_on_as_it_is(tmp_path: Path, caplog) -> None:
    """The report: DeepLab on an edited copy of the synthetic Cityscapes tree regenerated it."""
    generate(tmp_path / "orig", formats=("cityscapes",), **TINY)
    copy = tmp_path / "mine" / "cityscapes"
    shutil.copytree(tmp_path / "orig" / "cityscapes", copy)  # as `cp -r` would (times kept)
    gt = copy / "gtFine" / "train" / "alphaburg"
    label = _edit_label(gt / "alphaburg_000000_000000_gtFine_labelTrainIds.png")
    for path in copy.rglob("*_000002_*"):  # delete a scene
        path.unlink()
    before = _snapshot(tmp_path / "mine")
    cfg = _deeplab_cfg(copy, tmp_path / "cache")
    with caplog.at_level(logging.INFO):
        prepare_synthetic_data(cfg)
    assert _snapshot(tmp_path / "mine") == before  # nothing written, nothing deleted
    assert f"using {copy} as it is: {copy} was not written by" in caplog.text

    segdb = load_gt_segdb(cfg.dataset.dataset, "train", cfg.dataset.root_path, str(copy))
    assert len(segdb) == TINY["num_train"] - 1
    first = [r for r in segdb if "_000000_000000_" in r["image"]][0]
    np.testing.assert_array_equal(read_label_png(first["seg_cls_path"]), label)

    # a copy of the whole root (meta file included), edited: the same
    whole = tmp_path / "whole"
    shutil.copytree(tmp_path / "orig", whole)
    _edit_label(next((whole / "cityscapes/gtFine/val").rglob("*_labelTrainIds.png")))
    before = _snapshot(whole)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        prepare_synthetic_data(_deeplab_cfg(whole / "cityscapes", tmp_path / "cache"))
    assert _snapshot(whole) == before
    assert "was changed since lib.dataset.synthetic.generate wrote it" in caplog.text
    generate(whole, formats=("cityscapes",), force=True, **TINY)
    assert _snapshot(whole) == before


def test_an_edited_tree_is_never_regenerated(tmp_path: Path, caplog) -> None:
    generate(tmp_path, formats=("coco", "cityscapes"), **TINY)
    # relabel an object in place: same size, only the time changes
    ann = tmp_path / "coco/annotations/instances_train.json"
    text = ann.read_text()
    old = re.search(r'"category_id":\d', text).group()
    ann.write_text(text.replace(old, '"category_id":7' if old[-1] != "7" else '"category_id":5', 1))
    for path in (tmp_path / "cityscapes").rglob("*_000001_*"):
        path.unlink()
    before = _snapshot(tmp_path)
    for kwargs in ({}, {"force": True}, {"num_train": 4}, {"seed": 1}):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="lib.dataset.synthetic"):
            generate(tmp_path, formats=("coco", "cityscapes"), **{**TINY, **kwargs})
        assert _snapshot(tmp_path) == before, kwargs
        for name in ("coco", "cityscapes"):
            assert f"{tmp_path / name} was changed since" in caplog.text
            assert synthetic.tree_state(tmp_path, name).status == "edited"
    prepare_synthetic_data(_deeplab_cfg(tmp_path / "cityscapes", tmp_path / "cache"))
    assert _snapshot(tmp_path) == before


def test_a_foreign_tree_is_untouched_and_the_other_formats_written(tmp_path: Path, caplog) -> None:
    # real Cityscapes-like data, with the old generator's ownership marker copied along
    own = tmp_path / "cityscapes" / "leftImg8bit" / "train" / "x"
    own.mkdir(parents=True)
    (own / "x_000000_000000_leftImg8bit.png").write_bytes(b"not ours")
    (tmp_path / "cityscapes" / ".synthetic").write_text("written by lib.dataset.synthetic\n")
    before = _snapshot(tmp_path / "cityscapes")
    with caplog.at_level(logging.WARNING, logger="lib.dataset.synthetic"):
        meta = generate(tmp_path, formats=("coco", "cityscapes"), **TINY)
    assert _snapshot(tmp_path / "cityscapes") == before
    assert f"{tmp_path / 'cityscapes'} was not written by lib.dataset.synthetic" in caplog.text
    assert "left as it is" in caplog.text
    assert sorted(meta["trees"]) == ["coco"]
    assert synthetic.tree_state(tmp_path, "coco").status == "generated"
    assert synthetic.tree_state(tmp_path, "cityscapes").status == "foreign"
    generate(tmp_path, formats=("coco", "cityscapes"), force=True, **TINY)
    assert _snapshot(tmp_path / "cityscapes") == before

    # a generated tree moved elsewhere (times kept) and linked back: the link is not ours
    generate(tmp_path, formats=("voc",), **TINY)
    moved = tmp_path / "elsewhere"
    (tmp_path / "VOCdevkit" / "VOC2007").rename(moved)
    (tmp_path / "VOCdevkit" / "VOC2007").symlink_to(moved)
    linked = _snapshot(moved)
    assert synthetic.tree_state(tmp_path, "voc").status == "foreign"
    generate(tmp_path, formats=("voc",), force=True, **TINY)
    assert (tmp_path / "VOCdevkit" / "VOC2007").is_symlink() and _snapshot(moved) == linked


def test_a_missing_tree_is_generated_once(tmp_path: Path, monkeypatch, caplog) -> None:
    real = synthetic.generate
    monkeypatch.setattr(synthetic, "generate", lambda root: real(root, **TINY))
    path = tmp_path / "data" / "synthetic" / "cityscapes"
    cfg = _deeplab_cfg(path, tmp_path / "cache")
    with caplog.at_level(logging.INFO):
        prepare_synthetic_data(cfg)
    assert "synthetic data not found under" in caplog.text
    root = path.parent
    for name in synthetic.FORMATS:
        assert synthetic.tree_state(root, name).status == "generated"
    assert (
        synthetic.describe_existing(path)[0] and synthetic.describe_existing(root / "VOCdevkit")[0]
    )
    before = _snapshot(root)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        prepare_synthetic_data(cfg)  # there and unchanged: used, silently
    assert _snapshot(root) == before and not caplog.text


def test_partial_trees_and_other_parameters(tmp_path: Path) -> None:
    generate(tmp_path, formats=("coco",), **TINY)
    coco = _snapshot(tmp_path / "coco")
    meta = generate(tmp_path, **TINY)  # coco is up to date: only voc and cityscapes written
    assert _snapshot(tmp_path / "coco") == coco
    assert sorted(meta["trees"]) == ["cityscapes", "coco", "voc"]
    assert meta["params"]["formats"] == list(synthetic.FORMATS)
    voc = _snapshot(tmp_path / "VOCdevkit")
    meta = generate(tmp_path, formats=("coco",), **{**TINY, "num_train": 2})
    assert len(list((tmp_path / "coco/images/train").glob("*.jpg"))) == 2  # its own: redone
    assert _snapshot(tmp_path / "VOCdevkit") == voc
    assert meta["trees"]["voc"]["params"]["num_train"] == 3
    assert meta["trees"]["coco"]["params"]["num_train"] == 2


def test_an_interrupted_run_is_redone(tmp_path: Path, monkeypatch) -> None:
    def half_written(root, sets):
        (Path(root) / "cityscapes" / "partial.png").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setitem(synthetic._WRITERS, "cityscapes", (half_written, ("train", "val")))
    with pytest.raises(KeyboardInterrupt):
        generate(tmp_path, formats=("cityscapes",), **TINY)
    assert synthetic.tree_state(tmp_path, "cityscapes").status == "interrupted"
    monkeypatch.undo()
    # a copy of the half-written root is not the generator's to redo
    shutil.copytree(tmp_path, tmp_path.with_name(tmp_path.name + "_copy"))
    copy = tmp_path.with_name(tmp_path.name + "_copy")
    assert synthetic.tree_state(copy, "cityscapes").status == "foreign"
    assert not synthetic.describe_existing(tmp_path / "cityscapes")[0]
    # training on it finishes it, with the parameters it was being written with
    prepare_synthetic_data(_deeplab_cfg(tmp_path / "cityscapes", tmp_path / "cache"))
    assert not (tmp_path / "cityscapes" / "partial.png").exists()
    assert synthetic.tree_state(tmp_path, "cityscapes").status == "generated"
    assert len(list((tmp_path / "cityscapes/leftImg8bit/train").rglob("*.png"))) == 3
    before = _snapshot(tmp_path / "cityscapes")
    generate(tmp_path, formats=("cityscapes",), **TINY)  # and it is up to date
    assert _snapshot(tmp_path / "cityscapes") == before


def test_cli_never_deletes_a_users_tree(tmp_path: Path, caplog) -> None:
    argv = ["--root", str(tmp_path), "--formats", "voc", "--num-train", "2", "--size", "64"]
    main(argv)
    xml = tmp_path / "VOCdevkit/VOC2007/Annotations/000001.xml"
    xml.write_text(xml.read_text().replace("<pose>Unspecified</pose>", "<pose>Left</pose>", 1))
    before = _snapshot(tmp_path / "VOCdevkit")
    with caplog.at_level(logging.WARNING, logger="lib.dataset.synthetic"):
        main([*argv, "--force"])
        main([*argv, "--seed", "3"])
    assert _snapshot(tmp_path / "VOCdevkit") == before
    assert caplog.text.count("VOC2007 was changed since") == 2

    demo = tmp_path / "demo"
    demo.mkdir()
    (demo / "synthetic_800x600.jpg").write_bytes(b"my photo")
    small = [("synthetic_800x600.jpg", 60, 80), ("synthetic_600x1000.jpg", 60, 100)]
    written = synthetic.write_demo_images(demo, images=small)
    assert written == [demo / "synthetic_600x1000.jpg"]
    assert (demo / "synthetic_800x600.jpg").read_bytes() == b"my photo"
