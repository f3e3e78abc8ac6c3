"""ResNet-v1 backbone: names, order, shapes and layer attributes against the original networks.

``resnet_v1_101_backbone_ref.json`` holds the backbone subset (names starting with conv1,
bn_conv1, res, bn) of each original network's ``list_arguments()`` (in order),
``list_auxiliary_states()`` and inferred shapes, plus the attributes of its non-trivial backbone
layers; it was copied from the reference dumps of the original code (see its ``source`` key).
"""

import json
from pathlib import Path

import mxnet as mx
import numpy as np
import pytest

from lib.symbols.resnet_v1 import (
    DEPTHS,
    FPN_DCN_UNITS,
    PRESETS,
    RES5_UNITS,
    DeformSpec,
    resnet_v1,
    stage_output_name,
    stage_units,
    unit_names,
)

REF = json.loads((Path(__file__).parent / "resnet_v1_101_backbone_ref.json").read_text())
INPUTS = {"data": (1, 3, 600, 1000)}

# Defaults of the attributes compared below, as MXNet fills them in.
ATTR_DEFAULTS = {
    "stride": "(1, 1)",
    "pad": "(0, 0)",
    "dilate": "(1, 1)",
    "no_bias": "False",
    "num_deformable_group": "1",
    "cudnn_off": "False",
}
COMPARED_ATTRS = ("kernel", "num_filter", *ATTR_DEFAULTS)


def expected_args(network):
    """Ordered [(name, shape)] of the reference backbone arguments."""
    args = [tuple(a) for a in REF["args"]]
    for index, name, shape in REF["networks"][network]["extra_args"]:
        args.insert(index, (name, shape))
    return [(n, tuple(s)) for n, s in args]


def build(network, **overrides):
    kwargs = {**PRESETS[network], **overrides}
    (out,) = resnet_v1(mx.sym.var("data"), **kwargs)
    return out


def shapes(sym):
    arg_shapes, out_shapes, aux_shapes = sym.infer_shape(**INPUTS)
    args = [(n, tuple(s)) for n, s in zip(sym.list_arguments(), arg_shapes) if n != "data"]
    aux = [(n, tuple(s)) for n, s in zip(sym.list_auxiliary_states(), aux_shapes)]
    return args, aux, out_shapes


def layer_attrs(sym):
    """{layer name: (op, attrs)} from the symbol's json."""
    nodes = json.loads(sym.tojson())["nodes"]
    return {n["name"]: (n["op"], n.get("attrs", {})) for n in nodes if n["op"] != "null"}


def normalised(attrs):
    out = {}
    for key in COMPARED_ATTRS:
        value = str(attrs.get(key, ATTR_DEFAULTS.get(key)))
        value = value.replace("[", "(").replace("]", ")")
        if value in ("true", "1") and key in ("no_bias", "cudnn_off"):
            value = "True"
        if value in ("false", "0") and key in ("no_bias", "cudnn_off"):
            value = "False"
        out[key] = value
    return out


# ----------------------------------------------------------------------------------------------
# naming rules


def test_unit_names_rule():
    assert unit_names(1) == ["a"]
    assert unit_names(3) == ["a", "b", "c"]
    assert unit_names(4) == ["a", "b1", "b2", "b3"]
    assert unit_names(23) == ["a"] + [f"b{i}" for i in range(1, 23)]
    with pytest.raises(ValueError):
        unit_names(0)


def test_stage_units_101_and_50():
    units = stage_units(101)
    assert units[0] == ["2a", "2b", "2c"]
    assert units[1] == ["3a", "3b1", "3b2", "3b3"]
    assert units[2][0] == "4a" and units[2][-1] == "4b22" and len(units[2]) == 23
    assert units[3] == ["5a", "5b", "5c"]
    # ResNet-50: the same rule, so res4 is res4a, res4b1..res4b5 (Caffe's file says res4a..f).
    assert stage_units(50)[2] == ["4a", "4b1", "4b2", "4b3", "4b4", "4b5"]
    assert [len(s) for s in stage_units(152)] == list(DEPTHS[152])
    assert [stage_output_name(101, s) for s in (2, 3, 4, 5)] == [
        "res2c_relu",
        "res3b3_relu",
        "res4b22_relu",
        "res5c_relu",
    ]
    with pytest.raises(ValueError, match="depth 34"):
        stage_units(34)


# ----------------------------------------------------------------------------------------------
# the gate: the original networks' backbones


def test_reference_backbone_size():
    assert len(REF["args"]) == 312 and len(REF["aux"]) == 208
    assert set(PRESETS) == set(REF["networks"])


@pytest.mark.parametrize("network", sorted(REF["networks"]))
def test_backbone_names_order_and_shapes(network):
    sym = build(network)
    args, aux, _ = shapes(sym)
    assert args == expected_args(network)
    assert aux == [(n, tuple(s)) for n, s in REF["aux"]]


@pytest.mark.parametrize("network", sorted(REF["networks"]))
def test_backbone_layer_attributes(network):
    ref = REF["networks"][network]
    sym = build(network)
    ours = layer_attrs(sym)
    for name, layer in ref["ops"].items():
        op, attrs = ours[name]
        deformable = "DeformableConvolution" in layer["op"]
        assert ("DeformableConvolution" in op) == deformable, name
        assert normalised(attrs) == normalised(layer["attrs"]), name
    # only the reference's deformable layers are deformable
    ours_deformable = {n for n, (op, _) in ours.items() if "DeformableConvolution" in op}
    assert ours_deformable == {
        n for n, layer in ref["ops"].items() if "DeformableConvolution" in layer["op"]
    }
    pool_op, pool_attrs = ours["pool1"]
    assert pool_op == "Pooling"
    assert {k: pool_attrs[k] for k in ref["pool1"]} == ref["pool1"]


@pytest.mark.parametrize("network", sorted(REF["networks"]))
def test_backbone_variable_attributes(network):
    sym = build(network)
    attrs = sym.attr_dict()
    ours = {
        name: {k: v for k, v in attrs.get(name, {}).items() if k == "__lr_mult__"}
        for name in sym.list_arguments()
    }
    ours = {k: v for k, v in ours.items() if v}
    assert ours == REF["networks"][network]["variable_attrs"]


def test_every_conv_but_offsets_has_no_bias():
    sym = build("resnet_v1_101_fpn_dcn_rcnn")
    biases = [n for n in sym.list_arguments() if n.endswith("_bias")]
    assert biases and all(n.endswith("_branch2b_offset_bias") for n in biases)
    for name, (op, attrs) in layer_attrs(sym).items():
        if op == "BatchNorm":
            assert attrs["use_global_stats"] == "True" and attrs["fix_gamma"] == "False", name
            assert float(attrs["eps"]) == 1e-5, name


def test_fpn_dcn_offsets_and_outputs():
    c2, c3, c4, c5 = resnet_v1(
        mx.sym.var("data"), stages_out=(2, 3, 4, 5), **PRESETS["resnet_v1_101_fpn_dcn_rcnn"]
    )
    assert [s.name for s in (c2, c3, c4, c5)] == [
        "res2c_relu",
        "res3b3_relu",
        "res4b22_relu",
        "res5c_relu",
    ]
    group = mx.sym.Group([c2, c3, c4, c5])
    arg_shapes, out_shapes, _ = group.infer_shape(data=(1, 3, 800, 1280))
    assert out_shapes == [
        (1, 256, 200, 320),
        (1, 512, 100, 160),
        (1, 1024, 50, 80),
        (1, 2048, 25, 40),
    ]
    args = dict(zip(group.list_arguments(), arg_shapes))
    offsets = {n: s for n, s in args.items() if "_offset_" in n}
    assert offsets == {
        "res3b3_branch2b_offset_weight": (72, 128, 3, 3),
        "res3b3_branch2b_offset_bias": (72,),
        "res4b22_branch2b_offset_weight": (72, 256, 3, 3),
        "res4b22_branch2b_offset_bias": (72,),
        **{f"res{u}_branch2b_offset_weight": (72, 512, 3, 3) for u in ("5a", "5b", "5c")},
        **{f"res{u}_branch2b_offset_bias": (72,) for u in ("5a", "5b", "5c")},
    }
    assert PRESETS["resnet_v1_101_fpn_dcn_rcnn"]["deform_units"] == FPN_DCN_UNITS


@pytest.mark.parametrize(
    "depth, units",
    [
        (101, {"3b3", "4b22", "5a", "5b", "5c"}),
        (50, {"3b3", "4b5", "5a", "5b", "5c"}),
        (152, {"3b7", "4b35", "5a", "5b", "5c"}),
    ],
)
def test_deformable_units_by_position_give_every_depth_the_original_layout(depth, units):
    assert FPN_DCN_UNITS.names(depth) == units
    assert RES5_UNITS.names(depth) == {"5a", "5b", "5c"}
    group = mx.sym.Group(resnet_v1(mx.sym.var("data"), depth=depth, width=16, stages_out=(5,),
                                   deform_units=FPN_DCN_UNITS))  # fmt: skip
    offsets = {n.split("_")[0][3:] for n in group.list_arguments() if "_offset_" in n}
    assert offsets == units


def test_dilated_res5_keeps_output_stride_16():
    (c4, c5) = resnet_v1(mx.sym.var("data"), stages_out=(4, 5), res5_stride=1, res5_dilate=2)
    _, out_shapes, _ = mx.sym.Group([c4, c5]).infer_shape(**INPUTS)
    assert out_shapes == [(1, 1024, 38, 63), (1, 2048, 38, 63)]


def test_invalid_arguments():
    data = mx.sym.var("data")
    with pytest.raises(ValueError, match="not units of ResNet-50"):
        resnet_v1(data, depth=50, deform_units={"4b22"})
    with pytest.raises(ValueError, match="stages_out"):
        resnet_v1(data, stages_out=(1,))


# ----------------------------------------------------------------------------------------------
# narrow networks run


def test_narrow_resnet50_forward_with_deformable_units():
    """width 16: same names, 1/4 of the channels; runs on CPU with the deformable units."""
    data = mx.sym.var("data")
    units = {"4b5", *RES5_UNITS.names(50)}
    narrow = resnet_v1(
        data, depth=50, width=16, stages_out=(2, 5), deform_units=units, deform=DeformSpec(2)
    )
    wide = resnet_v1(data, depth=50, stages_out=(2, 5), deform_units=units, deform=DeformSpec(2))
    narrow, wide = mx.sym.Group(narrow), mx.sym.Group(wide)
    assert narrow.list_arguments() == wide.list_arguments()
    assert narrow.list_auxiliary_states() == wide.list_auxiliary_states()
    arg_shapes, out_shapes, aux_shapes = narrow.infer_shape(data=(1, 3, 64, 96))
    assert out_shapes == [(1, 64, 16, 24), (1, 512, 4, 6)]
    args = dict(zip(narrow.list_arguments(), arg_shapes))
    assert args["conv1_weight"] == (16, 3, 7, 7)
    assert args["res5a_branch2b_offset_weight"] == (36, 128, 3, 3)
    assert "res4b5_branch2b_offset_bias" in args

    rng = np.random.RandomState(0)
    arg_arrays = {n: mx.nd.array(rng.normal(0, 0.1, s)) for n, s in args.items()}
    aux_arrays = {
        n: mx.nd.array(np.abs(rng.normal(1, 0.1, s)) if n.endswith("var") else np.zeros(s))
        for n, s in zip(narrow.list_auxiliary_states(), aux_shapes)
    }
    exe = narrow.bind(mx.cpu(), arg_arrays, aux_states=aux_arrays, grad_req="null")
    outs = exe.forward(is_train=False)
    assert all(np.isfinite(o.asnumpy()).all() for o in outs)
    assert (outs[1].asnumpy() >= 0).all()  # res5c_relu
