"""Training curves from the logs the trainer writes: parse, then plot losses and metrics.

The trainer's log (``lib.core.trainer.train_net``; one file per run, see
:mod:`lib.utils.logger`) holds two kinds of lines this module reads:

* the Speedometer's, every ``frequent`` batches (running means over the epoch so far)::

      Epoch[1] Batch [20]\tSpeed: 4.83 samples/sec\tETA: 0:01:20\tTrain-RPNAcc=0.97,\tRPNL1Loss=...

* the epoch summaries of ``MutableModule.fit``: ``Epoch[1] Train-RPNAcc=0.981``;

plus ``max shapes: data [('data', (B, ...`` (B = images per batch). A point is placed at
iteration ``epoch * batches_per_epoch + batch``; the epoch summaries at the end of their epoch.
``batches_per_epoch`` is the trainer's (it passes it) or, from a log alone, estimated from the
ETA: ``remaining batches = ETA * speed / B``, the median over the epoch's lines (a few batches
off at most, invisible on a plot), and never less than the largest batch index logged.

:func:`plot_logs` draws one panel per metric, one line per log (e.g. R-FCN against Deformable
R-FCN), on shared axes; :func:`write_curves_beside_log` is what the trainer calls at the end of
every run (``<log stem>_curves.png`` beside the log; a failure only logs a warning).
``python -m lib.tools.plot_log`` is the command line.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = [
    "TrainingLog",
    "batches_per_epoch",
    "curves_path",
    "parse_log",
    "plot_logs",
    "write_curves_beside_log",
]

logger = logging.getLogger(__name__)

_BATCH = re.compile(
    r"Epoch\[(?P<epoch>\d+)\] Batch \[(?P<batch>\d+)\]\s+Speed: (?P<speed>[\d.]+) samples/sec"
    r"(?:\s+ETA: (?P<h>\d+):(?P<m>\d\d):(?P<s>\d\d))?\s+Train-(?P<metrics>.*)$"
)
_EPOCH = re.compile(r"Epoch\[(?P<epoch>\d+)\] Train-(?P<name>[^=\s]+)=(?P<value>\S+)\s*$")
_BATCH_SIZE = re.compile(r"max shapes: data \[\('data', \((?P<batch_size>\d+),")
# The log file's timestamp suffix (lib.utils.logger.setup_logger): <cfg name>_<Y-m-d-H-M-S>.log
_STAMP = re.compile(r"_\d{4}-\d\d-\d\d-\d\d-\d\d-\d\d$")


@dataclasses.dataclass
class TrainingLog:
    """What a training log says about its run.

    Attributes:
        path: the log file.
        name: the run's name: the file name without its timestamp and extension.
        batch: per metric, ``(epoch, batch, value)`` of every Speedometer line.
        epoch: per metric, ``(epoch, value)`` of every epoch summary.
        batch_size: images per batch (None: not logged).
        remaining: ``(epoch, batch index + 1 + remaining batches)`` estimated from each line
            with an ETA (see the module docstring).
    """

    path: str
    name: str
    batch: dict[str, list[tuple[int, int, float]]]
    epoch: dict[str, list[tuple[int, float]]]
    batch_size: int | None = None
    remaining: list[tuple[int, float]] = dataclasses.field(default_factory=list)

    @property
    def metrics(self) -> list[str]:
        """Metric names in the order they first appear."""
        return list(dict.fromkeys([*self.batch, *self.epoch]))

    @property
    def empty(self) -> bool:
        return not self.batch and not self.epoch


def _value(text: str) -> float:
    try:
        return float(text.rstrip(","))
    except ValueError:
        return math.nan


def parse_log(path: str | os.PathLike) -> TrainingLog:
    """Reads a training log (see the module docstring); unknown lines are skipped.

    Raises:
        OSError: the file cannot be read.
    """
    path = os.fspath(path)
    log = TrainingLog(path, _STAMP.sub("", Path(path).stem), {}, {})
    speeds = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            m = _BATCH.search(line)
            if m:
                epoch, batch = int(m["epoch"]), int(m["batch"])
                for item in m["metrics"].split("\t"):
                    name, sep, value = item.strip().rstrip(",").partition("=")
                    if sep and name:
                        log.batch.setdefault(name, []).append((epoch, batch, _value(value)))
                if m["h"] is not None:
                    eta = int(m["h"]) * 3600 + int(m["m"]) * 60 + int(m["s"])
                    speeds.append((epoch, batch, float(m["speed"]), eta))
                continue
            m = _EPOCH.search(line)
            if m:
                log.epoch.setdefault(m["name"], []).append((int(m["epoch"]), _value(m["value"])))
                continue
            m = _BATCH_SIZE.search(line)
            if m and log.batch_size is None:
                log.batch_size = int(m["batch_size"])
    if log.batch_size:
        log.remaining = [(e, b + 1 + eta * speed / log.batch_size) for e, b, speed, eta in speeds]
    return log


def batches_per_epoch(log: TrainingLog) -> int:
    """Batches per epoch of a logged run, estimated (see the module docstring); at least 1."""
    largest = max((b for values in log.batch.values() for _, b, _ in values), default=0) + 1
    if log.remaining:
        return max(largest, int(round(float(np.median([t for _, t in log.remaining])))))
    return largest


def curves_path(log_file: str | os.PathLike) -> str:
    """``<log file without .log>_curves.png``, beside the log."""
    log_file = os.fspath(log_file)
    stem = log_file[: -len(".log")] if log_file.endswith(".log") else log_file
    return stem + "_curves.png"


def _unique_labels(labels: Sequence[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        out.append(label if seen[label] == 1 else f"{label} ({seen[label]})")
    return out


def plot_logs(
    logs: Sequence[TrainingLog | str | os.PathLike],
    out_png: str | os.PathLike,
    labels: Sequence[str] | None = None,
    batches: Sequence[int | None] | int | None = None,
    title: str | None = None,
) -> str:
    """Plots the losses and metrics of one or several logs against iterations, on shared axes.

    Args:
        logs: parsed logs or log files.
        out_png: the PNG to write (its folder is created).
        labels: one per log; default the run names (log file names without timestamps).
        batches: batches per epoch, one per log or one for all; None estimates them
            (:func:`batches_per_epoch`).
        title: the figure title; default the labels.

    Returns:
        ``out_png``.

    Raises:
        ValueError: no log holds a training line.
    """
    logs = [log if isinstance(log, TrainingLog) else parse_log(log) for log in logs]
    if not logs or all(log.empty for log in logs):
        raise ValueError(
            "no training lines (Speedometer 'Epoch[..] Batch [..]' or 'Epoch[..] Train-') in "
            + ", ".join(log.path for log in logs)
        )
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # no global backend switch
    from matplotlib.figure import Figure

    labels = _unique_labels(list(labels) if labels else [log.name for log in logs])
    if batches is None or isinstance(batches, int):
        batches = [batches] * len(logs)
    per_epoch = [b if b else batches_per_epoch(log) for log, b in zip(logs, batches)]
    metrics = list(dict.fromkeys(m for log in logs for m in log.metrics))

    columns = min(3, len(metrics))
    rows = math.ceil(len(metrics) / columns)
    height = 3.1 * rows + 0.25 * max(2, len(logs)) + 0.3  # room for the title and legend
    fig = Figure(figsize=(4.4 * columns, height), dpi=100)
    FigureCanvasAgg(fig)
    colours = [f"C{i % 10}" for i in range(len(logs))]
    for k, metric in enumerate(metrics):
        ax = fig.add_subplot(rows, columns, k + 1)
        for log, label, colour, b in zip(logs, labels, colours, per_epoch):
            points = log.batch.get(metric, [])
            if points:
                x = [e * b + i for e, i, _ in points]
                ax.plot(x, [v for _, _, v in points], color=colour, lw=1.2, label=label)
            ends = log.epoch.get(metric, [])
            if ends:
                ax.plot([(e + 1) * b for e, _ in ends], [v for _, v in ends], "o",
                        color=colour, ms=4, label=None if points else label)  # fmt: skip
        ax.set_title(metric, fontsize=10)
        ax.set_xlabel("iteration", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
        if "loss" in metric.lower():
            ax.set_ylim(bottom=0)
    handles, names = fig.axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="upper right", fontsize=9, frameon=False)
    shown = title or "  vs  ".join(labels)
    caption = "lines: running means over the epoch; dots: epoch ends"
    fig.suptitle(f"{shown}\n{caption}", fontsize=10, x=0.02, ha="left")
    fig.tight_layout(rect=(0, 0, 1, 1 - (0.25 * max(2, len(logs)) + 0.3) / height))
    out_png = os.fspath(out_png)
    os.makedirs(os.path.dirname(os.path.abspath(out_png)), exist_ok=True)
    fig.savefig(out_png)
    return out_png


def write_curves_beside_log(log_file: str | None, batches: int | None = None) -> str | None:
    """The training curves of a finished run as ``<log stem>_curves.png`` beside its log.

    Never raises: a run's checkpoints matter more than its picture, so any failure (no log,
    nothing logged yet, matplotlib missing) is logged as a warning and None returned.
    """
    if not log_file:
        return None
    try:
        out = plot_logs([log_file], curves_path(log_file), batches=batches)
    except Exception as err:  # any failure: see the docstring
        logger.warning("no training curves for %s: %s: %s", log_file, type(err).__name__, err)
        return None
    logger.info("training curves: %s", out)
    return out
