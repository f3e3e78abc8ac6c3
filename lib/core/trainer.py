"""The training pipeline shared by every architecture: :func:`train_net`.

An architecture's ``train_end2end.py`` (DeepLab's ``train.py``) parses its arguments, takes the
network object of ``cfg.symbol`` from its registry and calls ``train_net(cfg, net, cfg_path)``;
what differs between networks is asked of that object (:mod:`lib.core.network`). The flow is
the original ``train_end2end.py``'s:

1. devices from ``gpus`` (or ``cpu_contexts`` CPU contexts), the synthetic data generated if
   the config uses it and it is missing;
2. the training records: the roidbs of the ``+``-joined ``dataset.image_set`` (plus flipped
   copies), filtered (detection), or the segdbs (segmentation);
3. the network's training iterator (``TRAIN.BATCH_IMAGES`` images per device), bound at the
   largest batch shapes (:func:`lib.core.shapes.max_input_shapes`);
4. parameters: ``network.pretrained`` plus the network's init rules for the rest (or the
   backbone from scratch), or the checkpoint being resumed;
5. ``MutableModule.fit`` with SGD on the warmup / multi-factor schedule of ``TRAIN.lr_step``;
   gradients are summed over devices (``rescale_grad = 1``, as the original), or averaged
   over the batch for a network whose original did (``net.average_gradients``: FPN);
6. a checkpoint ``<output_path>/<cfg name>/<image_set>/<model_prefix>-%04d.params`` (+
   ``.states``, symbol; ``*_test`` bbox weights for detectors) after every epoch, written
   atomically.

**Resume and overwrite.** Finished work is never lost or silently replaced:

* ``TRAIN.RESUME: true`` continues from ``TRAIN.begin_epoch``'s checkpoint, or, when
  ``begin_epoch`` is 0, from the latest complete one (``.params`` and ``.states`` both
  present), and says which; with none it stops with an error. Resuming below the latest
  checkpoint would overwrite the later ones: that needs ``overwrite=True``.
* A fresh run whose output folder already holds checkpoints of its prefix stops before
  training, naming them and the ways on (resume, another ``output_path``, or ``overwrite=True``
  which first deletes them, so no file of the old run is left beside the new ones).
* Temp files of an interrupted checkpoint write are removed at the start.

**Exact resume.** With a ``seed``, every random choice of an epoch is a function of (seed,
epoch): the loader's order and sampling (it starts at ``begin_epoch``) and the global numpy /
MXNet generators (re-seeded at every epoch start; the R-CNN RoI sampling draws from numpy).
Epochs end in checkpoints holding params, momentum and update counters, so a run killed at any
point and resumed ends with the same parameters as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import mxnet as mx
import numpy as np

from lib.config import save_config
from lib.core.callback import Speedometer
from lib.core.checkpoint import (
    do_checkpoint,
    latest_complete_epoch,
    list_checkpoints,
    load_optimizer_states,
    load_param,
    params_path,
    remove_stale_temp_files,
    states_path,
)
from lib.core.initializer import check_parameter_shapes, infer_param_shapes, init_params
from lib.core.lr_scheduler import build_lr_scheduler
from lib.core.module import MutableModule
from lib.core.network import Network
from lib.core.shapes import param_shapes
from lib.dataset import synthetic
from lib.dataset.load_data import filter_roidb, load_gt_roidb, load_gt_segdb, merge_roidb
from lib.utils.logger import create_logger, current_log_file, experiment_output_path
from lib.utils.run_lock import RunLock
from lib.utils.training_curves import write_curves_beside_log

__all__ = [
    "TrainResult",
    "TrainingOutputExistsError",
    "bbox_target_stats",
    "checkpoint_prefix",
    "get_context",
    "initial_params",
    "load_resume_state",
    "load_train_records",
    "overwritten_checkpoints",
    "prepare_synthetic_data",
    "resolve_begin_epoch",
    "train_net",
]

logger = logging.getLogger(__name__)


class TrainingOutputExistsError(FileExistsError):
    """A fresh run would overwrite the checkpoints of an earlier run (see :func:`train_net`)."""


@dataclasses.dataclass
class TrainResult:
    """What :func:`train_net` produced.

    Attributes:
        prefix: checkpoint prefix (``<prefix>-%04d.params``).
        output_dir: the experiment's output directory (log, config.yaml, checkpoints).
        begin_epoch: the epoch training started from (0, or the resumed checkpoint's).
        end_epoch: the last checkpoint's epoch (the one to test).
        history: per trained epoch, the metrics at the epoch's end (``{'RPNAcc': ..}``).
        log_file: the run's log.
    """

    prefix: str
    output_dir: str
    begin_epoch: int
    end_epoch: int
    history: list[dict[str, float]]
    log_file: str | None = None


# ---------------------------------------------------------------------------------- devices


def get_context(cfg: Any) -> list[mx.Context]:
    """The devices of ``cfg``: ``mx.gpu(i)`` for each id of ``gpus``, else ``cpu_contexts`` CPUs.

    Several CPU contexts take the multi-device code path (batches split over devices,
    gradients summed) without GPUs.

    Raises:
        ValueError: ``gpus`` is malformed, or names GPUs this machine / MXNet build lacks.
    """
    text = str(cfg.gpus).strip()
    if not text:
        count = int(cfg.cpu_contexts)
        if count < 1:
            raise ValueError(f"config key cpu_contexts must be >= 1, got {count}")
        return [mx.cpu(i) for i in range(count)]
    try:
        ids = [int(g) for g in text.split(",") if g.strip()]
    except ValueError:
        raise ValueError(
            f"config key gpus={text!r} must be comma-separated GPU ids like '0,1,2,3' (or '' "
            "for the CPU)"
        ) from None
    if len(set(ids)) != len(ids) or min(ids) < 0:
        raise ValueError(f"config key gpus={text!r} must list distinct non-negative GPU ids")
    if not mx.runtime.Features().is_enabled("CUDA"):
        raise ValueError(
            f"config key gpus={text!r} asks for GPUs, but the installed MXNet "
            f"{mx.__version__} is a CPU build: run on the CPU with --set gpus='' (or install a "
            "CUDA MXNet: MXNET_PACKAGE=mxnet-cu112 sh init.sh)"
        )
    available = mx.context.num_gpus()
    if max(ids) >= available:
        raise ValueError(
            f"config key gpus={text!r} asks for GPU {max(ids)}, but {available} GPU(s) are "
            "visible: set gpus to ids below that (or '' for the CPU)"
        )
    return [mx.gpu(i) for i in ids]


# ------------------------------------------------------------------------------------- data


def prepare_synthetic_data(cfg: Any) -> None:
    """Generates the synthetic dataset if the config uses it and it is not there yet.

    The generator's root is the parent of ``dataset.dataset_path`` (``./data/synthetic`` for
    ``./data/synthetic/coco``); it writes every format with its default parameters, so all the
    synthetic configs share one copy. Existing data is never touched: an existing
    ``dataset_path`` is used as it is (with one line saying so when the generator did not write
    it or it was edited since, e.g. an edited copy; a tree the generator was writing when it
    stopped is finished, :func:`lib.dataset.synthetic.use_existing`), and the generator itself
    never deletes or writes into a tree it did not write (:func:`lib.dataset.synthetic.generate`).
    """
    if not cfg.dataset.dataset.lower().startswith("synthetic"):
        return
    path = Path(cfg.dataset.dataset_path)
    root = path.parent
    if path.exists():
        synthetic.use_existing(path)
        return
    if synthetic.meta_path(root).is_file():
        logger.warning(
            "%s does not exist, though %s records synthetic data under %s: generating nothing "
            "there (python -m lib.tools.make_synthetic --root %s --formats F writes format F)",
            path, synthetic.meta_path(root), root, root,
        )  # fmt: skip
        return
    logger.info("synthetic data not found under %s: generating it", root)
    synthetic.generate(root)


def load_train_records(cfg: Any, task: str) -> list[dict]:
    """The training roidb (detection, filtered) or segdb of every ``+``-joined image set."""
    image_sets = cfg.dataset.image_set.split("+")
    args = (cfg.dataset.root_path, cfg.dataset.dataset_path)
    kwargs = {
        "flip": cfg.TRAIN.FLIP,
        "classes": cfg.dataset.CLASSES,
        "num_classes": cfg.dataset.NUM_CLASSES,
    }
    if task == "segmentation":
        return merge_roidb(
            [load_gt_segdb(cfg.dataset.dataset, s, *args, **kwargs) for s in image_sets]
        )
    roidbs = [load_gt_roidb(cfg.dataset.dataset, s, *args, **kwargs) for s in image_sets]
    return filter_roidb(merge_roidb(roidbs), cfg)


def bbox_target_stats(cfg: Any) -> tuple[np.ndarray, np.ndarray]:
    """Means / stds of the regression targets per (class, coordinate), for the ``*_test`` params.

    Targets are normalised only with ``TRAIN.BBOX_NORMALIZATION_PRECOMPUTED``; otherwise the
    network already predicts raw deltas (means 0, stds 1).
    """
    num_reg_classes = 2 if cfg.CLASS_AGNOSTIC else cfg.dataset.NUM_CLASSES
    if cfg.TRAIN.BBOX_NORMALIZATION_PRECOMPUTED:
        means, stds = np.array(cfg.TRAIN.BBOX_MEANS), np.array(cfg.TRAIN.BBOX_STDS)
    else:
        means, stds = np.zeros(4), np.ones(4)
    return np.tile(means, num_reg_classes), np.tile(stds, num_reg_classes)


# ----------------------------------------------------------------------------------- params


def initial_params(
    cfg: Any, net: Network, sym: mx.sym.Symbol, input_shapes: dict[str, tuple]
) -> tuple[dict, dict]:
    """Pretrained params (``network.pretrained``) plus the network's init rules for the rest.

    Without a pretrained model the backbone is initialised from scratch too. Params of the
    pretrained file that the network does not have (an ImageNet classifier) are dropped.
    """
    arg_shapes, aux_shapes = infer_param_shapes(sym, input_shapes)
    if cfg.network.pretrained:
        arg_params, aux_params = load_param(
            cfg.network.pretrained, cfg.network.pretrained_epoch, convert=True
        )
        logger.info(
            "loaded %d + %d pretrained params from %s",
            len(arg_params),
            len(aux_params),
            params_path(cfg.network.pretrained, cfg.network.pretrained_epoch),
        )
    else:
        logger.info("no pretrained model: training the backbone from scratch")
        arg_params, aux_params = {}, {}
    arg_params = {k: v for k, v in arg_params.items() if k in arg_shapes}
    aux_params = {k: v for k, v in aux_params.items() if k in aux_shapes}
    rules = net.init_rules(from_scratch=not cfg.network.pretrained)
    arg_params, aux_params = init_params(arg_shapes, arg_params, aux_params, rules, aux_shapes)
    check_parameter_shapes(arg_shapes, aux_shapes, arg_params, aux_params)
    return arg_params, aux_params


def checkpoint_prefix(cfg: Any, cfg_path: str) -> str:
    """``<output_path>/<cfg name>/<image_set joined by '_'>/<TRAIN.model_prefix>``."""
    output_dir = experiment_output_path(cfg.output_path, cfg_path, cfg.dataset.image_set)
    return os.path.join(output_dir, cfg.TRAIN.model_prefix)


def resolve_begin_epoch(cfg: Any, prefix: str, overwrite: bool = False) -> tuple[int, list[str]]:
    """The epoch training starts from, after checking that no finished work is lost.

    Called before anything is written; it removes the temp files of interrupted checkpoint
    writes. It deletes nothing else: with ``overwrite``, the old checkpoints of a fresh run's
    prefix are returned by :func:`overwritten_checkpoints` and deleted just before training.

    Returns:
        ``(begin_epoch, notes)``: 0 for a fresh run, else the epoch of the checkpoint to resume
        (see the module docstring); ``notes`` are the lines to log once logging is set up.

    Raises:
        TrainingOutputExistsError: a fresh run would overwrite checkpoints; or resuming below
            the latest checkpoint would, without ``overwrite``.
        FileNotFoundError: ``TRAIN.RESUME`` with no checkpoint to resume.
        ValueError: ``TRAIN.begin_epoch`` > 0 without ``TRAIN.RESUME``.
    """
    directory = os.path.dirname(os.path.abspath(prefix))
    name = os.path.basename(prefix)
    notes = [
        f"removed the temp file of an interrupted checkpoint write: {path}"
        for path in remove_stale_temp_files(prefix)
    ]
    begin = int(cfg.TRAIN.begin_epoch)
    existing = list_checkpoints(prefix)
    if not cfg.TRAIN.RESUME:
        if begin > 0:
            raise ValueError(
                f"TRAIN.begin_epoch={begin} without TRAIN.RESUME: to continue from checkpoint "
                f"{begin}, also set TRAIN.RESUME=true (a fresh run starts at epoch 0)"
            )
        if existing and not overwrite:
            shown = "\n  ".join(existing)
            raise TrainingOutputExistsError(
                f"{directory} already holds checkpoints of '{name}':\n  {shown}\n"
                "A fresh run would overwrite them. Either resume that run (--set "
                "TRAIN.RESUME=true continues from its latest complete checkpoint), or train "
                "into another folder (--set output_path=...), or pass --overwrite to delete "
                "them and start again."
            )
        return 0, notes

    latest = latest_complete_epoch(prefix)
    if begin == 0:
        if latest is None:
            raise FileNotFoundError(
                f"TRAIN.RESUME is set but {directory} holds no complete checkpoint of '{name}' "
                "(a -NNNN.params with its .states): nothing to resume. Train without "
                "TRAIN.RESUME to start a fresh run."
            )
        notes.append(
            f"TRAIN.RESUME: resuming from the latest complete checkpoint, "
            f"{params_path(prefix, latest)}"
        )
        return latest, notes
    for path in (params_path(prefix, begin), states_path(prefix, begin)):
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"TRAIN.RESUME from TRAIN.begin_epoch={begin}: {path} does not exist (latest "
                f"complete checkpoint: {latest}; begin_epoch 0 resumes from the latest)"
            )
    if latest is not None and latest > begin and not overwrite:
        raise TrainingOutputExistsError(
            f"resuming from epoch {begin} would overwrite the later checkpoints up to epoch "
            f"{latest} in {directory}: resume from the latest (--set TRAIN.begin_epoch=0) or "
            "pass --overwrite"
        )
    notes.append(f"TRAIN.RESUME: resuming from {params_path(prefix, begin)} (TRAIN.begin_epoch)")
    return begin, notes


def overwritten_checkpoints(cfg: Any, prefix: str, begin_epoch: int) -> list[str]:
    """The checkpoint files an ``overwrite`` run deletes before it trains: every checkpoint of
    ``prefix`` for a fresh run, those after ``begin_epoch`` when resuming below the latest."""
    if not cfg.TRAIN.RESUME:
        return list_checkpoints(prefix)
    return [
        path
        for path in list_checkpoints(prefix)
        if (m := re.search(r"-(\d{4,})\.(params|states)$", path)) and int(m.group(1)) > begin_epoch
    ]


def load_resume_state(
    cfg: Any, sym: mx.sym.Symbol, prefix: str, epoch: int
) -> tuple[dict, dict, bytes]:
    """The params and optimizer states of checkpoint ``epoch``, checked against ``sym``.

    Raises:
        ValueError: a file cannot be read, or the checkpoint does not fit the network (missing,
            unexpected or mis-shaped params: a checkpoint of another network or config); the
            message names the file.
    """
    arg_params, aux_params = load_param(prefix, epoch)
    states = load_optimizer_states(prefix, epoch)
    arg_shapes, aux_shapes = param_shapes(cfg, sym)
    check_parameter_shapes(arg_shapes, aux_shapes, arg_params, aux_params,
                           source=f"checkpoint {params_path(prefix, epoch)}",
                           network=f"the network of symbol {cfg.symbol!r}")  # fmt: skip
    return arg_params, aux_params, states


# ------------------------------------------------------------------------------------ train


class _EpochMetrics:
    """Batch-end callback keeping each epoch's running metric values (its last batch's)."""

    def __init__(self) -> None:
        self.history: list[dict[str, float]] = []
        self._epoch: int | None = None

    def __call__(self, param: Any) -> None:
        if param.epoch != self._epoch:
            self._epoch = param.epoch
            self.history.append({})
        self.history[-1] = dict(param.eval_metric.get_name_value())


def _seed_epoch(seed: int):
    """Epoch-begin callback re-seeding numpy and MXNet from (seed, epoch)."""

    def callback(epoch: int) -> None:
        state = np.random.SeedSequence(seed, spawn_key=(2, epoch)).generate_state(1)[0]
        np.random.seed(int(state))
        mx.random.seed(int(state) % (2**31))

    return callback


def train_net(
    cfg: Any,
    net: Network,
    cfg_path: str,
    ctx: Sequence[mx.Context] | None = None,
    frequent: int | None = None,
    seed: int | None = None,
    num_workers: int = 2,
    overwrite: bool = False,
) -> TrainResult:
    """Trains ``net`` as ``cfg`` says (see the module docstring).

    The run holds its output folder (:class:`lib.utils.run_lock.RunLock`): a second run into it
    stops at once. Everything that can refuse the run (checkpoints it would overwrite, a
    checkpoint to resume that does not fit the network, devices) is checked before the run
    writes into the folder; ``config.yaml`` is written, and ``overwrite``'s deletions made, once
    the data and the parameters are ready, just before the first epoch.

    Args:
        cfg: the loaded config (``lib.config.load_config``).
        net: the network object of ``cfg.symbol`` (an architecture's registry entry).
        cfg_path: the yaml it came from; its basename names the output directory.
        ctx: devices; default :func:`get_context`.
        frequent: log every this many batches (default ``cfg.default.frequent``).
        seed: seeds MXNet, numpy and the loader, per epoch (None: not seeded).
        num_workers: loader threads.
        overwrite: allow replacing the checkpoints of an earlier run (see
            :func:`resolve_begin_epoch`).

    Raises:
        ValueError: ``TRAIN.lr`` is not positive; a checkpoint to resume does not fit.
        lib.utils.run_lock.FolderLockedError: another run holds the output folder.
        TrainingOutputExistsError, FileNotFoundError: see :func:`resolve_begin_epoch`.
    """
    if not cfg.TRAIN.lr > 0:
        raise ValueError(
            f"TRAIN.lr is {cfg.TRAIN.lr}: training needs a learning rate > 0 (set it in the "
            "yaml or with --set TRAIN.lr=...)"
        )
    output_dir = experiment_output_path(cfg.output_path, cfg_path, cfg.dataset.image_set)
    with RunLock(output_dir, "training") as lock:
        return _train_locked(cfg, net, cfg_path, ctx, frequent, seed, num_workers, overwrite,
                             lock.notes)  # fmt: skip


def _train_locked(
    cfg: Any,
    net: Network,
    cfg_path: str,
    ctx: Sequence[mx.Context] | None,
    frequent: int | None,
    seed: int | None,
    num_workers: int,
    overwrite: bool,
    lock_notes: Sequence[str],
) -> TrainResult:
    prefix = checkpoint_prefix(cfg, cfg_path)
    # Checked before the logger creates the output directory and writes into it.
    begin_epoch, notes = resolve_begin_epoch(cfg, prefix, overwrite)
    notes = list(lock_notes) + notes
    end_epoch = int(cfg.TRAIN.end_epoch)
    train = begin_epoch < end_epoch
    sym = net(cfg, is_train=True)
    resumed = load_resume_state(cfg, sym, prefix, begin_epoch) if train and begin_epoch else None
    ctx = get_context(cfg) if ctx is None else list(ctx)
    _, output_dir = create_logger(cfg.output_path, cfg_path, cfg.dataset.image_set, cfg,
                                  save=False)  # fmt: skip
    for note in notes:
        logger.warning(note) if note.startswith("took over") else logger.info(note)
    log_file = current_log_file()
    if not train:
        logger.info(
            "checkpoint %d already reaches TRAIN.end_epoch=%d: nothing to train",
            begin_epoch,
            end_epoch,
        )
        return TrainResult(prefix, output_dir, begin_epoch, begin_epoch, [], log_file)
    if seed is not None:
        mx.random.seed(seed)
        np.random.seed(seed)
    logger.info("training %s on %s, epochs %d..%d, output %s", cfg.symbol, ctx, begin_epoch,
                end_epoch, output_dir)  # fmt: skip

    prepare_synthetic_data(cfg)
    records = load_train_records(cfg, net.task)
    batch_size = cfg.TRAIN.BATCH_IMAGES * len(ctx)
    train_data = net.train_loader(
        sym,
        records,
        cfg,
        batch_size=batch_size,
        ctx=ctx,
        seed=seed,
        num_workers=num_workers,
        begin_epoch=begin_epoch,
    )
    try:
        max_data_shape, max_label_shape = train_data.infer_shape()
        logger.info("max shapes: data %s, label %s", max_data_shape, max_label_shape)
        if resumed is None:
            arg_params, aux_params = initial_params(
                cfg, net, sym, dict(max_data_shape + max_label_shape)
            )
            states = None
        else:
            arg_params, aux_params, states = resumed
        mod = MutableModule(
            sym,
            train_data.data_name,
            train_data.label_name,
            context=ctx,
            max_data_shapes=max_data_shape,
            max_label_shapes=max_label_shape,
            fixed_param_prefix=cfg.network.FIXED_PARAMS,
            max_cached_modules=64,  # shapes of image sizes x gt counts: avoid re-binding
        )
        eval_metric = mx.metric.CompositeEvalMetric()
        for metric in net.metrics(cfg):
            eval_metric.add(metric)

        history = _EpochMetrics()
        frequent = cfg.default.frequent if frequent is None else frequent
        batch_end_callback = [
            Speedometer(batch_size, frequent, total_batches=train_data.num_batches),
            history,
        ]
        if net.bbox_pred_spec is not None:
            means, stds = bbox_target_stats(cfg)
            epoch_end_callback = do_checkpoint(prefix, means, stds, net.bbox_pred_spec, module=mod)
        else:
            epoch_end_callback = do_checkpoint(prefix, module=mod)

        # The original counts lr steps with len(roidb) / (images per batch) iterations per epoch.
        lr, lr_scheduler = build_lr_scheduler(
            cfg.TRAIN.lr_step,
            cfg.TRAIN.lr_factor,
            cfg.TRAIN.lr,
            len(records) / batch_size,
            begin_epoch=begin_epoch,
            counters_restored=True,
            warmup=cfg.TRAIN.warmup,
            warmup_lr=cfg.TRAIN.warmup_lr,
            warmup_step=cfg.TRAIN.warmup_step,
        )
        optimizer_params = {
            "momentum": cfg.TRAIN.momentum,
            "wd": cfg.TRAIN.wd,
            "learning_rate": lr,
            "lr_scheduler": lr_scheduler,
            # losses are normalised per image; gradients summed over the batch's images, or
            # averaged for a network whose original averaged them (FPN, see its network object)
            "rescale_grad": 1.0 / batch_size if net.average_gradients else 1.0,
            "clip_gradient": None,
        }
        if overwrite:
            for path in overwritten_checkpoints(cfg, prefix, begin_epoch):
                os.remove(path)
                logger.info("--overwrite: deleted %s of an earlier run", path)
        save_config(cfg, output_dir)
        mod.fit(
            train_data,
            eval_metric=eval_metric,
            epoch_end_callback=epoch_end_callback,
            batch_end_callback=batch_end_callback,
            epoch_begin_callback=_seed_epoch(seed) if seed is not None else None,
            kvstore=cfg.default.kvstore,
            optimizer="sgd",
            optimizer_params=optimizer_params,
            arg_params=arg_params,
            aux_params=aux_params,
            begin_epoch=begin_epoch,
            num_epoch=end_epoch,
            optimizer_states=states,
            loss_output_names=net.loss_outputs,
        )
    finally:
        train_data.close()
        # <log stem>_curves.png beside the log, also for a run stopped by an error; never raises
        write_curves_beside_log(log_file, batches=train_data.num_batches)
    return TrainResult(prefix, output_dir, begin_epoch, end_epoch, history.history, log_file)
