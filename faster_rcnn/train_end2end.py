"""End-to-end training of Faster R-CNN / Deformable Faster R-CNN (RPN and 2fc head together).

    python faster_rcnn/train_end2end.py --cfg experiments/faster_rcnn/cfgs/<name>.yaml
        [--set KEY=VALUE ...] [--seed N] [--frequent N] [--overwrite]

The config's ``symbol`` picks the network from :data:`faster_rcnn.symbols.SYMBOLS`; the shared
trainer (:func:`lib.core.trainer.train_net`) does the rest, as for R-FCN.
"""

from __future__ import annotations

import sys

if __name__ == "__main__":
    import _init_paths  # noqa: F401  (puts the repo root on sys.path)

from faster_rcnn.symbols import get_network
from lib.core.entry import train_main
from lib.core.trainer import TrainResult
from lib.utils.cli import run_cli


def main(argv: list[str] | None = None) -> TrainResult:
    return train_main("faster_rcnn", get_network, "Train Faster R-CNN end to end", argv)


if __name__ == "__main__":
    sys.exit(run_cli(main))
