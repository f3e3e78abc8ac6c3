"""``MutableModule``: a Module that re-binds when the input shapes change, and its training loop.

Detection batches change shape from one image to the next (short side 600, long side up to
1000, portrait or landscape). ``MutableModule`` keeps one ``mx.mod.Module`` bound at the
maximal shapes (``max_data_shapes`` / ``max_label_shapes``) and, for each new combination of
input shapes, binds another ``mx.mod.Module`` with ``shared_module=`` that one: the new
executors reuse its parameter, gradient and optimizer objects, and its memory. Bound modules
are kept in a small LRU cache keyed by the shapes, so alternating shapes do not re-bind each
time (the original re-bound on every change).

Shapes follow MXNet 1.9.1's Module: one ``(name, shape)`` list for the whole batch, which
the executor group splits over the contexts along axis 0 (the original's vendored executor group
took per-device lists instead).

:meth:`MutableModule.fit` is the original training loop (forward_backward, update,
update_metric, batch-end callbacks, aux-param sync, epoch-end callbacks) plus:

* **non-finite losses**: after each forward/backward the metrics are updated and checked,
  with the outputs named in ``loss_output_names``, *before* the update; a NaN/inf raises
  :class:`NonFiniteLossError` (a ``FloatingPointError``) naming the epoch, the batch and the
  iteration, and the bad update is not applied. A NaN that reaches only the gradients (the
  loss stays finite) is caught by the finiteness check of all params at the epoch end. Either
  way no checkpoint is written for the bad state: checkpoints are written by epoch-end
  callbacks, which run only after both checks pass, so the last checkpoint stays intact.
* **resume**: ``fit(begin_epoch=N, resume_prefix=prefix)`` loads ``<prefix>-%04d.params`` and
  ``.states`` of epoch N: params, momentum and the optimizer's update counters, so the lr
  schedule continues where it stopped (its steps must count from epoch 0, see
  :mod:`lib.core.lr_scheduler`). There are no mid-epoch checkpoints: a run killed mid-epoch
  resumes at the start of that epoch from the previous epoch's end state, which is exactly
  where an uninterrupted run was then, so a resumed run ends with the same params provided
  the loader gives each epoch the same batches (no shuffle, or a shuffle seeded per epoch).
  The cost is redoing at most one epoch; mid-epoch checkpoints would also need the loader's
  position and RNG state, which ``DataIter`` does not expose.
"""

from __future__ import annotations

import collections
import logging
import pickle
import time
from collections.abc import Sequence
from typing import Any

import mxnet as mx
import numpy as np
from mxnet.io import DataDesc
from mxnet.model import BatchEndParam

from lib.core.checkpoint import (
    atomic_write,
    load_optimizer_states,
    load_param,
    save_checkpoint,
)

__all__ = ["MutableModule", "NonFiniteLossError", "fixed_param_names"]

logger = logging.getLogger(__name__)


class NonFiniteLossError(FloatingPointError):
    """A loss or metric became NaN/inf during training (or a parameter did at an epoch end).

    Attributes:
        epoch: 0-based epoch index.
        nbatch: 0-based batch index within the epoch (None: found at the epoch end).
        iteration: 1-based global iteration (optimizer update) that produced it.
        values: ``{name: value}`` of the offending quantities.
    """

    def __init__(self, epoch: int, nbatch: int | None, iteration: int, values: dict) -> None:
        self.epoch, self.nbatch, self.iteration, self.values = epoch, nbatch, iteration, values
        what = ", ".join(f"{k}={v}" for k, v in values.items())
        if nbatch is not None:
            msg = (
                f"non-finite training loss at epoch {epoch}, batch {nbatch} (iteration "
                f"{iteration}): {what}. Training stopped before applying this update; no "
                "checkpoint was written for it (the last epoch checkpoint is intact)."
            )
        else:
            msg = (
                f"non-finite parameters at the end of epoch {epoch} (iteration {iteration}): "
                f"{what}. Training stopped; no checkpoint was written for this epoch (the "
                "previous epoch checkpoint is intact)."
            )
        super().__init__(msg)


def fixed_param_names(arg_names: Sequence[str], prefixes: Sequence[str] | None) -> list[str]:
    """Arguments frozen by ``network.FIXED_PARAMS``: every name that *contains* a prefix.

    Substring semantics as in the original: ``'gamma'`` freezes every BN scale and ``'res2'``
    freezes ``res2a_branch1_weight`` (and would freeze ``fpn_res2_...``). Order follows
    ``arg_names``.
    """
    if prefixes is None:
        return []
    if isinstance(prefixes, str):
        # Iterating a str would freeze every name containing any of its letters.
        raise TypeError(f"prefixes must be a list of strings, got the string {prefixes!r}")
    return [name for name in arg_names if any(p in name for p in prefixes)]


def _as_list(obj: Any) -> list:
    if obj is None:
        return []
    return list(obj) if isinstance(obj, (list, tuple)) else [obj]


def _shape_key(descs: Sequence | None) -> tuple:
    if not descs:
        return ()
    return tuple((d[0], tuple(d[1])) for d in descs)


def _nonfinite_metric_values(eval_metric: mx.metric.EvalMetric) -> dict[str, float]:
    """``{name: value}`` of metrics with at least one instance whose value is not finite.

    A metric with no instance yet (e.g. FG accuracy before the first foreground RoI) reports
    NaN legitimately and is skipped.
    """
    leaves = getattr(eval_metric, "metrics", None) or [eval_metric]
    bad = {}
    for m in leaves:
        if isinstance(m, mx.metric.CompositeEvalMetric):
            bad.update(_nonfinite_metric_values(m))
            continue
        if not m.num_inst:
            continue
        names, values = m.get()
        for n, v in zip(_as_list(names), _as_list(values)):
            if not np.all(np.isfinite(v)):
                bad[n] = v
    return bad


class MutableModule(mx.mod.BaseModule):
    """A module that binds a new ``mx.mod.Module`` (sharing memory) for each input shape.

    Args:
        symbol: the network.
        data_names, label_names: input names (``label_names`` None or [] at test time).
        logger: kept for MXNet's interface; this module logs with ``logging.getLogger``.
        context: one context or a list (data-parallel over them, e.g.
            ``[mx.cpu(0), mx.cpu(1)]``).
        work_load_list: relative batch share per context (MXNet's).
        max_data_shapes, max_label_shapes: ``[(name, shape), ...]`` of the largest batch;
            names absent take the first batch's shape. The first bind uses them.
        fixed_param_prefix: substrings; matching arguments get no gradient and no update
            (:func:`fixed_param_names`).
        max_cached_modules: how many shape-specific modules to keep bound (LRU, besides the
            max-shape one).
    """

    def __init__(
        self,
        symbol: mx.sym.Symbol,
        data_names: Sequence[str],
        label_names: Sequence[str] | None,
        logger: Any = logging,
        context: Any = None,
        work_load_list: Sequence[float] | None = None,
        max_data_shapes: Sequence | None = None,
        max_label_shapes: Sequence | None = None,
        fixed_param_prefix: Sequence[str] | None = None,
        max_cached_modules: int = 4,
    ) -> None:
        super().__init__(logger=logger)
        self._symbol = symbol
        self._data_names = list(data_names)
        self._label_names = list(label_names) if label_names else []
        if context is None:
            context = mx.cpu()
        self._context = context if isinstance(context, (list, tuple)) else [context]
        self._work_load_list = work_load_list
        self._max_data_shapes = list(max_data_shapes) if max_data_shapes else []
        self._max_label_shapes = list(max_label_shapes) if max_label_shapes else []
        inputs = set(self._data_names) | set(self._label_names)
        self._fixed_param_names = fixed_param_names(
            [n for n in symbol.list_arguments() if n not in inputs], fixed_param_prefix
        )
        self._max_cached_modules = max_cached_modules
        self._max_module: mx.mod.Module | None = None
        self._curr_module: mx.mod.Module | None = None
        self._max_key: tuple = ()
        self._modules: collections.OrderedDict = collections.OrderedDict()
        self._monitor = None
        self._preload_states: bytes | None = None

    # -- properties --------------------------------------------------------------------------

    @property
    def symbol(self) -> mx.sym.Symbol:
        return self._symbol

    @property
    def data_names(self) -> list[str]:
        return self._data_names

    @property
    def label_names(self) -> list[str]:
        return self._label_names

    @property
    def output_names(self) -> list[str]:
        return self._symbol.list_outputs()

    @property
    def fixed_param_names(self) -> list[str]:
        return list(self._fixed_param_names)

    @property
    def data_shapes(self):
        assert self.binded
        return self._curr_module.data_shapes

    @property
    def label_shapes(self):
        assert self.binded
        return self._curr_module.label_shapes

    @property
    def output_shapes(self):
        assert self.binded
        return self._curr_module.output_shapes

    @property
    def optimizer(self) -> mx.optimizer.Optimizer | None:
        """The installed optimizer (shared by all bound modules), or None."""
        return self._max_module._optimizer if self.optimizer_initialized else None

    # -- binding -----------------------------------------------------------------------------

    def _new_module(self) -> mx.mod.Module:
        return mx.mod.Module(
            self._symbol,
            self._data_names,
            self._label_names or None,
            logger=self.logger,
            context=self._context,
            work_load_list=self._work_load_list,
            fixed_param_names=self._fixed_param_names,
        )

    def _reset_bind(self) -> None:
        self.binded = False
        self._max_module = None
        self._curr_module = None
        self._modules.clear()

    def bind(
        self,
        data_shapes,
        label_shapes=None,
        for_training: bool = True,
        inputs_need_grad: bool = False,
        force_rebind: bool = False,
        shared_module=None,
        grad_req: str = "write",
    ) -> None:
        """Binds the max-shape module: each input takes its ``max_*_shapes`` entry if any."""
        if self.params_initialized:
            arg_params, aux_params = self.get_params()
        old_max = self._max_module
        if force_rebind:
            self._reset_bind()
        if self.binded:
            logger.warning("Already bound, ignoring bind()")
            return
        if shared_module is not None:
            raise ValueError("shared_module is not supported by MutableModule")

        max_shapes = dict(_shape_key(self._max_data_shapes) + _shape_key(self._max_label_shapes))
        max_data = [(d[0], max_shapes.get(d[0], tuple(d[1]))) for d in data_shapes]
        max_label = [(d[0], max_shapes.get(d[0], tuple(d[1]))) for d in label_shapes or []]

        module = self._new_module()
        module.bind(
            max_data,
            max_label or None,
            for_training,
            inputs_need_grad,
            force_rebind=False,
            shared_module=None,
            grad_req=grad_req,
        )
        if self._monitor is not None:
            module.install_monitor(self._monitor)
        self.for_training = for_training
        self.inputs_need_grad = inputs_need_grad
        self._grad_req = grad_req
        self._max_module = self._curr_module = module
        self._max_key = _shape_key(max_data) + _shape_key(max_label)
        self.binded = True
        if self.params_initialized:
            self.set_params(arg_params, aux_params)
            if self.optimizer_initialized and old_max is not None:
                module.borrow_optimizer(old_max)  # keep optimizer, states and kvstore

    def _batch_descs(self, data_batch: Any) -> tuple[list, list | None]:
        data = data_batch.provide_data
        if not data:
            data = [DataDesc(n, a.shape) for n, a in zip(self._data_names, data_batch.data)]
        label = None
        if self._label_names and data_batch.label:
            label = data_batch.provide_label
            if not label:
                label = [DataDesc(n, a.shape) for n, a in zip(self._label_names, data_batch.label)]
        return list(data), label

    def _switch_to(self, data_descs: list, label_descs: list | None) -> None:
        """Makes ``_curr_module`` a module bound for these shapes (cached, or a new one)."""
        key = _shape_key(data_descs)
        if label_descs is not None:
            key += _shape_key(label_descs)
        else:  # no labels in the batch: any module with these data shapes will do
            for k, m in [(self._max_key, self._max_module)] + list(self._modules.items()):
                if k[: len(key)] == key:
                    self._curr_module = m
                    return
        if key == self._max_key:
            self._curr_module = self._max_module
            return
        if key in self._modules:
            self._modules.move_to_end(key)
            self._curr_module = self._modules[key]
            return
        module = self._new_module()
        module.bind(
            data_descs,
            label_descs,
            self.for_training,
            self.inputs_need_grad,
            force_rebind=False,
            shared_module=self._max_module,
            grad_req=self._grad_req,
        )
        if self._monitor is not None:
            module.install_monitor(self._monitor)
        logger.debug("bound a module for shapes %s", key)
        self._modules[key] = module
        while len(self._modules) > self._max_cached_modules:
            self._modules.popitem(last=False)
        self._curr_module = module

    # -- params and optimizer ----------------------------------------------------------------

    def get_params(self) -> tuple[dict, dict]:
        """Current params, copied from the devices (aux states averaged over devices)."""
        assert self.binded and self.params_initialized
        # All modules share the device arrays but each has its own dirty flag: always sync.
        self._curr_module._sync_params_from_devices()
        return self._curr_module._arg_params, self._curr_module._aux_params

    def init_params(
        self,
        initializer=mx.init.Uniform(0.01),  # noqa: B008 (MXNet's own default)
        arg_params=None,
        aux_params=None,
        allow_missing: bool = False,
        force_init: bool = False,
        allow_extra: bool = False,
    ) -> None:
        if self.params_initialized and not force_init:
            return
        assert self.binded, "call bind before initializing the parameters"
        self._max_module.init_params(
            initializer=initializer,
            arg_params=arg_params,
            aux_params=aux_params,
            allow_missing=allow_missing,
            force_init=force_init,
            allow_extra=allow_extra,
        )
        self.params_initialized = True

    def set_params(
        self, arg_params, aux_params, allow_missing=False, force_init=True, allow_extra=False
    ) -> None:
        self._curr_module.set_params(
            arg_params,
            aux_params,
            allow_missing=allow_missing,
            force_init=force_init,
            allow_extra=allow_extra,
        )
        self.params_initialized = True

    def init_optimizer(
        self,
        kvstore="local",
        optimizer="sgd",
        optimizer_params=(("learning_rate", 0.01),),
        force_init: bool = False,
    ) -> None:
        """Installs the optimizer on the max-shape module; every other module borrows it.

        States given to :meth:`preload_optimizer_states` are restored afterwards.
        """
        assert self.binded and self.params_initialized
        if self.optimizer_initialized and not force_init:
            logger.warning("optimizer already initialized, ignoring.")
            return
        self._max_module.init_optimizer(kvstore, optimizer, optimizer_params, force_init=force_init)
        for module in self._modules.values():
            module.borrow_optimizer(self._max_module)
        self.optimizer_initialized = True
        if self._preload_states is not None:
            self.set_optimizer_states(self._preload_states)
            self._preload_states = None

    def _updater(self) -> mx.optimizer.Updater:
        m = self._max_module
        if m._update_on_kvstore:
            if "dist" in m._kvstore.type:
                raise NotImplementedError("optimizer states of a dist kvstore live on servers")
            return m._kvstore._updater
        return m._updater

    def get_optimizer_states(self) -> bytes:
        """``pickle((updater_states, optimizer))``: momentum etc. and the update counters.

        The format of MXNet's ``Updater.get_states(dump_optimizer=True)``, so
        ``mx.mod.Module.load_optimizer_states`` reads it too.
        """
        assert self.optimizer_initialized
        return self._updater().get_states(dump_optimizer=True)

    def set_optimizer_states(self, states: bytes) -> None:
        """Restores :meth:`get_optimizer_states` bytes (or an original, states-only file).

        The installed optimizer is kept (so a new lr / scheduler config applies); only its
        update counters are taken from the saved one. Counters of a device not in the saved
        table start from the saved ``num_update`` (``begin_num_update``), so the schedule
        also continues on a different device.
        """
        assert self.optimizer_initialized
        loaded = pickle.loads(states)
        updater = self._updater()
        if isinstance(loaded, tuple) and len(loaded) == 2:
            updater_states, saved_opt = loaded
        else:
            updater_states, saved_opt = loaded, None
        updater.set_states(pickle.dumps(updater_states))
        opt = updater.optimizer
        if saved_opt is None:
            logger.warning("optimizer states without update counters: num_update restarts at 0")
            return
        opt.num_update = saved_opt.num_update
        opt.begin_num_update = saved_opt.num_update
        opt._all_index_update_counts = {
            dev: dict(counts) for dev, counts in saved_opt._all_index_update_counts.items()
        }
        first_dev = next(iter(opt._all_index_update_counts), 0)
        opt._index_update_count = opt._all_index_update_counts.setdefault(first_dev, {})
        logger.info("restored optimizer states at update %d", opt.num_update)

    def preload_optimizer_states(self, states: bytes) -> None:
        """Optimizer states to restore right after :meth:`init_optimizer` (for resume)."""
        self._preload_states = states

    def save_optimizer_states(self, fname: str) -> None:
        states = self.get_optimizer_states()

        def write(path: str) -> None:
            with open(path, "wb") as f:
                f.write(states)

        atomic_write(fname, write)

    def load_optimizer_states(self, fname: str) -> None:
        with open(fname, "rb") as f:
            self.set_optimizer_states(f.read())

    def save_checkpoint(self, prefix: str, epoch: int, save_optimizer_states: bool = False):
        """Writes ``<prefix>-%04d.params``, the symbol and optionally ``.states`` atomically."""
        arg_params, aux_params = self.get_params()
        states = self.get_optimizer_states() if save_optimizer_states else None
        save_checkpoint(prefix, epoch, arg_params, aux_params, self._symbol, states)

    # -- computation -------------------------------------------------------------------------

    def forward(self, data_batch, is_train: bool | None = None) -> None:
        assert self.binded and self.params_initialized
        data_descs, label_descs = self._batch_descs(data_batch)
        self._switch_to(data_descs, label_descs)
        self._curr_module.forward(data_batch, is_train=is_train)

    def backward(self, out_grads=None) -> None:
        assert self.binded and self.params_initialized
        self._curr_module.backward(out_grads=out_grads)

    def update(self) -> None:
        assert self.binded and self.params_initialized and self.optimizer_initialized
        self._curr_module.update()

    def get_outputs(self, merge_multi_context: bool = True):
        assert self.binded and self.params_initialized
        return self._curr_module.get_outputs(merge_multi_context=merge_multi_context)

    def get_input_grads(self, merge_multi_context: bool = True):
        assert self.binded and self.params_initialized and self.inputs_need_grad
        return self._curr_module.get_input_grads(merge_multi_context=merge_multi_context)

    def update_metric(self, eval_metric, labels, pre_sliced: bool = False) -> None:
        assert self.binded and self.params_initialized
        self._curr_module.update_metric(eval_metric, labels, pre_sliced)

    def install_monitor(self, mon) -> None:
        assert self.binded
        self._monitor = mon
        for module in [self._max_module, *self._modules.values()]:
            module.install_monitor(mon)

    # -- training loop -----------------------------------------------------------------------

    def _check_loss_outputs(self, loss_indices, epoch, nbatch) -> None:
        if not loss_indices:
            return
        outputs = self.get_outputs()
        bad = {}
        for i in loss_indices:
            out = outputs[i].asnumpy()
            if not np.all(np.isfinite(out)):
                bad[self.output_names[i]] = float(out[~np.isfinite(out)].ravel()[0])
        if bad:
            raise NonFiniteLossError(epoch, nbatch, self.optimizer.num_update + 1, bad)

    def fit(
        self,
        train_data,
        eval_data=None,
        eval_metric="acc",
        epoch_end_callback=None,
        batch_end_callback=None,
        kvstore="local",
        optimizer="sgd",
        optimizer_params=(("learning_rate", 0.01),),
        eval_end_callback=None,
        eval_batch_end_callback=None,
        initializer=mx.init.Uniform(0.01),  # noqa: B008 (MXNet's own default)
        arg_params=None,
        aux_params=None,
        allow_missing=False,
        force_rebind=False,
        force_init=False,
        begin_epoch: int = 0,
        num_epoch: int | None = None,
        validation_metric=None,
        monitor=None,
        resume_prefix: str | None = None,
        optimizer_states: bytes | None = None,
        loss_output_names: Sequence[str] = (),
        check_finite: bool = True,
        epoch_begin_callback=None,
    ) -> None:
        """Trains epochs ``begin_epoch .. num_epoch-1`` (MXNet's ``fit`` arguments, plus:).

        Args:
            resume_prefix: with ``begin_epoch = N > 0``, load ``<prefix>-%04d.params`` and
                ``<prefix>-%04d.states`` of epoch N (overriding ``arg_params``/``aux_params``)
                and continue with the restored optimizer (momentum, update counters).
            optimizer_states: the bytes of a ``.states`` file to continue from (the optimizer
                of a checkpoint whose params are ``arg_params`` / ``aux_params``).
            loss_output_names: outputs (``list_outputs()`` names) that must stay finite.
            check_finite: check metric values, ``loss_output_names`` and (at epoch ends) the
                params; raise :class:`NonFiniteLossError` on NaN/inf.
            epoch_begin_callback: ``callback(epoch)`` (or a list) called before each epoch's
                first batch, e.g. to re-seed random generators per epoch.

        The update of each batch is applied after its metrics have been checked, so on
        :class:`NonFiniteLossError` the in-memory params are those of the previous iteration.
        """
        assert num_epoch is not None, "please specify number of epochs"
        if resume_prefix is not None:
            if begin_epoch <= 0:
                raise ValueError("resume_prefix needs begin_epoch > 0 (the epoch to load)")
            arg_params, aux_params = load_param(resume_prefix, begin_epoch)
            optimizer_states = load_optimizer_states(resume_prefix, begin_epoch)
            logger.info("resuming from %s epoch %d", resume_prefix, begin_epoch)
        if optimizer_states is not None:
            self.preload_optimizer_states(optimizer_states)
            force_init = True

        self.bind(
            data_shapes=train_data.provide_data,
            label_shapes=train_data.provide_label,
            for_training=True,
            force_rebind=force_rebind,
        )
        if monitor is not None:
            self.install_monitor(monitor)
        self.init_params(
            initializer=initializer,
            arg_params=arg_params,
            aux_params=aux_params,
            allow_missing=allow_missing,
            force_init=force_init,
        )
        self.init_optimizer(kvstore=kvstore, optimizer=optimizer, optimizer_params=optimizer_params)
        if validation_metric is None:
            validation_metric = eval_metric
        if not isinstance(eval_metric, mx.metric.EvalMetric):
            eval_metric = mx.metric.create(eval_metric)
        unknown = [n for n in loss_output_names if n not in self.output_names]
        if unknown:
            raise ValueError(f"loss_output_names {unknown} not in outputs {self.output_names}")
        loss_indices = [self.output_names.index(n) for n in loss_output_names]

        for epoch in range(begin_epoch, num_epoch):
            for callback in _as_list(epoch_begin_callback):
                callback(epoch)
            tic = time.time()
            eval_metric.reset()
            for nbatch, data_batch in enumerate(train_data):
                if monitor is not None:
                    monitor.tic()
                self.forward_backward(data_batch)
                # Metrics before the update (they only read the outputs): a non-finite loss
                # stops training before it reaches the params.
                self.update_metric(eval_metric, data_batch.label)
                if check_finite:
                    self._check_loss_outputs(loss_indices, epoch, nbatch)
                    bad = _nonfinite_metric_values(eval_metric)
                    if bad:
                        raise NonFiniteLossError(epoch, nbatch, self.optimizer.num_update + 1, bad)
                self.update()
                if monitor is not None:
                    monitor.toc_print()
                if batch_end_callback is not None:
                    params = BatchEndParam(
                        epoch=epoch, nbatch=nbatch, eval_metric=eval_metric, locals=locals()
                    )
                    for callback in _as_list(batch_end_callback):
                        callback(params)

            for name, val in eval_metric.get_name_value():
                logger.info("Epoch[%d] Train-%s=%f", epoch, name, val)
            logger.info("Epoch[%d] Time cost=%.3f", epoch, time.time() - tic)

            # Sync aux params (averaged over devices) back to every device, as the original.
            arg_params, aux_params = self.get_params()
            self.set_params(arg_params, aux_params)
            if check_finite:
                bad = {
                    n: "non-finite"
                    for n, v in list(arg_params.items()) + list(aux_params.items())
                    if not np.all(np.isfinite(v.asnumpy()))
                }
                if bad:
                    raise NonFiniteLossError(epoch, None, self.optimizer.num_update, bad)
            for callback in _as_list(epoch_end_callback):
                callback(epoch, self.symbol, arg_params, aux_params)

            if eval_data is not None:
                res = self.score(
                    eval_data,
                    validation_metric,
                    batch_end_callback=eval_batch_end_callback,
                    epoch=epoch,
                )
                for name, val in res:
                    logger.info("Epoch[%d] Validation-%s=%f", epoch, name, val)
                for callback in _as_list(eval_end_callback):
                    callback(BatchEndParam(epoch, 0, validation_metric, locals()))
            train_data.reset()
