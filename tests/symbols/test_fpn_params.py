"""The FPN gate: our symbols against the original networks, name by name and shape by shape
(plain and deformable, train and test), the released checkpoints, the ImageNet backbone, the
CPU networks of the same builder and the inspector on every FPN config."""

import json

import mxnet as mx
import numpy as np
import pytest

from fpn.symbols import FPN, SYMBOLS, get_network
from lib.config import load_config
from lib.core.checkpoint import RCNN_BBOX_PRED
from lib.core.trainer import initial_params
from lib.tools import inspect_model
from tests.symbols import gate
from tests.symbols.gate import REPO, backbone_only, save_reference_params

CFG_DIR = REPO / "experiments/fpn/cfgs"
CASES = [
    f"{net}__{phase}"
    for net in ("resnet_v1_101_fpn_rcnn", "resnet_v1_101_fpn_dcn_rcnn")
    for phase in ("train", "test")
]
LEVELS = ("p2", "p3", "p4", "p5")


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
    assert {"fpn_p5_upsample", "fpn_p6", "rois", "fpn_roi_pooling", "rpn_cls_prob_p6"} <= names
    gate.check_layer_attributes(ref, sym)


@pytest.mark.parametrize("name", sorted(SYMBOLS))
def test_every_registered_network_builds(name):
    """The CPU networks share the builder: same layer names, other depths and widths; the
    deformable units at the original's positions for every depth."""
    cfg = load_config(CFG_DIR / "synthetic_fpn.yaml", [f"symbol={name}"])
    net = get_network(name)
    test_sym = net(cfg, is_train=False)
    _, out_shapes, _ = test_sym.infer_shape(data=(1, 3, 128, 192), im_info=(1, 3))
    rois, num_classes = cfg.TEST.RPN_POST_NMS_TOP_N, cfg.dataset.NUM_CLASSES
    assert out_shapes == [(rois, 5), (1, rois, num_classes), (1, rois, 4 * num_classes)]
    names = test_sym.list_arguments()
    assert set(names) - {"im_info"} <= set(net(cfg, is_train=True).list_arguments())
    assert ("offset_p2_weight" in names) == net.deformable_roi_pool
    last_res4 = {50: "res4b5", 101: "res4b22"}[net.depth]
    assert (f"{last_res4}_branch2b_offset_weight" in names) == net.deformable
    assert ("res3b3_branch2b_offset_weight" in names) == net.deformable
    assert ("res4b4_branch2b_offset_weight" in names) is False
    assert net.bbox_pred_spec == RCNN_BBOX_PRED and net.task == "detection"
    assert net.average_gradients


def test_pyramid_levels_and_the_rpn_shared_over_them():
    cfg = load_config(CFG_DIR / "synthetic_fpn.yaml")
    sym = get_network(cfg.symbol)(cfg, is_train=True)
    internals = sym.get_internals()
    scores = mx.sym.Group([internals[f"rpn_cls_score_p{i}_output"] for i in range(2, 7)])
    _, shapes, _ = scores.infer_shape(data=(1, 3, 256, 384))
    assert shapes == [(1, 6, 64, 96), (1, 6, 32, 48), (1, 6, 16, 24), (1, 6, 8, 12), (1, 6, 4, 6)]
    # one set of RPN weights for every level
    assert [n for n in sym.list_arguments() if n.startswith("rpn_")] == [
        "rpn_conv_weight", "rpn_conv_bias", "rpn_cls_score_weight", "rpn_cls_score_bias",
        "rpn_bbox_pred_weight", "rpn_bbox_pred_bias",
    ]  # fmt: skip


def test_config_must_match_the_pyramid():
    cfg = load_config(CFG_DIR / "synthetic_fpn.yaml", ["network.RPN_FEAT_STRIDE=16"])
    with pytest.raises(ValueError, match=r"RPN_FEAT_STRIDE is 16, .* strides \[4, 8, 16, 32, 64\]"):
        get_network(cfg.symbol)(cfg, is_train=True)
    cfg = load_config(CFG_DIR / "synthetic_fpn.yaml", ["network.IMAGE_STRIDE=16"])
    with pytest.raises(ValueError, match="IMAGE_STRIDE is 16, .* multiple of 32"):
        get_network(cfg.symbol)(cfg, is_train=False)


def test_test_symbol_with_given_proposals():
    """TEST.HAS_RPN off: no RPN, a ``rois`` input (B, R, 5), the same head parameters."""
    cfg = load_config(CFG_DIR / "synthetic_fpn_dcn.yaml", ["TEST.HAS_RPN=false"])
    sym = get_network(cfg.symbol)(cfg, is_train=False)
    names = sym.list_arguments()
    assert "rois" in names and "im_info" not in names
    assert not any(n.startswith("rpn_") for n in names)
    _, out_shapes, _ = sym.infer_shape(data=(1, 3, 128, 160), rois=(1, 17, 5))
    num_classes = cfg.dataset.NUM_CLASSES
    assert out_shapes == [(1, 17, num_classes), (1, 17, 4 * num_classes)]


def test_unknown_network_is_reported():
    with pytest.raises(ValueError, match="unknown FPN symbol 'resnet_v1_18_fpn_rcnn'"):
        get_network("resnet_v1_18_fpn_rcnn")
    assert isinstance(SYMBOLS["resnet_v1_101_fpn_dcn_rcnn"], FPN)


# ------------------------------------------------------------------------------ checkpoints


@pytest.mark.parametrize("network", ["fpn_dcn_coco", "fpn_coco"])
def test_released_checkpoint_loads_by_name(network, tmp_path):
    """model/<network>-0000.params: all reference params plus the *_test bbox weights."""
    case = (
        "resnet_v1_101_fpn_dcn_rcnn__test" if "dcn" in network else "resnet_v1_101_fpn_rcnn__test"
    )
    ref, sym, _ = load_case(case)
    arg_params = gate.check_released_checkpoint(tmp_path, ref, sym, network, "bbox_pred")
    index = [n for n, _ in ref["arg_params"]].index("fpn_p2_1x1_weight")
    assert float(arg_params["fpn_p2_1x1_weight"][0, 0, 0, 0].asscalar()) == index


def test_imagenet_backbone_loads_by_name(tmp_path):
    """pretrained resnet_v1_101-0000.params: the backbone; new layers from the init rules."""
    ref, _, _ = load_case("resnet_v1_101_fpn_dcn_rcnn__train")
    prefix = tmp_path / "resnet_v1_101"
    saved = save_reference_params(
        f"{prefix}-0000.params", backbone_only(ref), [("arg:fc1000_weight", (1000, 2048), 7.0)]
    )
    cfg = load_config(REPO / ref["config"], [f"network.pretrained={prefix}"])
    net = get_network(cfg.symbol)
    inputs = {k: tuple(v) for k, v in ref["input_shapes"].items()}
    arg_params, _ = initial_params(cfg, net, net(cfg, is_train=True), inputs)

    assert sorted(arg_params) == sorted(n for n, _ in ref["arg_params"])
    np.testing.assert_array_equal(
        arg_params["res4b22_branch2c_weight"].asnumpy(),
        saved["arg:res4b22_branch2c_weight"].asnumpy(),
    )
    # offsets zero (the deformable layers start as plain ones), new layers N(0, 0.01), biases 0
    for name in ("res3b3_branch2b_offset_weight", "offset_p2_weight", "offset_p5_bias",
                 "fpn_p2_bias", "rpn_conv_bias"):  # fmt: skip
        assert not arg_params[name].asnumpy().any(), name
    for name in ("fpn_p2_weight", "fpn_p6_weight", "rpn_conv_weight", "fc_new_1_weight"):
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
        ref, _, _ = load_case(f"{cfg.symbol}__{'train' if train else 'test'}")
        assert report["arg_params"] == {n: s for n, s in ref["arg_params"]}
        assert report["outputs"] == ref["output_names"]
