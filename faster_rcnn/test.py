"""Testing of a trained Faster R-CNN / Deformable Faster R-CNN.

    python faster_rcnn/test.py --cfg experiments/faster_rcnn/cfgs/<name>.yaml [--epoch N]
        [--ignore_cache] [--thresh 1e-3] [--set KEY=VALUE ...]

The shared tester (:func:`lib.core.tester.test_net`), as for R-FCN: the network's own RPN
(``TEST.HAS_RPN``) or given proposals (``dataset.proposal``), ``TEST_SCALES``, NMS or soft-NMS,
the dataset's metric.
"""

from __future__ import annotations

import sys
from typing import Any

if __name__ == "__main__":
    import _init_paths  # noqa: F401  (puts the repo root on sys.path)

from faster_rcnn.symbols import get_network
from lib.core.entry import test_main
from lib.utils.cli import run_cli


def main(argv: list[str] | None = None) -> dict[str, Any]:
    return test_main("faster_rcnn", get_network, "Test a trained Faster R-CNN", argv)


if __name__ == "__main__":
    sys.exit(run_cli(main))
