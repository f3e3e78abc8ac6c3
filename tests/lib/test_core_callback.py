"""Tests for lib.core.callback.Speedometer: log format, speed, ETA."""

import logging

import mxnet as mx
import pytest
from mxnet.model import BatchEndParam

from lib.core import callback
from lib.core.callback import Speedometer, format_eta


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture()
def clock(monkeypatch):
    c = FakeClock()
    monkeypatch.setattr(callback.time, "time", c)
    return c


def run(speedo, clock, epoch, nbatches, metric, seconds_per_batch):
    for nbatch in range(nbatches):
        clock.now += seconds_per_batch
        speedo(BatchEndParam(epoch=epoch, nbatch=nbatch, eval_metric=metric, locals=None))


def test_format_eta():
    assert format_eta(0) == "0:00:00"
    assert format_eta(3725.4) == "1:02:05"
    assert format_eta(90000) == "25:00:00"


def test_log_line_with_speed_eta_and_metrics(clock, caplog):
    metric = mx.metric.CompositeEvalMetric([mx.metric.Accuracy(), mx.metric.Loss("RPNL1Loss")])
    metric.update([mx.nd.array([0, 1])], [mx.nd.array([[0.9, 0.1], [0.8, 0.2]])])
    speedo = Speedometer(batch_size=2, frequent=10, total_batches=100)
    with caplog.at_level(logging.INFO, logger="lib.core.callback"):
        run(speedo, clock, epoch=3, nbatches=21, metric=metric, seconds_per_batch=0.5)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2  # batches 10 and 20 (batch 0 starts the timer)
    # 10 batches x 2 samples in 5 s; 79 batches left at 0.5 s
    assert lines[1].startswith("Epoch[3] Batch [20]\tSpeed: 4.00 samples/sec\tETA: 0:00:40\t")
    assert lines[1].endswith("Train-accuracy=0.500000,\tRPNL1Loss=0.500000")


def test_no_eta_without_total_and_restart_each_epoch(clock, caplog):
    speedo = Speedometer(batch_size=1, frequent=2)
    with caplog.at_level(logging.INFO, logger="lib.core.callback"):
        run(speedo, clock, epoch=0, nbatches=3, metric=None, seconds_per_batch=1.0)
        clock.now += 100.0  # epoch-end work: not counted in the next epoch's speed
        run(speedo, clock, epoch=1, nbatches=3, metric=None, seconds_per_batch=1.0)
    assert [r.getMessage() for r in caplog.records] == [
        "Epoch[0] Batch [2]\tSpeed: 1.00 samples/sec",
        "Epoch[1] Batch [2]\tSpeed: 1.00 samples/sec",
    ]
