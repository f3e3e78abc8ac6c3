"""Tests for lib.core.lr_scheduler: warmup, steps, resume offsets."""

import mxnet as mx
import pytest

from lib.core.lr_scheduler import (
    WarmupMultiFactorScheduler,
    build_lr_scheduler,
    lr_steps_from_epochs,
)


def original_lr(num_update, base_lr, step, factor, warmup=False, warmup_lr=0.0, warmup_step=0):
    """The original's values: warmup, else base_lr multiplied once per step < num_update."""
    if warmup and num_update < warmup_step:
        return warmup_lr
    lr = base_lr
    for s in step:
        if num_update > s:
            lr *= factor
    return lr


def scheduler_via_optimizer(step, factor, lr, **kw):
    sched = WarmupMultiFactorScheduler(step, factor, **kw)
    mx.optimizer.SGD(learning_rate=lr, lr_scheduler=sched)  # sets sched.base_lr = lr
    return sched


def test_warmup_then_steps():
    sched = scheduler_via_optimizer([10, 20], 0.1, 0.1, warmup=True, warmup_lr=1e-3, warmup_step=5)
    assert sched.base_lr == 0.1
    assert [sched(u) for u in range(5)] == [1e-3] * 5
    assert sched(5) == 0.1
    assert sched(10) == 0.1  # strictly greater than the step
    assert sched(11) == 0.1 * 0.1  # the same float as the original's repeated multiply
    assert sched(20) == 0.1 * 0.1
    assert sched(21) == 0.1 * 0.1 * 0.1
    assert sched(10**6) == 0.1 * 0.1 * 0.1


def test_values_match_the_original_and_do_not_depend_on_call_order():
    kw = {"warmup": True, "warmup_lr": 5e-5, "warmup_step": 7}
    sched = scheduler_via_optimizer([9, 30, 31], 0.5, 5e-4, **kw)
    order = [40, 0, 8, 9, 10, 31, 32, 30, 6, 7, 1]  # the original required increasing updates
    for u in order:
        assert sched(u) == original_lr(u, 5e-4, [9, 30, 31], 0.5, **kw), u


def test_no_warmup_and_empty_steps():
    sched = scheduler_via_optimizer([], 0.1, 0.02)
    assert sched(0) == sched(1000) == 0.02
    sched = scheduler_via_optimizer([3], 0.1, 0.02, warmup=False, warmup_lr=1.0, warmup_step=10)
    assert sched(1) == 0.02  # warmup off: warmup_lr unused


@pytest.mark.parametrize(
    "step, factor, match",
    [([5, 5], 0.1, "increasing"), ([0, 4], 0.1, ">= 1"), ([4], 1.5, "<= 1")],
)
def test_invalid_schedules(step, factor, match):
    with pytest.raises(ValueError, match=match):
        WarmupMultiFactorScheduler(step, factor)


@pytest.mark.parametrize(
    "lr_step, begin, expected_lr, expected_iters",
    [
        ("4.83", 0, 5e-4, [483]),  # R-FCN VOC: fractional epoch
        ("4.83", 2, 5e-4, [283]),  # resume before the step: relative iterations
        ("4.83", 5, 5e-5, []),  # resume after the only step: lr already reduced
        ("4,6", 4, 5e-5, [200]),  # a step at begin_epoch counts as passed
        ("4,6", 5, 5e-5, [100]),
        ("4,6", 7, 5e-6, []),
        ("8", 0, 5e-4, [800]),
    ],
)
def test_lr_steps_from_epochs(lr_step, begin, expected_lr, expected_iters):
    lr, iters = lr_steps_from_epochs(lr_step, begin, 100, 5e-4, 0.1)
    assert lr == pytest.approx(expected_lr, rel=1e-12)
    assert iters == expected_iters


def test_fresh_counter_resume_gives_the_uninterrupted_lr():
    # The original resumes with num_update restarting at 0 at begin_epoch: its lr at update u'
    # must equal the uninterrupted lr at update u = begin * nb + u'.
    nb, base, factor = 37, 0.01, 0.1
    lr0, steps0 = lr_steps_from_epochs("2,3.5,5", 0, nb, base, factor)
    full = scheduler_via_optimizer(steps0, factor, lr0)
    for begin in range(7):
        lr, steps = lr_steps_from_epochs("2,3.5,5", begin, nb, base, factor)
        resumed = scheduler_via_optimizer(steps, factor, lr)
        for u_rel in range(1, 3 * nb):
            assert resumed(u_rel) == pytest.approx(full(begin * nb + u_rel), rel=1e-12)


def test_build_lr_scheduler_for_both_resume_styles():
    nb = 10
    lr, sched = build_lr_scheduler("2,4", 0.1, 1.0, nb, begin_epoch=3, counters_restored=True)
    mx.optimizer.SGD(learning_rate=lr, lr_scheduler=sched)
    assert lr == 1.0 and sched.step == [20, 40]
    assert sched(31) == pytest.approx(0.1)  # absolute counter: epoch 3 is after the first step
    lr, sched = build_lr_scheduler(
        "2,4",
        0.1,
        1.0,
        nb,
        begin_epoch=3,
        counters_restored=False,
        warmup=True,
        warmup_lr=0.5,
        warmup_step=3,
    )
    mx.optimizer.SGD(learning_rate=lr, lr_scheduler=sched)
    assert lr == pytest.approx(0.1) and sched.step == [10]
    assert sched(1) == 0.5 and sched(5) == pytest.approx(0.1) and sched(11) == pytest.approx(0.01)
