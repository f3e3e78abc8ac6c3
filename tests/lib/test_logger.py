"""Tests for lib.utils.logger: output layout, log content, saved config, no duplicate handlers."""

import logging
import re
import sys
import types

import mxnet as mx
import numpy as np
import pytest
import yaml
from easydict import EasyDict

import lib
from lib.utils import logger as logger_mod
from lib.utils.logger import create_logger, experiment_output_path


def _ours():
    return [h for h in logging.getLogger().handlers if getattr(h, logger_mod._HANDLER_TAG, False)]


@pytest.fixture(autouse=True)
def _restore_root_logger():
    root = logging.getLogger()
    level = root.level
    yield
    for h in _ours():
        root.removeHandler(h)
        h.close()
    root.setLevel(level)


@pytest.fixture()
def fake_ops(monkeypatch):
    """Installs a stand-in ``lib.ops`` whose build_info is the given callable."""

    def install(build_info):
        mod = types.ModuleType("lib.ops")
        mod.build_info = build_info
        monkeypatch.setitem(sys.modules, "lib.ops", mod)
        monkeypatch.setattr(lib, "ops", mod, raising=False)

    return install


def _cfg():
    return EasyDict(
        {
            "symbol": "resnet_v1_101_rfcn_dcn",
            "network": {"PIXEL_MEANS": np.array([103.06, 115.90, 123.15])},
            "TRAIN": {"lr": 0.0005, "BATCH_IMAGES": np.int64(1)},
        }
    )


def _read_log(path):
    logs = sorted(path.glob("*.log"))
    assert len(logs) == 1, logs
    return logs[0].name, logs[0].read_text()


def test_create_logger_layout_and_content(tmp_path, fake_ops):
    fake_ops(lambda: {"version": "0.1", "cuda": False})
    root = tmp_path / "output" / "rfcn" / "voc"
    logger, out = create_logger(
        str(root), "experiments/rfcn/cfgs/my_exp.yaml", "2007_trainval+2012_trainval", cfg=_cfg()
    )
    assert logger is logging.getLogger()
    assert out == str(root / "my_exp" / "2007_trainval_2012_trainval")
    assert out == experiment_output_path(
        str(root), "cfgs/my_exp.yaml", "2007_trainval+2012_trainval"
    )

    logging.getLogger("lib.some.module").info("hello from a library module")
    name, text = _read_log(root / "my_exp" / "2007_trainval_2012_trainval")
    assert re.fullmatch(r"my_exp_\d{4}-\d\d-\d\d-\d\d-\d\d-\d\d\.log", name)
    assert f"mxnet version: {mx.__version__}" in text
    assert "operator library: version=0.1, cuda=False" in text
    assert "hello from a library module" in text
    assert re.search(
        r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO ", text, re.MULTILINE
    )  # time + level
    # The merged config is logged with arrays as lists, and saved as config.yaml.
    assert "PIXEL_MEANS: [103.06, 115.9, 123.15]" in text
    saved = yaml.safe_load(
        (root / "my_exp" / "2007_trainval_2012_trainval" / "config.yaml").read_text()
    )
    assert saved["network"]["PIXEL_MEANS"] == [103.06, 115.9, 123.15]
    assert saved["TRAIN"]["BATCH_IMAGES"] == 1


def test_operator_library_not_loaded(tmp_path, fake_ops):
    def build_info():
        raise RuntimeError("operator library not built: run `sh init.sh`")

    fake_ops(build_info)
    create_logger(str(tmp_path), "a.yaml", "train")
    _, text = _read_log(tmp_path / "a" / "train")
    assert "operator library: not loaded (RuntimeError: operator library not built" in text
    assert not (tmp_path / "a" / "train" / "config.yaml").exists()  # no cfg given


def test_second_call_does_not_duplicate_handlers(tmp_path, fake_ops):
    fake_ops(lambda: "stub")
    root = logging.getLogger()
    foreign = len(root.handlers)
    create_logger(str(tmp_path), "c.yaml", "train2014+val2014")
    create_logger(str(tmp_path), "c.yaml", "minival2014")  # e.g. test after train
    assert len(root.handlers) == foreign + 2
    kinds = sorted(type(h).__name__ for h in _ours())
    assert kinds == ["FileHandler", "StreamHandler"]

    logging.getLogger("x").info("after the second call")
    _, first = _read_log(tmp_path / "c" / "train2014_val2014")
    _, second = _read_log(tmp_path / "c" / "minival2014")
    assert "after the second call" not in first
    assert "after the second call" in second
