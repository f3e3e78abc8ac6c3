"""Networks as objects: what the shared trainer and tester need to know about a network.

An architecture's registry (``rfcn.symbols.SYMBOLS``, ``faster_rcnn.symbols.SYMBOLS``,
``deeplab.symbols.SYMBOLS``) maps a config's ``symbol`` to a frozen dataclass that builds its
symbol and answers the questions of :class:`Network`. Everything else (devices, data, initial
params, metrics, ``fit``, checkpoints, testing, evaluation) lives once in
:mod:`lib.core.trainer` and :mod:`lib.core.tester`, which take the object. Two base classes
hold the answers shared by a family:

* :class:`TwoStageDetector`: an RPN on one stride-16 feature map plus an R-CNN head (R-FCN,
  Faster R-CNN). Training outputs ``rpn_cls_prob, rpn_bbox_loss, cls_prob_reshape,
  bbox_loss_reshape, blockgrad0``; test outputs ``rois, cls_prob_reshape, bbox_pred_reshape``;
  batches from :class:`lib.core.loader.AnchorLoader`.
* :class:`SegmentationNetwork`: a fully convolutional network (DeepLab) trained with
  ``SoftmaxOutput(ignore_label=255)``; batches from :class:`lib.core.seg_loader.TrainDataLoader`.

Knowledge of one architecture (layer names, the bbox-regression layout) stays in its subclass.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Protocol

import mxnet as mx

from lib.core.checkpoint import BboxPredSpec
from lib.core.initializer import DEFAULT_NEW_LAYER_RULES, Rule
from lib.core.loader import AnchorLoader, BatchLoader
from lib.core.metric import (
    FCNLogLossMetric,
    FCNPixelAccMetric,
    RCNNAccMetric,
    RCNNL1LossMetric,
    RCNNLogLossMetric,
    RPNAccMetric,
    RPNL1LossMetric,
    RPNLogLossMetric,
    get_rcnn_names,
)
from lib.core.seg_loader import TrainDataLoader
from lib.symbols.rcnn import rcnn_rois, rcnn_test_outputs, rcnn_train_outputs
from lib.symbols.resnet_v1 import PRESETS, SCRATCH_BACKBONE_RULES, resnet_v1
from lib.symbols.rpn import rpn_head, rpn_train_outputs

__all__ = ["Network", "SegmentationNetwork", "TwoStageDetector", "lookup"]


def lookup(registry: Mapping[str, Any], name: str, what: str) -> Any:
    """``registry[name]``, or a ValueError naming ``what`` and the registered names."""
    try:
        return registry[name]
    except KeyError:
        raise ValueError(
            f"unknown {what} symbol {name!r}; registered: {', '.join(sorted(registry))}"
        ) from None


class Network(Protocol):
    """The interface of a registry entry (see the module docstring).

    Attributes:
        task: ``'detection'`` or ``'segmentation'``: which data, checkpoint extras and test
            flow the shared pipeline uses.
        loss_outputs: training outputs (``list_outputs()`` names) that must stay finite.
        bbox_pred_spec: where the checkpoint folds the bbox target normalisation in
            (``*_test`` params), None for networks without box regression.
    """

    task: ClassVar[str]
    loss_outputs: ClassVar[tuple[str, ...]]

    def __call__(self, cfg: Any, is_train: bool = True) -> mx.sym.Symbol:
        """The training (``is_train``) or test symbol of ``cfg``."""

    @property
    def bbox_pred_spec(self) -> BboxPredSpec | None: ...

    def init_rules(self, from_scratch: bool = False) -> list[Rule]:
        """Initialisation of the params a pretrained backbone does not hold."""

    def metrics(self, cfg: Any) -> list[mx.metric.EvalMetric]:
        """The training metrics (logged by the Speedometer, checked finite every batch)."""

    def train_loader(
        self,
        train_sym: mx.sym.Symbol,
        records: Sequence[dict],
        cfg: Any,
        *,
        batch_size: int,
        ctx: Sequence[mx.Context],
        seed: int | None,
        num_workers: int,
        begin_epoch: int = 0,
    ) -> BatchLoader:
        """The training iterator over ``records`` (roidb or segdb), starting at ``begin_epoch``."""


def _init_rules(from_scratch: bool) -> list[Rule]:
    """New layers N(0, 0.01) / zero biases / zero offsets (+ the backbone when from scratch)."""
    rules = list(DEFAULT_NEW_LAYER_RULES)
    if from_scratch:
        rules += SCRATCH_BACKBONE_RULES
    return rules


class TwoStageDetector:
    """Shared answers of the single-scale two-stage detectors (R-FCN, Faster R-CNN).

    Subclasses are frozen dataclasses with the fields ``depth``, ``width``, ``backbone`` (a
    :data:`lib.symbols.resnet_v1.PRESETS` key) and ``rpn_channels``; they implement
    ``head(feat, rois, num_classes, num_reg_classes) -> (cls_score, bbox_pred)`` on res5 and
    ``bbox_pred_spec``. :meth:`__call__` builds the rest, the same for both: ResNet-v1 to res4
    (RPN) and res5 (head), the RPN with its losses and proposals, the R-CNN RoIs, losses and
    test outputs (:mod:`lib.symbols.rpn`, :mod:`lib.symbols.rcnn`).
    """

    task: ClassVar[str] = "detection"
    #: stride of the RPN score map (res4) and of the RoI pooling (dilated res5): 16
    feat_stride: ClassVar[int] = 16
    loss_outputs: ClassVar[tuple[str, ...]] = ("rpn_bbox_loss_output", "bbox_loss_reshape_output")

    #: internal layers whose outputs a test symbol shows first (the offset demos' networks)
    test_outputs: tuple[str, ...] = ()

    def __call__(self, cfg: Any, is_train: bool = True) -> mx.sym.Symbol:
        """The training (``is_train``) or test symbol for ``cfg``.

        Training outputs, in order: ``rpn_cls_prob``, ``rpn_bbox_loss``, ``cls_prob_reshape``,
        ``bbox_loss_reshape``, ``blockgrad0``; testing: the :attr:`test_outputs`, ``rois``
        (unless ``TEST.HAS_RPN`` is off: then the RoIs are the ``rois`` input),
        ``cls_prob_reshape``, ``bbox_pred_reshape``.
        """
        num_classes = cfg.dataset.NUM_CLASSES
        num_reg_classes = 2 if cfg.CLASS_AGNOSTIC else num_classes
        conv_feat, relu1 = resnet_v1(
            mx.sym.var("data"),
            depth=self.depth,
            width=self.width,
            stages_out=(4, 5),
            **PRESETS[self.backbone],
        )
        has_rpn = is_train or cfg.TEST.HAS_RPN
        if has_rpn:
            im_info = mx.sym.var("im_info")
            rpn_cls_score, rpn_bbox_pred = rpn_head(
                conv_feat, cfg.network.NUM_ANCHORS, self.rpn_channels
            )
        if is_train:
            rpn = rpn_train_outputs(
                cfg,
                rpn_cls_score,
                rpn_bbox_pred,
                im_info,
                label=mx.sym.var("label"),
                bbox_target=mx.sym.var("bbox_target"),
                bbox_weight=mx.sym.var("bbox_weight"),
            )
            rois, label, bbox_target, bbox_weight = rcnn_rois(
                cfg, True, num_reg_classes, rpn_rois=rpn.rois
            )
        elif has_rpn:
            (rois,) = rcnn_rois(cfg, False, num_reg_classes, None, rpn_cls_score, rpn_bbox_pred,
                                im_info)  # fmt: skip
        else:
            (rois,) = rcnn_rois(cfg, False, num_reg_classes)

        cls_score, bbox_pred = self.head(relu1, rois, num_classes, num_reg_classes)
        if is_train:
            losses = rcnn_train_outputs(cfg, cls_score, bbox_pred, label, bbox_target,
                                        bbox_weight, num_classes, num_reg_classes)  # fmt: skip
            return mx.sym.Group([rpn.cls_prob, rpn.bbox_loss, *losses])
        cls_prob, bbox_pred = rcnn_test_outputs(
            cfg, cls_score, bbox_pred, num_classes, num_reg_classes
        )
        internals = cls_prob.get_internals()
        shown = [internals[f"{name}_output"] for name in self.test_outputs]
        return mx.sym.Group([*shown, *([rois] if has_rpn else []), cls_prob, bbox_pred])

    def init_rules(self, from_scratch: bool = False) -> list[Rule]:
        """RPN / head layers N(0, 0.01) with zero biases, offset layers zero (a deformable
        layer starts as its plain counterpart); ``from_scratch`` adds the backbone rules."""
        return _init_rules(from_scratch)

    def metrics(self, cfg: Any) -> list[mx.metric.EvalMetric]:
        """RPN and R-CNN accuracy, log loss and L1 loss, as the original."""
        pred_names, label_names = get_rcnn_names(end2end=True, ohem=cfg.TRAIN.ENABLE_OHEM)
        return [
            metric(pred_names, label_names)
            for metric in (
                RPNAccMetric,
                RPNLogLossMetric,
                RPNL1LossMetric,
                RCNNAccMetric,
                RCNNLogLossMetric,
                RCNNL1LossMetric,
            )
        ]

    def feat_symbol(self, train_sym: mx.sym.Symbol) -> mx.sym.Symbol:
        """The RPN score map the loader lays its anchors on."""
        return train_sym.get_internals()["rpn_cls_score_output"]

    def train_loader(
        self,
        train_sym: mx.sym.Symbol,
        records: Sequence[dict],
        cfg: Any,
        *,
        batch_size: int,
        ctx: Sequence[mx.Context],
        seed: int | None,
        num_workers: int,
        begin_epoch: int = 0,
    ) -> AnchorLoader:
        return AnchorLoader(
            self.feat_symbol(train_sym),
            records,
            cfg,
            batch_size=batch_size,
            shuffle=cfg.TRAIN.SHUFFLE,
            ctx=ctx,
            feat_stride=self.feat_stride,
            anchor_scales=cfg.network.ANCHOR_SCALES,
            anchor_ratios=cfg.network.ANCHOR_RATIOS,
            aspect_grouping=cfg.TRAIN.ASPECT_GROUPING,
            num_workers=num_workers,
            seed=seed,
            begin_epoch=begin_epoch,
        )


class SegmentationNetwork:
    """Shared answers of the segmentation networks (DeepLab). Subclasses implement ``__call__``.

    The training symbol outputs ``softmax_output`` (B, C, H, W) from
    ``SoftmaxOutput(multi_output, use_ignore, ignore_label=255)``; it is a probability, not a
    loss, so non-finite training is caught by the metrics (FCNLogLoss) instead.
    """

    task: ClassVar[str] = "segmentation"
    loss_outputs: ClassVar[tuple[str, ...]] = ()

    @property
    def bbox_pred_spec(self) -> None:
        return None

    def init_rules(self, from_scratch: bool = False) -> list[Rule]:
        """fc6 / score N(0, 0.01) with zero biases, upsampling bilinear, offsets zero."""
        return _init_rules(from_scratch)

    def metrics(self, cfg: Any) -> list[mx.metric.EvalMetric]:
        del cfg
        return [FCNLogLossMetric(), FCNPixelAccMetric()]

    def train_loader(
        self,
        train_sym: mx.sym.Symbol,
        records: Sequence[dict],
        cfg: Any,
        *,
        batch_size: int,
        ctx: Sequence[mx.Context],
        seed: int | None,
        num_workers: int,
        begin_epoch: int = 0,
    ) -> TrainDataLoader:
        del train_sym
        return TrainDataLoader(
            records,
            cfg,
            batch_size=batch_size,
            shuffle=cfg.TRAIN.SHUFFLE,
            seed=seed,
            num_workers=num_workers,
            ctx=ctx,
            begin_epoch=begin_epoch,
        )
