"""Resume after SIGKILL: a killed-then-resumed run ends exactly where an uninterrupted one does.

The worker (this file run as a script) trains a tiny conv net with BN for 4 epochs, SGD with
momentum and weight decay, a warmup + multi-step lr schedule whose steps fall inside the
resumed epochs, and a checkpoint (params + optimizer states) at every epoch end. One run goes
through; another is killed with SIGKILL in the middle of epoch 3 (index 2) and resumed from the
last checkpoint (epoch 2). Final params, optimizer states and the lr used at every iteration
must match.
"""

import argparse
import json
import logging
import os
import pickle
import signal
import subprocess
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NUM_EPOCH = 4
KILL_EPOCH = 2  # killed during this (0-based) epoch, after batch 1
BATCHES_PER_EPOCH = 6


# -- worker ----------------------------------------------------------------------------------


def worker(prefix: str, begin_epoch: int, ready_file: str) -> None:
    import mxnet as mx

    from lib.core.checkpoint import do_checkpoint
    from lib.core.lr_scheduler import build_lr_scheduler
    from lib.core.module import MutableModule

    data = mx.sym.Variable("data")
    x = mx.sym.Convolution(data, num_filter=4, kernel=(3, 3), pad=(1, 1), name="conv1")
    x = mx.sym.BatchNorm(x, fix_gamma=False, momentum=0.8, name="bn1")
    x = mx.sym.Activation(x, act_type="relu")
    x = mx.sym.Pooling(x, global_pool=True, kernel=(1, 1), pool_type="avg")
    x = mx.sym.FullyConnected(x, num_hidden=3, name="fc")
    sym = mx.sym.SoftmaxOutput(x, mx.sym.Variable("softmax_label"), name="softmax")

    rng = np.random.RandomState(0)
    n = 4 * BATCHES_PER_EPOCH
    train = mx.io.NDArrayIter(
        rng.rand(n, 2, 8, 8).astype(np.float32),
        rng.randint(0, 3, n).astype(np.float32),
        batch_size=4,
        shuffle=False,
    )
    arg_params = {
        "conv1_weight": mx.nd.array(rng.randn(4, 2, 3, 3) * 0.3),
        "conv1_bias": mx.nd.zeros((4,)),
        "bn1_gamma": mx.nd.ones((4,)),
        "bn1_beta": mx.nd.zeros((4,)),
        "fc_weight": mx.nd.array(rng.randn(3, 4) * 0.3),
        "fc_bias": mx.nd.zeros((3,)),
    }
    aux_params = {"bn1_moving_mean": mx.nd.zeros((4,)), "bn1_moving_var": mx.nd.ones((4,))}

    # lr steps at epochs 1.5 and 2.5 (iterations 9 and 15: the second inside the killed
    # epoch), warmup for the first 4 iterations.
    lr, scheduler = build_lr_scheduler(
        "1.5,2.5",
        0.1,
        0.2,
        BATCHES_PER_EPOCH,
        begin_epoch=begin_epoch,
        counters_restored=True,
        warmup=True,
        warmup_lr=0.05,
        warmup_step=4,
    )
    mod = MutableModule(sym, ["data"], ["softmax_label"], context=mx.cpu())

    def on_batch(param):
        opt = mod.optimizer
        with open(prefix + "-lr.jsonl", "a") as f:
            f.write(json.dumps([param.epoch, param.nbatch, opt.num_update, opt.learning_rate]))
            f.write("\n")
        if ready_file and param.epoch == KILL_EPOCH and param.nbatch == 1:
            with open(ready_file, "w") as f:
                f.write("ready")
            time.sleep(120)  # the test kills us here, mid-epoch

    mod.fit(
        train,
        eval_metric="acc",
        epoch_end_callback=do_checkpoint(prefix, module=mod),
        batch_end_callback=on_batch,
        optimizer="sgd",
        optimizer_params={
            "learning_rate": lr,
            "lr_scheduler": scheduler,
            "momentum": 0.9,
            "wd": 1e-3,
            "rescale_grad": 1.0,
        },
        arg_params=arg_params,
        aux_params=aux_params,
        begin_epoch=begin_epoch,
        num_epoch=NUM_EPOCH,
        resume_prefix=prefix if begin_epoch > 0 else None,
    )


# -- test ------------------------------------------------------------------------------------


def _start(prefix, begin_epoch, ready_file=""):
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1", MXNET_ENGINE_TYPE="NaiveEngine")
    return subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), prefix, str(begin_epoch), ready_file],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def _finish(proc, timeout=60):
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out.decode(errors="replace")[-3000:]


def _lr_log(prefix):
    with open(prefix + "-lr.jsonl") as f:
        return {(e, b): (u, lr) for e, b, u, lr in map(json.loads, f)}


def test_killed_and_resumed_run_matches_uninterrupted_run(tmp_path):
    from lib.core.checkpoint import latest_epoch, load_optimizer_states, load_param

    full, killed = str(tmp_path / "full" / "m"), str(tmp_path / "killed" / "m")
    os.makedirs(os.path.dirname(full))
    os.makedirs(os.path.dirname(killed))
    ready = str(tmp_path / "ready")

    uninterrupted = _start(full, 0)
    victim = _start(killed, 0, ready)
    try:
        deadline = time.time() + 60
        while not os.path.exists(ready):
            assert victim.poll() is None, victim.stdout.read().decode(errors="replace")[-3000:]
            assert time.time() < deadline, "the worker never reached the kill point"
            time.sleep(0.05)
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(timeout=30)
    finally:
        if victim.poll() is None:
            os.kill(victim.pid, signal.SIGKILL)
            victim.wait()
    assert victim.returncode == -signal.SIGKILL
    _finish(uninterrupted)

    # killed mid-epoch: the epoch-2 checkpoint is complete, nothing of epoch 3 exists
    assert latest_epoch(killed) == KILL_EPOCH
    assert sorted(p for p in os.listdir(os.path.dirname(killed)) if not p.endswith("jsonl")) == [
        "m-0001.params",
        "m-0001.states",
        "m-0002.params",
        "m-0002.states",
        "m-symbol.json",
    ]

    _finish(_start(killed, latest_epoch(killed)))

    # same params (args and BN aux states) at the end
    arg_a, aux_a = load_param(full, NUM_EPOCH)
    arg_b, aux_b = load_param(killed, NUM_EPOCH)
    assert set(arg_a) == set(arg_b) and set(aux_a) == set(aux_b)
    for name in arg_a:
        np.testing.assert_allclose(
            arg_b[name].asnumpy(), arg_a[name].asnumpy(), atol=1e-6, rtol=0, err_msg=name
        )
    for name in aux_a:
        np.testing.assert_allclose(
            aux_b[name].asnumpy(), aux_a[name].asnumpy(), atol=1e-6, rtol=0, err_msg=name
        )

    # same optimizer state: momentum and update counter
    states_a, opt_a = pickle.loads(load_optimizer_states(full, NUM_EPOCH))
    states_b, opt_b = pickle.loads(load_optimizer_states(killed, NUM_EPOCH))
    assert opt_a.num_update == opt_b.num_update == NUM_EPOCH * BATCHES_PER_EPOCH
    for k in states_a:
        np.testing.assert_allclose(states_b[k].asnumpy(), states_a[k].asnumpy(), atol=1e-6, rtol=0)

    # the resumed run used the uninterrupted run's update count and lr at every iteration
    lr_full, lr_killed = _lr_log(full), _lr_log(killed)
    resumed = {k: v for k, v in lr_killed.items() if k[0] >= KILL_EPOCH}
    assert len(resumed) == (NUM_EPOCH - KILL_EPOCH) * BATCHES_PER_EPOCH
    for key, (num_update, lr) in resumed.items():
        assert lr_full[key] == (num_update, lr), key
    # the schedule steps inside the resumed epochs: a wrong offset would show
    assert len({lr for _, lr in resumed.values()}) == 2


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="training worker of the resume test")
    parser.add_argument("prefix")
    parser.add_argument("begin_epoch", type=int)
    parser.add_argument("ready_file", nargs="?", default="")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    worker(args.prefix, args.begin_epoch, args.ready_file)
