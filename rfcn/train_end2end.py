"""End-to-end training of R-FCN / Deformable R-FCN (RPN and head together, one image per device).

    python rfcn/train_end2end.py --cfg experiments/rfcn/cfgs/<name>.yaml [--set KEY=VALUE ...]

The flow of the original ``train_end2end.py``: the config's ``symbol`` picks the network
(``rfcn.symbols.SYMBOLS``); the roidbs of the ``+``-joined ``dataset.image_set`` (plus flipped
copies) feed an :class:`~lib.core.loader.AnchorLoader`; parameters come from
``network.pretrained`` with the new layers initialised by the network's rules (RPN / head
N(0, 0.01), offsets zero), or, with no pretrained model, from scratch; SGD with the warmup /
multi-factor schedule of ``TRAIN.lr_step`` (epochs); checkpoints
``<output_path>/<cfg name>/<image_set>/<model_prefix>-%04d.params`` with the ``*_test`` bbox
weights after every epoch. ``TRAIN.RESUME`` continues from ``TRAIN.begin_epoch``'s checkpoint
and optimizer states.

A config whose dataset is synthetic generates the data on first use (into the parent of
``dataset.dataset_path``), so the quick start works on a fresh clone.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
from pathlib import Path
from typing import Any

import mxnet as mx
import numpy as np

if __name__ == "__main__":
    import _init_paths  # noqa: F401  (puts the repo root on sys.path)

from lib.config import add_config_args, config_from_args
from lib.core.callback import Speedometer
from lib.core.checkpoint import do_checkpoint, load_param
from lib.core.initializer import check_parameter_shapes, infer_param_shapes, init_params
from lib.core.loader import AnchorLoader
from lib.core.lr_scheduler import build_lr_scheduler
from lib.core.metric import (
    RCNNAccMetric,
    RCNNL1LossMetric,
    RCNNLogLossMetric,
    RPNAccMetric,
    RPNL1LossMetric,
    RPNLogLossMetric,
    get_rcnn_names,
)
from lib.core.module import MutableModule
from lib.dataset import synthetic
from lib.dataset.load_data import filter_roidb, load_gt_roidb, merge_roidb
from lib.utils.logger import create_logger
from rfcn.symbols import get_network

logger = logging.getLogger(__name__)

#: training outputs that hold losses (checked finite after every batch)
LOSS_OUTPUTS = ("rpn_bbox_loss_output", "bbox_loss_reshape_output")


@dataclasses.dataclass
class TrainResult:
    """What :func:`train_net` produced.

    Attributes:
        prefix: checkpoint prefix (``<prefix>-%04d.params``).
        output_dir: the experiment's output directory (log, config.yaml, checkpoints).
        end_epoch: the last checkpoint's epoch.
        history: per trained epoch, the metrics averaged over the epoch (``{'RPNAcc': ..}``).
    """

    prefix: str
    output_dir: str
    end_epoch: int
    history: list[dict[str, float]]


def get_context(cfg: Any) -> list[mx.Context]:
    """``[mx.gpu(i) for i in gpus]``, or ``[mx.cpu()]`` when ``gpus`` is empty."""
    gpus = [g.strip() for g in str(cfg.gpus).split(",") if g.strip()]
    return [mx.gpu(int(g)) for g in gpus] if gpus else [mx.cpu()]


def prepare_synthetic_data(cfg: Any) -> None:
    """Generates the synthetic dataset if the config uses it and it is not there yet.

    The generator's root is the parent of ``dataset.dataset_path`` (``./data/synthetic`` for
    ``./data/synthetic/coco``); it writes every format with its default parameters, so all the
    synthetic configs share one copy. Existing data is never touched.
    """
    if not cfg.dataset.dataset.lower().startswith("synthetic"):
        return
    root = Path(cfg.dataset.dataset_path).parent
    if synthetic.meta_path(root).is_file():
        return
    logger.info("synthetic data not found under %s: generating it", root)
    synthetic.generate(root)


def load_train_roidb(cfg: Any) -> list[dict]:
    """The filtered roidb of every ``+``-joined training image set (flipped copies appended)."""
    roidbs = [
        load_gt_roidb(
            cfg.dataset.dataset,
            image_set,
            cfg.dataset.root_path,
            cfg.dataset.dataset_path,
            flip=cfg.TRAIN.FLIP,
        )
        for image_set in cfg.dataset.image_set.split("+")
    ]
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


def initial_params(
    cfg: Any, net: Any, sym: mx.sym.Symbol, input_shapes: dict[str, tuple]
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
            "loaded %d + %d pretrained params from %s-%04d.params",
            len(arg_params),
            len(aux_params),
            cfg.network.pretrained,
            cfg.network.pretrained_epoch,
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


def train_net(
    cfg: Any,
    cfg_path: str,
    ctx: list[mx.Context] | None = None,
    frequent: int | None = None,
    seed: int | None = None,
    num_workers: int = 2,
) -> TrainResult:
    """Trains the network of ``cfg`` end to end (see the module docstring).

    Args:
        cfg: the loaded config (``lib.config.load_config``).
        cfg_path: the yaml it came from; its basename names the output directory.
        ctx: devices; default from ``cfg.gpus``.
        frequent: log every this many batches (default ``cfg.default.frequent``).
        seed: seeds MXNet, numpy and the loader (None: not seeded).
        num_workers: loader threads.
    """
    _, output_dir = create_logger(cfg.output_path, cfg_path, cfg.dataset.image_set, cfg)
    prefix = os.path.join(output_dir, cfg.TRAIN.model_prefix)
    if seed is not None:
        mx.random.seed(seed)
        np.random.seed(seed)
    ctx = get_context(cfg) if ctx is None else ctx
    logger.info("training %s on %s, output %s", cfg.symbol, ctx, output_dir)

    net = get_network(cfg.symbol)
    sym = net(cfg, is_train=True)
    feat_sym = sym.get_internals()["rpn_cls_score_output"]

    prepare_synthetic_data(cfg)
    roidb = load_train_roidb(cfg)
    batch_size = cfg.TRAIN.BATCH_IMAGES * len(ctx)
    train_data = AnchorLoader(
        feat_sym,
        roidb,
        cfg,
        batch_size=batch_size,
        shuffle=cfg.TRAIN.SHUFFLE,
        ctx=ctx,
        feat_stride=net.feat_stride,
        anchor_scales=cfg.network.ANCHOR_SCALES,
        anchor_ratios=cfg.network.ANCHOR_RATIOS,
        aspect_grouping=cfg.TRAIN.ASPECT_GROUPING,
        num_workers=num_workers,
        seed=seed,
    )
    max_data_shape, max_label_shape = train_data.infer_shape()
    logger.info("max shapes: data %s, label %s", max_data_shape, max_label_shape)

    begin_epoch, end_epoch = cfg.TRAIN.begin_epoch, cfg.TRAIN.end_epoch
    resume = cfg.TRAIN.RESUME and begin_epoch > 0
    arg_params = aux_params = None
    if not resume:
        shapes = dict(max_data_shape + max_label_shape)
        arg_params, aux_params = initial_params(cfg, net, sym, shapes)

    mod = MutableModule(
        sym,
        train_data.data_name,
        train_data.label_name,
        context=ctx,
        max_data_shapes=max_data_shape,
        max_label_shapes=max_label_shape,
        fixed_param_prefix=cfg.network.FIXED_PARAMS,
        max_cached_modules=16,
    )

    pred_names, label_names = get_rcnn_names(end2end=True, ohem=cfg.TRAIN.ENABLE_OHEM)
    eval_metric = mx.metric.CompositeEvalMetric()
    for metric_cls in (
        RPNAccMetric,
        RPNLogLossMetric,
        RPNL1LossMetric,
        RCNNAccMetric,
        RCNNLogLossMetric,
        RCNNL1LossMetric,
    ):
        eval_metric.add(metric_cls(pred_names, label_names))

    history = _EpochMetrics()
    frequent = cfg.default.frequent if frequent is None else frequent
    batch_end_callback = [
        Speedometer(batch_size, frequent, total_batches=train_data.num_batches),
        history,
    ]
    means, stds = bbox_target_stats(cfg)
    epoch_end_callback = do_checkpoint(prefix, means, stds, net.bbox_pred_spec, module=mod)

    # The original counts lr steps with len(roidb) / (number of devices) iterations per epoch.
    lr, lr_scheduler = build_lr_scheduler(
        cfg.TRAIN.lr_step,
        cfg.TRAIN.lr_factor,
        cfg.TRAIN.lr,
        len(roidb) / batch_size,
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
        "rescale_grad": 1.0,  # losses are already normalised; gradients summed over devices
        "clip_gradient": None,
    }
    mod.fit(
        train_data,
        eval_metric=eval_metric,
        epoch_end_callback=epoch_end_callback,
        batch_end_callback=batch_end_callback,
        kvstore=cfg.default.kvstore,
        optimizer="sgd",
        optimizer_params=optimizer_params,
        arg_params=arg_params,
        aux_params=aux_params,
        begin_epoch=begin_epoch,
        num_epoch=end_epoch,
        resume_prefix=prefix if resume else None,
        loss_output_names=LOSS_OUTPUTS,
    )
    train_data.close()
    return TrainResult(prefix, output_dir, end_epoch, history.history)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Train R-FCN end to end")
    add_config_args(parser)
    parser.add_argument("--frequent", type=int, default=None, help="log every N batches")
    parser.add_argument("--seed", type=int, default=None, help="seed MXNet, numpy and the loader")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> TrainResult:
    args = parse_args(argv)
    cfg = config_from_args(args, arch="rfcn")
    return train_net(cfg, args.cfg, frequent=args.frequent, seed=args.seed)


if __name__ == "__main__":
    main()
