"""Training curves: the trainer's log lines parsed, plotted on shared axes, written beside a log."""

from __future__ import annotations

import logging
import types

import cv2
import numpy as np
import pytest

from lib.core.callback import Speedometer
from lib.tools.plot_log import main as plot_log_main
from lib.utils.training_curves import (
    batches_per_epoch,
    curves_path,
    parse_log,
    plot_logs,
    write_curves_beside_log,
)

PREFIX = "2026-12-01 14:56:11,939 INFO lib.core.callback: "


class _Metric:
    def __init__(self, values):
        self.values = values

    def get_name_value(self):
        return list(self.values.items())


class _Param:
    def __init__(self, epoch, nbatch, values):
        self.epoch, self.nbatch, self.eval_metric = epoch, nbatch, _Metric(values)


class _Clock:
    """time.time() advancing 0.37 s per call: batches take time, so the ETA is not 0."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        self.now += 0.37
        return self.now


def _write_log(path, epochs=3, batches=57, frequent=10, loss0=1.0, caplog=None):
    """A log as the trainer writes it: the real Speedometer's lines plus epoch summaries."""
    speedometer = Speedometer(batch_size=2, frequent=frequent, total_batches=batches)
    lines = ["INFO lib.core.trainer: max shapes: data [('data', (2, 3, 256, 384)), ('im_info', "
             "(2, 3))], label []"]  # fmt: skip
    logger = logging.getLogger("lib.core.callback")
    for epoch in range(epochs):
        for nbatch in range(batches):
            loss = loss0 / (1 + epoch * batches + nbatch)
            values = {"RPNAcc": 1 - loss / 2, "RPNLogLoss": loss, "RCNNL1Loss": loss / 3}
            caplog.clear()
            with caplog.at_level(logging.INFO, logger="lib.core.callback"):
                speedometer(_Param(epoch, nbatch, values))
            lines += [PREFIX + r.getMessage() for r in caplog.records if r.name == logger.name]
        for name, value in values.items():
            lines.append(f"INFO lib.core.module: Epoch[{epoch}] Train-{name}={value:f}")
        lines.append(f"INFO lib.core.module: Epoch[{epoch}] Time cost=12.5")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(autouse=True)
def _clock(monkeypatch):
    monkeypatch.setattr("lib.core.callback.time", types.SimpleNamespace(time=_Clock()))


def test_parse_the_speedometer_and_epoch_lines(tmp_path, caplog):
    log = parse_log(_write_log(tmp_path / "synthetic_rfcn_2026-12-01-14-54-07.log", caplog=caplog))
    assert log.name == "synthetic_rfcn" and log.batch_size == 2
    assert log.metrics == ["RPNAcc", "RPNLogLoss", "RCNNL1Loss"]
    # batches 10, 20, ... 50 of each epoch (the Speedometer skips its first call)
    assert [(e, b) for e, b, _ in log.batch["RPNLogLoss"]][:3] == [(0, 10), (0, 20), (0, 30)]
    assert len(log.batch["RPNLogLoss"]) == 3 * 5
    assert log.batch["RPNLogLoss"][0][2] == pytest.approx(1 / 11, abs=1e-6)
    assert [e for e, _ in log.epoch["RPNAcc"]] == [0, 1, 2]
    # 57 batches, of which the last logged is 50: the ETA tells the rest, to within rounding
    assert abs(batches_per_epoch(log) - 57) <= 2


def test_plot_two_logs_on_shared_axes(tmp_path, caplog):
    plain = _write_log(tmp_path / "plain_2026-12-01-14-54-07.log", loss0=1.0, caplog=caplog)
    dcn = _write_log(tmp_path / "dcn_2026-12-01-15-54-07.log", loss0=0.5, caplog=caplog)
    out = plot_logs([plain, dcn], tmp_path / "both.png", batches=57)
    image = cv2.imread(out)
    assert image is not None and image.shape[0] > 300 and image.shape[1] > 900
    assert image.std() > 10  # not blank
    # matplotlib's first two colours (C0 blue, C1 orange, as BGR) draw the two runs
    for bgr in ((180, 119, 31), (14, 127, 255)):
        assert np.all(image == bgr, axis=2).sum() > 100, bgr


def test_curves_beside_the_log_never_raise(tmp_path, caplog):
    log = _write_log(tmp_path / "run_2026-12-01-14-54-07.log", caplog=caplog)
    out = write_curves_beside_log(str(log), batches=57)
    assert out == curves_path(log) == str(tmp_path / "run_2026-12-01-14-54-07_curves.png")
    assert cv2.imread(out).std() > 10

    empty = tmp_path / "empty.log"
    empty.write_text("nothing trained\n")
    with caplog.at_level(logging.WARNING):
        assert write_curves_beside_log(str(empty)) is None
        assert write_curves_beside_log(str(tmp_path / "missing.log")) is None
        assert write_curves_beside_log(None) is None
    assert sum("no training curves" in r.getMessage() for r in caplog.records) == 2


def test_plot_log_command_line(tmp_path, caplog, capsys):
    a = _write_log(tmp_path / "a.log", caplog=caplog)
    b = _write_log(tmp_path / "b.log", loss0=2.0, caplog=caplog)
    assert plot_log_main([str(a)]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "a_curves.png")
    out = tmp_path / "ab.png"
    assert plot_log_main([str(a), str(b), "--out", str(out), "--labels", "R-FCN", "DCN"]) == 0
    assert cv2.imread(str(out)) is not None
    assert plot_log_main([str(tmp_path / "none.log")]) == 1
    assert "none.log" in capsys.readouterr().err
