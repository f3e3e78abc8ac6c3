"""Batch-end callbacks. The epoch-end checkpoint callback is
:func:`lib.core.checkpoint.do_checkpoint`."""

from __future__ import annotations

import logging
import time
from typing import Any

__all__ = ["Speedometer", "format_eta"]

logger = logging.getLogger(__name__)


def format_eta(seconds: float) -> str:
    """``H:MM:SS`` (hours unbounded)."""
    seconds = max(0, round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Speedometer:
    """Logs speed, ETA and the running metrics every ``frequent`` batches.

    Line format (the original's, plus ETA when ``total_batches`` is known)::

        Epoch[0] Batch [100]\tSpeed: 2.31 samples/sec\tETA: 0:12:03\tTrain-RPNAcc=0.912,\t...

    The speed is measured over the last ``frequent`` batches; the ETA is the rest of the
    epoch at that speed. The metrics are not reset (running averages over the epoch), as in
    the original. A new epoch (batch index going back) restarts the timer.

    Args:
        batch_size: samples per batch (all devices).
        frequent: log every this many batches.
        total_batches: batches per epoch, for the ETA (None: no ETA).
    """

    def __init__(self, batch_size: int, frequent: int = 50, total_batches: int | None = None):
        self.batch_size = batch_size
        self.frequent = frequent
        self.total_batches = total_batches
        self.init = False
        self.tic = 0.0
        self.last_count = 0

    def __call__(self, param: Any) -> None:
        count = param.nbatch
        if self.last_count > count:
            self.init = False
        self.last_count = count

        if not self.init:
            self.init = True
            self.tic = time.time()
            return
        if count % self.frequent != 0:
            return
        elapsed = max(time.time() - self.tic, 1e-12)
        speed = self.frequent * self.batch_size / elapsed
        fields = [f"Epoch[{param.epoch}] Batch [{count}]", f"Speed: {speed:.2f} samples/sec"]
        if self.total_batches is not None:
            remaining = max(self.total_batches - (count + 1), 0)
            fields.append(f"ETA: {format_eta(remaining * elapsed / self.frequent)}")
        if param.eval_metric is not None:
            name_values = param.eval_metric.get_name_value()
            fields.append("Train-" + ",\t".join(f"{n}={v:f}" for n, v in name_values))
        logger.info("\t".join(fields))
        self.tic = time.time()
