"""Train FPN end to end, then test the epoch it trained:

python experiments/fpn/fpn_end2end_train_test.py --cfg <yaml> [--set KEY=VALUE ...]
"""

import os
import sys

# An entry point: the repository root goes on sys.path (what fpn/_init_paths.py does).
sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir, os.pardir)))

from fpn.symbols import get_network  # noqa: E402
from lib.core.entry import train_test_main  # noqa: E402
from lib.utils.cli import run_cli  # noqa: E402


def main(argv=None):
    return train_test_main("fpn", get_network, "Train and test FPN end to end", argv)


if __name__ == "__main__":
    sys.exit(run_cli(main))
