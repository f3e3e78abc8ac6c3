"""lib.core.trainer: devices, where training starts, and overwrite protection."""

import os

import mxnet as mx
import numpy as np
import pytest

from lib.config import default_config
from lib.core.checkpoint import params_path, states_path, symbol_path
from lib.core.trainer import (
    TrainingOutputExistsError,
    bbox_target_stats,
    checkpoint_prefix,
    get_context,
    overwritten_checkpoints,
    resolve_begin_epoch,
)


def _cfg(**train):
    cfg = default_config("rfcn")
    cfg.TRAIN.update(train)
    return cfg


def _write_epochs(prefix, epochs, states=True):
    os.makedirs(os.path.dirname(prefix), exist_ok=True)
    for e in epochs:
        open(params_path(prefix, e), "wb").close()
        if states:
            open(states_path(prefix, e), "wb").close()
    open(symbol_path(prefix), "w").close()


def test_fresh_run_into_an_empty_folder_starts_at_zero(tmp_path):
    assert resolve_begin_epoch(_cfg(), str(tmp_path / "out" / "m")) == (0, [])


def test_fresh_run_refuses_to_overwrite_checkpoints(tmp_path):
    prefix = str(tmp_path / "m")
    _write_epochs(prefix, [1, 2])
    with pytest.raises(TrainingOutputExistsError) as err:
        resolve_begin_epoch(_cfg(), prefix)
    message = str(err.value)
    assert params_path(prefix, 1) in message and states_path(prefix, 2) in message
    assert "TRAIN.RESUME=true" in message and "output_path" in message and "--overwrite" in message
    assert os.path.isfile(params_path(prefix, 2))  # nothing deleted

    # --overwrite: nothing is deleted at start-up; training deletes the old run's files first
    assert resolve_begin_epoch(_cfg(), prefix, overwrite=True) == (0, [])
    assert len(os.listdir(tmp_path)) == 5
    assert overwritten_checkpoints(_cfg(), prefix, 0) == sorted(
        str(tmp_path / name) for name in os.listdir(tmp_path)
    )


def test_resume_without_begin_epoch_takes_the_latest_complete_checkpoint(tmp_path):
    prefix = str(tmp_path / "m")
    _write_epochs(prefix, [1, 2])
    open(params_path(prefix, 3), "wb").close()  # epoch 3 has no .states: not resumable
    begin, notes = resolve_begin_epoch(_cfg(RESUME=True), prefix)
    assert begin == 2 and params_path(prefix, 2) in notes[-1]


def test_resume_with_nothing_to_resume_stops(tmp_path):
    with pytest.raises(FileNotFoundError, match="holds no complete checkpoint"):
        resolve_begin_epoch(_cfg(RESUME=True), str(tmp_path / "m"))


def test_resume_from_a_given_epoch(tmp_path):
    prefix = str(tmp_path / "m")
    _write_epochs(prefix, [1, 2, 3])
    with pytest.raises(FileNotFoundError, match="-0005.params does not exist"):
        resolve_begin_epoch(_cfg(RESUME=True, begin_epoch=5), prefix)
    # below the latest: it would overwrite epochs 2 and 3
    with pytest.raises(TrainingOutputExistsError, match="up to epoch 3"):
        resolve_begin_epoch(_cfg(RESUME=True, begin_epoch=1), prefix)
    assert resolve_begin_epoch(_cfg(RESUME=True, begin_epoch=1), prefix, overwrite=True)[0] == 1
    # what --overwrite deletes before training: the checkpoints after epoch 1, not 1 itself
    later = [f(prefix, e) for e in (2, 3) for f in (params_path, states_path)]
    assert overwritten_checkpoints(_cfg(RESUME=True, begin_epoch=1), prefix, 1) == sorted(later)
    assert resolve_begin_epoch(_cfg(RESUME=True, begin_epoch=3), prefix)[0] == 3


def test_begin_epoch_without_resume_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="also set TRAIN.RESUME=true"):
        resolve_begin_epoch(_cfg(begin_epoch=2), str(tmp_path / "m"))


def test_stale_temp_files_are_removed_at_start(tmp_path):
    prefix = str(tmp_path / "m")
    tmp = tmp_path / ".m-0002.params.a1b2c3d4.tmp"
    tmp.write_bytes(b"half")
    other = tmp_path / ".notes.tmp"
    other.write_text("mine")
    _, notes = resolve_begin_epoch(_cfg(), prefix)
    assert not tmp.exists() and other.exists()
    assert any(str(tmp) in n for n in notes)


def test_checkpoint_prefix_is_the_original_layout():
    cfg = _cfg(model_prefix="rfcn_voc")
    cfg.output_path, cfg.dataset.image_set = "./output/rfcn/voc", "2007_trainval+2012_trainval"
    assert checkpoint_prefix(cfg, "cfgs/x.yaml") == os.path.join(
        "./output/rfcn/voc", "x", "2007_trainval_2012_trainval", "rfcn_voc"
    )


def test_contexts_from_the_config():
    cfg = default_config("rfcn")
    assert get_context(cfg) == [mx.cpu(0)]
    cfg.cpu_contexts = 2
    assert get_context(cfg) == [mx.cpu(0), mx.cpu(1)]


@pytest.mark.skipif(mx.runtime.Features().is_enabled("CUDA"), reason="a CPU-only MXNet")
def test_gpus_on_a_cpu_build_name_the_key():
    cfg = default_config("rfcn")
    cfg.gpus = "0,1,2,3"
    with pytest.raises(ValueError, match=r"config key gpus='0,1,2,3' asks for GPUs.*CPU build"):
        get_context(cfg)
    cfg.gpus = "0,a"
    with pytest.raises(ValueError, match="comma-separated GPU ids"):
        get_context(cfg)


def test_bbox_target_stats_are_the_configs_means_and_stds_per_class():
    cfg = _cfg(BBOX_NORMALIZATION_PRECOMPUTED=True, BBOX_MEANS=(0.1, 0.2, 0.3, 0.4),
               BBOX_STDS=(1.0, 2.0, 3.0, 4.0))  # fmt: skip
    means, stds = bbox_target_stats(cfg)  # class-agnostic: background and foreground
    np.testing.assert_array_equal(means, [0.1, 0.2, 0.3, 0.4] * 2)
    np.testing.assert_array_equal(stds, [1.0, 2.0, 3.0, 4.0] * 2)
    cfg.CLASS_AGNOSTIC, cfg.dataset.NUM_CLASSES = False, 3
    means, stds = bbox_target_stats(cfg)
    assert len(means) == len(stds) == 12 and stds[-1] == 4.0 and means[-1] == 0.4
    cfg.TRAIN.BBOX_NORMALIZATION_PRECOMPUTED = False  # raw deltas
    means, stds = bbox_target_stats(cfg)
    assert not means.any() and (stds == 1).all()
