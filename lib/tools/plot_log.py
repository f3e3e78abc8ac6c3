"""Draw the training curves of one or several logs, e.g. R-FCN against Deformable R-FCN.

Usage::

    python -m lib.tools.plot_log <log> [<log> ...] [--out curves.png] [--labels A B ...]
        [--batches-per-epoch N]

Each log is a training log of ``lib.core.trainer`` (``output/<...>/<cfg>_<time>.log``); the
losses and metrics go one panel each, against iterations, one line per log on shared axes
(:func:`lib.utils.training_curves.plot_logs`). The PNG goes to ``--out``, by default beside the
log for one log (``<log stem>_curves.png``, the file the trainer writes at the end of a run)
and to ``curves.png`` for several. Its path is printed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from lib.utils.cli import add_debug_arg, run_cli
from lib.utils.training_curves import curves_path, plot_logs


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lib.tools.plot_log",
        description="Plot training losses and metrics of one or several training logs.",
    )
    parser.add_argument("logs", nargs="+", help="training log files")
    parser.add_argument("--out", default=None, help="PNG to write (default: see the module doc)")
    parser.add_argument("--labels", nargs="+", default=None, help="one legend label per log")
    parser.add_argument("--batches-per-epoch", type=int, default=None,
                        help="batches per epoch (default: estimated from each log)")  # fmt: skip
    add_debug_arg(parser)
    args = parser.parse_args(argv)
    if args.labels and len(args.labels) != len(args.logs):
        parser.error(f"{len(args.labels)} labels for {len(args.logs)} logs")
    out = args.out or (curves_path(args.logs[0]) if len(args.logs) == 1 else "curves.png")
    try:
        plot_logs(args.logs, out, labels=args.labels, batches=args.batches_per_epoch)
    except (OSError, ValueError) as err:
        print(f"plot_log: {err}", file=sys.stderr)
        return 1
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main, prog="plot_log"))
