"""The DeepLab gate: our symbols against the original networks, name by name and shape by shape.

``expected/resnet_v1_101_deeplab[_dcn][__voc]__<train|test>.json`` were copied from the
reference dumps of the original code (see their ``source`` key): inputs, ``list_arguments()``
order, parameter and aux shapes, the test symbol's ``softmax_label`` placeholder, outputs, the
attributes of the non-trivial layers and the variable attributes (``lr_mult``). Every variant is
checked: plain and deformable, Cityscapes (19 classes) and VOC (21), train and test.
"""

import json

import mxnet as mx
import numpy as np
import pytest

from deeplab.symbols import SYMBOLS, DeepLab, get_network
from lib.config import load_config
from lib.core.checkpoint import load_param
from lib.core.initializer import (
    check_parameter_shapes,
    find_rule,
    infer_param_shapes,
    init_params,
)
from lib.tools import inspect_model
from tests.symbols import gate
from tests.symbols.gate import BACKBONE_PREFIXES, REPO, save_reference_params

CFG_DIR = REPO / "experiments/deeplab/cfgs"
CASES = [
    f"{net}{voc}__{phase}"
    for net in ("resnet_v1_101_deeplab", "resnet_v1_101_deeplab_dcn")
    for voc in ("", "__voc")
    for phase in ("train", "test")
]

# Inputs of the training symbols where only the parameter shapes matter.
SMALL_INPUTS = {"data": (1, 3, 64, 64), "label": (1, 1, 64, 64)}


def load_case(case):
    return gate.load_case(case, get_network)


def _inputs(ref):
    """Input shapes of a case, with the test symbol's ``softmax_label`` placeholder."""
    shapes = {k: tuple(v) for k, v in ref["input_shapes"].items()}
    shapes.update({k: tuple(v) for k, v in ref["label_placeholders_not_params"].items()})
    return shapes


@pytest.mark.parametrize("case", CASES)
def test_params_and_outputs_match_original(case):
    ref, sym, _ = load_case(case)
    gate.check_params_and_outputs(ref, sym)
    assert sym.list_outputs() == ["softmax_output"]
    assert len(ref["arg_params"]) == ref["num_arg_params"]


@pytest.mark.parametrize("case", CASES)
def test_layer_attributes_match_original(case):
    ref, sym, _ = load_case(case)
    layers = ref["special_ops"] + ref["pooling_ops"] + ref["dilated_convolutions"]
    assert {"upsampling", "croped_score", "softmax"} <= {layer["name"] for layer in layers}
    gate.check_layer_attributes(ref, sym)


# ------------------------------------------------------------------------ registry / init


@pytest.mark.parametrize("name", sorted(SYMBOLS))
def test_every_registered_network_builds(name):
    """The CPU networks share the builder: same layer names, other depths and widths."""
    cfg = load_config(CFG_DIR / "synthetic_deeplab.yaml", [f"symbol={name}"])
    net = get_network(name)
    num_classes = cfg.dataset.NUM_CLASSES
    data = (2, 3, 96, 136)  # not multiples of 16: Crop must still cut exactly the input size
    test_sym = net(cfg, is_train=False)
    arg_shapes, out_shapes, _ = test_sym.infer_shape(data=data)
    assert out_shapes == [(2, num_classes, 96, 136)]
    shapes = dict(zip(test_sym.list_arguments(), arg_shapes))
    assert shapes["softmax_label"] == (2, 96 * 136)
    assert shapes["fc6_weight"][0] == net.fc6_channels
    assert shapes["fc6_weight"][1] == 32 * net.width  # res5 outputs 4 x 8 x width channels
    assert shapes["upsampling_weight"] == (num_classes, 1, 32, 32)

    train_sym = net(cfg, is_train=True)
    _, train_out, _ = train_sym.infer_shape(data=data, label=(2, 1, 96, 136))
    assert train_out == [(2, num_classes, 96, 136)]
    params = set(test_sym.list_arguments()) - {"data", "softmax_label"}
    assert params == set(train_sym.list_arguments()) - {"data", "label"}
    names = test_sym.list_arguments()
    assert net.deformable == ("res5a_branch2b_offset_weight" in names)
    depth_units = {50: "res4b5_branch2a_weight", 101: "res4b22_branch2a_weight"}
    assert depth_units[net.depth] in names


@pytest.mark.parametrize("name", sorted(SYMBOLS))
def test_init_rules_cover_every_new_param(name):
    """Pretrained: a rule for every param outside the backbone; from scratch: for every param."""
    cfg = load_config(CFG_DIR / "synthetic_deeplab.yaml", [f"symbol={name}"])
    net = get_network(name)
    sym = net(cfg, is_train=True)
    arg_shapes, aux_shapes = infer_param_shapes(sym, SMALL_INPUTS)
    new = [n for n in arg_shapes if not n.startswith(BACKBONE_PREFIXES) or "offset" in n]
    assert {"fc6_weight", "fc6_bias", "score_weight", "score_bias", "upsampling_weight"} <= set(new)
    rules = net.init_rules()
    assert all(find_rule(n, rules) is not None for n in new)
    # the backbone comes from the pretrained model: a missing backbone param is not made up
    assert find_rule("res3a_branch1_weight", rules) is None
    scratch = net.init_rules(from_scratch=True)
    assert all(find_rule(n, scratch) is not None for n in [*arg_shapes, *aux_shapes])


def test_new_layers_are_initialised_as_the_original():
    """fc6 / score N(0, 0.01), biases 0, offsets 0 (DCN starts as a plain conv), upsampling
    bilinear: each class channel of the deconvolution interpolates that class alone."""
    name = "resnet_v1_50_w16_deeplab_dcn"
    cfg = load_config(CFG_DIR / "synthetic_deeplab_dcn.yaml", [f"symbol={name}"])
    net = get_network(name)
    sym = net(cfg, is_train=True)
    arg_shapes, aux_shapes = infer_param_shapes(sym, SMALL_INPUTS)
    mx.random.seed(0)
    args, _ = init_params(arg_shapes, {}, {}, net.init_rules(from_scratch=True), aux_shapes)
    assert 0.009 < float(args["fc6_weight"].asnumpy().std()) < 0.011
    zero = ("fc6_bias", "score_bias", "res5a_branch2b_offset_weight", "res5c_branch2b_offset_bias")
    for name in zero:
        assert not args[name].asnumpy().any(), name
    up = args["upsampling_weight"].asnumpy()
    # bilinear kernel of factor 16: outer product of 1 - |x - c| / f, f = 16, c = 15.5
    tri = 1 - np.abs(np.arange(32) - 15.5) / 16
    np.testing.assert_allclose(up, np.broadcast_to(np.outer(tri, tri), up.shape), atol=1e-6)


@pytest.mark.parametrize("name", ["resnet_v1_50_w16_deeplab", "resnet_v1_50_w16_deeplab_dcn"])
def test_cpu_network_runs_forward(name):
    """The CPU networks run (our deformable op included): per-pixel class probabilities."""
    cfg = load_config(CFG_DIR / "synthetic_deeplab.yaml", [f"symbol={name}"])
    net = get_network(name)
    sym = net(cfg, is_train=False)
    data = (1, 3, 72, 88)
    arg_shapes, aux_shapes = infer_param_shapes(sym, {"data": data, "softmax_label": (1, 72 * 88)})
    mx.random.seed(0)
    args, auxs = init_params(arg_shapes, {}, {}, net.init_rules(from_scratch=True), aux_shapes)
    args["data"] = mx.nd.array(np.random.default_rng(0).normal(0, 50, data))
    args["softmax_label"] = mx.nd.zeros((1, 72 * 88))
    (prob,) = sym.bind(mx.cpu(), args, aux_states=auxs, grad_req="null").forward()
    prob = prob.asnumpy()
    assert prob.shape == (1, cfg.dataset.NUM_CLASSES, 72, 88) and np.isfinite(prob).all()
    np.testing.assert_allclose(prob.sum(axis=1), 1.0, rtol=1e-5)
    assert prob.std(axis=(2, 3)).max() > 0  # the scores vary over the image


def test_registry_holds_frozen_networks():
    net = SYMBOLS["resnet_v1_101_deeplab_dcn"]
    assert isinstance(net, DeepLab) and net.task == "segmentation" and net.deformable
    assert net.bbox_pred_spec is None and net.feat_stride == 16
    with pytest.raises(AttributeError):
        net.depth = 50


def test_unknown_network_is_reported():
    with pytest.raises(ValueError, match="unknown DeepLab symbol 'resnet_v1_18_deeplab'") as err:
        get_network("resnet_v1_18_deeplab")
    assert "resnet_v1_101_deeplab_dcn" in str(err.value)


# ------------------------------------------------------------------------------ checkpoints


@pytest.mark.parametrize("network", ["deeplab_cityscapes", "deeplab_dcn_cityscapes"])
def test_released_checkpoint_loads_by_name(network, tmp_path):
    """model/<network>-0000.params: every reference param, loaded by name into the test net."""
    case = "resnet_v1_101_deeplab_dcn__test" if "dcn" in network else "resnet_v1_101_deeplab__test"
    ref, sym, _ = load_case(case)
    arg_params = gate.check_released_checkpoint(tmp_path, ref, sym, network, None)
    names = [n for n, _ in ref["arg_params"]]
    for name in ("fc6_bias", "upsampling_weight"):
        assert float(arg_params[name].asnumpy().flat[0]) == names.index(name)

    arg_shapes, aux_shapes = infer_param_shapes(sym, _inputs(ref))
    _, aux_params = load_param(str(tmp_path / "model" / network), 0)
    del arg_params["score_bias"]
    with pytest.raises(ValueError, match=r"missing arg params \(1\): score_bias"):
        check_parameter_shapes(arg_shapes, aux_shapes, arg_params, aux_params)


# ------------------------------------------------------------------------------- inspector

ORIGINAL_CFGS = {
    "deeplab_resnet_v1_101_cityscapes_segmentation_base.yaml": "resnet_v1_101_deeplab",
    "deeplab_resnet_v1_101_cityscapes_segmentation_dcn.yaml": "resnet_v1_101_deeplab_dcn",
    "deeplab_resnet_v1_101_voc12_segmentation_base.yaml": "resnet_v1_101_deeplab__voc",
    "deeplab_resnet_v1_101_voc12_segmentation_dcn.yaml": "resnet_v1_101_deeplab_dcn__voc",
    "deeplab_cityscapes_demo.yaml": "resnet_v1_101_deeplab",
}


@pytest.mark.parametrize("train", [False, True], ids=["test", "train"])
@pytest.mark.parametrize("cfg_name", sorted(ORIGINAL_CFGS))
def test_inspector_matches_original(cfg_name, train, capsys):
    ref, _, _ = load_case(f"{ORIGINAL_CFGS[cfg_name]}__{'train' if train else 'test'}")
    argv = ["--cfg", str(CFG_DIR / cfg_name)] + (["--train"] if train else [])
    assert inspect_model.main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["arg_params"] == {n: s for n, s in ref["arg_params"]}
    assert report["aux_params"] == {n: s for n, s in ref["aux_params"]}
    assert report["outputs"] == ["softmax_output"]


@pytest.mark.parametrize("cfg_name", ["synthetic_deeplab.yaml", "synthetic_deeplab_dcn.yaml"])
def test_synthetic_configs_use_the_cpu_networks(cfg_name, capsys):
    cfg = load_config(CFG_DIR / cfg_name)  # rejects unknown keys
    assert cfg.symbol.startswith("resnet_v1_50_w16_deeplab")
    assert get_network(cfg.symbol).deformable == ("dcn" in cfg_name)
    for train in ([], ["--train"]):
        assert inspect_model.main(["--cfg", str(CFG_DIR / cfg_name), *train]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["arg_params"]["fc6_weight"] == [256, 512, 1, 1]
        assert report["arg_params"]["score_weight"] == [cfg.dataset.NUM_CLASSES, 256, 1, 1]
        assert not any(n.endswith("label") for n in report["arg_params"])
        assert report["outputs"] == ["softmax_output"]


def test_inspector_checks_a_deeplab_checkpoint(tmp_path, capsys):
    ref, _, _ = load_case("resnet_v1_101_deeplab_dcn__test")
    cfg_path = str(CFG_DIR / "deeplab_resnet_v1_101_cityscapes_segmentation_dcn.yaml")
    good = tmp_path / "deeplab_dcn_cityscapes-0000.params"
    save_reference_params(good, ref)
    assert inspect_model.main(["--cfg", cfg_path, "--params", str(good)]) == 0
    check = json.loads(capsys.readouterr().out)["checkpoint"]
    assert check["missing"] == check["unexpected"] == [] and check["mismatched"] == {}

    bad = mx.nd.load(str(good))
    bad["arg:upsampling_weight"] = mx.nd.zeros((21, 1, 32, 32))  # a VOC head
    mx.nd.save(str(tmp_path / "bad.params"), bad)
    assert inspect_model.main(["--cfg", cfg_path, "--params", str(tmp_path / "bad.params")]) == 1
    check = json.loads(capsys.readouterr().out)["checkpoint"]
    assert check["mismatched"] == {
        "arg:upsampling_weight": {"expected": [19, 1, 32, 32], "got": [21, 1, 32, 32]}
    }
