"""Testing of a trained R-FCN / Deformable R-FCN.

    python rfcn/test.py --cfg experiments/rfcn/cfgs/<name>.yaml [--epoch N] [--ignore_cache]
        [--thresh 1e-3] [--set KEY=VALUE ...]

Loads ``<output_path>/<cfg name>/<train image_set>/<model_prefix>-<epoch>.params`` (default
``TEST.test_epoch``) and runs the shared tester (:func:`lib.core.tester.test_net`) over
``dataset.test_image_set``: proposals from the network's own RPN (``TEST.HAS_RPN``) or from
``dataset.proposal``, every ``TEST_SCALES`` scale, NMS or soft-NMS, the dataset's metric.
Logs and results go to ``<output_path>/<cfg name>/<test_image_set>/``.
"""

from __future__ import annotations

import sys
from typing import Any

if __name__ == "__main__":
    import _init_paths  # noqa: F401  (puts the repo root on sys.path)

from lib.core.entry import test_main
from lib.utils.cli import run_cli
from rfcn.symbols import get_network


def main(argv: list[str] | None = None) -> dict[str, Any]:
    return test_main("rfcn", get_network, "Test a trained R-FCN", argv)


if __name__ == "__main__":
    sys.exit(run_cli(main))
