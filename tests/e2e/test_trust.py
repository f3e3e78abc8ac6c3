"""Nothing stale, nothing overwritten: result caches, resume, overwrite protection and an exact
resume after a real ``kill -9``, on the tiny R-FCN run of :mod:`tests.e2e.detection`."""

import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time

import mxnet as mx
import numpy as np
import pytest

from lib.core.checkpoint import load_checkpoint, params_path
from lib.core.entry import test_main, train_test_main
from lib.core.tester import test_net
from lib.core.trainer import TrainingOutputExistsError, train_net
from lib.dataset import synthetic
from rfcn.symbols import get_network
from tests.e2e.detection import REPO, tiny_config, tiny_overrides

CFG = "experiments/rfcn/cfgs/synthetic_rfcn.yaml"


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    synthetic.generate(root, formats=["coco"], num_train=6, num_test=2, size=128, seed=3)
    return root


def _train(cfg, **kwargs):
    return train_net(cfg, get_network(cfg.symbol), CFG, ctx=[mx.cpu()], num_workers=1, **kwargs)


def _detections(results):
    with open(results["detections_file"], "rb") as f:
        return pickle.load(f)["all_boxes"]


def test_cached_results_belong_to_their_checkpoint(data_root, tmp_path):
    """Testing epoch 1 after epoch 3 must not report epoch 3's detections (the old bug)."""
    cfg = tiny_config(CFG, data_root, tmp_path, ["TRAIN.end_epoch=3"])
    _train(cfg, seed=0)
    net = get_network(cfg.symbol)

    def run(epoch, **kwargs):
        return test_net(cfg, net, CFG, epoch=epoch, ctx=[mx.cpu()], num_workers=1, **kwargs)

    third = run(3)
    assert not third["cached"]
    boxes3 = _detections(third)
    again = run(3)
    assert again["cached"] and again["AP50"] == third["AP50"]
    first = run(1)
    assert not first["cached"]
    boxes1 = _detections(first)
    assert any(not np.array_equal(a, b) for c1, c3 in zip(boxes1, boxes3) for a, b in zip(c1, c3))
    # other test settings: recomputed as well
    cfg.TEST.NMS = 0.5
    assert not run(1)["cached"]


def test_resume_and_overwrite_protection(data_root, tmp_path):
    cfg = tiny_config(CFG, data_root, tmp_path, ["TRAIN.end_epoch=2"])
    first = _train(cfg, seed=0)
    assert first.end_epoch == 2

    # a plain re-run into the same folder stops before touching anything
    stamp = os.stat(params_path(first.prefix, 1)).st_mtime_ns
    with pytest.raises(TrainingOutputExistsError, match="already holds checkpoints"):
        _train(cfg, seed=0)
    assert os.stat(params_path(first.prefix, 1)).st_mtime_ns == stamp

    # RESUME without begin_epoch continues from the latest complete checkpoint
    cfg.TRAIN.RESUME, cfg.TRAIN.end_epoch = True, 3
    resumed = _train(cfg, seed=0)
    assert (resumed.begin_epoch, resumed.end_epoch) == (2, 3)
    assert len(resumed.history) == 1
    assert os.stat(params_path(first.prefix, 1)).st_mtime_ns == stamp

    # --overwrite starts again and leaves no file of the old run behind
    cfg.TRAIN.RESUME, cfg.TRAIN.end_epoch = False, 1
    _train(cfg, seed=0, overwrite=True)
    assert not os.path.exists(params_path(first.prefix, 2))
    assert not os.path.exists(params_path(first.prefix, 3))


def test_train_and_test_driver_tests_the_epoch_it_trained(data_root, tmp_path):
    """end_epoch=1 while the yaml's TEST.test_epoch is 6: the driver tests epoch 1."""
    common = ["--cfg", CFG] + [
        arg
        for item in tiny_overrides(data_root, tmp_path) + ["TRAIN.end_epoch=1"]
        for arg in ("--set", item)
    ]
    results = train_test_main("rfcn", get_network, "train+test", common + ["--seed", "0"])
    assert "AP50" in results and results["detections_file"].endswith("_detections.pkl")
    # the test driver alone uses TEST.test_epoch (6 here: never trained) and says so
    with pytest.raises(FileNotFoundError, match=r"-0006.params does not exist.*--epoch"):
        test_main("rfcn", get_network, "test", common)
    assert test_main("rfcn", get_network, "test", common + ["--epoch", "1"])["cached"]


# Faster R-CNN samples its RoIs at random (numpy), R-FCN's OHEM config does not: the resume
# must replay that draw too.
KILL_CFG = "experiments/faster_rcnn/cfgs/synthetic_rcnn.yaml"
RUN = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {repo!r})
    import mxnet as mx
    from lib.config import load_config
    from lib.core.trainer import train_net
    from faster_rcnn.symbols import get_network
    cfg = load_config({cfg!r}, {overrides!r})
    train_net(cfg, get_network(cfg.symbol), {cfg!r}, ctx=[mx.cpu()], frequent=1, seed=7,
              num_workers=1)
    """
)


def _run(overrides, log_path):
    script = RUN.format(repo=str(REPO), cfg=KILL_CFG, overrides=overrides)
    log = open(log_path, "w")
    return subprocess.Popen([sys.executable, "-c", script], stdout=log, stderr=subprocess.STDOUT)


def _params(prefix, epoch):
    arg, aux = load_checkpoint(prefix, epoch)
    return {k: v.asnumpy() for k, v in {**arg, **aux}.items()}


def test_resume_after_kill_is_bit_identical(data_root, tmp_path):
    """A run killed (SIGKILL) in the middle of its second epoch and resumed ends with exactly
    the parameters of the same run uninterrupted."""
    # 12 batches per epoch; more proposals than the 32 sampled RoIs: random draws every batch
    epochs = ["TRAIN.end_epoch=3", "TRAIN.FLIP=true", "TRAIN.RPN_POST_NMS_TOP_N=150",
              "TRAIN.BATCH_ROIS=32"]  # fmt: skip
    whole = tiny_overrides(data_root, tmp_path / "whole") + epochs
    assert _run(whole, tmp_path / "whole.log").wait(timeout=300) == 0

    killed = tiny_overrides(data_root, tmp_path / "killed") + epochs
    proc = _run(killed, tmp_path / "killed.log")
    deadline = time.time() + 300
    while "Epoch[1] Batch [3]" not in (tmp_path / "killed.log").read_text():
        assert proc.poll() is None and time.time() < deadline, "the run ended before epoch 1"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    cfg = tiny_config(KILL_CFG, data_root, tmp_path / "killed")
    prefix = os.path.join(cfg.output_path, "synthetic_rcnn", "train", cfg.TRAIN.model_prefix)
    assert os.path.exists(params_path(prefix, 1)) and not os.path.exists(params_path(prefix, 2))

    resumed = _run(killed + ["TRAIN.RESUME=true"], tmp_path / "resumed.log")
    assert resumed.wait(timeout=300) == 0
    assert "resuming from the latest complete checkpoint" in (tmp_path / "resumed.log").read_text()
    whole_prefix = prefix.replace(str(tmp_path / "killed"), str(tmp_path / "whole"))
    expected, got = _params(whole_prefix, 3), _params(prefix, 3)
    assert sorted(expected) == sorted(got)
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)
