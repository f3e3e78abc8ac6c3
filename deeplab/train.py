"""Training of DeepLab / Deformable DeepLab semantic segmentation.

    python deeplab/train.py --cfg experiments/deeplab/cfgs/<name>.yaml [--set KEY=VALUE ...]
        [--seed N] [--frequent N] [--overwrite]

The config's ``symbol`` picks the network from :data:`deeplab.symbols.SYMBOLS`; the shared
trainer (:func:`lib.core.trainer.train_net`) does the rest: the segdbs of ``dataset.image_set``
(flipped copies with ``TRAIN.FLIP``), random crops (``TRAIN.ENABLE_CROP``, ``CROP_HEIGHT`` x
``CROP_WIDTH``) and scales, label 255 ignored, SGD, checkpoints, resume and overwrite protection.
"""

from __future__ import annotations

import sys

if __name__ == "__main__":
    import _init_paths  # noqa: F401  (puts the repo root on sys.path)

from deeplab.symbols import get_network
from lib.core.entry import train_main
from lib.core.trainer import TrainResult
from lib.utils.cli import run_cli


def main(argv: list[str] | None = None) -> TrainResult:
    return train_main("deeplab", get_network, "Train DeepLab", argv)


if __name__ == "__main__":
    sys.exit(run_cli(main))
