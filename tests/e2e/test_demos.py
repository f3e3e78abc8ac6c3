"""The demos end to end, on tiny models trained here and on the real-size images of ``demo/``.

Every demo's ``main()`` runs as a user runs it (``--cfg`` of a synthetic config with the
``--set`` items of its tiny training) and each PNG it writes is opened: its size (the image's,
enlarged when tiny and reduced when huge, plus the legend of a segmentation), that it is not
blank, and the colours that say what was drawn where: the best box's class colour on its left
edge, the colour of the largest segmentation class in the legend, the red / green points of the
offset picture, the orange RoIs of the PS-RoI picture. ``results.json`` must agree (boxes in
image pixels, inside the image; class names of the model). Bad inputs are handled or skipped
with one line naming the file, given points / boxes outside an image are dropped (boxes partly
outside clipped) with a warning per image, and a missing model says how to get one. The bad
arguments that need no trained model are in ``tests/lib/test_demo_args.py``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import mxnet as mx
import numpy as np
import pytest

from deeplab import demo as deeplab_demo
from deeplab.symbols import get_network as deeplab_network
from faster_rcnn import demo as rcnn_demo
from faster_rcnn.symbols import get_network as rcnn_network
from fpn import demo as fpn_demo
from fpn.symbols import get_network as fpn_network
from lib.config import load_config
from lib.core.demo import DEFAULT_IMAGES, DemoSpec, ModelNotFoundError, resolve_model
from lib.core.trainer import checkpoint_prefix, train_net
from lib.dataset import synthetic
from lib.dataset.cityscapes import CITYSCAPES_CLASSES
from lib.dataset.load_data import dataset_palette
from lib.utils import vis
from rfcn import deform_conv_demo, deform_psroi_demo
from rfcn import demo as rfcn_demo
from rfcn.symbols import get_network as rfcn_network
from tests.e2e.detection import make_data, tiny_overrides

RFCN_DCN = "experiments/rfcn/cfgs/synthetic_rfcn_dcn.yaml"
RCNN_DCN = "experiments/faster_rcnn/cfgs/synthetic_rcnn_dcn.yaml"
DEEPLAB_DCN = "experiments/deeplab/cfgs/synthetic_deeplab_dcn.yaml"
FPN_DCN = "experiments/fpn/cfgs/synthetic_fpn_dcn.yaml"
SHAPES = ["__background__", *synthetic.CLASSES]
DEMO_IMAGES = sorted(p.name for p in DEFAULT_IMAGES.glob("*.jpg"))


def _train(cfg_path: str, get_network, overrides: list[str]) -> list[str]:
    """Trains one epoch of the tiny config; returns the demo's ``--cfg`` / ``--set`` arguments."""
    cfg = load_config(cfg_path, overrides)
    train_net(cfg, get_network(cfg.symbol), cfg_path, ctx=[mx.cpu()], seed=0, num_workers=1)
    return ["--cfg", cfg_path, *[a for o in overrides for a in ("--set", o)]]


@pytest.fixture(scope="module")
def det_data(tmp_path_factory):
    return make_data(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def rfcn_dcn(det_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("rfcn_dcn")
    return _train(RFCN_DCN, rfcn_network, tiny_overrides(det_data, out) + [
        "TRAIN.end_epoch=1"])  # fmt: skip


@pytest.fixture(scope="module")
def rcnn_dcn(det_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("rcnn_dcn")
    return _train(RCNN_DCN, rcnn_network, tiny_overrides(det_data, out) + [
        "TRAIN.end_epoch=1"])  # fmt: skip


@pytest.fixture(scope="module")
def fpn_dcn(det_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("fpn_dcn")
    return _train(FPN_DCN, fpn_network, tiny_overrides(det_data, out) + [
        "TRAIN.end_epoch=1"])  # fmt: skip


@pytest.fixture(scope="module")
def deeplab_dcn(tmp_path_factory):
    root = tmp_path_factory.mktemp("seg_data")
    synthetic.generate(root, formats=["cityscapes"], num_train=2, num_test=1, size=128, seed=5)
    out = tmp_path_factory.mktemp("deeplab_dcn")
    return _train(DEEPLAB_DCN, deeplab_network, [
        f"output_path={out}", f"dataset.root_path={root}",
        f"dataset.dataset_path={root / 'cityscapes'}", "SCALES=[[96, 160]]", "TRAIN.FLIP=false",
        "TRAIN.lr=0.01", "TRAIN.warmup=false", "TRAIN.lr_step=''", "TRAIN.end_epoch=1",
    ])  # fmt: skip


def _run(main, args: list[str], out: Path, *extra: str) -> tuple[int, dict]:
    code = main([*args, "--out", str(out), "--warmup", "1", *extra])
    results = out / "results.json"
    return code, json.loads(results.read_text()) if results.is_file() else {}


def _picture(entry: dict, legend: bool = False) -> np.ndarray:
    """The entry's PNG, checked: the image's display size (wider by the legend), not blank."""
    png = cv2.imread(entry["output"])
    assert png is not None, entry["output"]
    scale = vis.display_scale(entry["height"], entry["width"])
    height, width = round(entry["height"] * scale), round(entry["width"] * scale)
    assert png.shape[0] == height
    assert png.shape[1] > width + 50 if legend else png.shape[1] == width
    assert png[:, :width].std() > 10, "blank picture"
    return png


def _has_colour(png: np.ndarray, bgr, y: int, x: int, r: int = 1) -> bool:
    patch = png[max(y - r, 0) : y + r + 1, max(x - r, 0) : x + r + 1]
    return bool(np.all(patch == np.array(bgr, np.uint8), axis=2).any())


def _check_detections(entry: dict, names: list[str]) -> None:
    """The detections of an entry and its picture: boxes in image pixels, drawn where they are."""
    png = _picture(entry)
    width, height = entry["width"], entry["height"]
    dets = entry["detections"]
    assert dets and entry["seconds"] > 0
    for d in dets:
        x1, y1, x2, y2 = d["box"]
        assert 0 <= x1 <= x2 <= width - 1 and 0 <= y1 <= y2 <= height - 1, d
        assert d["class"] in names[1:]
    # boxes are in image pixels: they reach far beyond the network input (160 wide here)
    assert max(d["box"][2] for d in dets) > 0.5 * width
    best = dets[0]  # drawn last, so on top: its left edge is in its class colour
    scale = vis.display_scale(height, width)
    x1, y1, _, y2 = (v * scale for v in best["box"])
    colour = vis.class_colour(names.index(best["class"]))
    assert _has_colour(png, colour, round((y1 + y2) / 2), round(x1)), best


def _check_demo_images(results: dict, names: list[str]) -> None:
    assert sorted(Path(e["image"]).name for e in results["written"]) == DEMO_IMAGES
    for entry in results["written"]:
        _check_detections(entry, names)


def test_rfcn_demo(rfcn_dcn, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="lib.core.demo"):
        code, results = _run(rfcn_demo.main, rfcn_dcn, tmp_path, "--thresh", "0")
    assert code == 0 and not results["skipped"]
    _check_demo_images(results, SHAPES)
    assert {(e["width"], e["height"]) for e in results["written"]} >= {(1000, 600), (2048, 1024)}
    timed = [r.getMessage() for r in caplog.records if " s -> " in r.getMessage()]
    assert len(timed) == len(DEMO_IMAGES)  # one line per image with its time and picture


def test_faster_rcnn_demo(rcnn_dcn, tmp_path):
    code, results = _run(rcnn_demo.main, rcnn_dcn, tmp_path, "--thresh", "0")
    assert code == 0
    _check_demo_images(results, SHAPES)


def test_deeplab_demo(deeplab_dcn, tmp_path):
    code, results = _run(deeplab_demo.main, deeplab_dcn, tmp_path)
    assert code == 0 and len(results["written"]) == len(DEMO_IMAGES)
    palette = dataset_palette("synthetic_seg")
    for entry in results["written"]:
        png = _picture(entry, legend=True)
        shares = entry["classes"]
        assert sum(shares.values()) == pytest.approx(1.0, abs=1e-3)
        assert set(shares) <= set(CITYSCAPES_CLASSES)
        top = max(shares, key=shares.get)
        bgr = palette[CITYSCAPES_CLASSES.index(top)][::-1]
        legend = png[
            :, round(entry["width"] * vis.display_scale(entry["height"], entry["width"])) :
        ]
        assert np.all(legend == bgr, axis=2).sum() > 50, top  # its swatch


def test_deform_conv_demo(rfcn_dcn, tmp_path):
    code, results = _run(deform_conv_demo.main, rfcn_dcn, tmp_path)
    assert code == 0 and len(results["written"]) == len(DEMO_IMAGES)
    for entry in results["written"]:
        png = cv2.imread(entry["output"])
        assert png.std() > 10
        assert entry["layers"] == ["res5a_branch2b", "res5b_branch2b", "res5c_branch2b"]
        assert len(entry["points"]) == 4
        assert all(0 < p["samples"] <= 9**3 for p in entry["points"])
        assert np.all(png == (0, 0, 255), axis=2).sum() > 20  # the sampling points
        assert np.all(png == (0, 255, 0), axis=2).sum() > 20  # the activations

    image = str(DEFAULT_IMAGES / "synthetic_600x1000.jpg")
    code, results = _run(deform_conv_demo.main, rfcn_dcn, tmp_path / "one", image, "--points",
                         "500,300", "--offset_group", "3")  # fmt: skip
    (entry,) = results["written"]
    assert code == 0 and entry["group"] == 3 and len(entry["points"]) == 1
    x, y = entry["points"][0]["activation"]
    # the centre of the res5 cell under the point: stride 16 at the tiny scale 160 / 1000 is
    # 100 image pixels
    assert abs(x - 500) <= 50 and abs(y - 300) <= 50


def test_offset_demos_on_other_networks(deeplab_dcn, rcnn_dcn, tmp_path):
    """DeepLab's res5 (one offset group, offsets from an undilated 3x3) and Deformable Faster
    R-CNN's RoI pooling (offsets shared by all classes) through the R-FCN offset demos."""
    image = str(DEFAULT_IMAGES / "synthetic_800x600.jpg")
    code, results = _run(deform_conv_demo.main, deeplab_dcn, tmp_path / "conv", image)
    (entry,) = results["written"]
    assert code == 0 and entry["layers"][-1] == "res5c_branch2b" and len(entry["points"]) == 4
    assert np.all(cv2.imread(entry["output"]) == (0, 0, 255), axis=2).sum() > 20

    code, results = _run(deform_psroi_demo.main, rcnn_dcn, tmp_path / "psroi", image, "--boxes",
                         "50,60,300,400")  # fmt: skip
    (entry,) = results["written"]
    assert code == 0 and entry["layer"] == "deformable_roi_pool"
    assert entry["rois"][0]["class"] in SHAPES[1:]  # the class the network scores highest


def test_fpn_demos(fpn_dcn, tmp_path):
    """FPN's detection demo, and both offset demos on Deformable FPN: the last deformable 3x3s
    (res5, stride 32, undilated) and the RoI pooling of the pyramid, each RoI's bins drawn on
    the level its size chooses (the pooling op's ``offset`` output)."""
    code, results = _run(fpn_demo.main, fpn_dcn, tmp_path / "detect", "--thresh", "0")
    assert code == 0
    _check_demo_images(results, SHAPES)

    image = str(DEFAULT_IMAGES / "synthetic_600x1000.jpg")
    code, results = _run(deform_conv_demo.main, fpn_dcn, tmp_path / "conv", image)
    (entry,) = results["written"]
    assert code == 0 and entry["layers"] == ["res5a_branch2b", "res5b_branch2b", "res5c_branch2b"]
    assert np.all(cv2.imread(entry["output"]) == (0, 0, 255), axis=2).sum() > 20

    # a small box (pooled on P2) and a large one (P3 at this input scale, 160 / 1000)
    code, results = _run(deform_psroi_demo.main, fpn_dcn, tmp_path / "psroi", image, "--boxes",
                         "100,120,200,220,2;100,50,900,550")  # fmt: skip
    (entry,) = results["written"]
    assert code == 0 and entry["layer"] == "fpn_roi_pooling"
    assert [r["box"] for r in entry["rois"]] == [[100, 120, 200, 220], [100, 50, 900, 550]]
    png = cv2.imread(entry["output"])
    assert np.all(png == (0, 140, 255), axis=2).sum() > 200  # the RoIs
    assert np.all(png == (0, 0, 255), axis=2).sum() > 20  # the top-left bin


def test_deform_psroi_demo(rfcn_dcn, tmp_path):
    image = str(DEFAULT_IMAGES / "synthetic_600x1000.jpg")
    code, results = _run(deform_psroi_demo.main, rfcn_dcn, tmp_path, image, "--boxes",
                         "100,120,400,380,2;600,50,900,250")  # fmt: skip
    (entry,) = results["written"]
    assert code == 0 and entry["layer"] == "psroipooled_cls_rois"
    assert [r["box"] for r in entry["rois"]] == [[100, 120, 400, 380], [600, 50, 900, 250]]
    assert entry["rois"][0]["class"] == "square" and entry["rois"][1]["class"] in SHAPES[1:]
    png = cv2.imread(entry["output"])
    assert np.all(png == (0, 140, 255), axis=2).sum() > 200  # the RoIs
    assert np.all(png == (0, 0, 255), axis=2).sum() > 20  # the top-left bin

    code, results = _run(deform_psroi_demo.main, rfcn_dcn, tmp_path / "detected", image,
                         "--thresh", "0", "--num_boxes", "2")  # fmt: skip
    assert code == 0 and len(results["written"][0]["rois"]) == 2


def _images_of_three_sizes(folder: Path) -> dict[str, str]:
    """Paths by ``WxH``: the demo's 1000x600 and 600x800 images and a 200x100 one."""
    small = folder / "small_100x200.png"
    photo = cv2.imread(str(DEFAULT_IMAGES / "synthetic_600x1000.jpg"))
    assert cv2.imwrite(str(small), cv2.resize(photo, (200, 100), interpolation=cv2.INTER_AREA))
    return {
        "1000x600": str(DEFAULT_IMAGES / "synthetic_600x1000.jpg"),
        "600x800": str(DEFAULT_IMAGES / "synthetic_800x600.jpg"),
        "200x100": str(small),
    }


def _warnings(caplog, path: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and r.getMessage().startswith(f"{path}: ")
    ]


def test_points_outside_an_image_are_dropped(rfcn_dcn, tmp_path, caplog):
    """Per image: points beyond its pixels (x > width - 1, y > height - 1) are dropped with a
    warning, never moved; an image with none left is skipped."""
    images = _images_of_three_sizes(tmp_path)
    points = "500,300;999,599;1000,50;700,700"
    with caplog.at_level(logging.INFO, logger="lib.core.demo"):
        code, results = _run(deform_conv_demo.main, rfcn_dcn, tmp_path / "out",
                             *images.values(), "--points", points)  # fmt: skip
    assert code == 0
    by_size = {f"{e['width']}x{e['height']}": e for e in results["written"]}
    assert sorted(by_size) == ["1000x600", "600x800"]

    wide = by_size["1000x600"]  # x = 1000 is one past the last column
    assert wide["dropped_points"] == [[1000, 50], [700, 700]]
    assert [p["activation"] for p in wide["points"]][0] == pytest.approx([500, 300], abs=50)
    assert len(wide["points"]) == 2 and len(wide["warnings"]) == 1
    assert _warnings(caplog, images["1000x600"]) == [
        f"{images['1000x600']}: --points outside the image (1000x600) dropped: (1000, 50), "
        "(700, 700)"]  # fmt: skip
    tall = by_size["600x800"]
    assert tall["dropped_points"] == [[999, 599], [1000, 50], [700, 700]]
    assert len(tall["points"]) == 1

    (skipped,) = results["skipped"]
    assert skipped == {
        "image": images["200x100"],
        "reason": "all --points are outside the image (200x100): (500, 300), (999, 599), "
        "(1000, 50), (700, 700)",
    }
    assert _warnings(caplog, images["200x100"]) == []  # its line is "skipping ...: <reason>"


def test_boxes_outside_an_image_are_clipped_or_dropped(rfcn_dcn, tmp_path, caplog):
    """Per image: a box partly outside is clipped to it, one wholly outside dropped, each with
    a warning; an image with no box left is skipped."""
    images = _images_of_three_sizes(tmp_path)
    boxes = "100,120,400,380,2;900,500,1200,700;1000,50,1300,250"
    with caplog.at_level(logging.INFO, logger="lib.core.demo"):
        code, results = _run(deform_psroi_demo.main, rfcn_dcn, tmp_path / "out",
                             *images.values(), "--boxes", boxes)  # fmt: skip
    assert code == 0
    by_size = {f"{e['width']}x{e['height']}": e for e in results["written"]}
    assert sorted(by_size) == ["1000x600", "600x800"]

    wide = by_size["1000x600"]
    assert [r["box"] for r in wide["rois"]] == [[100, 120, 400, 380], [900, 500, 999, 599]]
    assert "given" not in wide["rois"][0] and wide["rois"][1]["given"] == [900, 500, 1200, 700]
    assert wide["rois"][0]["class"] == "square"
    assert wide["dropped_boxes"] == [[1000, 50, 1300, 250]]
    assert _warnings(caplog, images["1000x600"]) == [
        f"{images['1000x600']}: --boxes outside the image (1000x600) dropped: "
        "(1000, 50, 1300, 250)",
        f"{images['1000x600']}: --boxes clipped to the image (1000x600): "
        "(900, 500, 1200, 700) -> (900, 500, 999, 599)"]  # fmt: skip
    assert len(wide["warnings"]) == 2
    tall = by_size["600x800"]
    assert [r["box"] for r in tall["rois"]] == [[100, 120, 400, 380]]
    assert tall["dropped_boxes"] == [[900, 500, 1200, 700], [1000, 50, 1300, 250]]

    (skipped,) = results["skipped"]
    assert skipped["image"] == images["200x100"]
    assert skipped["reason"].startswith("all --boxes are outside the image (200x100): ")


def _bad_inputs(folder: Path) -> tuple[list[str], list[str]]:
    """(inputs a demo must process, inputs it must skip) written into ``folder``."""
    folder.mkdir()
    photo = cv2.imread(str(DEFAULT_IMAGES / "synthetic_800x600.jpg"))
    grey = cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY)
    good = {
        "grey.png": grey,
        "deep16.png": photo.astype(np.uint16) * 257,
        "alpha.png": np.dstack([photo, np.full(grey.shape, 128, np.uint8)]),
        "tiny.png": cv2.resize(photo, (10, 10), interpolation=cv2.INTER_AREA),
        "huge.jpg": cv2.resize(photo, (6000, 4000), interpolation=cv2.INTER_NEAREST),
    }
    for name, image in good.items():
        assert cv2.imwrite(str(folder / name), image)
    jpeg = (DEFAULT_IMAGES / "synthetic_800x600.jpg").read_bytes()
    png = (folder / "grey.png").read_bytes()
    (folder / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (folder / "truncated.png").write_bytes(png[: len(png) // 2])
    (folder / "notes.jpg").write_text("not an image\n")
    (folder / "empty.png").write_bytes(b"")
    (folder / "no_images").mkdir()
    bad = ["truncated.jpg", "truncated.png", "notes.jpg", "empty.png", "missing.jpg", "no_images"]
    return [str(folder / n) for n in good], [str(folder / n) for n in bad]


@pytest.mark.parametrize("which", ["rfcn", "deeplab"])
def test_bad_inputs_are_handled_or_skipped(which, rfcn_dcn, deeplab_dcn, tmp_path, caplog):
    main, args = (rfcn_demo.main, rfcn_dcn) if which == "rfcn" else (deeplab_demo.main,
                                                                     deeplab_dcn)  # fmt: skip
    good, bad = _bad_inputs(tmp_path / "inputs")
    with caplog.at_level(logging.INFO, logger="lib.core.demo"):
        code, results = _run(main, args, tmp_path / "out", *good, *bad, "--thresh", "0")
    assert code == 0
    assert sorted(e["image"] for e in results["written"]) == sorted(good)
    assert sorted(e["image"] for e in results["skipped"]) == sorted(bad)
    for entry in results["written"]:  # tiny ones enlarged to 480, huge ones reduced to 2048
        if which == "rfcn":
            _check_detections(entry, SHAPES)
        else:
            _picture(entry, legend=True)
    sizes = {Path(e["image"]).name: (e["width"], e["height"]) for e in results["written"]}
    assert sizes["tiny.png"] == (10, 10) and sizes["huge.jpg"] == (6000, 4000)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    for path in bad:  # one line each, naming the file
        (line,) = [w for w in warnings if w.startswith(f"skipping {path}: ")]
        assert "\n" not in line
        if "truncated" in path:
            assert "truncated" in line.split(": ", 1)[1], line

    code, results = _run(main, args, tmp_path / "none", *bad)
    assert code == 1 and not results["written"] and len(results["skipped"]) == len(bad)


def test_missing_model_says_how_to_get_one(rfcn_dcn, tmp_path, capsys):
    spec = DemoSpec(
        "t",
        "Deformable R-FCN",
        released=(
            "experiments/rfcn/cfgs/rfcn_coco_demo.yaml",
            "resnet_v1_101_rfcn_dcn",
            str(tmp_path / "model" / "rfcn_dcn_coco"),
        ),
        synthetic=RFCN_DCN,
        train_script="experiments/rfcn/rfcn_end2end_train_test.py",
    )
    empty = [f"output_path={tmp_path / 'empty'}"]
    with pytest.raises(ModelNotFoundError) as err:
        resolve_model(spec, rfcn_network, overrides=empty)
    message = str(err.value)
    assert str(tmp_path / "model" / "rfcn_dcn_coco-0000.params") in message
    assert "rfcn_dcn_synthetic-NNNN.params" in message
    assert f"python experiments/rfcn/rfcn_end2end_train_test.py --cfg {RFCN_DCN}" in message

    trained = [a for a in rfcn_dcn[2:] if a != "--set"]  # the tiny run's overrides
    model = resolve_model(spec, rfcn_network, overrides=trained)  # found by itself
    assert (model.origin, model.epoch, model.cfg_path) == ("synthetic", 1, RFCN_DCN)
    released = tmp_path / "model" / "rfcn_dcn_coco-0000.params"
    released.parent.mkdir()
    released.write_bytes(Path(model.params_file).read_bytes())
    model = resolve_model(spec, rfcn_network, overrides=trained)  # the released name wins
    assert (model.origin, model.epoch, model.cfg.symbol) == ("released", 0,
                                                             "resnet_v1_101_rfcn_dcn")  # fmt: skip

    code = rfcn_demo.main(["--cfg", RFCN_DCN, "--set", empty[0], "--out", str(tmp_path / "o")])
    assert code == 2
    assert f"rfcn_end2end_train_test.py --cfg {RFCN_DCN}" in capsys.readouterr().err


def test_a_checkpoint_of_another_network_is_refused(rfcn_dcn, tmp_path, capsys):
    """The plain R-FCN on the Deformable R-FCN's checkpoint would draw boxes without its offsets:
    the demo stops, naming them, before any image is read."""
    trained = [a for a in rfcn_dcn[2:] if a != "--set"]
    dcn = load_config(RFCN_DCN, trained)
    prefix = checkpoint_prefix(dcn, RFCN_DCN)
    args = ["--cfg", "experiments/rfcn/cfgs/synthetic_rfcn.yaml", *rfcn_dcn[2:], "--params",
            prefix, "--epoch", "1", "--out", str(tmp_path / "o")]  # fmt: skip
    assert rfcn_demo.main(args) == 2
    err = capsys.readouterr().err
    assert (
        f": error: checkpoint {prefix}-0001.params does not fit the network of symbol "
        "'resnet_v1_50_w16_rfcn'" in err.splitlines()[0]
    )
    assert "params the network does not have (10): res5a_branch2b_offset_bias" in err
    assert not (tmp_path / "o" / "results.json").exists()
