"""Tests for lib.config: the experiment yamls, strict keys, conversions, overrides, saving."""

import argparse
import os
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from lib.config import (
    ARCH_DEFAULTS,
    CONVERSIONS,
    DEFAULTS,
    DOMAINS,
    RULES,
    add_config_args,
    check_config,
    config_from_args,
    default_config,
    dump_config,
    infer_arch,
    load_config,
    save_config,
    unused_settings,
)
from lib.config.defaults import Each, Int, Num, OneOf, Words
from lib.dataset.synthetic import CLASSES

REPO = Path(__file__).resolve().parents[2]
EXPERIMENTS = REPO / "experiments"

# The original release's experiment files (the project keeps equivalent copies) ...
ORIGINAL_CFGS = {
    "rfcn": [
        "deform_conv_demo.yaml",
        "deform_psroi_demo.yaml",
        "resnet_v1_101_coco_trainval_rfcn_dcn_end2end_ohem.yaml",
        "resnet_v1_101_coco_trainval_rfcn_end2end_ohem.yaml",
        "resnet_v1_101_voc0712_rfcn_dcn_end2end_ohem.yaml",
        "resnet_v1_101_voc0712_rfcn_end2end_ohem.yaml",
        "rfcn_coco_demo.yaml",
    ],
    "faster_rcnn": [
        "resnet_v1_101_coco_trainval_rcnn_dcn_end2end.yaml",
        "resnet_v1_101_coco_trainval_rcnn_end2end.yaml",
        "resnet_v1_101_voc0712_rcnn_dcn_end2end.yaml",
        "resnet_v1_101_voc0712_rcnn_end2end.yaml",
    ],
    "fpn": [
        "resnet_v1_101_coco_trainval_fpn_dcn_end2end_ohem.yaml",
        "resnet_v1_101_coco_trainval_fpn_end2end_ohem.yaml",
    ],
    "deeplab": [
        "deeplab_cityscapes_demo.yaml",
        "deeplab_resnet_v1_101_cityscapes_segmentation_base.yaml",
        "deeplab_resnet_v1_101_cityscapes_segmentation_dcn.yaml",
        "deeplab_resnet_v1_101_voc12_segmentation_base.yaml",
        "deeplab_resnet_v1_101_voc12_segmentation_dcn.yaml",
    ],
}
# ... and the small CPU configs on synthetic data: arch -> (plain symbol, deformable symbol).
SYNTHETIC_CFGS = {
    "rfcn": ("synthetic_rfcn", "resnet_v1_50_w16_rfcn", "resnet_v1_50_w16_rfcn_dcn"),
    "faster_rcnn": ("synthetic_rcnn", "resnet_v1_50_w16_rcnn", "resnet_v1_50_w16_rcnn_dcn"),
    "fpn": ("synthetic_fpn", "resnet_v1_50_w16_fpn_rcnn", "resnet_v1_50_w16_fpn_dcn_rcnn"),
    "deeplab": ("synthetic_deeplab", "resnet_v1_50_w16_deeplab", "resnet_v1_50_w16_deeplab_dcn"),
}

ALL_YAMLS = sorted(EXPERIMENTS.glob("*/cfgs/*.yaml"))
# The original release's own files, byte for byte (where the shared references are checked out).
REFERENCE_YAMLS = sorted((REPO.parent / "shared" / "refs" / "original_cfgs").glob("*/*.yaml"))


def cfg_path(arch: str, name: str) -> Path:
    return EXPERIMENTS / arch / "cfgs" / name


def write_yaml(tmp_path: Path, text: str, name: str = "exp.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def get(cfg, dotted: str):
    for part in dotted.split("."):
        cfg = cfg[part]
    return cfg


def assert_same(a, b, key: str = "") -> None:
    """Deep equality that also compares container types and array dtypes."""
    assert type(a) is type(b) or (isinstance(a, dict) and isinstance(b, dict)), (key, a, b)
    if isinstance(a, dict):
        assert list(a) == list(b), key
        for k in a:
            assert_same(a[k], b[k], f"{key}.{k}")
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and np.array_equal(a, b), (key, a, b)
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), (key, a, b)
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{key}[{i}]")
    else:
        assert a == b, (key, a, b)


# ---------------------------------------------------------------------------------------------
# The experiment files.


def test_experiment_files_are_all_there():
    expected = {f"{arch}/{name}" for arch, names in ORIGINAL_CFGS.items() for name in names}
    for arch, (stem, _, _) in SYNTHETIC_CFGS.items():
        expected |= {f"{arch}/{stem}.yaml", f"{arch}/{stem}_dcn.yaml"}
    found = {f"{p.parent.parent.name}/{p.name}" for p in ALL_YAMLS}
    assert len(expected) == 26
    assert found == expected


@pytest.mark.parametrize("path", ALL_YAMLS, ids=lambda p: p.name)
def test_every_experiment_yaml_loads(path):
    cfg = load_config(path)
    raw = yaml.safe_load(path.read_text())
    assert cfg.symbol == raw["symbol"] != ""
    assert cfg.SCALES == [tuple(raw["SCALES"])]
    assert isinstance(cfg.network.PIXEL_MEANS, np.ndarray)
    np.testing.assert_allclose(cfg.network.PIXEL_MEANS, [103.06, 115.90, 123.15])
    assert cfg.TRAIN.end_epoch == raw["TRAIN"]["end_epoch"]
    assert cfg.TEST.test_epoch == raw["TEST"]["test_epoch"]
    assert cfg.network.NUM_ANCHORS == len(cfg.network.ANCHOR_SCALES) * len(
        cfg.network.ANCHOR_RATIOS
    )


@pytest.mark.parametrize("path", REFERENCE_YAMLS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_the_original_release_yamls_load_unchanged(path):
    """The original files themselves (not our copies) pass every key, type and value check."""
    cfg = load_config(path)
    assert cfg.symbol == yaml.safe_load(path.read_text())["symbol"]


@pytest.mark.parametrize("arch", sorted(SYNTHETIC_CFGS))
@pytest.mark.parametrize("deformable", [False, True])
def test_synthetic_cpu_configs(arch, deformable):
    stem, plain, dcn = SYNTHETIC_CFGS[arch]
    cfg = load_config(cfg_path(arch, f"{stem}{'_dcn' if deformable else ''}.yaml"))
    assert cfg.symbol == (dcn if deformable else plain)
    assert cfg.gpus == ""
    assert cfg.default.frequent == 10
    assert cfg.default.kvstore == "local"
    assert cfg.TRAIN.BATCH_IMAGES == 1
    assert 0.001 <= cfg.TRAIN.lr <= 0.005
    assert 3 <= cfg.TRAIN.end_epoch <= 6
    assert cfg.TEST.test_epoch == cfg.TRAIN.end_epoch
    assert max(cfg.SCALES[0]) <= 512
    # The sets and class counts the generator (lib.dataset.synthetic) writes.
    assert (cfg.dataset.image_set, cfg.dataset.test_image_set) == ("train", "val")
    if arch == "deeplab":
        assert cfg.dataset.dataset == "synthetic_seg"
        assert cfg.dataset.NUM_CLASSES == 19  # Cityscapes train ids
        assert cfg.dataset.dataset_path == "./data/synthetic/cityscapes"
    else:
        assert cfg.dataset.dataset == "synthetic"
        assert cfg.dataset.NUM_CLASSES == len(CLASSES) + 1  # + background
        assert cfg.dataset.root_path == "./data"
        assert cfg.dataset.dataset_path == "./data/synthetic/coco"
        assert cfg.TRAIN.END2END and cfg.TEST.HAS_RPN
    if arch in ("rfcn", "faster_rcnn"):
        assert cfg.network.ANCHOR_SCALES == (2, 4, 8, 16)
        assert cfg.network.NUM_ANCHORS == 12
        assert cfg.network.RPN_FEAT_STRIDE == 16


# Spot checks of the values the original code gives for its yamls (a missing key here means the
# original config.py default came through).
ORIGINAL_VALUES = [
    # R-FCN COCO, deformable.
    (
        "rfcn",
        "resnet_v1_101_coco_trainval_rfcn_dcn_end2end_ohem.yaml",
        {
            "MXNET_VERSION": "mxnet",
            "gpus": "0,1,2,3,4,5,6,7",
            "symbol": "resnet_v1_101_rfcn_dcn",
            "CLASS_AGNOSTIC": True,
            "SCALES": [(600, 1000)],
            "TEST_SCALES": [],  # the original R-FCN has no TEST_SCALES: it tests at SCALES[0]
            "default.frequent": 100,
            "default.kvstore": "device",
            "network.FIXED_PARAMS": ["conv1", "bn_conv1", "res2", "bn2", "gamma", "beta"],
            "network.ANCHOR_SCALES": (4, 8, 16, 32),
            "network.ANCHOR_RATIOS": (0.5, 1, 2),
            "network.NUM_ANCHORS": 12,
            "network.RPN_FEAT_STRIDE": 16,
            "dataset.NUM_CLASSES": 81,
            "dataset.image_set": "train2014+val2014",
            "dataset.proposal": "rpn",
            "dataset.annotation_prefix": "gtFine",
            "TRAIN.lr": 0.0005,
            "TRAIN.lr_step": "5.333",
            "TRAIN.lr_factor": 0.1,
            "TRAIN.momentum": 0.9,
            "TRAIN.wd": 0.0005,
            "TRAIN.warmup_lr": 0.00005,
            "TRAIN.model_prefix": "rfcn_dcn_coco",
            "TRAIN.BATCH_ROIS": -1,
            "TRAIN.RPN_MIN_SIZE": 0,
            "TRAIN.CXX_PROPOSAL": False,
            "TRAIN.RPN_BBOX_WEIGHTS": (1.0, 1.0, 1.0, 1.0),
            "TRAIN.BBOX_MEANS": (0.0, 0.0, 0.0, 0.0),
            "TRAIN.BBOX_STDS": (0.1, 0.1, 0.2, 0.2),
            "TRAIN.ALTERNATE.rpn1_lr_step": "",
            "TRAIN.ENABLE_CROP": False,
            "TEST.max_per_image": 100,
            "TEST.USE_SOFTNMS": False,
            "TEST.test_epoch": 8,
        },
    ),
    # R-FCN VOC: no max_per_image in the yaml -> the default 300.
    (
        "rfcn",
        "resnet_v1_101_voc0712_rfcn_end2end_ohem.yaml",
        {
            "symbol": "resnet_v1_101_rfcn",
            "network.ANCHOR_SCALES": (8, 16, 32),
            "network.NUM_ANCHORS": 9,
            "dataset.dataset": "PascalVOC",
            "dataset.NUM_CLASSES": 21,
            "TRAIN.lr_step": "4.83",
            "TEST.max_per_image": 300,
            "TEST.test_epoch": 7,
        },
    ),
    (
        "rfcn",
        "rfcn_coco_demo.yaml",
        {
            "default.frequent": 20,
            "TRAIN.RESUME": True,
            "TRAIN.begin_epoch": 5,
            "TRAIN.model_prefix": "e2e",
        },
    ),
    (
        "rfcn",
        "deform_conv_demo.yaml",
        {
            "symbol": "deform_conv_demo",
            "TRAIN.end_epoch": 8,
            "TEST.test_epoch": 7,
        },
    ),
    (
        "rfcn",
        "deform_psroi_demo.yaml",
        {
            "dataset.proposal": "selective_search",
            "TRAIN.END2END": False,
            "TEST.HAS_RPN": False,
        },
    ),
    # Faster R-CNN: class-specific boxes and sampled RoIs.
    (
        "faster_rcnn",
        "resnet_v1_101_coco_trainval_rcnn_dcn_end2end.yaml",
        {
            "CLASS_AGNOSTIC": False,
            "TRAIN.ENABLE_OHEM": False,
            "TRAIN.BATCH_ROIS": 128,
            "TRAIN.BG_THRESH_LO": 0.1,
            "TEST.max_per_image": 100,
        },
    ),
    (
        "faster_rcnn",
        "resnet_v1_101_voc0712_rcnn_end2end.yaml",
        {
            "symbol": "resnet_v1_101_rcnn",
            "TRAIN.model_prefix": "rcnn_voc",
            "TEST.max_per_image": 300,
        },
    ),
    # FPN: pyramid strides, multi-scale testing, soft-NMS (duplicated keys in the original TEST).
    (
        "fpn",
        "resnet_v1_101_coco_trainval_fpn_dcn_end2end_ohem.yaml",
        {
            "symbol": "resnet_v1_101_fpn_dcn_rcnn",
            "CLASS_AGNOSTIC": False,
            "SCALES": [(800, 1280)],
            "TEST_SCALES": [
                (480, 800),
                (576, 900),
                (688, 1100),
                (800, 1200),
                (1200, 1600),
                (1400, 2000),
            ],
            "network.IMAGE_STRIDE": 32,
            "network.RPN_FEAT_STRIDE": [4, 8, 16, 32, 64],
            "network.ANCHOR_SCALES": (8,),
            "network.NUM_ANCHORS": 3,
            "dataset.test_image_set": "minival2014",
            "TRAIN.lr": 0.01,
            "TRAIN.lr_step": "4,6",
            "TRAIN.wd": 0.0001,
            "TRAIN.warmup_step": 250,
            "TRAIN.BATCH_ROIS_OHEM": 512,
            "TRAIN.RPN_PRE_NMS_TOP_N": 12000,
            "TEST.RPN_POST_NMS_TOP_N": 2000,
            "TEST.USE_SOFTNMS": True,
            "TEST.SOFTNMS_THRESH": 0.6,
            "TEST.NMS": 0.3,
        },
    ),
    # DeepLab: crop sizes, and DeepLab's own defaults for keys the yamls leave out.
    (
        "deeplab",
        "deeplab_resnet_v1_101_cityscapes_segmentation_dcn.yaml",
        {
            "symbol": "resnet_v1_101_deeplab_dcn",
            "SCALES": [(1024, 2048)],
            "CLASS_AGNOSTIC": True,
            "default.frequent": 10,
            "dataset.dataset": "CityScape",
            "dataset.dataset_path": "./data/cityscapes/",
            "dataset.annotation_prefix": "gtFine",
            "TRAIN.ENABLE_CROP": True,
            "TRAIN.CROP_HEIGHT": 768,
            "TRAIN.CROP_WIDTH": 1024,
            "TRAIN.lr_step": "40.336",
            "TRAIN.lr_factor": 0.1,
            "TRAIN.model_prefix": "deeplab_resnet_v1_101_cityscapes_segmentation_dcn",
            "TEST.test_epoch": 53,
        },
    ),
    (
        "deeplab",
        "deeplab_resnet_v1_101_voc12_segmentation_base.yaml",
        {
            "symbol": "resnet_v1_101_deeplab",
            "SCALES": [(360, 600)],
            "dataset.NUM_CLASSES": 21,
            "dataset.dataset_path": "./data/VOCdevkit2012/",
            "TRAIN.warmup": False,
            "TRAIN.ENABLE_CROP": False,
            "TRAIN.CROP_HEIGHT": 768,
            "TRAIN.lr_step": "8",
        },
    ),
]


@pytest.mark.parametrize(
    "arch, name, values", ORIGINAL_VALUES, ids=[name for _, name, _ in ORIGINAL_VALUES]
)
def test_original_yamls_load_to_original_values(arch, name, values):
    cfg = load_config(cfg_path(arch, name))
    for key, expected in values.items():
        got = get(cfg, key)
        assert got == expected, key
        assert type(got) is type(expected), key


@pytest.mark.parametrize("arch, names", sorted(ORIGINAL_CFGS.items()))
def test_array_keys(arch, names):
    for name in names:
        cfg = load_config(cfg_path(arch, name))
        means = cfg.network.PIXEL_MEANS
        assert isinstance(means, np.ndarray) and means.dtype == np.float64
        np.testing.assert_array_equal(means, np.array([103.06, 115.90, 123.15]))
        weights = cfg.TRAIN.BBOX_WEIGHTS
        assert isinstance(weights, np.ndarray) and weights.dtype == np.float64
        np.testing.assert_array_equal(weights, np.ones(4))


# ---------------------------------------------------------------------------------------------
# Defaults and architectures.


def test_defaults_fill_missing_keys(tmp_path):
    cfg = load_config(write_yaml(tmp_path, "TRAIN:\n  lr: 0.01\n"))
    assert cfg.TRAIN.lr == 0.01
    assert cfg.TRAIN.lr_factor == 0.1
    assert cfg.TRAIN.BATCH_IMAGES == 2
    assert cfg.TRAIN.RPN_MIN_SIZE == 16
    assert cfg.SCALES == [(600, 1000)]
    assert cfg.TEST_SCALES == []  # test at SCALES[0]
    assert load_config(write_yaml(tmp_path, "symbol: resnet_v1_101_fpn_rcnn\n")).TEST_SCALES == [
        (600, 1000)  # the original FPN config.py's default
    ]
    assert cfg.network.ANCHOR_SCALES == (8, 16, 32)
    assert cfg.network.RPN_FEAT_STRIDE == 16
    assert cfg.dataset.dataset == "PascalVOC"
    assert cfg.TEST.max_per_image == 300
    assert cfg.TEST.SOFTNMS_THRESH == 0.6
    np.testing.assert_array_equal(cfg.network.PIXEL_MEANS, [0.0, 0.0, 0.0])
    np.testing.assert_array_equal(cfg.TRAIN.BBOX_WEIGHTS, [1.0, 1.0, 1.0, 1.0])
    assert cfg.TRAIN.ALTERNATE.rfcn2_epoch == 0


@pytest.mark.parametrize("text", ["", "# nothing\n", "---\n"])
def test_empty_yaml_rejected_before_anything_is_written(tmp_path, monkeypatch, text):
    # It used to return the defaults (symbol ''), and the entry point created its output
    # folders in the current directory before failing on the symbol.
    path = write_yaml(tmp_path, text, "empty.yaml")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    parser = add_config_args(argparse.ArgumentParser())
    with pytest.raises(ValueError, match=r"config file .*empty\.yaml is empty"):
        config_from_args(parser.parse_args(["--cfg", str(path)]), arch="rfcn")
    assert os.listdir(cwd) == [] and sorted(os.listdir(tmp_path)) == ["cwd", "empty.yaml"]
    assert default_config().symbol == ""  # the defaults alone are still available


def test_deeplab_defaults():
    cfg = default_config("deeplab")
    assert cfg.SCALES == [(360, 600)]
    assert cfg.default.frequent == 1000
    assert cfg.default.kvstore == "device"
    assert cfg.network.pretrained == "../model/pretrained_model/resnet_v1-101"
    assert cfg.network.FIXED_PARAMS == ["conv1", "bn_conv1", "res2", "bn2", "gamma", "beta"]
    np.testing.assert_array_equal(cfg.network.PIXEL_MEANS, [103.06, 115.90, 123.15])
    assert cfg.dataset.dataset == "cityscapes"
    assert cfg.dataset.dataset_path == "../data/cityscapes"
    assert cfg.dataset.NUM_CLASSES == 19
    assert cfg.dataset.annotation_prefix == "gtFine"
    assert cfg.TRAIN.model_prefix == "deeplab"
    assert cfg.TRAIN.BATCH_IMAGES == 1
    # Keys DeepLab does not change keep the detection defaults.
    assert cfg.TRAIN.wd == 0.0005
    assert default_config("rfcn").default.frequent == 20


def test_arch_is_inferred_from_symbol_or_given(tmp_path):
    path = write_yaml(tmp_path, "symbol: resnet_v1_101_deeplab\n")
    assert load_config(path).default.frequent == 1000
    assert load_config(path, arch="rfcn").default.frequent == 20
    assert load_config(path, ["symbol=resnet_v1_101_rfcn"]).default.frequent == 20
    plain = write_yaml(tmp_path, "symbol: resnet_v1_101_rfcn\n", "plain.yaml")
    assert load_config(plain, ["symbol=resnet_v1_50_deeplab"]).SCALES == [(360, 600)]
    assert infer_arch("resnet_v1_101_fpn_dcn_rcnn") == "fpn"
    assert infer_arch("resnet_v1_101_rcnn") == "faster_rcnn"
    assert infer_arch("resnet_v1_101_rfcn_dcn") == "rfcn"
    assert infer_arch("deform_psroi_demo") == "rfcn"
    assert infer_arch("resnet_v1_50_deeplab_dcn") == "deeplab"
    with pytest.raises(ValueError, match="unknown architecture 'yolo'"):
        load_config(path, arch="yolo")


def test_tables_only_name_known_keys():
    for key in CONVERSIONS:
        node = DEFAULTS
        for part in key.split("."):
            node = node[part]
    for arch in ARCH_DEFAULTS:
        assert arch in ("rfcn", "faster_rcnn", "fpn", "deeplab")
        default_config(arch)  # the deltas pass the same key and type checks


# ---------------------------------------------------------------------------------------------
# Strict keys and types.


@pytest.mark.parametrize(
    "text, key",
    [
        ("foo: 1\n", "foo"),
        ("TRAIN:\n  lr_stepp: '4'\n", "TRAIN.lr_stepp"),
        ("network:\n  PIXEL_MEAN: [1, 2, 3]\n", "network.PIXEL_MEAN"),
        ("TRAIN:\n  ALTERNATE:\n    rpn9_lr: 0.1\n", "TRAIN.ALTERNATE.rpn9_lr"),
        ("dataset:\n  1: x\n", "dataset.1"),
    ],
)
def test_unknown_keys_rejected(tmp_path, text, key):
    path = write_yaml(tmp_path, text, "bad.yaml")
    with pytest.raises(ValueError, match=rf"^unknown config key {re.escape(key)} in .*bad\.yaml$"):
        load_config(path)


def test_mistyped_key_in_a_full_yaml(tmp_path):
    text = cfg_path("rfcn", "resnet_v1_101_voc0712_rfcn_dcn_end2end_ohem.yaml").read_text()
    assert text.count("  lr_step:") == 1
    path = write_yaml(tmp_path, text.replace("  lr_step:", "  lr_stepp:"), "typo.yaml")
    with pytest.raises(ValueError, match=r"unknown config key TRAIN\.lr_stepp in .*typo\.yaml"):
        load_config(path)


@pytest.mark.parametrize(
    "text, key",
    [
        ("TRAIN:\n  lr: {a: 1}\n", "TRAIN.lr"),  # dict for a number
        ("TRAIN:\n  lr: fast\n", "TRAIN.lr"),
        ("TRAIN:\n  lr: true\n", "TRAIN.lr"),
        ("TRAIN:\n  end_epoch: 7.5\n", "TRAIN.end_epoch"),
        ("TRAIN:\n  FLIP: 'yes'\n", "TRAIN.FLIP"),
        ("TRAIN: 5\n", "TRAIN"),  # number for a section
        ("network:\n  FIXED_PARAMS: conv1\n", "network.FIXED_PARAMS"),  # string for a list
        ("network:\n  FIXED_PARAMS: [conv1, 2]\n", "network.FIXED_PARAMS"),
        ("network:\n  PIXEL_MEANS: [1, 2]\n", "network.PIXEL_MEANS"),
        ("network:\n  PIXEL_MEANS: '1,2,3'\n", "network.PIXEL_MEANS"),
        ("network:\n  RPN_FEAT_STRIDE: sixteen\n", "network.RPN_FEAT_STRIDE"),
        ("network:\n  ANCHOR_SCALES: []\n", "network.ANCHOR_SCALES"),
        ("TRAIN:\n  BBOX_WEIGHTS: [1, 1, 1]\n", "TRAIN.BBOX_WEIGHTS"),
        ("TRAIN:\n  BBOX_STDS: 0.1\n", "TRAIN.BBOX_STDS"),
        ("gpus: [0, 1]\n", "gpus"),
        ("SCALES: 600\n", "SCALES"),
        ("SCALES: [600]\n", "SCALES"),
        ("SCALES: [600.5, 1000]\n", "SCALES"),
        ("TEST_SCALES: [[480, 800, 1]]\n", "TEST_SCALES"),
        ("network:\n  NUM_ANCHORS: 12\n", "network.NUM_ANCHORS"),  # != 3 scales x 3 ratios
    ],
)
def test_bad_types_rejected(tmp_path, text, key):
    path = write_yaml(tmp_path, text, "bad.yaml")
    with pytest.raises(ValueError, match=rf"config key {re.escape(key)} in .*bad\.yaml"):
        load_config(path)


def test_lenient_but_typed_scalars(tmp_path):
    text = "gpus: 0\nTRAIN:\n  lr: 1\n  lr_step: 8\nSCALES: [[300, 500], [400, 600]]\n"
    cfg = load_config(write_yaml(tmp_path, text))
    assert cfg.gpus == "0"
    assert cfg.TRAIN.lr == 1.0 and type(cfg.TRAIN.lr) is float
    assert cfg.TRAIN.lr_step == "8"
    assert cfg.SCALES == [(300, 500), (400, 600)]


def test_empty_section_and_empty_value(tmp_path):
    cfg = load_config(write_yaml(tmp_path, "TEST:\n# NMS: 0.5\nTRAIN:\n  lr: 0.01\n"))
    assert cfg.TEST.NMS == 0.3
    assert cfg.TRAIN.lr == 0.01
    path = write_yaml(tmp_path, "TRAIN:\n  lr:\n", "bad.yaml")
    with pytest.raises(ValueError, match=r"config key TRAIN\.lr in .*bad\.yaml: expected a number"):
        load_config(path)


def test_non_mapping_file_rejected(tmp_path):
    path = write_yaml(tmp_path, "- a\n- b\n", "list.yaml")
    with pytest.raises(ValueError, match=r"list\.yaml must hold a mapping, got list"):
        load_config(path)
    path = write_yaml(tmp_path, "resnet_v1_101_rfcn\n", "scalar.yaml")
    with pytest.raises(ValueError, match=r"scalar\.yaml must hold a mapping, got str"):
        load_config(path)


# ---------------------------------------------------------------------------------------------
# Overrides and the command line.


def test_overrides(tmp_path):
    path = cfg_path("rfcn", "resnet_v1_101_coco_trainval_rfcn_dcn_end2end_ohem.yaml")
    cfg = load_config(
        path,
        overrides=[
            "TRAIN.lr=0.001",
            "dataset.NUM_CLASSES=21",
            "SCALES=[[300,500]]",
            "gpus=",
            "TRAIN.lr_step=4,6",
            "network.PIXEL_MEANS=[1, 2, 3]",
            "TEST_SCALES=[300, 500]",
            "TRAIN.lr=0.002",  # later wins
        ],
    )
    assert cfg.TRAIN.lr == 0.002
    assert cfg.dataset.NUM_CLASSES == 21
    assert cfg.SCALES == [(300, 500)]
    assert cfg.TEST_SCALES == [(300, 500)]
    assert cfg.gpus == ""
    assert cfg.TRAIN.lr_step == "4,6"
    assert cfg.network.PIXEL_MEANS.dtype == np.float64
    np.testing.assert_array_equal(cfg.network.PIXEL_MEANS, [1.0, 2.0, 3.0])
    assert cfg.TRAIN.warmup_lr == 0.00005  # untouched yaml values stay


def test_override_errors():
    path = cfg_path("rfcn", "rfcn_coco_demo.yaml")
    with pytest.raises(
        ValueError, match=r"^unknown config key TRAIN\.lr_stepp in --set TRAIN\.lr_stepp=1$"
    ):
        load_config(path, ["TRAIN.lr_stepp=1"])
    with pytest.raises(ValueError, match=r"unknown config key nope in --set nope=1"):
        load_config(path, ["nope=1"])
    with pytest.raises(ValueError, match=r"config key TRAIN\.lr in --set TRAIN\.lr=\[1\]"):
        load_config(path, ["TRAIN.lr=[1]"])
    with pytest.raises(ValueError, match=r"config key SCALES in --set SCALES=600"):
        load_config(path, ["SCALES=600"])
    with pytest.raises(ValueError, match=r"is not KEY=VALUE"):
        load_config(path, ["TRAIN.lr"])
    with pytest.raises(ValueError, match=r"cannot parse the value"):
        load_config(path, ["SCALES=[300,"])
    with pytest.raises(TypeError, match=r"list of KEY=VALUE strings"):
        load_config(path, "TRAIN.lr=1")


def test_command_line_arguments():
    path = str(cfg_path("fpn", "synthetic_fpn.yaml"))
    parser = add_config_args(argparse.ArgumentParser())
    args = parser.parse_args(["--cfg", path, "--set", "TRAIN.lr=0.01", "--set", "TEST.NMS=0.5"])
    assert args.overrides == ["TRAIN.lr=0.01", "TEST.NMS=0.5"]
    cfg = config_from_args(args)
    assert cfg.TRAIN.lr == 0.01
    assert cfg.TEST.NMS == 0.5
    assert cfg.symbol == "resnet_v1_50_w16_fpn_rcnn"
    assert config_from_args(parser.parse_args(["--cfg", path])).TRAIN.lr == 0.004
    with pytest.raises(SystemExit):
        parser.parse_args([])


# ---------------------------------------------------------------------------------------------
# Freshness and saving.


def test_each_load_is_fresh():
    path = cfg_path("fpn", "resnet_v1_101_coco_trainval_fpn_dcn_end2end_ohem.yaml")
    first = load_config(path)
    first.TRAIN.lr = 123.0
    first.SCALES.append((1, 2))
    first.TEST_SCALES.clear()
    first.network.PIXEL_MEANS[0] = -1.0
    first.TRAIN.BBOX_WEIGHTS *= 0
    first.network.FIXED_PARAMS.append("res3")
    first.network.RPN_FEAT_STRIDE.append(128)
    second = load_config(path)
    assert second.TRAIN.lr == 0.01
    assert second.SCALES == [(800, 1280)]
    assert len(second.TEST_SCALES) == 6
    assert second.network.PIXEL_MEANS[0] == 103.06
    np.testing.assert_array_equal(second.TRAIN.BBOX_WEIGHTS, np.ones(4))
    assert second.network.FIXED_PARAMS[-1] == "beta"
    assert second.network.RPN_FEAT_STRIDE == [4, 8, 16, 32, 64]
    # Nor do defaults share objects with a load or with the module data.
    defaults = default_config()
    defaults.network.FIXED_PARAMS.append("x")
    defaults.SCALES[0] = (1, 1)
    assert DEFAULTS["network"]["FIXED_PARAMS"] == ["gamma", "beta"]
    assert DEFAULTS["SCALES"] == [(600, 1000)]
    assert default_config().network.FIXED_PARAMS == ["gamma", "beta"]
    assert default_config().SCALES == [(600, 1000)]


@pytest.mark.parametrize("path", ALL_YAMLS, ids=lambda p: p.name)
def test_save_config_round_trip(tmp_path, path):
    cfg = load_config(path, ["TRAIN.lr=0.125"])
    out_dir = tmp_path / "out" / "nested"
    saved = save_config(cfg, out_dir)
    assert saved == os.path.join(out_dir, "config.yaml")
    assert os.listdir(out_dir) == ["config.yaml"]  # no temporary file left behind
    plain = yaml.safe_load(Path(saved).read_text())
    assert plain["TRAIN"]["lr"] == 0.125
    assert plain["network"]["PIXEL_MEANS"] == [103.06, 115.9, 123.15]
    assert plain["SCALES"] == [list(cfg.SCALES[0])]
    assert_same(load_config(saved), cfg)


def test_save_config_overwrites(tmp_path):
    cfg = default_config()
    save_config(cfg, tmp_path)
    cfg.TRAIN.lr = 0.5
    path = save_config(cfg, tmp_path)
    assert load_config(path).TRAIN.lr == 0.5
    assert sorted(os.listdir(tmp_path)) == ["config.yaml"]
    assert dump_config(cfg) == Path(path).read_text()


# ---------------------------------------------------------------------------------------------
# Keys that do nothing for the selected architecture are reported; the new keys are checked.


def test_unused_keys_are_logged_when_loaded(tmp_path, caplog):
    text = (
        "symbol: resnet_v1_101_rfcn\n"
        "TRAIN:\n  ENABLE_CROP: true\n  ALTERNATE:\n    rpn1_lr: 0.1\n"
        "TEST:\n  PROPOSAL_MIN_SIZE: 8\n"
    )
    with caplog.at_level("WARNING", logger="lib.config"):
        cfg = load_config(write_yaml(tmp_path, text))
    assert "does not use" in caplog.text
    for key in ("TRAIN.ENABLE_CROP", "TRAIN.ALTERNATE.rpn1_lr", "TEST.PROPOSAL_MIN_SIZE"):
        assert key in caplog.text
    assert unused_settings(cfg) == [
        "TRAIN.ALTERNATE.rpn1_lr", "TRAIN.ENABLE_CROP", "TEST.PROPOSAL_MIN_SIZE"
    ]  # fmt: skip
    # a key at its default, or one the architecture reads, is not reported
    caplog.clear()
    with caplog.at_level("WARNING", logger="lib.config"):
        load_config(write_yaml(tmp_path, "symbol: resnet_v1_101_rfcn\nTEST:\n  NMS: 0.4\n"))
    assert caplog.text == ""


def test_detection_keys_in_a_deeplab_config_are_reported(tmp_path):
    cfg = load_config(write_yaml(tmp_path, "symbol: resnet_v1_101_deeplab\nTEST:\n  NMS: 0.4\n"))
    assert unused_settings(cfg) == ["TEST.NMS"]


def test_new_keys_are_checked(tmp_path):
    with pytest.raises(ValueError, match="cpu_contexts"):
        load_config(write_yaml(tmp_path, "symbol: x\ncpu_contexts: 0\n"))
    with pytest.raises(ValueError, match="TEST.SOFTNMS_METHOD.*'gaussian' or 'linear'"):
        load_config(write_yaml(tmp_path, "symbol: x\nTEST:\n  SOFTNMS_METHOD: hard\n"))
    cfg = load_config(write_yaml(tmp_path, "symbol: x\nTEST_SCALES: []\ncpu_contexts: 2\n"))
    assert cfg.TEST_SCALES == [] and cfg.cpu_contexts == 2


# ---------------------------------------------------------------------------------------------
# Values: DOMAINS and RULES (lib/config/defaults.py).


def _leaves(tree, prefix=""):
    for name, value in tree.items():
        if isinstance(value, dict):
            yield from _leaves(value, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", value


LEAVES = dict(_leaves(DEFAULTS))


def test_domains_and_rules_name_known_keys():
    assert set(DOMAINS) <= set(LEAVES), set(DOMAINS) - set(LEAVES)
    for rule in RULES:
        assert set(rule.keys) <= set(LEAVES), rule.keys


def _is_numeric(value) -> bool:
    items = value if isinstance(value, (list, tuple)) else [value]
    items = [x for v in items for x in (v if isinstance(v, (list, tuple)) else [v])]
    return bool(items) and all(
        isinstance(x, (int, float)) and not isinstance(x, bool) for x in items
    )


def test_every_numeric_key_has_a_domain():
    """So a new count or threshold cannot be added without saying which values it takes."""
    numeric = {key for key, value in LEAVES.items() if _is_numeric(value)}
    numeric.add("TEST_SCALES")  # a list of pairs, empty by default
    assert numeric - set(DOMAINS) == set()


@pytest.mark.parametrize("arch", sorted(ARCH_DEFAULTS))
def test_defaults_satisfy_their_domains(arch):
    cfg = default_config(arch)
    for key, domain in DOMAINS.items():
        assert domain.check(get(cfg, key)), (key, get(cfg, key), domain.describe())
    for rule in RULES:
        assert rule.holds(*(get(cfg, k) for k in rule.keys)), rule.expected
    check_config(cfg, arch=arch)


@pytest.mark.parametrize(
    "domain, text",
    [
        (Int(min=1), "an integer >= 1"),
        (Int(min=-1, note="-1 or 0: no limit"), "an integer >= -1 (-1 or 0: no limit)"),
        (Int(min=1, also=(-1,), note="all"), "an integer >= 1, or -1 (all)"),
        (Int(), "an integer"),
        (Num(min=0), "a number >= 0"),
        (Num(above=0), "a number > 0"),
        (Num(min=0, max=1), "a number in [0, 1]"),
        (Num(min=0, below=1), "a number in [0, 1)"),
        (Num(above=0, max=1), "a number in (0, 1]"),
        (Num(max=0.5), "a number <= 0.5"),
        (Num(), "a finite number"),
        (Each(Int(min=1)), "integers >= 1"),
        (Each(Num()), "finite numbers"),
        (OneOf(("a", "b")), "'a' or 'b'"),
        (OneOf(("a", "b", "c")), "one of 'a', 'b', 'c'"),
        (Each(Words("non-empty strings")), "non-empty strings"),
    ],
)
def test_domain_descriptions(domain, text):
    assert domain.describe() == text


# Representative bad values of each kind of domain: (override, key, expected text, got text).
BAD_VALUES = [
    # counts
    ("TRAIN.BATCH_IMAGES=0", "TRAIN.BATCH_IMAGES", "an integer >= 1", "0"),
    ("TEST.BATCH_IMAGES=-1", "TEST.BATCH_IMAGES", "an integer >= 1", "-1"),
    ("default.frequent=0", "default.frequent", "an integer >= 1", "0"),
    ("cpu_contexts=0", "cpu_contexts", "an integer >= 1", "0"),
    ("TRAIN.RPN_POST_NMS_TOP_N=0", "TRAIN.RPN_POST_NMS_TOP_N", "an integer >= 1", "0"),
    ("TRAIN.RPN_BATCH_SIZE=-1", "TRAIN.RPN_BATCH_SIZE", "an integer >= 1", "-1"),
    ("TRAIN.CROP_WIDTH=0", "TRAIN.CROP_WIDTH", "an integer >= 1", "0"),
    ("dataset.NUM_CLASSES=1", "dataset.NUM_CLASSES", "an integer >= 2", "1"),
    # non-negative integers
    ("TRAIN.end_epoch=-1", "TRAIN.end_epoch", "an integer >= 0", "-1"),
    ("TEST.test_epoch=-2", "TEST.test_epoch", "an integer >= 0", "-2"),
    ("network.IMAGE_STRIDE=-32", "network.IMAGE_STRIDE", "an integer >= 0", "-32"),
    ("TRAIN.RPN_MIN_SIZE=-1", "TRAIN.RPN_MIN_SIZE", "an integer >= 0", "-1"),
    # counts with a "no limit" / "all" value
    ("TEST.RPN_PRE_NMS_TOP_N=-2", "TEST.RPN_PRE_NMS_TOP_N", "an integer >= -1 (-1 or 0: no "
     "limit)", "-2"),
    ("TEST.max_per_image=-5", "TEST.max_per_image", "an integer >= -1 (-1 or 0: no limit)", "-5"),
    ("TRAIN.BATCH_ROIS=0", "TRAIN.BATCH_ROIS", "an integer >= 1, or -1 (every proposal and gt "
     "box)", "0"),
    ("TRAIN.BATCH_ROIS=-2", "TRAIN.BATCH_ROIS", "an integer >= 1, or -1", "-2"),
    # rates
    ("TRAIN.lr=-1", "TRAIN.lr", "a number >= 0", "-1.0"),
    ("TRAIN.lr=.nan", "TRAIN.lr", "a number >= 0", "nan"),
    ("TRAIN.lr=.inf", "TRAIN.lr", "a number >= 0", "inf"),
    ("TRAIN.wd=-0.0001", "TRAIN.wd", "a number >= 0", "-0.0001"),
    ("TRAIN.warmup_lr=-0.1", "TRAIN.warmup_lr", "a number >= 0", "-0.1"),
    ("TRAIN.ALTERNATE.rpn2_lr=-1", "TRAIN.ALTERNATE.rpn2_lr", "a number >= 0", "-1.0"),
    ("TRAIN.lr_factor=0", "TRAIN.lr_factor", "a number in (0, 1]", "0.0"),
    ("TRAIN.lr_factor=10", "TRAIN.lr_factor", "a number in (0, 1]", "10.0"),
    ("TRAIN.momentum=1", "TRAIN.momentum", "a number in [0, 1)", "1.0"),
    # fractions and IoU thresholds
    ("TEST.NMS=2", "TEST.NMS", "a number in [0, 1]", "2.0"),
    ("TRAIN.FG_FRACTION=-0.25", "TRAIN.FG_FRACTION", "a number in [0, 1]", "-0.25"),
    ("TRAIN.RPN_NMS_THRESH=1.01", "TRAIN.RPN_NMS_THRESH", "a number in [0, 1]", "1.01"),
    ("TRAIN.BBOX_REGRESSION_THRESH=-1", "TRAIN.BBOX_REGRESSION_THRESH", "a number in [0, 1]",
     "-1.0"),
    ("TRAIN.RPN_POSITIVE_WEIGHT=-0.5", "TRAIN.RPN_POSITIVE_WEIGHT", "a number in [0, 1], or -1 "
     "(uniform)", "-0.5"),
    ("TEST.SOFTNMS_THRESH=0", "TEST.SOFTNMS_THRESH", "a number > 0", "0.0"),
    # sequences
    ("TEST_SCALES=[[0, 0]]", "TEST_SCALES", "integers >= 1", "[[0, 0]]"),
    ("SCALES=[600, -1000]", "SCALES", "integers >= 1", "[[600, -1000]]"),
    ("network.RPN_FEAT_STRIDE=0", "network.RPN_FEAT_STRIDE", "integers >= 1", "0"),
    ("network.RPN_FEAT_STRIDE=[4, 0]", "network.RPN_FEAT_STRIDE", "integers >= 1", "[4, 0]"),
    ("network.ANCHOR_RATIOS=[0.5, 0, 2]", "network.ANCHOR_RATIOS", "numbers > 0", "[0.5, 0, 2]"),
    ("network.ANCHOR_SCALES=[8, -16, 32]", "network.ANCHOR_SCALES", "numbers > 0",
     "[8, -16, 32]"),
    ("TRAIN.BBOX_STDS=[0.1, 0.1, 0, 0.2]", "TRAIN.BBOX_STDS", "numbers > 0",
     "[0.1, 0.1, 0.0, 0.2]"),
    ("TRAIN.BBOX_WEIGHTS=[1, -1, 1, 1]", "TRAIN.BBOX_WEIGHTS", "numbers >= 0",
     "[1.0, -1.0, 1.0, 1.0]"),
    ("network.PIXEL_MEANS=[1, .nan, 2]", "network.PIXEL_MEANS", "finite numbers",
     "[1.0, nan, 2.0]"),
    ("network.FIXED_PARAMS=[conv1, '']", "network.FIXED_PARAMS", "non-empty strings",
     "['conv1', '']"),
    # strings with a form
    ("TEST.SOFTNMS_METHOD=hard", "TEST.SOFTNMS_METHOD", "'gaussian' or 'linear'", "'hard'"),
    ("TRAIN.lr_step=four", "TRAIN.lr_step", "comma-separated increasing epochs > 0", "'four'"),
    ("TRAIN.lr_step=6,4", "TRAIN.lr_step", "comma-separated increasing epochs > 0", "'6,4'"),
    ("TRAIN.lr_step=0", "TRAIN.lr_step", "comma-separated increasing epochs > 0", "'0'"),
    ("TRAIN.ALTERNATE.rfcn1_lr_step=x", "TRAIN.ALTERNATE.rfcn1_lr_step",
     "comma-separated increasing epochs > 0", "'x'"),
    ("gpus=0,0", "gpus", "comma-separated distinct GPU ids >= 0", "'0,0'"),
    ("gpus=-1", "gpus", "comma-separated distinct GPU ids >= 0", "'-1'"),
    ("gpus=a", "gpus", "comma-separated distinct GPU ids >= 0", "'a'"),
]  # fmt: skip


@pytest.mark.parametrize("override, key, expected, got", BAD_VALUES, ids=[b[0] for b in BAD_VALUES])
def test_values_out_of_their_domain_are_rejected(override, key, expected, got):
    path = cfg_path("rfcn", "rfcn_coco_demo.yaml")
    pattern = (
        rf"^bad value for config key {re.escape(key)} in --set {re.escape(override)}: "
        rf"expected {re.escape(expected)}.*, got {re.escape(got)}$"
    )
    with pytest.raises(ValueError, match=pattern):
        load_config(path, [override])


def test_the_reported_values_are_rejected_with_their_range():
    """The reported cases, word for word."""
    path = cfg_path("rfcn", "rfcn_coco_demo.yaml")
    cases = {
        "TRAIN.BATCH_IMAGES=0": "TRAIN.BATCH_IMAGES in --set TRAIN.BATCH_IMAGES=0: expected an "
        "integer >= 1, got 0",
        "TRAIN.lr=-1": "TRAIN.lr in --set TRAIN.lr=-1: expected a number >= 0, got -1.0",
        "TEST.NMS=2": "TEST.NMS in --set TEST.NMS=2: expected a number in [0, 1], got 2.0",
        "TEST_SCALES=[[0, 0]]": "TEST_SCALES in --set TEST_SCALES=[[0, 0]]: expected integers "
        ">= 1, got [[0, 0]]",
    }
    for override, message in cases.items():
        with pytest.raises(ValueError) as info:
            load_config(path, [override])
        assert str(info.value) == f"bad value for config key {message}"


def test_a_bad_value_in_the_yaml_names_the_yaml(tmp_path):
    path = write_yaml(tmp_path, "symbol: x\nTRAIN:\n  BATCH_IMAGES: 0\n", "bad.yaml")
    # an unrelated override does not change where the bad value was set
    with pytest.raises(ValueError, match=r"key TRAIN\.BATCH_IMAGES in .*bad\.yaml: expected an"):
        load_config(path, ["TRAIN.lr=0.1"])
    # a later override fixes it
    assert load_config(path, ["TRAIN.BATCH_IMAGES=1"]).TRAIN.BATCH_IMAGES == 1


# Boundary values: accepted.
BOUNDARIES = [
    ["TRAIN.BATCH_IMAGES=1", "TEST.BATCH_IMAGES=1", "cpu_contexts=1", "default.frequent=1"],
    ["TRAIN.FG_FRACTION=0", "TRAIN.RPN_FG_FRACTION=0", "TEST.NMS=0", "TRAIN.RPN_NMS_THRESH=0"],
    ["TRAIN.FG_FRACTION=1", "TRAIN.RPN_FG_FRACTION=1", "TEST.NMS=1", "TRAIN.RPN_NMS_THRESH=1"],
    ["TRAIN.lr=0", "TRAIN.wd=0", "TRAIN.momentum=0", "TRAIN.lr_factor=1", "TRAIN.warmup_lr=0"],
    ["TRAIN.RPN_PRE_NMS_TOP_N=-1", "TEST.RPN_PRE_NMS_TOP_N=0", "TEST.max_per_image=0",
     "TEST.PROPOSAL_PRE_NMS_TOP_N=1", "TRAIN.RPN_POST_NMS_TOP_N=1", "TEST.RPN_MIN_SIZE=0"],
    ["TEST.max_per_image=-1", "TEST.PROPOSAL_PRE_NMS_TOP_N=-1"],
    ["TRAIN.BATCH_ROIS=-1", "TRAIN.BATCH_IMAGES=3"],
    ["TRAIN.BATCH_ROIS=1", "TRAIN.BATCH_IMAGES=1"],
    ["TRAIN.BATCH_ROIS=6", "TRAIN.BATCH_IMAGES=3"],
    ["TRAIN.BG_THRESH_LO=0.5", "TRAIN.BG_THRESH_HI=0.5", "TRAIN.FG_THRESH=0.5"],
    ["TRAIN.BG_THRESH_LO=0", "TRAIN.BG_THRESH_HI=1", "TRAIN.FG_THRESH=1"],
    ["TRAIN.RPN_NEGATIVE_OVERLAP=0.7", "TRAIN.RPN_POSITIVE_OVERLAP=0.7"],
    ["TRAIN.begin_epoch=0", "TRAIN.end_epoch=0", "TEST.test_epoch=0"],
    ["TRAIN.begin_epoch=8", "TRAIN.end_epoch=8"],
    ["TEST.SOFTNMS_METHOD=linear", "TEST.SOFTNMS_THRESH=1"],
    ["TEST.SOFTNMS_METHOD=gaussian", "TEST.SOFTNMS_THRESH=2.5"],
    ["SCALES=[1, 1]", "TEST_SCALES=[]", "network.IMAGE_STRIDE=0", "network.RPN_FEAT_STRIDE=1"],
    ["network.ANCHOR_SCALES=[0.5]", "network.ANCHOR_RATIOS=[1]", "network.NUM_ANCHORS=1"],
    ["dataset.NUM_CLASSES=2", "TRAIN.RPN_POSITIVE_WEIGHT=0", "TRAIN.BBOX_WEIGHTS=[0, 0, 0, 0]"],
    ["TRAIN.RPN_POSITIVE_WEIGHT=1", "network.PIXEL_MEANS=[-1, 0, 1000.5]"],
    ["TRAIN.lr_step=''", "gpus=''", "network.FIXED_PARAMS=[]"],
    ["TRAIN.lr_step=0.5", "gpus=3", "TRAIN.ALTERNATE.rpn1_lr_step='1, 2.5'"],
    ["TRAIN.lr_step=4,6", "gpus=1, 0", "TRAIN.ALTERNATE.RPN_BATCH_IMAGES=0"],
]  # fmt: skip


@pytest.mark.parametrize("overrides", BOUNDARIES, ids=[" ".join(b) for b in BOUNDARIES])
def test_boundary_values_are_accepted(overrides):
    cfg = load_config(cfg_path("rfcn", "rfcn_coco_demo.yaml"), overrides)
    for item in overrides:
        key, _, text = item.partition("=")
        value = yaml.safe_load(text)
        got = get(cfg, key)
        if isinstance(got, str):
            assert got == ("" if value is None else str(value)), key
        elif isinstance(got, (float, int)):
            assert got == value, key


RULE_CASES = [
    (["TRAIN.BATCH_ROIS=128", "TRAIN.BATCH_IMAGES=3"], "TRAIN.BATCH_ROIS",
     "-1 or a multiple of TRAIN.BATCH_IMAGES", "TRAIN.BATCH_ROIS=128, TRAIN.BATCH_IMAGES=3"),
    (["TRAIN.BG_THRESH_LO=0.3", "TRAIN.BG_THRESH_HI=0.2"], "TRAIN.BG_THRESH_LO",
     "TRAIN.BG_THRESH_LO <= TRAIN.BG_THRESH_HI", "TRAIN.BG_THRESH_LO=0.3, TRAIN.BG_THRESH_HI=0.2"),
    (["TRAIN.BG_THRESH_HI=0.6"], "TRAIN.BG_THRESH_HI", "TRAIN.BG_THRESH_HI <= TRAIN.FG_THRESH",
     "TRAIN.BG_THRESH_HI=0.6, TRAIN.FG_THRESH=0.5"),
    (["TRAIN.RPN_NEGATIVE_OVERLAP=0.8"], "TRAIN.RPN_NEGATIVE_OVERLAP",
     "TRAIN.RPN_NEGATIVE_OVERLAP <= TRAIN.RPN_POSITIVE_OVERLAP",
     "TRAIN.RPN_NEGATIVE_OVERLAP=0.8, TRAIN.RPN_POSITIVE_OVERLAP=0.7"),
    (["network.NUM_ANCHORS=9"], "network.NUM_ANCHORS", "len(ANCHOR_SCALES) * len(ANCHOR_RATIOS)",
     "network.NUM_ANCHORS=9, network.ANCHOR_SCALES=[4, 8, 16, 32], "
     "network.ANCHOR_RATIOS=[0.5, 1, 2]"),
    (["TEST.SOFTNMS_METHOD=linear", "TEST.SOFTNMS_THRESH=1.5"], "TEST.SOFTNMS_THRESH",
     "an IoU <= 1 for TEST.SOFTNMS_METHOD 'linear'",
     "TEST.SOFTNMS_THRESH=1.5, TEST.SOFTNMS_METHOD='linear'"),
]  # fmt: skip


@pytest.mark.parametrize("overrides, key, expected, got", RULE_CASES,
                         ids=[c[1] for c in RULE_CASES])  # fmt: skip
def test_inconsistent_keys_are_rejected(overrides, key, expected, got):
    path = cfg_path("rfcn", "rfcn_coco_demo.yaml")
    pattern = (
        rf"^bad value for config key {re.escape(key)} in .*rfcn_coco_demo\.yaml with overrides: "
        rf"expected {re.escape(expected)}, got {re.escape(got)}$"
    )
    with pytest.raises(ValueError, match=pattern):
        load_config(path, overrides)


def test_check_config_checks_a_config_changed_in_code():
    cfg = load_config(cfg_path("rfcn", "rfcn_coco_demo.yaml"))
    check_config(cfg)
    cfg.TRAIN.BATCH_IMAGES = 0
    with pytest.raises(ValueError, match=r"TRAIN\.BATCH_IMAGES in <config>: expected an integer"):
        check_config(cfg)
    cfg.TRAIN.BATCH_IMAGES = 2
    cfg.TRAIN.BATCH_ROIS = 127
    with pytest.raises(ValueError, match=r"TRAIN\.BATCH_ROIS in my run: expected -1 or a multi"):
        check_config(cfg, "my run")
