"""Test a trained R-FCN: ``python experiments/rfcn/rfcn_test.py --cfg <yaml> [--ignore_cache]``."""

import os
import sys

os.environ.setdefault("PYTHONUNBUFFERED", "1")
os.environ.setdefault("MXNET_CUDNN_AUTOTUNE_DEFAULT", "0")
# An entry point: the repository root goes on sys.path (what rfcn/_init_paths.py does).
sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir, os.pardir)))

from rfcn import test

if __name__ == "__main__":
    test.main()
