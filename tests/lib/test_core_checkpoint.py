"""Tests for lib.core.checkpoint: format, round trip, atomic writes, *_test bbox params."""

import logging
import os
import pickle
import signal
import subprocess
import sys
from pathlib import Path

import mxnet as mx
import numpy as np
import pytest

from lib.core import checkpoint as C
from lib.core.module import MutableModule


def tiny_net():
    data = mx.sym.Variable("data")
    x = mx.sym.Convolution(data, num_filter=4, kernel=(3, 3), pad=(1, 1), name="conv1")
    x = mx.sym.BatchNorm(x, fix_gamma=False, name="bn1")
    x = mx.sym.Activation(x, act_type="relu")
    x = mx.sym.Pooling(x, global_pool=True, kernel=(1, 1), pool_type="avg")
    x = mx.sym.FullyConnected(x, num_hidden=3, name="fc")
    return mx.sym.SoftmaxOutput(x, mx.sym.Variable("softmax_label"), name="softmax")


def tiny_data(n=8, seed=0):
    rng = np.random.RandomState(seed)
    return rng.rand(n, 2, 6, 6).astype(np.float32), rng.randint(0, 3, n).astype(np.float32)


def params_equal(a, b):
    return set(a) == set(b) and all(np.array_equal(a[k].asnumpy(), b[k].asnumpy()) for k in a)


def test_names_and_key_format(tmp_path):
    prefix = str(tmp_path / "sub" / "model")
    arg = {"w": mx.nd.ones((2, 2))}
    aux = {"m": mx.nd.zeros((2,))}
    states = pickle.dumps({0: "momentum"})
    path = C.save_checkpoint(prefix, 3, arg, aux, symbol=tiny_net(), optimizer_states=states)
    assert path == prefix + "-0003.params"
    assert sorted(os.listdir(tmp_path / "sub")) == [
        "model-0003.params",
        "model-0003.states",
        "model-symbol.json",
    ]
    assert sorted(mx.nd.load(path)) == ["arg:w", "aux:m"]
    assert C.load_optimizer_states(prefix, 3) == states
    assert mx.sym.load(prefix + "-symbol.json").list_arguments() == tiny_net().list_arguments()


def test_missing_files_name_the_path(tmp_path):
    prefix = str(tmp_path / "nothing")
    with pytest.raises(FileNotFoundError, match="nothing-0007.params"):
        C.load_param(prefix, 7)
    with pytest.raises(FileNotFoundError, match="nothing-0002.states"):
        C.load_optimizer_states(prefix, 2)


def test_round_trip_gives_identical_predictions(tmp_path):
    prefix = str(tmp_path / "tiny")
    x, y = tiny_data()
    mx.random.seed(1)
    mod = MutableModule(tiny_net(), ["data"], ["softmax_label"])
    train = mx.io.NDArrayIter(x, y, batch_size=4)
    mod.fit(
        train,
        num_epoch=2,
        optimizer_params={"learning_rate": 0.5, "momentum": 0.9},
        epoch_end_callback=C.do_checkpoint(prefix, module=mod),
    )
    assert C.latest_epoch(prefix) == 2
    test_iter = mx.io.NDArrayIter(x, None, batch_size=4)

    def predict(symbol, arg, aux):
        # same kind of binding for both (MKLDNN fuses conv+BN differently when inference-only)
        m = mx.mod.Module(symbol, ["data"], ["softmax_label"])
        m.bind(test_iter.provide_data, for_training=False)
        m.set_params(arg, aux)
        return m.predict(test_iter).asnumpy()

    expected = predict(tiny_net(), *mod.get_params())
    arg, aux = C.load_param(prefix, 2)
    assert params_equal(arg, mod.get_params()[0]) and params_equal(aux, mod.get_params()[1])
    np.testing.assert_array_equal(predict(mx.sym.load(prefix + "-symbol.json"), arg, aux), expected)
    assert not np.allclose(expected, expected[0])  # a real prediction, not a constant
    training_pred = mod.predict(test_iter).asnumpy()
    np.testing.assert_allclose(training_pred, expected, rtol=1e-6)


def test_load_param_convert_and_process(tmp_path):
    prefix = str(tmp_path / "m")
    arg = {
        "bbox_pred_weight": mx.nd.ones((8, 2)),
        "bbox_pred_weight_test": mx.nd.full((8, 2), 2.0),
        "my_test_layer_weight": mx.nd.ones((1,)),
    }
    C.save_checkpoint(prefix, 0, arg, {})
    a, _ = C.load_param(prefix, 0, convert=True, ctx=mx.cpu(1))
    assert set(a) == set(arg) and a["bbox_pred_weight"].context == mx.cpu(1)
    a, _ = C.load_param(prefix, 0, process=True)
    assert set(a) == {"bbox_pred_weight", "my_test_layer_weight"}
    assert a["bbox_pred_weight"].asnumpy().max() == 2.0


def test_latest_epoch(tmp_path):
    prefix = str(tmp_path / "run")
    assert C.latest_epoch(prefix) is None
    for e in (1, 2, 10):
        C.save_checkpoint(prefix, e, {"w": mx.nd.ones((1,))}, {})
    C.save_checkpoint(str(tmp_path / "run-other"), 99, {"w": mx.nd.ones((1,))}, {})
    (tmp_path / "run-0011.states").write_bytes(b"orphan states: no params, not an epoch")
    assert C.latest_epoch(prefix) == 10


@pytest.mark.parametrize("existing", [True, False])
def test_crash_during_save_keeps_previous_checkpoint(tmp_path, monkeypatch, existing):
    prefix = str(tmp_path / "m")
    old_arg = {"w": mx.nd.array([1.0, 2.0])}
    epoch = 1 if existing else 2
    C.save_checkpoint(prefix, 1, old_arg, {}, symbol=tiny_net(), optimizer_states=b"old")
    before = {p: (tmp_path / p).read_bytes() for p in os.listdir(tmp_path)}

    real_save = mx.nd.save

    def crashing_save(fname, data):
        real_save(fname, {"arg:w": mx.nd.array([9.0])})  # the temp file exists, half written
        with open(fname, "ab") as f:
            f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(mx.nd, "save", crashing_save)
    with pytest.raises(OSError, match="disk full"):
        C.save_checkpoint(
            prefix,
            epoch,
            {"w": mx.nd.array([5.0])},
            {},
            symbol=tiny_net(),
            optimizer_states=b"new",
        )
    monkeypatch.setattr(mx.nd, "save", real_save)
    after = {p: (tmp_path / p).read_bytes() for p in os.listdir(tmp_path)}
    assert after == before  # nothing replaced, no partial or temp file left
    arg, _ = C.load_param(prefix, 1)
    np.testing.assert_array_equal(arg["w"].asnumpy(), [1.0, 2.0])


def test_atomic_write_replaces_whole_file(tmp_path):
    path = tmp_path / "f.bin"
    C.atomic_write(str(path), lambda p: Path(p).write_bytes(b"first"))

    def failing_write(p):
        with open(p, "wb") as f:
            f.write(b"se")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        C.atomic_write(str(path), failing_write)
    assert path.read_bytes() == b"first" and os.listdir(tmp_path) == ["f.bin"]
    C.atomic_write(str(path), lambda p: Path(p).write_bytes(b"second"))
    assert path.read_bytes() == b"second" and os.listdir(tmp_path) == ["f.bin"]


# -- *_test params: applying the _test layer == applying the layer, then de-normalising ------

MEANS4 = np.array([0.01, -0.02, 0.03, 0.0])
STDS4 = np.array([0.1, 0.1, 0.2, 0.2])


def test_rfcn_test_weights_fold_the_denormalisation():
    # R-FCN bbox head: 1x1 conv to 8 * 7 * 7 = 392 channels, channel = ctop * 49 + gh * 7 + gw,
    # ctop over 2 classes x 4 coordinates; position-sensitive average pooling then averages each
    # ctop's 49 maps (one bin each) into the deltas.
    rng = np.random.RandomState(0)
    cin, num_reg = 5, 2
    means, stds = np.tile(MEANS4, num_reg), np.tile(STDS4, num_reg)
    arg = {
        "rfcn_bbox_weight": mx.nd.array(rng.randn(392, cin, 1, 1)),
        "rfcn_bbox_bias": mx.nd.array(rng.randn(392)),
    }
    out = C.add_test_params(arg, means, stds, C.RFCN_BBOX_PRED)
    assert set(out) == set(arg) | {"rfcn_bbox_weight_test", "rfcn_bbox_bias_test"}
    assert "rfcn_bbox_weight_test" not in arg  # input not modified

    x = mx.nd.array(rng.randn(1, cin, 7, 7))

    def head(w, b):
        maps = mx.nd.Convolution(x, w, b, kernel=(1, 1), num_filter=392).asnumpy()[0]
        maps = maps.reshape(8, 7, 7, 7, 7)  # ctop, gh, gw, h, w
        # bin (gh, gw) of the RoI = the whole 7x7 map here: one pixel per bin
        return np.array(
            [[maps[c, gh, gw, gh, gw] for gh in range(7) for gw in range(7)] for c in range(8)]
        ).mean(axis=1)

    deltas = head(arg["rfcn_bbox_weight"], arg["rfcn_bbox_bias"])
    deltas_test = head(out["rfcn_bbox_weight_test"], out["rfcn_bbox_bias_test"])
    np.testing.assert_allclose(deltas_test, deltas * stds + means, rtol=1e-5, atol=1e-6)

    # the original formula, channel by channel
    w_test = out["rfcn_bbox_weight_test"].asnumpy()
    np.testing.assert_allclose(
        w_test,
        arg["rfcn_bbox_weight"].asnumpy() * np.repeat(stds, 49)[:, None, None, None],
        rtol=1e-6,
    )


def test_rcnn_test_weights_fold_the_denormalisation():
    rng = np.random.RandomState(1)
    num_classes, cin = 3, 6
    means, stds = np.tile(MEANS4, num_classes), np.tile(STDS4, num_classes)
    arg = {
        "bbox_pred_weight": mx.nd.array(rng.randn(4 * num_classes, cin)),
        "bbox_pred_bias": mx.nd.array(rng.randn(4 * num_classes)),
        "other": mx.nd.ones((1,)),
    }
    out = C.add_test_params(arg, means, stds, C.RCNN_BBOX_PRED)
    x = mx.nd.array(rng.randn(5, cin))

    def fc(w, b):
        return mx.nd.FullyConnected(x, w, b, num_hidden=4 * num_classes).asnumpy()

    deltas = fc(arg["bbox_pred_weight"], arg["bbox_pred_bias"])
    np.testing.assert_allclose(
        fc(out["bbox_pred_weight_test"], out["bbox_pred_bias_test"]),
        deltas * stds + means,
        rtol=1e-5,
        atol=1e-6,
    )
    np.testing.assert_allclose(
        out["bbox_pred_weight_test"].asnumpy(),
        (arg["bbox_pred_weight"].asnumpy().T * stds).T,
        rtol=1e-6,
    )


def test_test_params_shape_errors():
    arg = {"bbox_pred_weight": mx.nd.ones((12, 2)), "bbox_pred_bias": mx.nd.ones((12,))}
    with pytest.raises(ValueError, match="12 outputs"):
        C.add_test_params(arg, np.zeros(8), np.ones(8), C.RCNN_BBOX_PRED)
    with pytest.raises(KeyError, match="rfcn_bbox_weight"):
        C.add_test_params(arg, np.zeros(8), np.ones(8), C.RFCN_BBOX_PRED)


def test_do_checkpoint_writes_test_params(tmp_path):
    prefix = str(tmp_path / "rcnn")
    arg = {"bbox_pred_weight": mx.nd.ones((8, 2)), "bbox_pred_bias": mx.nd.zeros((8,))}
    cb = C.do_checkpoint(prefix, np.tile(MEANS4, 2), np.tile(STDS4, 2))
    cb(0, tiny_net(), arg, {})
    assert set(arg) == {"bbox_pred_weight", "bbox_pred_bias"}
    saved, _ = C.load_param(prefix, 1)
    assert set(saved) == set(arg) | {"bbox_pred_weight_test", "bbox_pred_bias_test"}
    processed, _ = C.load_param(prefix, 1, process=True)
    np.testing.assert_allclose(processed["bbox_pred_bias"].asnumpy(), np.tile(MEANS4, 2))
    assert not os.path.exists(prefix + "-0001.states")  # no module given


# -- damaged files, resumable epochs, listing, stale temp files ----------------------------------


def test_truncated_params_and_states_name_the_file(tmp_path):
    prefix = str(tmp_path / "m")
    states = pickle.dumps(({0: np.zeros(100)}, "optimizer"))
    C.save_checkpoint(prefix, 1, {"w": mx.nd.ones((100,))}, {}, optimizer_states=states)
    for path in (prefix + "-0001.params", prefix + "-0001.states"):
        data = Path(path).read_bytes()
        Path(path).write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"checkpoint .*m-0001\.params .*truncated or corrupt"):
        C.load_param(prefix, 1)
    with pytest.raises(ValueError, match=r"optimizer states .*m-0001\.states .*may be truncated"):
        C.load_optimizer_states(prefix, 1)


def test_latest_complete_epoch_needs_params_and_states(tmp_path):
    prefix = str(tmp_path / "run")
    assert C.latest_complete_epoch(prefix) is None
    w = {"w": mx.nd.ones((1,))}
    C.save_checkpoint(prefix, 1, w, {}, optimizer_states=b"s1")
    C.save_checkpoint(prefix, 2, w, {}, optimizer_states=b"s2")
    C.save_checkpoint(prefix, 3, w, {})  # no states: not resumable
    (tmp_path / "run-0004.states").write_bytes(b"states whose params never landed")
    C.save_checkpoint(str(tmp_path / "run-x"), 9, w, {}, optimizer_states=b"other prefix")
    assert C.latest_epoch(prefix) == 3
    assert C.latest_complete_epoch(prefix) == 2


def test_list_checkpoints(tmp_path):
    prefix = str(tmp_path / "run")
    assert C.list_checkpoints(prefix) == []
    C.save_checkpoint(prefix, 1, {"w": mx.nd.ones((1,))}, {}, tiny_net(), optimizer_states=b"s")
    C.save_checkpoint(prefix, 2, {"w": mx.nd.ones((1,))}, {})
    C.save_checkpoint(str(tmp_path / "run-x"), 9, {"w": mx.nd.ones((1,))}, {}, tiny_net())
    (tmp_path / "run-00003.params").write_bytes(b"not a name we write")
    (tmp_path / ".run-0005.params.abcd1234.tmp").write_bytes(b"temp file")
    assert C.list_checkpoints(prefix) == [
        prefix + "-0001.params",
        prefix + "-0001.states",
        prefix + "-0002.params",
        prefix + "-symbol.json",
    ]


# A checkpoint write killed between writing its temp files and renaming them.
_KILLED_WRITER = """
import os, signal, sys
import mxnet as mx
from lib.core import checkpoint as C
real_replace = os.replace
os.replace = lambda src, dst: os.kill(os.getpid(), signal.SIGKILL)
C.save_checkpoint(sys.argv[1], 3, {"w": mx.nd.ones((2,))}, {}, mx.sym.Variable("x"), b"states")
"""


def test_remove_stale_temp_files_after_kill(tmp_path, caplog):
    prefix = str(tmp_path / "run")
    C.save_checkpoint(prefix, 1, {"w": mx.nd.ones((1,))}, {})
    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [sys.executable, "-c", _KILLED_WRITER, prefix], cwd=repo, capture_output=True, timeout=120
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    stale = sorted(str(p) for p in tmp_path.glob(".run-*.tmp"))
    assert len(stale) == 3  # .states, -symbol.json and .params temp files of epoch 3
    # Files that merely look similar are somebody else's and stay.
    keep = [
        ".notes.tmp",
        ".run-0001.params.tmp",  # no random part
        ".run-x-0001.params.abcd1234.tmp",  # another prefix's temp file
        ".run-0001.params.abcd1234.tmp.bak",
        "run-0001.params.abcd1234.tmp",  # not hidden
        ".run-symbol.json.abcd1234.tmp.d",
    ]
    for name in keep:
        (tmp_path / name).write_bytes(b"user data")
    with caplog.at_level(logging.INFO, logger="lib.core.checkpoint"):
        removed = C.remove_stale_temp_files(prefix)
    assert removed == stale
    assert sum("stale checkpoint temp file" in m for m in caplog.messages) == 3
    assert sorted(os.listdir(tmp_path)) == sorted([*keep, "run-0001.params"])
    assert C.remove_stale_temp_files(prefix) == []
    assert C.remove_stale_temp_files(str(tmp_path / "nodir" / "run")) == []
