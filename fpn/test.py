"""Testing of a trained FPN / Deformable FPN.

    python fpn/test.py --cfg experiments/fpn/cfgs/<name>.yaml [--epoch N] [--ignore_cache]
        [--thresh 1e-3] [--set KEY=VALUE ...]

The shared tester (:func:`lib.core.tester.test_net`), as for the other detectors: proposals
over the pyramid (``TEST.HAS_RPN``) or given ones (``dataset.proposal``), every ``TEST_SCALES``
scale merged before one suppression, NMS or soft-NMS (the original FPN's Gaussian), the
dataset's metric.
"""

from __future__ import annotations

import sys
from typing import Any

if __name__ == "__main__":
    import _init_paths  # noqa: F401  (puts the repo root on sys.path)

from fpn.symbols import get_network
from lib.core.entry import test_main
from lib.utils.cli import run_cli


def main(argv: list[str] | None = None) -> dict[str, Any]:
    return test_main("fpn", get_network, "Test a trained FPN", argv)


if __name__ == "__main__":
    sys.exit(run_cli(main))
