"""Test a trained DeepLab (``--epoch``, default ``TEST.test_epoch``; ``--vis``):

python experiments/deeplab/deeplab_test.py --cfg <yaml> [--set KEY=VALUE ...]
"""

import os
import sys

# An entry point: the repository root goes on sys.path (what deeplab/_init_paths.py does).
sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir, os.pardir)))

from deeplab.symbols import get_network  # noqa: E402
from lib.core.entry import test_main  # noqa: E402
from lib.utils.cli import run_cli  # noqa: E402


def main(argv=None):
    return test_main("deeplab", get_network, "Test a trained DeepLab", argv)


if __name__ == "__main__":
    sys.exit(run_cli(main))
