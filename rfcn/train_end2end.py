"""End-to-end training of R-FCN / Deformable R-FCN (RPN and head together).

    python rfcn/train_end2end.py --cfg experiments/rfcn/cfgs/<name>.yaml [--set KEY=VALUE ...]
        [--seed N] [--frequent N] [--overwrite]

The config's ``symbol`` picks the network from :data:`rfcn.symbols.SYMBOLS`; the shared trainer
(:func:`lib.core.trainer.train_net`) does the rest: data, parameters (``network.pretrained`` or
from scratch), SGD, checkpoints ``<output_path>/<cfg name>/<image_set>/<model_prefix>-%04d.params``
with the ``*_test`` bbox weights, resume (``--set TRAIN.RESUME=true``) and overwrite protection.
"""

from __future__ import annotations

import sys

if __name__ == "__main__":
    import _init_paths  # noqa: F401  (puts the repo root on sys.path)

from lib.core.entry import train_main
from lib.core.trainer import TrainResult
from lib.utils.cli import run_cli
from rfcn.symbols import get_network


def main(argv: list[str] | None = None) -> TrainResult:
    return train_main("rfcn", get_network, "Train R-FCN end to end", argv)


if __name__ == "__main__":
    sys.exit(run_cli(main))
