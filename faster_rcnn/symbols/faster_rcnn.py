"""Faster R-CNN with a 2fc head (Ren et al., NIPS 2015) and Deformable Faster R-CNN (Dai et al.,
ICCV 2017), one builder.

The network, with the original layer names (the released checkpoints load by name)::

    data ─ ResNet-v1 res2..res4 ─┬─ RPN (rpn_conv_3x3, rpn_cls_score, rpn_bbox_pred) ─ rois
                                 └─ res5 (stride 1, dilation 2; deformable 3x3s in the DCN net)
                                     └─ conv_new_1 (1x1, 256) ─ conv_new_1_relu
    conv_new_1_relu, rois ─ roi_pool (RoI pooling 7x7, 1/16)
        ─ fc_new_1 (1024) ─ relu ─ fc_new_2 (1024) ─ relu ─┬─ cls_score (C)
                                                           └─ bbox_pred (4R)

with C classes (background included) and R = 2 regression classes when ``CLASS_AGNOSTIC`` (else
C; the original configs regress per class). The deformable network differs in data
(:class:`FasterRCNN` fields): res5a-c get deformable 3x3s (4 offset groups), and RoI pooling
becomes deformable RoI pooling: ``offset_t`` pools ``conv_new_1_relu`` without offsets
(``DeformablePSROIPooling`` with group size 1, i.e. plain bins, output_dim 256, 4 samples per
bin), the FC ``offset`` (lr_mult 0.01, zero-initialised) turns it into one normalised (dx, dy)
per bin, reshaped to (R, 2, 7, 7) as ``offset_reshape``, and ``deformable_roi_pool`` pools
again with the bins shifted by ``offset * 0.1 * roi size``.

Training outputs, in order: ``rpn_cls_prob``, ``rpn_bbox_loss``, ``cls_prob_reshape`` (B, R', C),
``bbox_loss_reshape`` (B, R', 4R) and ``blockgrad0`` (the sampled labels); testing outputs
``rois``, ``cls_prob_reshape``, ``bbox_pred_reshape`` (the RPN, the R-CNN sampling and losses
are those of :mod:`lib.symbols.rpn` / :mod:`lib.symbols.rcnn`, shared with R-FCN).

Smaller networks for CPU experiments are registered through the same builder (:data:`SYMBOLS`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import mxnet as mx

from lib import ops
from lib.core.checkpoint import RCNN_BBOX_PRED, BboxPredSpec
from lib.core.network import TwoStageDetector
from lib.symbols.resnet_v1 import BASE_WIDTH, PRESETS

__all__ = ["SYMBOLS", "FasterRCNN"]

POOLED_SIZE = 7


@dataclasses.dataclass(frozen=True)
class FasterRCNN(TwoStageDetector):
    """A Faster R-CNN (2fc) network as data; ``FasterRCNN(...)(cfg, is_train)`` builds it
    (:meth:`lib.core.network.TwoStageDetector.__call__` with the head :meth:`head`).

    Attributes:
        depth: ResNet-v1 depth (50, 101, 152).
        backbone: the :data:`lib.symbols.resnet_v1.PRESETS` entry of the backbone
            (``'resnet_v1_101_rcnn'`` or ``'resnet_v1_101_rcnn_dcn'``: deformable res5a-c).
        deformable_roi_pool: deformable RoI pooling in the head.
        width: backbone width of res2's bottleneck (64 in the real networks).
        rpn_channels: channels of ``rpn_conv_3x3`` (512).
        head_channels: channels of ``conv_new_1`` (256).
        fc_channels: width of ``fc_new_1`` / ``fc_new_2`` (1024).
    """

    depth: int = 101
    backbone: str = "resnet_v1_101_rcnn"
    deformable_roi_pool: bool = False
    width: int = BASE_WIDTH
    rpn_channels: int = 512
    head_channels: int = 256
    fc_channels: int = 1024

    @property
    def deformable(self) -> bool:
        """Any deformable layer (res5 convolutions or RoI pooling)."""
        return self.deformable_roi_pool or bool(PRESETS[self.backbone].get("deform_units"))

    @property
    def bbox_pred_spec(self) -> BboxPredSpec:
        """``bbox_pred`` (an FC): where the checkpoint folds the normalisation in (``*_test``)."""
        return RCNN_BBOX_PRED

    def head(
        self, feat: mx.sym.Symbol, rois: mx.sym.Symbol, num_classes: int, num_reg_classes: int
    ) -> tuple[mx.sym.Symbol, mx.sym.Symbol]:
        """``conv_new_1`` -> (deformable) RoI pooling -> 2fc -> ``(cls_score, bbox_pred)``."""
        conv_new_1 = mx.sym.Convolution(
            data=feat, kernel=(1, 1), num_filter=self.head_channels, name="conv_new_1"
        )
        conv_new_1_relu = mx.sym.Activation(data=conv_new_1, act_type="relu",
                                            name="conv_new_1_relu")  # fmt: skip
        scale = 1.0 / self.feat_stride
        if self.deformable_roi_pool:
            k = POOLED_SIZE
            common = {
                "group_size": 1,
                "pooled_size": k,
                "part_size": k,
                "sample_per_part": 4,
                "output_dim": self.head_channels,
                "spatial_scale": scale,
            }
            offset_t = ops.deformable_psroi_pooling(
                conv_new_1_relu, rois, name="offset_t", no_trans=True, **common
            )
            # lr_mult 0.01 on the op, as the original (MXNet puts it on offset_weight / _bias)
            offset = mx.sym.FullyConnected(
                name="offset", data=offset_t, num_hidden=k * k * 2, lr_mult=0.01
            )
            offset = mx.sym.Reshape(data=offset, shape=(-1, 2, k, k), name="offset_reshape")
            pooled = ops.deformable_psroi_pooling(
                conv_new_1_relu,
                rois,
                offset,
                name="deformable_roi_pool",
                no_trans=False,
                trans_std=0.1,
                **common,
            )
        else:
            pooled = mx.sym.ROIPooling(
                name="roi_pool",
                data=conv_new_1_relu,
                rois=rois,
                pooled_size=(POOLED_SIZE, POOLED_SIZE),
                spatial_scale=scale,
            )
        x = pooled
        for i in (1, 2):
            x = mx.sym.FullyConnected(name=f"fc_new_{i}", data=x, num_hidden=self.fc_channels)
            x = mx.sym.Activation(data=x, act_type="relu", name=f"fc_new_{i}_relu")
        cls_score = mx.sym.FullyConnected(name="cls_score", data=x, num_hidden=num_classes)
        bbox_pred = mx.sym.FullyConnected(name="bbox_pred", data=x, num_hidden=4 * num_reg_classes)
        return cls_score, bbox_pred


def _dcn(**kwargs: Any) -> FasterRCNN:
    """Deformable Faster R-CNN: deformable res5a-c (4 offset groups) and RoI pooling."""
    return FasterRCNN(backbone="resnet_v1_101_rcnn_dcn", deformable_roi_pool=True, **kwargs)


# ResNet-v1-50 at a quarter of the width (res4 256, res5 512 channels) with a narrow RPN and a
# half-width 2fc head: the networks of the synthetic CPU configs.
_CPU = {"depth": 50, "width": 16, "rpn_channels": 128, "head_channels": 256, "fc_channels": 512}

#: Network name (the config's ``symbol``) -> builder, ``SYMBOLS[name](cfg, is_train)``.
SYMBOLS: dict[str, FasterRCNN] = {
    "resnet_v1_101_rcnn": FasterRCNN(),
    "resnet_v1_101_rcnn_dcn": _dcn(),
    "resnet_v1_50_rcnn": FasterRCNN(depth=50),
    "resnet_v1_50_rcnn_dcn": _dcn(depth=50),
    "resnet_v1_50_w16_rcnn": FasterRCNN(**_CPU),
    "resnet_v1_50_w16_rcnn_dcn": _dcn(**_CPU),
}
