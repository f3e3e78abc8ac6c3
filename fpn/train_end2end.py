"""End-to-end training of FPN / Deformable FPN (RPN over the pyramid and 2fc head together).

    python fpn/train_end2end.py --cfg experiments/fpn/cfgs/<name>.yaml [--set KEY=VALUE ...]
        [--seed N] [--frequent N] [--overwrite]

The config's ``symbol`` picks the network from :data:`fpn.symbols.SYMBOLS`; the shared trainer
(:func:`lib.core.trainer.train_net`) does the rest, as for the other detectors, with anchor
targets over every pyramid level and the gradients averaged over the batch (the original FPN's).
"""

from __future__ import annotations

import sys

if __name__ == "__main__":
    import _init_paths  # noqa: F401  (puts the repo root on sys.path)

from fpn.symbols import get_network
from lib.core.entry import train_main
from lib.core.trainer import TrainResult
from lib.utils.cli import run_cli


def main(argv: list[str] | None = None) -> TrainResult:
    return train_main("fpn", get_network, "Train FPN end to end", argv)


if __name__ == "__main__":
    sys.exit(run_cli(main))
