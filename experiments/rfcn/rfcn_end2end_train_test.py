"""Train R-FCN end to end, then test it: ``python experiments/rfcn/rfcn_end2end_train_test.py
--cfg experiments/rfcn/cfgs/<name>.yaml [--set KEY=VALUE ...]``."""

import argparse
import os
import sys

os.environ.setdefault("PYTHONUNBUFFERED", "1")
os.environ.setdefault("MXNET_CUDNN_AUTOTUNE_DEFAULT", "0")
os.environ.setdefault("MXNET_ENABLE_GPU_P2P", "0")
# An entry point: the repository root goes on sys.path (what rfcn/_init_paths.py does).
sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir, os.pardir)))

from lib.config import add_config_args, config_from_args
from rfcn.test import test_net
from rfcn.train_end2end import train_net


def main() -> None:
    parser = argparse.ArgumentParser(description="Train and test R-FCN end to end")
    add_config_args(parser)
    parser.add_argument("--frequent", type=int, default=None, help="log every N batches")
    parser.add_argument("--seed", type=int, default=None, help="seed MXNet, numpy and the loader")
    parser.add_argument("--thresh", type=float, default=1e-3, help="minimum detection score")
    args = parser.parse_args()
    cfg = config_from_args(args, arch="rfcn")
    train_net(cfg, args.cfg, frequent=args.frequent, seed=args.seed)
    test_net(cfg, args.cfg, thresh=args.thresh, ignore_cache=True)


if __name__ == "__main__":
    main()
