"""Testing of a trained DeepLab / Deformable DeepLab.

    python deeplab/test.py --cfg experiments/deeplab/cfgs/<name>.yaml [--epoch N] [--vis]
        [--set KEY=VALUE ...]

Runs the checkpoint (default ``TEST.test_epoch``) over ``dataset.test_image_set`` on full images
at ``SCALES[0]`` (:func:`lib.core.tester.test_net` with
:func:`lib.core.seg_tester.segment_dataset`): one confusion matrix over the set, per-class IoU
and mean IoU in the log and in ``<imdb name>_segmentation_results.json`` beside it; ``--vis``
also writes the predictions as colour PNGs blended over the images.
"""

from __future__ import annotations

import sys
from typing import Any

if __name__ == "__main__":
    import _init_paths  # noqa: F401  (puts the repo root on sys.path)

from deeplab.symbols import get_network
from lib.core.entry import test_main
from lib.utils.cli import run_cli


def main(argv: list[str] | None = None) -> dict[str, Any]:
    return test_main("deeplab", get_network, "Test a trained DeepLab", argv)


if __name__ == "__main__":
    sys.exit(run_cli(main))
