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

from faster_rcnn.symbols import get_network as get_network_rcnn
from lib.core.checkpoint import load_checkpoint, params_path, save_checkpoint
from lib.core.entry import test_main, train_test_main
from lib.core.initializer import init_params
from lib.core.shapes import param_shapes
from lib.core.tester import test_net
from lib.core.trainer import (
    TrainingOutputExistsError,
    checkpoint_prefix,
    train_net,
)
from lib.dataset import synthetic
from lib.utils.run_lock import LOCK_NAME, FolderLockedError
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
    # 12 batches per epoch; more proposals than the 32 sampled RoIs: random draws every batch;
    # an lr step inside the resumed epochs (iteration 30), which the resumed schedule must keep
    epochs = ["TRAIN.end_epoch=3", "TRAIN.FLIP=true", "TRAIN.RPN_POST_NMS_TOP_N=150",
              "TRAIN.BATCH_ROIS=32", "TRAIN.lr_step=2.5"]  # fmt: skip
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
    resumed_log = (tmp_path / "resumed.log").read_text()
    assert "resuming from the latest complete checkpoint" in resumed_log
    assert "Update[31]: Change learning rate to 1.00000e-03" in resumed_log
    whole_prefix = prefix.replace(str(tmp_path / "killed"), str(tmp_path / "whole"))
    expected, got = _params(whole_prefix, 3), _params(prefix, 3)
    assert sorted(expected) == sorted(got)
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)


# ----------------------------------------------------------------- one run per output folder


def test_a_second_training_into_a_busy_folder_stops_at_once(data_root, tmp_path):
    """Two trainings into one folder would overwrite each other's checkpoints and config and
    write one interleaved log: the second stops, naming the first, and writes nothing."""
    many = tiny_overrides(data_root, tmp_path) + ["TRAIN.end_epoch=1000"]
    first = _run(many, tmp_path / "first.log")
    try:
        deadline = time.time() + 300
        while "Epoch[0] Batch [1]" not in (tmp_path / "first.log").read_text():
            assert first.poll() is None and time.time() < deadline, "the first run ended"
            time.sleep(0.05)
        cfg = tiny_config(KILL_CFG, data_root, tmp_path, ["TRAIN.end_epoch=1000"])
        folder = os.path.join(cfg.output_path, "synthetic_rcnn", "train")
        before = sorted(os.listdir(folder))
        with pytest.raises(FolderLockedError, match=rf"in use by training \(PID {first.pid} "):
            train_net(cfg, get_network_rcnn(cfg.symbol), KILL_CFG, ctx=[mx.cpu()], num_workers=1)
        assert sorted(os.listdir(folder)) == before  # no log, no config of the second run
        assert first.poll() is None  # the first run goes on
    finally:
        first.kill()
        first.wait()
    # the killed run's lock is taken over: the folder is usable again
    cfg.TRAIN.RESUME, cfg.TRAIN.end_epoch = False, 1
    result = train_net(cfg, get_network_rcnn(cfg.symbol), KILL_CFG, ctx=[mx.cpu()],
                       num_workers=1, overwrite=True)  # fmt: skip
    assert result.end_epoch == 1 and not os.path.exists(os.path.join(folder, LOCK_NAME))
    assert (
        f"WARNING lib.core.trainer: took over the lock {os.path.join(folder, LOCK_NAME)} of "
        f"a run that is gone: training (PID {first.pid}" in open(result.log_file).read()
    )


# ---------------------------------------------------------- checkpoints of another network


def _initial_checkpoint(cfg, prefix, epoch=1):
    """Saves the initial params of ``cfg``'s network as checkpoint ``epoch`` (+ states)."""
    net = get_network(cfg.symbol)
    sym = net(cfg, is_train=True)
    arg_shapes, aux_shapes = param_shapes(cfg, sym)
    arg, aux = init_params(arg_shapes, {}, {}, net.init_rules(from_scratch=True), aux_shapes)
    save_checkpoint(prefix, epoch, arg, aux, sym, pickle.dumps(({}, None)))


def test_testing_a_deformable_checkpoint_with_the_plain_network_stops(data_root, tmp_path):
    """The plain R-FCN would drop a Deformable R-FCN checkpoint's offsets and report an AP "of"
    it: the test stops, naming them, before it writes its config or detections."""
    dcn = tiny_config("experiments/rfcn/cfgs/synthetic_rfcn_dcn.yaml", data_root, tmp_path)
    prefix = str(tmp_path / "dcn" / "model")
    _initial_checkpoint(dcn, prefix)
    plain = tiny_config(CFG, data_root, tmp_path)
    with pytest.raises(ValueError) as err:
        test_net(plain, get_network(plain.symbol), CFG, ctx=[mx.cpu()], epoch=1, prefix=prefix,
                 num_workers=1)  # fmt: skip
    message = str(err.value)
    assert message.startswith(f"checkpoint {params_path(prefix, 1)} does not fit the network of")
    unexpected = message.split("arg params the network does not have (")[1]
    assert unexpected.startswith("10): res5a_branch2b_offset_bias, res5a_branch2b_offset_weight")
    assert "rfcn_cls_offset_t_weight" in unexpected and "missing" not in message
    test_dir = os.path.join(plain.output_path, "synthetic_rfcn", "val")
    assert [f for f in os.listdir(test_dir) if not f.endswith(".log")] == []


def test_resuming_with_another_network_stops_before_touching_the_folder(data_root, tmp_path):
    plain = tiny_config(CFG, data_root, tmp_path, ["TRAIN.end_epoch=3"])
    prefix = checkpoint_prefix(plain, CFG)
    _initial_checkpoint(plain, prefix)
    folder = os.path.dirname(prefix)
    with open(os.path.join(folder, "config.yaml"), "w") as f:
        f.write("the run's own config\n")
    stamps = {n: os.stat(os.path.join(folder, n)).st_mtime_ns for n in os.listdir(folder)}

    # the deformable network's config, written into the plain run's folder (same cfg name)
    dcn = tiny_config("experiments/rfcn/cfgs/synthetic_rfcn_dcn.yaml", data_root, tmp_path,
                      ["TRAIN.end_epoch=3", "TRAIN.RESUME=true",
                       f"TRAIN.model_prefix={plain.TRAIN.model_prefix}"])  # fmt: skip
    with pytest.raises(ValueError) as err:
        train_net(dcn, get_network(dcn.symbol), CFG, ctx=[mx.cpu()], num_workers=1)
    assert f"checkpoint {params_path(prefix, 1)} does not fit" in str(err.value)
    assert "missing arg params (10): res5a_branch2b_offset_bias" in str(err.value)
    assert {n: os.stat(os.path.join(folder, n)).st_mtime_ns for n in os.listdir(folder)} == stamps
