"""Print the parameters and outputs of the network a config names, and check a checkpoint.

    python -m lib.tools.inspect_model --cfg <yaml> [--train] [--params <file.params>] [--set K=V]

Builds the test symbol (``--train``: the training symbol) of the config's ``symbol`` from its
architecture's registry (``<arch>.symbols.SYMBOLS``; the architecture comes from the symbol name,
see ``lib.config.infer_arch``), infers the shapes for one image at the config's first ``SCALES``
entry (padded to ``network.IMAGE_STRIDE``) and prints JSON::

    {"arg_params": {name: shape}, "aux_params": {name: shape}, "outputs": [name, ...]}

Data and label inputs (``data``, ``im_info``, ``gt_boxes``, ``label``, ``bbox_target``,
``bbox_weight``, ``rois``, ``*_label``) are left out. With ``--params`` the checkpoint
(``arg:<name>`` / ``aux:<name>`` keys, MXNet's format) is compared by name and shape; the JSON
gains ``"checkpoint": {"file", "missing", "unexpected", "mismatched", "test_params"}`` and the
exit status is 1 if anything is missing, unexpected or mis-shaped. ``<name>_test`` entries of a
training checkpoint (de-normalised bbox weights, see ``lib.core.checkpoint``) are listed under
``test_params`` and count as expected when ``<name>`` is a parameter.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import mxnet as mx

from lib.config import add_config_args, config_from_args, infer_arch
from lib.core.shapes import MAX_GT, max_input_shapes

__all__ = [
    "INPUT_NAMES",
    "check_checkpoint",
    "describe",
    "get_builder",
    "input_shapes",
    "main",
]

#: Architecture (``lib.config.ARCH_DEFAULTS`` key) -> module holding its ``SYMBOLS`` registry.
ARCH_SYMBOL_MODULES = {
    "rfcn": "rfcn.symbols",
    "faster_rcnn": "faster_rcnn.symbols",
    "fpn": "fpn.symbols",
    "deeplab": "deeplab.symbols",
}

#: Network inputs that are not parameters (besides any ``*_label``).
INPUT_NAMES = frozenset(
    {"data", "im_info", "gt_boxes", "label", "bbox_target", "bbox_weight", "rois"}
)


Shape = tuple[int, ...]


def is_input(name: str) -> bool:
    return name in INPUT_NAMES or name.endswith("_label")


def get_builder(symbol: str) -> Any:
    """``SYMBOLS[symbol]`` of the symbol's architecture: ``builder(cfg, is_train) -> Symbol``."""
    arch = infer_arch(symbol)
    module_name = ARCH_SYMBOL_MODULES[arch]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        raise ValueError(
            f"symbol {symbol!r} belongs to {arch}, whose networks ({module_name}) are not "
            f"available: {err}"
        ) from None
    registry = module.SYMBOLS
    if symbol not in registry:
        raise ValueError(
            f"symbol {symbol!r} is not registered in {module_name}.SYMBOLS; registered: "
            f"{', '.join(sorted(registry))}"
        )
    return registry[symbol]


def input_shapes(cfg: Any, sym: mx.sym.Symbol) -> dict[str, Shape]:
    """Shapes of the inputs for one image at ``SCALES[0]`` (labels are inferred from them).

    ``data`` (1, 3, H, W) with H, W the first scale rounded up to ``IMAGE_STRIDE``; ``im_info``
    (1, 3); ``gt_boxes`` (1, 100, 5) (:func:`lib.core.shapes.max_input_shapes`). The RPN
    labels (``label``, ``bbox_target``, ``bbox_weight``) follow from the score map, so they are
    given the shapes MXNet infers.
    Segmentation (DeepLab) needs ``data`` alone: ``SoftmaxOutput`` infers the training
    ``label`` and the test symbol's ``softmax_label`` (1, H*W) from it.
    """
    names = [n for n in ("data", "im_info", "gt_boxes") if n in sym.list_arguments()]
    return dict(max_input_shapes(cfg, cfg.SCALES[:1], names=names, max_gt=MAX_GT))


def _infer(sym: mx.sym.Symbol, shapes: Mapping[str, Shape]):
    arg_shapes, out_shapes, aux_shapes = sym.infer_shape_partial(**shapes)
    unknown = [n for n, s in zip(sym.list_arguments(), arg_shapes) if not s or 0 in s]
    if unknown:
        raise ValueError(f"cannot infer the shapes of {unknown} from inputs {dict(shapes)}")
    return arg_shapes, out_shapes, aux_shapes


def describe(cfg: Any, is_train: bool = False) -> dict[str, Any]:
    """``{'arg_params', 'aux_params', 'outputs'}`` of the network of ``cfg``."""
    sym = get_builder(cfg.symbol)(cfg, is_train=is_train)
    arg_shapes, _, aux_shapes = _infer(sym, input_shapes(cfg, sym))
    return {
        "arg_params": {
            n: list(s) for n, s in zip(sym.list_arguments(), arg_shapes) if not is_input(n)
        },
        "aux_params": {n: list(s) for n, s in zip(sym.list_auxiliary_states(), aux_shapes)},
        "outputs": sym.list_outputs(),
    }


def check_checkpoint(
    description: Mapping[str, Any], save_dict: Mapping[str, mx.nd.NDArray], path: str = ""
) -> dict[str, Any]:
    """Compares a checkpoint (``arg:``/``aux:`` dict) with :func:`describe`'s parameters.

    Returns:
        ``{'file', 'missing': [..], 'unexpected': [..], 'mismatched': {name: {'expected',
        'got'}}, 'test_params': [..]}``; names carry their ``arg:`` / ``aux:`` prefix.
    """
    expected = {f"arg:{n}": tuple(s) for n, s in description["arg_params"].items()}
    expected.update({f"aux:{n}": tuple(s) for n, s in description["aux_params"].items()})
    got = {k: tuple(v.shape) for k, v in save_dict.items()}
    test_params = sorted(k for k in got if k.endswith("_test") and k[: -len("_test")] in expected)
    missing = sorted(k for k in expected if k not in got)
    unexpected = sorted(k for k in got if k not in expected and k not in test_params)
    mismatched = {
        k: {"expected": list(expected[k]), "got": list(got[k])}
        for k in sorted(expected)
        if k in got and got[k] != expected[k]
    }
    for k in test_params:
        if got[k] != expected[k[: -len("_test")]]:
            mismatched[k] = {"expected": list(expected[k[: -len("_test")]]), "got": list(got[k])}
    return {
        "file": path,
        "missing": missing,
        "unexpected": unexpected,
        "mismatched": mismatched,
        "test_params": test_params,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Print a network's parameter shapes and outputs; check a checkpoint"
    )
    add_config_args(parser)
    parser.add_argument("--train", action="store_true", help="the training symbol (default test)")
    parser.add_argument("--params", default=None, help="a .params checkpoint to check")
    args = parser.parse_args(argv)
    cfg = config_from_args(args)
    report = describe(cfg, is_train=args.train)
    status = 0
    if args.params:
        save_dict = mx.nd.load(args.params)
        if not isinstance(save_dict, dict):
            raise SystemExit(f"{args.params} holds a list of arrays, not an arg:/aux: dict")
        check = check_checkpoint(report, save_dict, args.params)
        report["checkpoint"] = check
        status = int(bool(check["missing"] or check["unexpected"] or check["mismatched"]))
    json.dump(report, sys.stdout, indent=1)
    sys.stdout.write("\n")
    return status


if __name__ == "__main__":
    sys.exit(main())
