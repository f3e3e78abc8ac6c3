"""Learning-rate schedule of the original release, and the epoch -> iteration conversion.

The schedule is driven by the optimizer's update counter ``num_update`` (one per iteration in
Module training). Two ways of resuming exist, and the schedule must match the one in use:

* **counters restored** (our default: :meth:`lib.core.module.MutableModule.fit` with
  ``resume_prefix`` restores ``num_update`` from the ``.states`` file): the counter keeps
  counting from epoch 0, so the steps are absolute iterations and the lr is the base lr;
  the scheduler "catches up" on steps already passed by itself.
* **fresh counters** (the original: its ``.states`` files carry no counter, so ``num_update``
  restarts at 0 at ``begin_epoch``): the steps already passed are folded into the initial lr
  and the remaining steps are counted from ``begin_epoch``. :func:`lr_steps_from_epochs`
  reproduces exactly this.

Both give the same lr at every iteration after ``begin_epoch`` (apart from warmup, which the
fresh-counter variant repeats after a resume, as the original did). :func:`build_lr_scheduler`
picks the right variant, so an entry point does not have to.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import mxnet as mx

__all__ = ["WarmupMultiFactorScheduler", "build_lr_scheduler", "lr_steps_from_epochs"]

logger = logging.getLogger(__name__)


class WarmupMultiFactorScheduler(mx.lr_scheduler.LRScheduler):
    """Constant warmup, then ``base_lr * factor**k`` after the k-th step (original semantics).

    ``lr(num_update) = warmup_lr`` if ``warmup and num_update < warmup_step``, else
    ``base_lr * factor**k`` with ``k = #{s in step : num_update > s}`` (strictly greater, as in
    the original). ``base_lr`` is set by the optimizer from its ``learning_rate``.

    Unlike the original, the value is a pure function of ``num_update`` (the original mutated
    ``base_lr`` as it passed steps, so it was wrong for a counter that went backwards); the lr is
    still computed by repeated multiplication, giving the original's floats bit for bit.

    Args:
        step: iterations at which the lr is multiplied by ``factor``; increasing, each >= 1.
            May be empty (constant lr, e.g. when resuming after the last step; the original
            asserted here).
        factor: multiplier applied at each step, <= 1.
        warmup: whether to use ``warmup_lr`` for the first ``warmup_step`` updates.
        warmup_lr: the constant warmup learning rate.
        warmup_step: number of warmup updates.
    """

    def __init__(
        self,
        step: Sequence[int],
        factor: float = 1,
        warmup: bool = False,
        warmup_lr: float = 0,
        warmup_step: int = 0,
    ) -> None:
        super().__init__()
        step = [int(s) for s in step]
        for i, s in enumerate(step):
            if i > 0 and s <= step[i - 1]:
                raise ValueError(f"schedule steps must be increasing, got {step}")
            if s < 1:
                raise ValueError(f"schedule steps must be >= 1 update, got {step}")
        if factor > 1.0:
            raise ValueError(f"factor must be <= 1 so that the lr decreases, got {factor}")
        self.step = step
        self.factor = factor
        self.warmup = warmup
        self.warmup_lr = warmup_lr
        self.warmup_step = warmup_step
        self._logged_k = 0

    def __call__(self, num_update: int) -> float:
        if self.warmup and num_update < self.warmup_step:
            return self.warmup_lr
        k = sum(1 for s in self.step if num_update > s)
        lr = self.base_lr
        for _ in range(k):
            lr *= self.factor
        if k != self._logged_k:
            self._logged_k = k
            logger.info("Update[%d]: Change learning rate to %0.5e", num_update, lr)
        return lr


def _parse_lr_step(lr_step: str | Sequence[float]) -> list[float]:
    if isinstance(lr_step, str):
        return [float(e) for e in lr_step.split(",") if e.strip()]
    return [float(e) for e in lr_step]


def lr_steps_from_epochs(
    lr_step: str,
    begin_epoch: int,
    num_batches_per_epoch: int,
    base_lr: float,
    lr_factor: float,
) -> tuple[float, list[int]]:
    """The original's conversion of ``TRAIN.lr_step`` epochs into scheduler steps.

    Steps at epochs ``<= begin_epoch`` have already been passed: each multiplies the initial lr
    by ``lr_factor``. The remaining ones become iteration counts relative to ``begin_epoch``,
    ``int((epoch - begin_epoch) * num_batches_per_epoch)``, for an update counter that starts at
    0 at ``begin_epoch`` (see the module docstring; with restored counters use
    :func:`build_lr_scheduler` or pass ``begin_epoch=0``).

    Example: ``lr_steps_from_epochs('4,6', 5, 100, 0.1, 0.1)`` -> ``(0.01, [100])``.

    Args:
        lr_step: comma-separated epochs (fractional allowed), e.g. ``'4.83'`` or ``'4,6'``.
        begin_epoch: the first epoch this run trains.
        num_batches_per_epoch: iterations per epoch (the original: ``len(roidb) / batch_size``
            with batch_size = number of devices).
        base_lr: ``TRAIN.lr``.
        lr_factor: ``TRAIN.lr_factor``.

    Returns:
        ``(lr, iters)``: the initial learning rate and the scheduler steps.
    """
    lr_epoch = _parse_lr_step(lr_step)
    lr_epoch_diff = [e - begin_epoch for e in lr_epoch if e > begin_epoch]
    lr = base_lr * (lr_factor ** (len(lr_epoch) - len(lr_epoch_diff)))
    lr_iters = [int(e * num_batches_per_epoch) for e in lr_epoch_diff]
    return lr, lr_iters


def build_lr_scheduler(
    lr_step: str,
    lr_factor: float,
    base_lr: float,
    num_batches_per_epoch: int,
    begin_epoch: int = 0,
    counters_restored: bool = True,
    warmup: bool = False,
    warmup_lr: float = 0.0,
    warmup_step: int = 0,
) -> tuple[float, WarmupMultiFactorScheduler]:
    """The optimizer's ``learning_rate`` and scheduler for a run starting at ``begin_epoch``.

    Args:
        counters_restored: True when the optimizer's update counter continues from the
            checkpoint (``fit(resume_prefix=...)`` with one of our ``.states`` files, or a fresh
            run); False for the original's behaviour, where it restarts at 0 at
            ``begin_epoch``.
        (others): as :func:`lr_steps_from_epochs` and :class:`WarmupMultiFactorScheduler`.

    Returns:
        ``(learning_rate, scheduler)``; pass both in ``optimizer_params``.
    """
    origin = 0 if counters_restored else begin_epoch
    lr, iters = lr_steps_from_epochs(lr_step, origin, num_batches_per_epoch, base_lr, lr_factor)
    logger.info("lr %g, lr steps at iterations %s (counted from epoch %d)", lr, iters, origin)
    return lr, WarmupMultiFactorScheduler(iters, lr_factor, warmup, warmup_lr, warmup_step)
