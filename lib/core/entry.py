"""The command lines of every architecture's entry points, written once.

An architecture's ``train_end2end.py`` / ``test.py`` and its ``experiments/<arch>/*_train_test.py``
/ ``*_test.py`` drivers call :func:`train_main`, :func:`test_main` or :func:`train_test_main`
from their ``main()`` with the architecture's name and registry lookup; the arguments, the
config loading and the calls into :mod:`lib.core.trainer` / :mod:`lib.core.tester` are here.

Arguments: ``--cfg FILE``, repeatable ``--set KEY=VALUE`` and ``--debug`` (every command; every
script's ``__main__`` runs its ``main`` through :func:`lib.utils.cli.run_cli`); training adds
``--frequent N``, ``--seed N`` and ``--overwrite``; testing adds ``--epoch N`` (default
``TEST.test_epoch``), ``--thresh``, ``--ignore_cache``, ``--shuffle`` and ``--vis``
(segmentation). The train-and-test drivers test the epoch they just trained.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from typing import Any

from lib.config import add_config_args, config_from_args
from lib.core.tester import test_net
from lib.core.trainer import TrainResult, train_net
from lib.utils.cli import add_debug_arg

__all__ = ["test_main", "train_main", "train_test_main"]

GetNetwork = Callable[[str], Any]


def _add_train_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--frequent", type=int, default=None, help="log every N batches")
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        help="seed MXNet, numpy and the loader (an exact resume needs it)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="delete the checkpoints of an earlier run in the output folder and start again",
    )


def _add_test_args(parser: argparse.ArgumentParser, with_epoch: bool = True) -> None:
    if with_epoch:
        parser.add_argument("--epoch", type=int, default=None, help="default TEST.test_epoch")
    parser.add_argument("--thresh", type=float, default=1e-3, help="minimum detection score")
    parser.add_argument("--ignore_cache", action="store_true",
                        help="recompute the detections even if cached ones match")  # fmt: skip
    parser.add_argument("--shuffle", action="store_true", help="shuffle the test images")
    parser.add_argument("--vis", action="store_true",
                        help="segmentation: also write colour PNGs of the predictions")  # fmt: skip


def _parse(description: str, argv: Sequence[str] | None, *adders: Callable) -> argparse.Namespace:
    # The original drivers' environment: unbuffered logs, no cuDNN autotune, no GPU P2P.
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    os.environ.setdefault("MXNET_CUDNN_AUTOTUNE_DEFAULT", "0")
    os.environ.setdefault("MXNET_ENABLE_GPU_P2P", "0")
    # MXNet prints "Subgraph backend MKLDNN is activated" at every bind (one per input shape).
    os.environ.setdefault("MXNET_SUBGRAPH_VERBOSE", "0")
    parser = argparse.ArgumentParser(description=description)
    add_config_args(parser)
    add_debug_arg(parser)
    for add in adders:
        add(parser)
    return parser.parse_args(argv)


def _train(args: argparse.Namespace, arch: str, get_network: GetNetwork) -> tuple[Any, TrainResult]:
    cfg = config_from_args(args, arch=arch)
    net = get_network(cfg.symbol)
    result = train_net(cfg, net, args.cfg, frequent=args.frequent, seed=args.seed,
                       overwrite=args.overwrite)  # fmt: skip
    return cfg, result


def _test(args: argparse.Namespace, cfg: Any, get_network: GetNetwork, epoch: int | None):
    return test_net(
        cfg,
        get_network(cfg.symbol),
        args.cfg,
        epoch=epoch,
        thresh=args.thresh,
        ignore_cache=args.ignore_cache,
        vis=args.vis,
        shuffle=args.shuffle,
    )


def train_main(
    arch: str, get_network: GetNetwork, description: str, argv: Sequence[str] | None = None
) -> TrainResult:
    """``train_end2end.py``: train the network of ``--cfg``."""
    args = _parse(description, argv, _add_train_args)
    return _train(args, arch, get_network)[1]


def test_main(
    arch: str, get_network: GetNetwork, description: str, argv: Sequence[str] | None = None
) -> dict[str, Any]:
    """``test.py``: test a checkpoint (``--epoch``, default ``TEST.test_epoch``)."""
    args = _parse(description, argv, _add_test_args)
    cfg = config_from_args(args, arch=arch)
    return _test(args, cfg, get_network, args.epoch)


test_main.__test__ = False  # not a pytest test when imported into a test module


def train_test_main(
    arch: str, get_network: GetNetwork, description: str, argv: Sequence[str] | None = None
) -> dict[str, Any]:
    """``*_train_test.py``: train, then test the epoch just trained (``result.end_epoch``)."""
    args = _parse(description, argv, _add_train_args,
                  lambda p: _add_test_args(p, with_epoch=False))  # fmt: skip
    cfg, result = _train(args, arch, get_network)
    return _test(args, cfg, get_network, result.end_epoch)
