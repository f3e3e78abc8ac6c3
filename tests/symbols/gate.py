"""The parameter gate shared by every architecture: our symbols against the original networks.

``expected/<network>[__voc]__<train|test>.json`` were copied from the reference dumps of the
original code (see their ``source`` key): inputs, ``list_arguments()`` order, parameter and aux
shapes as ``[name, shape]`` pairs, outputs, the attributes of the non-trivial layers and the
variable attributes (``lr_mult``). The checks here compare a symbol with one of them.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import mxnet as mx
import numpy as np

from lib.config import load_config
from lib.core.checkpoint import load_param
from lib.core.initializer import check_parameter_shapes, infer_param_shapes

EXPECTED = Path(__file__).parent / "expected"
REPO = Path(__file__).resolve().parents[2]

# Our operator library registers the ops under their plain names.
OP_NAMES = {
    "_contrib_DeformableConvolution": "DeformableConvolution",
    "_contrib_DeformablePSROIPooling": "DeformablePSROIPooling",
    "_contrib_PSROIPooling": "PSROIPooling",
}
# Layers MXNet auto-named in the original (a global counter); ours are named explicitly.
RENAMED = {"custom0": "proposal_target", "custom1": "box_annotator_ohem"}
BACKBONE_PREFIXES = ("conv1", "bn_conv1", "res", "bn")

_built: dict[str, tuple] = {}


def load_case(case: str, get_network: Any, overrides: list[str] = ()) -> tuple[dict, Any, Any]:
    """(expected dict, symbol, config) of ``case``; each symbol is built once per session.

    The config is the reference's own yaml (with ``overrides``); the symbol comes from
    ``get_network(cfg.symbol)``.
    """
    if case not in _built:
        ref = json.loads((EXPECTED / f"{case}.json").read_text())
        cfg = load_config(REPO / ref["config"], list(overrides))
        assert cfg.symbol == ref["network"]
        sym = get_network(cfg.symbol)(cfg, is_train=ref["phase"] == "train")
        _built[case] = (ref, sym, cfg)
    return _built[case]


def attr_value(text: Any) -> Any:
    """An attribute string as a comparable value: '(2, 2)' -> (2.0, 2.0), '0.0' -> 0.0."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text
    if isinstance(value, (tuple, list)):
        return tuple(float(v) for v in value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return value


def check_params_and_outputs(ref: dict, sym: mx.sym.Symbol) -> None:
    """Argument order, parameter / aux names and shapes, outputs and the total param count."""
    inputs = {k: tuple(v) for k, v in ref["input_shapes"].items()}
    arg_shapes, out_shapes, aux_shapes = sym.infer_shape(**inputs)
    assert sym.list_arguments() == ref["argument_order"]
    shapes = dict(zip(sym.list_arguments(), map(list, arg_shapes)))
    # a test symbol's SoftmaxOutput makes its own label argument (DeepLab): not a parameter
    for name, shape in ref.get("label_placeholders_not_params", {}).items():
        assert shapes.pop(name) == shape
    args = [[n, s] for n, s in shapes.items() if n not in inputs]
    assert args == ref["arg_params"]
    aux = [[n, list(s)] for n, s in zip(sym.list_auxiliary_states(), aux_shapes)]
    assert aux == ref["aux_params"]
    assert sym.list_outputs() == ref["output_names"]
    assert dict(zip(sym.list_outputs(), map(list, out_shapes))) == ref["outputs"]
    assert sum(int(np.prod(s)) for _, s in args) == ref["total_param_count"]


def check_layer_attributes(ref: dict, sym: mx.sym.Symbol, exact_mults: bool = True) -> None:
    """The special / pooling / dilated layers' ops and attributes, and the ``lr_mult``s.

    With ``exact_mults``, exactly the reference's variables carry ``*_mult__`` attributes.
    """
    nodes = {n["name"]: n for n in json.loads(sym.tojson())["nodes"]}
    layers = ref["special_ops"] + ref["pooling_ops"] + ref.get("dilated_convolutions", [])
    for layer in layers:
        node = nodes[RENAMED.get(layer["name"], layer["name"])]
        if "op" in layer:
            assert node["op"] == OP_NAMES.get(layer["op"], layer["op"]), layer["name"]
        ours = node.get("attrs", {})
        for key, value in layer["attrs"].items():
            assert attr_value(ours.get(key)) == attr_value(value), (layer["name"], key)
    expected = {
        var: {k: attr_value(v) for k, v in attrs.items()}
        for var, attrs in ref["variable_attrs"].items()
    }
    if not exact_mults:
        for var, attrs in expected.items():
            for key, value in attrs.items():
                assert attr_value(nodes[var]["attrs"][key]) == value, (var, key)
        return
    mults = {
        n["name"]: {
            k: attr_value(v) for k, v in n.get("attrs", {}).items() if k.endswith("_mult__")
        }
        for n in nodes.values()
        if n["op"] == "null"
    }
    assert {name: m for name, m in mults.items() if m} == expected


def save_reference_params(path: Any, ref: dict, extra: list = ()) -> dict:
    """A checkpoint holding every reference param: arg i filled with i, aux i with 1000 + i.

    ``extra``: ``(key, shape, value)`` entries to add (e.g. ``*_test`` bbox weights).
    """
    save = {}
    for i, (name, shape) in enumerate(ref["arg_params"]):
        save[f"arg:{name}"] = mx.nd.full(shape, i)
    for i, (name, shape) in enumerate(ref["aux_params"]):
        save[f"aux:{name}"] = mx.nd.full(shape, 1000 + i)
    for key, shape, value in extra:
        save[key] = mx.nd.full(shape, value)
    mx.nd.save(str(path), save)
    return save


def backbone_only(ref: dict, drop: tuple[str, ...] = ()) -> dict:
    """The reference's ImageNet backbone params (no offsets), minus the names in ``drop``."""
    return {
        "arg_params": [
            a
            for a in ref["arg_params"]
            if a[0].startswith(BACKBONE_PREFIXES) and "offset" not in a[0] and a[0] not in drop
        ],
        "aux_params": ref["aux_params"],
    }


def check_released_checkpoint(tmp_path: Any, ref: dict, sym: Any, network: str,
                              bbox_layer: str | None) -> dict:  # fmt: skip
    """``model/<network>-0000.params`` built from the reference (plus the ``*_test`` weights of
    ``bbox_layer``) loads by name into ``sym``: every param present, of the right shape, the
    ``*_test`` ones in place of the training ones (``process=True``). Returns the arg params."""
    shapes = dict(ref["arg_params"])
    extra = []
    if bbox_layer is not None:
        extra = [
            (f"arg:{bbox_layer}_weight_test", shapes[f"{bbox_layer}_weight"], -1.0),
            (f"arg:{bbox_layer}_bias_test", shapes[f"{bbox_layer}_bias"], -2.0),
        ]
    (tmp_path / "model").mkdir()
    prefix = str(tmp_path / "model" / network)
    save_reference_params(f"{prefix}-0000.params", ref, extra)

    arg_params, aux_params = load_param(prefix, 0, process=True)
    shapes_in = {k: tuple(v) for k, v in ref["input_shapes"].items()}
    shapes_in.update({k: tuple(v) for k, v in ref.get("label_placeholders_not_params", {}).items()})
    arg_shapes, aux_shapes = infer_param_shapes(sym, shapes_in)
    check_parameter_shapes(arg_shapes, aux_shapes, arg_params, aux_params)
    assert sorted(arg_shapes) == sorted(arg_params)
    if bbox_layer is not None:
        assert float(arg_params[f"{bbox_layer}_weight"].asnumpy().flat[0]) == -1.0
        assert float(arg_params[f"{bbox_layer}_bias"].asnumpy().flat[0]) == -2.0
    names = [n for n, _ in ref["arg_params"]]
    assert float(arg_params["conv1_weight"].asnumpy().flat[0]) == names.index("conv1_weight")
    return arg_params
