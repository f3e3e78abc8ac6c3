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

A ``--params`` file that is missing, or that MXNet cannot read (not a ``.params`` file, truncated,
empty, a list of arrays instead of a dict), stops it before the network is built with
``inspect_model: error: <message>`` naming the file and the reason, and exit status 1.
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
from lib.core.checkpoint import load_params_file
from lib.core.initializer import compare_params
from lib.core.shapes import param_shapes
from lib.utils.cli import add_debug_arg, run_cli

__all__ = ["check_checkpoint", "describe", "get_builder", "main"]

#: Architecture (``lib.config.ARCH_DEFAULTS`` key) -> module holding its ``SYMBOLS`` registry.
ARCH_SYMBOL_MODULES = {
    "rfcn": "rfcn.symbols",
    "faster_rcnn": "faster_rcnn.symbols",
    "fpn": "fpn.symbols",
    "deeplab": "deeplab.symbols",
}


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


def describe(cfg: Any, is_train: bool = False) -> dict[str, Any]:
    """``{'arg_params', 'aux_params', 'outputs'}`` of the network of ``cfg``
    (:func:`lib.core.shapes.param_shapes`: one image at ``SCALES[0]``)."""
    sym = get_builder(cfg.symbol)(cfg, is_train=is_train)
    arg_shapes, aux_shapes = param_shapes(cfg, sym)
    return {
        "arg_params": {n: list(s) for n, s in arg_shapes.items()},
        "aux_params": {n: list(s) for n, s in aux_shapes.items()},
        "outputs": sym.list_outputs(),
    }


def check_checkpoint(
    description: Mapping[str, Any], save_dict: Mapping[str, mx.nd.NDArray], path: str = ""
) -> dict[str, Any]:
    """Compares a checkpoint (``arg:``/``aux:`` dict) with :func:`describe`'s parameters
    (:func:`lib.core.initializer.compare_params`, as testing and resuming do).

    Returns:
        ``{'file', 'missing': [..], 'unexpected': [..], 'mismatched': {name: {'expected',
        'got'}}, 'test_params': [..]}``; names carry their ``arg:`` / ``aux:`` prefix. Keys
        that are neither ``arg:`` nor ``aux:`` are unexpected.
    """
    params: dict[str, dict[str, mx.nd.NDArray]] = {"arg": {}, "aux": {}}
    other = []
    for key, value in save_dict.items():
        kind, _, name = key.partition(":")
        if kind in params:
            params[kind][name] = value
        else:
            other.append(key)
    diff = compare_params(description["arg_params"], description["aux_params"], params["arg"],
                          params["aux"])  # fmt: skip
    diff["unexpected"] = sorted(diff["unexpected"] + other)
    return {"file": path, **diff}


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; returns 0, or 1 when the checkpoint does not match.

    Raises:
        FileNotFoundError, ValueError: the config, or a ``--params`` file that cannot be read
            (:func:`lib.core.checkpoint.load_params_file`); ``python -m`` prints the message
            alone (:func:`lib.utils.cli.run_cli`).
    """
    parser = argparse.ArgumentParser(
        description="Print a network's parameter shapes and outputs; check a checkpoint"
    )
    add_config_args(parser)
    parser.add_argument("--train", action="store_true", help="the training symbol (default test)")
    parser.add_argument("--params", default=None, help="a .params checkpoint to check")
    add_debug_arg(parser)
    args = parser.parse_args(argv)
    cfg = config_from_args(args)
    # before the network is built: a bad file fails at once
    save_dict = load_params_file(args.params, "--params") if args.params else None
    report = describe(cfg, is_train=args.train)
    status = 0
    if save_dict is not None:
        check = check_checkpoint(report, save_dict, args.params)
        report["checkpoint"] = check
        status = int(bool(check["missing"] or check["unexpected"] or check["mismatched"]))
    json.dump(report, sys.stdout, indent=1)
    sys.stdout.write("\n")
    return status


if __name__ == "__main__":
    sys.exit(run_cli(main, prog="inspect_model"))
