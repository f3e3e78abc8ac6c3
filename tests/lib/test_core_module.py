"""Tests for lib.core.module: fixed params, re-binding with shared params, optimizer states, NaN."""

import math
import os
import pickle

import mxnet as mx
import numpy as np
import pytest

from lib.core.checkpoint import do_checkpoint, load_param
from lib.core.module import MutableModule, NonFiniteLossError, fixed_param_names


def tiny_net(act="relu", with_label=True):
    data = mx.sym.Variable("data")
    x = mx.sym.Convolution(data, num_filter=4, kernel=(3, 3), pad=(1, 1), name="conv1")
    x = mx.sym.Activation(x, act_type=act)
    x = mx.sym.Convolution(x, num_filter=4, kernel=(1, 1), name="res2a_branch2a")
    x = mx.sym.Pooling(x, global_pool=True, kernel=(1, 1), pool_type="avg")
    x = mx.sym.FullyConnected(x, num_hidden=3, name="fc")
    if not with_label:
        return mx.sym.softmax(x, name="softmax")
    return mx.sym.SoftmaxOutput(x, mx.sym.Variable("softmax_label"), name="softmax")


def batch(n, h, w, seed=0):
    rng = np.random.RandomState(seed)
    return mx.io.DataBatch(
        [mx.nd.array(rng.rand(n, 2, h, w))],
        [mx.nd.array(rng.randint(0, 3, n))],
        provide_data=[mx.io.DataDesc("data", (n, 2, h, w))],
        provide_label=[mx.io.DataDesc("softmax_label", (n,))],
    )


def init_module(context, **kw):
    mod = MutableModule(
        tiny_net(),
        ["data"],
        ["softmax_label"],
        context=context,
        max_data_shapes=[("data", (4, 2, 10, 12))],
        **kw,
    )
    mod.bind([("data", (4, 2, 8, 8))], [("softmax_label", (4,))])
    mx.random.seed(0)
    mod.init_params(mx.init.Normal(0.1))
    mod.init_optimizer(optimizer_params={"learning_rate": 0.1, "momentum": 0.9})
    return mod


# -- fixed params ------------------------------------------------------------------------------

FIXED = ["conv1", "bn_conv1", "res2", "bn2", "gamma", "beta"]  # the original's FIXED_PARAMS


def test_fixed_param_names_substring_semantics():
    names = [
        "conv1_weight",
        "bn_conv1_gamma",
        "res2a_branch1_weight",
        "bn2a_branch1_beta",
        "res3a_branch2a_weight",
        "bn3a_branch2a_gamma",
        "bn3a_branch2a_beta",
        "rpn_conv_3x3_weight",
        "conv_new_1_weight",
        "fpn_res2_weight",
        "res5a_branch2b_offset_weight",
    ]
    assert fixed_param_names(names, FIXED) == [
        "conv1_weight",
        "bn_conv1_gamma",
        "res2a_branch1_weight",
        "bn2a_branch1_beta",
        "bn3a_branch2a_gamma",
        "bn3a_branch2a_beta",  # 'gamma'/'beta' anywhere
        "fpn_res2_weight",  # contains 'res2'
    ]
    assert fixed_param_names(names, None) == [] and fixed_param_names(names, []) == []
    with pytest.raises(TypeError, match="list of strings"):
        fixed_param_names(names, "conv1")


def test_fixed_params_are_not_updated():
    mod = init_module(mx.cpu(), fixed_param_prefix=["conv1"])
    assert mod.fixed_param_names == ["conv1_weight", "conv1_bias"]
    before = {k: v.copy() for k, v in mod.get_params()[0].items()}
    mod.forward_backward(batch(4, 8, 8))
    mod.update()
    after = mod.get_params()[0]
    assert np.array_equal(after["conv1_weight"].asnumpy(), before["conv1_weight"].asnumpy())
    assert not np.array_equal(after["fc_weight"].asnumpy(), before["fc_weight"].asnumpy())


# -- re-binding --------------------------------------------------------------------------------


@pytest.mark.parametrize("context", [[mx.cpu(0)], [mx.cpu(0), mx.cpu(1)]])
def test_rebinds_per_shape_and_shares_params(context):
    mod = init_module(context)
    assert mod.data_shapes[0].shape == (4, 2, 10, 12)  # pre-bound at the max shape
    max_module = mod._max_module
    w0 = mod.get_params()[0]["fc_weight"].asnumpy().copy()

    shapes = [(6, 6), (8, 10), (6, 6), (10, 12)]
    for i, (h, w) in enumerate(shapes):
        b = batch(4, h, w, seed=i)
        mod.forward_backward(b)
        mod.update()
        assert mod.data_shapes[0].shape == (4, 2, h, w)
        assert mod.get_outputs()[0].shape == (4, 3)
    assert len(mod._modules) == 2  # (6, 6) and (8, 10); (10, 12) is the max module
    assert mod._curr_module is max_module

    # every module reads the same (updated) parameters
    mod.forward(batch(4, 6, 6), is_train=False)
    small = mod._curr_module
    assert small is not max_module
    for name in ("fc_weight", "conv1_weight"):
        i = max_module._exec_group.param_names.index(name)
        for dev in range(len(context)):
            a = max_module._exec_group.param_arrays[i][dev].asnumpy()
            np.testing.assert_array_equal(a, small._exec_group.param_arrays[i][dev].asnumpy())
    assert not np.array_equal(mod.get_params()[0]["fc_weight"].asnumpy(), w0)
    assert small._optimizer is max_module._optimizer
    assert mod.optimizer.num_update == len(shapes)

    # the same batch gives the same output through either module
    out_small = mod.get_outputs()[0].asnumpy()
    mod._curr_module = max_module
    max_module.reshape([("data", (4, 2, 6, 6))], [("softmax_label", (4,))])
    max_module.forward(batch(4, 6, 6), is_train=False)
    np.testing.assert_allclose(max_module.get_outputs()[0].asnumpy(), out_small, rtol=1e-5)


def test_lru_cache_is_bounded():
    mod = init_module(mx.cpu(), max_cached_modules=2)
    for h in (4, 5, 6, 4):
        mod.forward(batch(4, h, h), is_train=True)
    assert [k[0][1][2] for k in mod._modules] == [6, 4]


def test_batch_without_provide_data_and_inference_module():
    mod = MutableModule(
        tiny_net(with_label=False), ["data"], None, max_data_shapes=[("data", (2, 2, 8, 8))]
    )
    mod.bind([("data", (2, 2, 8, 8))], None, for_training=False)
    mod.init_params(mx.init.Normal(0.1), allow_missing=True)
    mod.forward(mx.io.DataBatch([mx.nd.ones((2, 2, 5, 7))]), is_train=False)
    assert mod.get_outputs()[0].shape == (2, 3)


# -- optimizer states ------------------------------------------------------------------------


def test_optimizer_states_round_trip_restores_momentum_and_counters():
    mod = init_module(mx.cpu())
    for i in range(3):
        mod.forward_backward(batch(4, 8, 8, seed=i))
        mod.update()
    states = mod.get_optimizer_states()
    saved_states, saved_opt = pickle.loads(states)  # MXNet's dump_optimizer=True format
    assert saved_opt.num_update == 3

    other = init_module(mx.cpu())
    other.set_optimizer_states(states)
    opt = other.optimizer
    assert opt is other._max_module._optimizer  # the installed optimizer is kept
    assert opt.num_update == 3 and opt._index_update_count == saved_opt._index_update_count
    restored = other._max_module._updater.states
    assert set(restored) == set(saved_states)
    for k in saved_states:
        np.testing.assert_array_equal(restored[k].asnumpy(), saved_states[k].asnumpy())
        assert np.abs(restored[k].asnumpy()).sum() > 0  # momentum is not trivially zero
    # counting continues from 3, also for a device the saved table does not know
    opt._set_current_context(5)
    opt._update_count(0)
    assert opt.num_update == 4


def test_original_states_only_file_loads(caplog):
    mod = init_module(mx.cpu())
    mod.forward_backward(batch(4, 8, 8))
    mod.update()
    states_only = mod._max_module._updater.get_states(dump_optimizer=False)
    other = init_module(mx.cpu())
    other.set_optimizer_states(states_only)
    assert other.optimizer.num_update == 0
    assert "without update counters" in caplog.text


# -- NaN -------------------------------------------------------------------------------------


class ListIter(mx.io.DataIter):
    """Yields the given batches (one list per epoch; the last one repeats)."""

    def __init__(self, epochs):
        super().__init__(batch_size=epochs[0][0].data[0].shape[0])
        self.epochs, self.epoch, self.i = epochs, 0, 0
        self.provide_data = epochs[0][0].provide_data
        self.provide_label = epochs[0][0].provide_label

    def reset(self):
        self.epoch, self.i = min(self.epoch + 1, len(self.epochs) - 1), 0

    def next(self):
        batches = self.epochs[self.epoch]
        if self.i >= len(batches):
            raise StopIteration
        self.i += 1
        return batches[self.i - 1]


def nan_batch(n, h, w):
    b = batch(n, h, w, seed=9)
    b.data[0][1, 0, 0, 0] = np.nan
    return b


def fit_with_nan_at_epoch1_batch2(tmp_path, act, loss_outputs=()):
    prefix = str(tmp_path / "m")
    good = [batch(4, 8, 8, seed=i) for i in range(3)]
    it = ListIter([good, good[:2] + [nan_batch(4, 8, 8)], good])
    mod = MutableModule(tiny_net(act), ["data"], ["softmax_label"])
    mx.random.seed(0)
    with pytest.raises(NonFiniteLossError) as e:
        mod.fit(
            it,
            num_epoch=3,
            eval_metric=mx.metric.CrossEntropy(),
            optimizer_params={"learning_rate": 0.1},
            loss_output_names=loss_outputs,
            epoch_end_callback=do_checkpoint(prefix, module=mod),
        )
    assert isinstance(e.value, FloatingPointError)
    assert sorted(os.listdir(tmp_path)) == ["m-0001.params", "m-0001.states", "m-symbol.json"]
    assert all(np.isfinite(v.asnumpy()).all() for v in load_param(prefix, 1)[0].values())
    return mod, e.value


@pytest.mark.parametrize("loss_outputs", [(), ("softmax_output",)])
def test_nan_loss_stops_with_epoch_and_iteration_and_writes_no_checkpoint(tmp_path, loss_outputs):
    # tanh passes the NaN pixel on to the loss
    mod, err = fit_with_nan_at_epoch1_batch2(tmp_path, "tanh", loss_outputs)
    assert (err.epoch, err.nbatch, err.iteration) == (1, 2, 6)
    assert "epoch 1, batch 2 (iteration 6)" in str(err)
    name = "softmax_output" if loss_outputs else "cross-entropy"
    assert list(err.values) == [name]
    # the bad update was not applied: the in-memory params are those after iteration 5
    assert mod.optimizer.num_update == 5
    assert all(np.isfinite(v.asnumpy()).all() for v in mod.get_params()[0].values())


def test_nan_reaching_only_the_params_stops_at_the_epoch_end(tmp_path):
    # relu turns the NaN activation into 0 (finite loss) but the conv1 gradient is NaN
    _, err = fit_with_nan_at_epoch1_batch2(tmp_path, "relu")
    assert (err.epoch, err.nbatch, err.iteration) == (1, None, 6)
    assert "end of epoch 1" in str(err) and "conv1_weight" in str(err)


def test_metric_without_instances_is_not_an_error():
    """A metric that saw no instance (e.g. FG accuracy before the first foreground RoI) is NaN
    legitimately: the NaN check skips it, so training goes on and checkpoints are written;
    with one instance the same NaN stops training."""

    class FgAccuracy(mx.metric.EvalMetric):
        """Counts ``instances`` per batch: 0 / 0 = NaN without any; NaN on purpose with some."""

        def __init__(self, instances):
            super().__init__("fg")
            self.instances = instances

        def update(self, labels, preds):
            self.num_inst += self.instances
            if self.instances:
                self.sum_metric = float("nan")

    ends = []
    mod = MutableModule(tiny_net(), ["data"], ["softmax_label"])
    comp = mx.metric.CompositeEvalMetric([mx.metric.Accuracy(), FgAccuracy(0)])
    mod.fit(ListIter([[batch(4, 8, 8)], [batch(4, 8, 8, seed=1)]]), num_epoch=2, eval_metric=comp,
            epoch_end_callback=lambda epoch, *_: ends.append(epoch))  # fmt: skip
    assert ends == [0, 1] and mod.optimizer.num_update == 2
    names, values = comp.get()
    assert names == ["accuracy", "fg"]
    assert math.isfinite(values[0]) and math.isnan(values[1])  # NaN, yet not an error

    mod = MutableModule(tiny_net(), ["data"], ["softmax_label"])
    comp = mx.metric.CompositeEvalMetric([mx.metric.Accuracy(), FgAccuracy(1)])
    with pytest.raises(NonFiniteLossError, match="fg"):
        mod.fit(ListIter([[batch(4, 8, 8)]]), num_epoch=1, eval_metric=comp)


# -- resume (in process; the SIGKILL version is test_core_resume.py) ------------------------


@pytest.mark.parametrize("kvstore", ["device", None])
def test_resume_on_two_contexts_matches_uninterrupted(tmp_path, kvstore):
    rng = np.random.RandomState(0)
    x, y = rng.rand(16, 2, 6, 6).astype(np.float32), rng.randint(0, 3, 16).astype(np.float32)

    def run(prefix, begin_epoch):
        mx.random.seed(0)
        mod = MutableModule(tiny_net(), ["data"], ["softmax_label"], context=[mx.cpu(0), mx.cpu(1)])
        mod.fit(
            mx.io.NDArrayIter(x, y, batch_size=4),
            num_epoch=3,
            begin_epoch=begin_epoch,
            kvstore=kvstore,
            initializer=mx.init.Xavier(),
            optimizer_params={
                "learning_rate": 0.1,
                "momentum": 0.9,
                "wd": 1e-3,
                "lr_scheduler": mx.lr_scheduler.MultiFactorScheduler([6], 0.1, base_lr=0.1),
            },
            epoch_end_callback=do_checkpoint(prefix, module=mod),
            resume_prefix=prefix if begin_epoch else None,
        )
        # kvstore 'device' on 2 contexts updates on the kvstore, None in the module
        assert mod._max_module._update_on_kvstore == (kvstore is not None)
        return mod

    full, resumed = str(tmp_path / "full"), str(tmp_path / "resumed")
    run(full, 0)
    with pytest.raises(FileNotFoundError, match="resumed-0001.params"):
        run(resumed, 1)
    os.rename(full + "-0001.params", resumed + "-0001.params")
    os.rename(full + "-0001.states", resumed + "-0001.states")
    mod = run(resumed, 1)
    assert mod.optimizer.num_update == 12
    for a, b in zip(load_param(full, 3), load_param(resumed, 3)):
        for name in a:
            np.testing.assert_array_equal(a[name].asnumpy(), b[name].asnumpy(), err_msg=name)


def test_force_rebind_keeps_params_and_optimizer():
    mod = init_module(mx.cpu())
    mod.forward_backward(batch(4, 8, 8))
    mod.update()
    params = {k: v.asnumpy().copy() for k, v in mod.get_params()[0].items()}
    optimizer = mod.optimizer
    mod.bind([("data", (4, 2, 6, 6))], [("softmax_label", (4,))], force_rebind=True)
    assert mod.data_shapes[0].shape == (4, 2, 10, 12) and not mod._modules
    for k, v in mod.get_params()[0].items():
        np.testing.assert_array_equal(v.asnumpy(), params[k])
    assert mod.optimizer is optimizer
    mod.forward_backward(batch(4, 6, 6))
    mod.update()
    assert mod.optimizer.num_update == 2
