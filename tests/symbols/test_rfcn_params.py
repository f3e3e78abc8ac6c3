"""The R-FCN gate: our symbols against the original networks, name by name and shape by shape.

``expected/<network>[__voc]__<train|test>.json`` were copied from the reference dumps of the
original code (see their ``source`` key): inputs, ``list_arguments()`` order, parameter and aux
shapes, outputs, the attributes of the non-trivial layers and the variable attributes
(``lr_mult``). Every R-FCN variant is checked: plain and deformable, COCO and VOC, train and test.
"""

import json

import mxnet as mx
import numpy as np
import pytest

from lib.config import load_config
from lib.core.trainer import initial_params
from lib.tools import inspect_model
from rfcn.symbols import SYMBOLS, get_network
from tests.symbols import gate
from tests.symbols.gate import REPO, backbone_only, save_reference_params

CASES = [
    f"{net}{voc}__{phase}"
    for net in ("resnet_v1_101_rfcn", "resnet_v1_101_rfcn_dcn")
    for voc in ("", "__voc")
    for phase in ("train", "test")
] + [
    f"{demo}__{phase}"
    for demo in ("deform_conv_demo", "deform_psroi_demo")
    for phase in ("train", "test")
]


def load_case(case):
    # The references are the original get_symbol (RPN included) whatever TEST.HAS_RPN says
    # (deform_psroi_demo.yaml turns it off for its demo, which feeds rois instead).
    return gate.load_case(case, get_network, ["TEST.HAS_RPN=true"])


@pytest.mark.parametrize("case", CASES)
def test_params_and_outputs_match_original(case):
    ref, sym, _ = load_case(case)
    gate.check_params_and_outputs(ref, sym)


@pytest.mark.parametrize("case", CASES)
def test_layer_attributes_match_original(case):
    ref, sym, _ = load_case(case)
    gate.check_layer_attributes(ref, sym, exact_mults=False)


@pytest.mark.parametrize("name", sorted(SYMBOLS))
def test_every_registered_network_builds(name):
    """Smaller networks share the builder: same layer names, other widths and depths."""
    cfg = load_config(REPO / "experiments/rfcn/cfgs/synthetic_rfcn.yaml", [f"symbol={name}"])
    net = get_network(name)
    shapes = {"data": (1, 3, 128, 160), "im_info": (1, 3)}
    test_sym = net(cfg, is_train=False)
    _, out_shapes, _ = test_sym.infer_shape(**shapes)
    rois = cfg.TEST.RPN_POST_NMS_TOP_N
    assert out_shapes[-3:] == [(rois, 5), (1, rois, 5), (1, rois, 8)]
    train_args = set(net(cfg, is_train=True).list_arguments())
    assert set(test_sym.list_arguments()) - {"im_info"} <= train_args
    names = test_sym.list_arguments()
    assert ("rfcn_cls_offset_t_weight" in names) == net.deformable_psroi
    assert net.deformable == ("res5a_branch2b_offset_weight" in names or net.deformable_psroi)
    depth_units = {50: "res4b5_branch2a_weight", 101: "res4b22_branch2a_weight"}
    assert depth_units[net.depth] in names
    assert net.bbox_pred_spec.spatial_repeat == net.group_size**2


def test_unknown_network_is_reported():
    with pytest.raises(ValueError, match="unknown R-FCN symbol 'resnet_v1_18_rfcn'"):
        get_network("resnet_v1_18_rfcn")


# ------------------------------------------------------------------------------ checkpoints


@pytest.mark.parametrize("network", ["rfcn_dcn_coco", "rfcn_coco"])
def test_released_checkpoint_loads_by_name(network, tmp_path):
    """model/<network>-0000.params: all reference params plus the *_test bbox weights."""
    case = "resnet_v1_101_rfcn_dcn__test" if "dcn" in network else "resnet_v1_101_rfcn__test"
    ref, sym, _ = load_case(case)
    gate.check_released_checkpoint(tmp_path, ref, sym, network, "rfcn_bbox")


def test_inspector_checks_a_checkpoint(tmp_path, capsys):
    ref, _, _ = load_case("resnet_v1_101_rfcn_dcn__test")
    cfg_path = str(REPO / ref["config"])
    good = tmp_path / "good.params"
    shapes = dict(ref["arg_params"])
    save_reference_params(
        good, ref, [("arg:rfcn_bbox_weight_test", shapes["rfcn_bbox_weight"], 0.0)]
    )
    assert inspect_model.main(["--cfg", cfg_path, "--params", str(good)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["arg_params"] == {n: s for n, s in ref["arg_params"]}
    assert report["aux_params"] == {n: s for n, s in ref["aux_params"]}
    assert report["outputs"] == ref["output_names"]
    assert report["checkpoint"]["test_params"] == ["arg:rfcn_bbox_weight_test"]

    bad = mx.nd.load(str(good))
    del bad["arg:rfcn_cls_offset_t_bias"]
    bad["arg:fc1000_weight"] = mx.nd.zeros((1000, 2048))
    bad["aux:bn_conv1_moving_var"] = mx.nd.zeros((32,))
    mx.nd.save(str(tmp_path / "bad.params"), bad)
    assert inspect_model.main(["--cfg", cfg_path, "--params", str(tmp_path / "bad.params")]) == 1
    check = json.loads(capsys.readouterr().out)["checkpoint"]
    assert check["missing"] == ["arg:rfcn_cls_offset_t_bias"]
    assert check["unexpected"] == ["arg:fc1000_weight"]
    assert check["mismatched"] == {"aux:bn_conv1_moving_var": {"expected": [64], "got": [32]}}


def test_inspector_train_symbol_matches_original(capsys):
    ref, _, _ = load_case("resnet_v1_101_rfcn__voc__train")
    assert inspect_model.main(["--cfg", str(REPO / ref["config"]), "--train"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["arg_params"] == {n: s for n, s in ref["arg_params"]}
    assert report["outputs"] == ref["output_names"]


def test_imagenet_backbone_loads_by_name(tmp_path):
    """pretrained resnet_v1_101-0000.params: backbone params (plus the ImageNet classifier)."""
    ref, _, cfg = load_case("resnet_v1_101_rfcn_dcn__train")
    backbone = backbone_only(ref)
    prefix = tmp_path / "resnet_v1_101"
    saved = save_reference_params(
        f"{prefix}-0000.params", backbone, [("arg:fc1000_weight", (1000, 2048), 7.0)]
    )
    cfg = load_config(REPO / ref["config"], [f"network.pretrained={prefix}"])
    net = get_network(cfg.symbol)
    sym = net(cfg, is_train=True)
    inputs = {k: tuple(v) for k, v in ref["input_shapes"].items()}
    arg_params, aux_params = initial_params(cfg, net, sym, inputs)

    assert sorted(arg_params) == sorted(n for n, _ in ref["arg_params"])
    for name in ("conv1_weight", "res4b22_branch2c_weight", "bn5c_branch2c_beta"):
        np.testing.assert_array_equal(arg_params[name].asnumpy(), saved[f"arg:{name}"].asnumpy())
    np.testing.assert_array_equal(
        aux_params["bn5c_branch2c_moving_var"].asnumpy(),
        saved["aux:bn5c_branch2c_moving_var"].asnumpy(),
    )
    # new layers: offsets zero (DCN starts as a plain conv), heads N(0, 0.01), biases zero
    assert not arg_params["res5a_branch2b_offset_weight"].asnumpy().any()
    assert not arg_params["rfcn_cls_offset_t_weight"].asnumpy().any()
    assert not arg_params["rfcn_cls_bias"].asnumpy().any()
    std = float(arg_params["rfcn_cls_weight"].asnumpy().std())
    assert 0.009 < std < 0.011


def test_missing_backbone_param_is_an_error(tmp_path):
    ref, _, _ = load_case("resnet_v1_101_rfcn__train")
    backbone = backbone_only(ref, drop=("res3a_branch1_weight",))
    prefix = tmp_path / "resnet_v1_101"
    save_reference_params(f"{prefix}-0000.params", backbone)
    cfg = load_config(REPO / ref["config"], [f"network.pretrained={prefix}"])
    net = get_network(cfg.symbol)
    inputs = {k: tuple(v) for k, v in ref["input_shapes"].items()}
    with pytest.raises(ValueError, match="res3a_branch1_weight"):
        initial_params(cfg, net, net(cfg, is_train=True), inputs)
