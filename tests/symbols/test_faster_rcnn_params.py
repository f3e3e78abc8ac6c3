"""The Faster R-CNN gate: our symbols against the original networks, name by name and shape by
shape (plain and deformable, COCO and VOC, train and test), the released checkpoints, the
ImageNet backbone and the inspector."""

import json

import mxnet as mx
import numpy as np
import pytest

from faster_rcnn.symbols import SYMBOLS, FasterRCNN, get_network
from lib.config import load_config
from lib.core.checkpoint import RCNN_BBOX_PRED
from lib.core.trainer import initial_params
from lib.tools import inspect_model
from tests.symbols import gate
from tests.symbols.gate import REPO, backbone_only, save_reference_params

CFG_DIR = REPO / "experiments/faster_rcnn/cfgs"
CASES = [
    f"{net}{voc}__{phase}"
    for net in ("resnet_v1_101_rcnn", "resnet_v1_101_rcnn_dcn")
    for voc in ("", "__voc")
    for phase in ("train", "test")
]


def load_case(case):
    return gate.load_case(case, get_network)


@pytest.mark.parametrize("case", CASES)
def test_params_and_outputs_match_original(case):
    ref, sym, _ = load_case(case)
    gate.check_params_and_outputs(ref, sym)


@pytest.mark.parametrize("case", CASES)
def test_layer_attributes_match_original(case):
    ref, sym, _ = load_case(case)
    names = {layer["name"] for layer in ref["special_ops"]}
    assert ({"offset_t", "offset", "deformable_roi_pool"} <= names) == ("dcn" in case)
    assert ("roi_pool" in names) == ("dcn" not in case)
    gate.check_layer_attributes(ref, sym)


@pytest.mark.parametrize("name", sorted(SYMBOLS))
def test_every_registered_network_builds(name):
    """The CPU networks share the builder: same layer names, other depths and widths."""
    cfg = load_config(CFG_DIR / "synthetic_rcnn.yaml", [f"symbol={name}"])
    net = get_network(name)
    test_sym = net(cfg, is_train=False)
    _, out_shapes, _ = test_sym.infer_shape(data=(1, 3, 128, 160), im_info=(1, 3))
    rois, num_classes = cfg.TEST.RPN_POST_NMS_TOP_N, cfg.dataset.NUM_CLASSES
    assert out_shapes == [(rois, 5), (1, rois, num_classes), (1, rois, 4 * num_classes)]
    names = test_sym.list_arguments()
    assert set(names) - {"im_info"} <= set(net(cfg, is_train=True).list_arguments())
    assert ("offset_weight" in names) == net.deformable_roi_pool
    assert ("res5a_branch2b_offset_weight" in names) == net.deformable
    assert {50: "res4b5_branch2a_weight", 101: "res4b22_branch2a_weight"}[net.depth] in names
    assert net.bbox_pred_spec == RCNN_BBOX_PRED and net.task == "detection"


def test_test_symbol_with_given_proposals():
    """TEST.HAS_RPN off: no RPN, a ``rois`` input (B, R, 5), the same head parameters."""
    cfg = load_config(CFG_DIR / "synthetic_rcnn_dcn.yaml", ["TEST.HAS_RPN=false"])
    net = get_network(cfg.symbol)
    sym = net(cfg, is_train=False)
    names = sym.list_arguments()
    assert "rois" in names and "im_info" not in names
    assert not any(n.startswith("rpn_") for n in names)
    _, out_shapes, _ = sym.infer_shape(data=(1, 3, 128, 160), rois=(1, 17, 5))
    num_classes = cfg.dataset.NUM_CLASSES
    assert sym.list_outputs() == ["cls_prob_reshape_output", "bbox_pred_reshape_output"]
    assert out_shapes == [(1, 17, num_classes), (1, 17, 4 * num_classes)]


def test_unknown_network_is_reported():
    with pytest.raises(ValueError, match="unknown Faster R-CNN symbol 'resnet_v1_18_rcnn'"):
        get_network("resnet_v1_18_rcnn")
    assert isinstance(SYMBOLS["resnet_v1_101_rcnn_dcn"], FasterRCNN)


# ------------------------------------------------------------------------------ checkpoints


@pytest.mark.parametrize("network", ["rcnn_dcn_coco", "rcnn_coco"])
def test_released_checkpoint_loads_by_name(network, tmp_path):
    """model/<network>-0000.params: all reference params plus the *_test bbox weights."""
    case = "resnet_v1_101_rcnn_dcn__test" if "dcn" in network else "resnet_v1_101_rcnn__test"
    ref, sym, _ = load_case(case)
    arg_params = gate.check_released_checkpoint(tmp_path, ref, sym, network, "bbox_pred")
    index = [n for n, _ in ref["arg_params"]].index("fc_new_1_weight")
    assert float(arg_params["fc_new_1_weight"][0, 0].asscalar()) == index


def test_imagenet_backbone_loads_by_name(tmp_path):
    """pretrained resnet_v1_101-0000.params: the backbone; new layers from the init rules."""
    ref, _, _ = load_case("resnet_v1_101_rcnn_dcn__train")
    prefix = tmp_path / "resnet_v1_101"
    saved = save_reference_params(
        f"{prefix}-0000.params", backbone_only(ref), [("arg:fc1000_weight", (1000, 2048), 7.0)]
    )
    cfg = load_config(REPO / ref["config"], [f"network.pretrained={prefix}"])
    net = get_network(cfg.symbol)
    inputs = {k: tuple(v) for k, v in ref["input_shapes"].items()}
    arg_params, aux_params = initial_params(cfg, net, net(cfg, is_train=True), inputs)

    assert sorted(arg_params) == sorted(n for n, _ in ref["arg_params"])
    np.testing.assert_array_equal(
        arg_params["res4b22_branch2c_weight"].asnumpy(),
        saved["arg:res4b22_branch2c_weight"].asnumpy(),
    )
    # offsets zero (the deformable layers start as plain ones), FCs N(0, 0.01), biases zero
    for name in ("res5a_branch2b_offset_weight", "offset_weight", "offset_bias", "fc_new_1_bias"):
        assert not arg_params[name].asnumpy().any(), name
    for name in ("fc_new_1_weight", "cls_score_weight", "conv_new_1_weight"):
        assert 0.009 < float(arg_params[name].asnumpy().std()) < 0.011, name


@pytest.mark.parametrize("cfg_name", sorted(p.name for p in CFG_DIR.glob("*.yaml")))
@pytest.mark.parametrize("train", [False, True], ids=["test", "train"])
def test_inspector_works_on_every_config(cfg_name, train, capsys):
    argv = ["--cfg", str(CFG_DIR / cfg_name)] + (["--train"] if train else [])
    assert inspect_model.main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    cfg = load_config(CFG_DIR / cfg_name)
    num_classes = cfg.dataset.NUM_CLASSES
    assert report["arg_params"]["cls_score_weight"][0] == num_classes
    assert report["arg_params"]["bbox_pred_weight"][0] == 4 * num_classes
    if cfg_name.startswith("resnet_v1_101"):
        phase = "train" if train else "test"
        voc = "__voc" if "voc" in cfg_name else ""
        ref, _, _ = load_case(f"{cfg.symbol}{voc}__{phase}")
        assert report["arg_params"] == {n: s for n, s in ref["arg_params"]}
        assert report["outputs"] == ref["output_names"]


def test_inspector_checks_a_checkpoint(tmp_path, capsys):
    ref, _, _ = load_case("resnet_v1_101_rcnn_dcn__test")
    cfg_path = str(CFG_DIR / "resnet_v1_101_coco_trainval_rcnn_dcn_end2end.yaml")
    shapes = dict(ref["arg_params"])
    good = tmp_path / "rcnn_dcn_coco-0000.params"
    save_reference_params(good, ref, [("arg:bbox_pred_weight_test", shapes["bbox_pred_weight"], 0)])
    assert inspect_model.main(["--cfg", cfg_path, "--params", str(good)]) == 0
    check = json.loads(capsys.readouterr().out)["checkpoint"]
    assert check["test_params"] == ["arg:bbox_pred_weight_test"] and not check["missing"]

    bad = mx.nd.load(str(good))
    del bad["arg:offset_bias"]
    mx.nd.save(str(tmp_path / "bad.params"), bad)
    assert inspect_model.main(["--cfg", cfg_path, "--params", str(tmp_path / "bad.params")]) == 1
    assert json.loads(capsys.readouterr().out)["checkpoint"]["missing"] == ["arg:offset_bias"]
