"""Networks as objects: what the shared trainer and tester need to know about a network.

An architecture's registry (``rfcn.symbols.SYMBOLS``, ``faster_rcnn.symbols.SYMBOLS``,
``deeplab.symbols.SYMBOLS``) maps a config's ``symbol`` to a frozen dataclass that builds its
symbol and answers the questions of :class:`Network`. Everything else (devices, data, initial
params, metrics, ``fit``, checkpoints, testing, evaluation) lives once in
:mod:`lib.core.trainer` and :mod:`lib.core.tester`, which take the object. Two base classes
hold the answers shared by a family:

* :class:`Detector`: an RPN plus an R-CNN head. Training outputs ``rpn_cls_prob,
  rpn_bbox_loss, cls_prob_reshape, bbox_loss_reshape, blockgrad0``; test outputs ``rois,
  cls_prob_reshape, bbox_pred_reshape``. Two kinds:

  * :class:`TwoStageDetector`: the RPN and the head on one stride-16 feature map (R-FCN,
    Faster R-CNN); batches from :class:`lib.core.loader.AnchorLoader`;
  * :class:`PyramidDetector`: one RPN shared over the levels of a feature pyramid and a head
    pooling each RoI from its level (FPN); batches from
    :class:`lib.core.loader.PyramidAnchorLoader`.
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
from lib.core.loader import AnchorLoader, BatchLoader, PyramidAnchorLoader
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
from lib.symbols.rpn import pyramid_rpn, rpn_head, rpn_proposals, rpn_train_outputs

__all__ = [
    "Detector",
    "Network",
    "PyramidDetector",
    "SegmentationNetwork",
    "TwoStageDetector",
    "lookup",
    "pyramid_level",
]


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
        average_gradients: the optimizer averages the gradients over the batch's images
            (``rescale_grad = 1 / images``) instead of summing them.
    """

    task: ClassVar[str]
    loss_outputs: ClassVar[tuple[str, ...]]
    average_gradients: ClassVar[bool]

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


class Detector:
    """What the two-stage detectors share (R-FCN, Faster R-CNN, FPN): the RPN, the R-CNN RoIs,
    losses and outputs around a backbone and a head that subclasses give.

    A subclass implements ``features(cfg) -> (rpn_input, head_input)``,
    ``rpn(cfg, is_train, rpn_input, im_info)`` (:class:`lib.symbols.rpn.RPNTrainOutputs` in
    training, the proposals in testing), ``head(head_input, rois, num_classes,
    num_reg_classes) -> (cls_score, bbox_pred)``, ``bbox_pred_spec``, ``check_config(cfg)`` and
    the training loader.

    Training outputs, in order: ``rpn_cls_prob``, ``rpn_bbox_loss``, ``cls_prob_reshape``,
    ``bbox_loss_reshape``, ``blockgrad0``; testing: the :attr:`test_outputs`, ``rois`` (unless
    ``TEST.HAS_RPN`` is off: then the RoIs are the ``rois`` input), ``cls_prob_reshape``,
    ``bbox_pred_reshape``.
    """

    task: ClassVar[str] = "detection"
    loss_outputs: ClassVar[tuple[str, ...]] = ("rpn_bbox_loss_output", "bbox_loss_reshape_output")
    #: Gradients averaged over the batch (``rescale_grad = 1 / images``, the original FPN's
    #: MXNet default) instead of summed (``rescale_grad = 1``, the original R-FCN and Faster
    #: R-CNN); the configs' learning rates assume their network's choice.
    average_gradients: ClassVar[bool] = False

    #: internal layers whose outputs a test symbol shows first (the offset demos' networks)
    test_outputs: tuple[str, ...] = ()

    def __call__(self, cfg: Any, is_train: bool = True) -> mx.sym.Symbol:
        """The training (``is_train``) or test symbol for ``cfg`` (see the class docstring)."""
        self.check_config(cfg)
        num_classes = cfg.dataset.NUM_CLASSES
        num_reg_classes = 2 if cfg.CLASS_AGNOSTIC else num_classes
        rpn_input, head_input = self.features(cfg)
        has_rpn = is_train or cfg.TEST.HAS_RPN
        rpn = self.rpn(cfg, is_train, rpn_input, mx.sym.var("im_info")) if has_rpn else None
        if is_train:
            rois, label, bbox_target, bbox_weight = rcnn_rois(cfg, True, num_reg_classes, rpn.rois)
        else:
            (rois,) = rcnn_rois(cfg, False, num_reg_classes, rpn)

        cls_score, bbox_pred = self.head(head_input, rois, num_classes, num_reg_classes)
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


class TwoStageDetector(Detector):
    """The single-scale two-stage detectors (R-FCN, Faster R-CNN): the RPN on res4 (stride 16),
    the head on res5 (dilated, stride 16).

    Subclasses are frozen dataclasses with the fields ``depth``, ``width``, ``backbone`` (a
    :data:`lib.symbols.resnet_v1.PRESETS` key) and ``rpn_channels``; they implement
    ``head(feat, rois, num_classes, num_reg_classes) -> (cls_score, bbox_pred)`` on res5 and
    ``bbox_pred_spec`` (:mod:`lib.symbols.rpn`, :mod:`lib.symbols.rcnn` hold the rest).
    """

    #: stride of the RPN score map (res4) and of the RoI pooling (dilated res5): 16
    feat_stride: ClassVar[int] = 16

    def check_config(self, cfg: Any) -> None:
        """``network.RPN_FEAT_STRIDE`` must be the stride the RPN runs at (the proposal layer
        and the loader read it)."""
        if cfg.network.RPN_FEAT_STRIDE != self.feat_stride:
            raise ValueError(
                f"config key network.RPN_FEAT_STRIDE is {cfg.network.RPN_FEAT_STRIDE}, but the "
                f"RPN of {cfg.symbol} runs on the stride-{self.feat_stride} res4 map: set it "
                f"to {self.feat_stride}"
            )

    def features(self, cfg: Any) -> tuple[mx.sym.Symbol, mx.sym.Symbol]:
        """``(res4, res5)`` of the ResNet-v1 backbone."""
        conv_feat, relu1 = resnet_v1(
            mx.sym.var("data"),
            depth=self.depth,
            width=self.width,
            stages_out=(4, 5),
            **PRESETS[self.backbone],
        )
        return conv_feat, relu1

    def rpn(self, cfg: Any, is_train: bool, feat: mx.sym.Symbol, im_info: mx.sym.Symbol) -> Any:
        rpn_cls_score, rpn_bbox_pred = rpn_head(feat, cfg.network.NUM_ANCHORS, self.rpn_channels)
        if is_train:
            return rpn_train_outputs(
                cfg,
                rpn_cls_score,
                rpn_bbox_pred,
                im_info,
                label=mx.sym.var("label"),
                bbox_target=mx.sym.var("bbox_target"),
                bbox_weight=mx.sym.var("bbox_weight"),
            )
        return rpn_proposals(cfg, rpn_cls_score, rpn_bbox_pred, im_info)

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


def pyramid_level(stride: int) -> str:
    """The name of the pyramid level of ``stride``: 4 -> ``'p2'`` (2 ** 2), ..., 64 -> ``'p6'``."""
    level = int(stride).bit_length() - 1
    if stride < 1 or 2**level != stride:
        raise ValueError(f"a pyramid stride must be a power of 2, got {stride}")
    return f"p{level}"


class PyramidDetector(Detector):
    """The feature-pyramid detectors (FPN): one RPN shared over the levels of a pyramid, and a
    head pooling each RoI from the level its size chooses.

    Subclasses are frozen dataclasses with ``rpn_channels``; they implement
    ``pyramid(cfg) -> {level: feature map}`` over :attr:`strides` (``'p2'`` .. ``'p6'``),
    ``head(feats, rois, num_classes, num_reg_classes)`` on the :attr:`head_strides` levels, and
    ``bbox_pred_spec``. Batches come from :class:`lib.core.loader.PyramidAnchorLoader`, with
    anchor targets over all levels. Gradients are averaged over the batch, as the original FPN.
    """

    #: the strides of the RPN levels (P2 .. P6) and of the levels the head pools (P2 .. P5)
    strides: ClassVar[tuple[int, ...]] = (4, 8, 16, 32, 64)
    head_strides: ClassVar[tuple[int, ...]] = (4, 8, 16, 32)
    average_gradients: ClassVar[bool] = True

    def check_config(self, cfg: Any) -> None:
        """``network.RPN_FEAT_STRIDE`` lists the pyramid's strides (the proposal layer and the
        loader read it); ``network.IMAGE_STRIDE`` pads the images to a multiple of the coarsest
        head level's stride, so that the top-down sums meet maps of equal size."""
        strides = cfg.network.RPN_FEAT_STRIDE
        if list(strides if isinstance(strides, list) else [strides]) != list(self.strides):
            raise ValueError(
                f"config key network.RPN_FEAT_STRIDE is {strides}, but the RPN of {cfg.symbol} "
                f"runs on the pyramid levels of strides {list(self.strides)}: set it to that list"
            )
        coarsest = max(self.head_strides)
        if cfg.network.IMAGE_STRIDE <= 0 or cfg.network.IMAGE_STRIDE % coarsest:
            raise ValueError(
                f"config key network.IMAGE_STRIDE is {cfg.network.IMAGE_STRIDE}, but {cfg.symbol} "
                f"needs images padded to a multiple of {coarsest} (its top-down path doubles "
                f"the stride-{coarsest} map): set it to {coarsest}"
            )

    def features(self, cfg: Any) -> tuple[dict, dict]:
        """``(every level, the head's levels)`` of :meth:`pyramid`."""
        levels = self.pyramid(cfg)
        head = {pyramid_level(s): levels[pyramid_level(s)] for s in self.head_strides}
        return levels, head

    def rpn(self, cfg: Any, is_train: bool, feats: dict, im_info: mx.sym.Symbol) -> Any:
        return pyramid_rpn(cfg, is_train, feats, self.rpn_channels, im_info)

    def feat_symbol(self, train_sym: mx.sym.Symbol) -> list[mx.sym.Symbol]:
        """The RPN score map of every level, in :attr:`strides` order."""
        internals = train_sym.get_internals()
        return [internals[f"rpn_cls_score_{pyramid_level(s)}_output"] for s in self.strides]

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
    ) -> PyramidAnchorLoader:
        return PyramidAnchorLoader(
            self.feat_symbol(train_sym),
            records,
            cfg,
            batch_size=batch_size,
            shuffle=cfg.TRAIN.SHUFFLE,
            ctx=ctx,
            feat_strides=self.strides,
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
    average_gradients: ClassVar[bool] = False

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
