"""Feature Pyramid Networks (Lin et al., CVPR 2017) with a 2fc Faster R-CNN head, and Deformable
FPN (Dai et al., ICCV 2017; the original's COCO 2017 entry), one builder.

The network, with the original layer names (the released checkpoints load by name)::

    data ─ ResNet-v1 (res5 at stride 2, no dilation) ─ C2 res2c, C3 res3b3, C4 res4b22, C5 res5c
    lateral 1x1s  fpn_p{5,4,3,2}_1x1 (256) on C5 .. C2
    top-down      fpn_p5_upsample (nearest x2) + fpn_p4_1x1 = fpn_p4_sum, ... down to fpn_p2_sum
    outputs       fpn_p2..fpn_p4 (3x3) on the sums, fpn_p5 (3x3) on fpn_p5_1x1,
                  fpn_p6 (3x3, stride 2) on C5
    RPN           one head shared by P2..P6 (rpn_conv, rpn_cls_score, rpn_bbox_pred; layers
                  rpn_*_p2 .. rpn_*_p6), proposals over all levels (lib.symbols.rpn.pyramid_rpn)
    head          fpn_roi_pooling: each RoI pooled 7x7 from P2..P5 by its size
                  (lib.operator_py.fpn_roi_pooling) ─ fc_new_1 (1024) ─ fc_new_2 (1024)
                  ─┬─ cls_score (C)
                   └─ bbox_pred (4R)

with C classes (background included) and R = C regression classes (the original regresses per
class; 2 when ``CLASS_AGNOSTIC``). The deformable network differs in data (:class:`FPN`
fields): the last units of res3 and res4 and all of res5 get deformable 3x3s (4 offset groups;
res3b3, res4b22, res5a-c at depth 101), and the RoI pooling of every level is deformable, with
that level's offset branch ``offset_p{2..5}`` (FC, lr_mult 0.01, zero-initialised).

The losses, OHEM and test outputs are those of every detector (:class:`lib.core.network.Detector`);
the original FPN averages the gradients over the batch (``average_gradients``), which its yaml
learning rates assume. Smaller networks for CPU experiments are registered through the same
builder (:data:`SYMBOLS`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import mxnet as mx

from lib.core.checkpoint import RCNN_BBOX_PRED, BboxPredSpec
from lib.core.network import PyramidDetector, pyramid_level
from lib.operator_py import fpn_roi_pooling_symbol
from lib.symbols.resnet_v1 import BASE_WIDTH, PRESETS, resnet_v1

__all__ = ["FPN", "SYMBOLS"]

POOLED_SIZE = 7


@dataclasses.dataclass(frozen=True)
class FPN(PyramidDetector):
    """An FPN (2fc head) network as data; ``FPN(...)(cfg, is_train)`` builds it
    (:meth:`lib.core.network.Detector.__call__` with :meth:`pyramid` and :meth:`head`).

    Attributes:
        depth: ResNet-v1 depth (50, 101, 152).
        backbone: the :data:`lib.symbols.resnet_v1.PRESETS` entry (``'resnet_v1_101_fpn_rcnn'``
            or ``'resnet_v1_101_fpn_dcn_rcnn'``: deformable units by position, any depth).
        deformable_roi_pool: deformable RoI pooling on every level.
        width: backbone width of res2's bottleneck (64 in the real networks).
        fpn_channels: channels of the pyramid (256).
        rpn_channels: channels of the shared ``rpn_conv`` (512).
        fc_channels: width of ``fc_new_1`` / ``fc_new_2`` (1024).
    """

    depth: int = 101
    backbone: str = "resnet_v1_101_fpn_rcnn"
    deformable_roi_pool: bool = False
    width: int = BASE_WIDTH
    fpn_channels: int = 256
    rpn_channels: int = 512
    fc_channels: int = 1024

    @property
    def deformable(self) -> bool:
        """Any deformable layer (backbone convolutions or RoI pooling)."""
        return self.deformable_roi_pool or bool(PRESETS[self.backbone].get("deform_units"))

    @property
    def bbox_pred_spec(self) -> BboxPredSpec:
        """``bbox_pred`` (an FC): where the checkpoint folds the normalisation in (``*_test``)."""
        return RCNN_BBOX_PRED

    def pyramid(self, cfg: Any) -> dict[str, mx.sym.Symbol]:
        """``{'p2': fpn_p2, ..., 'p6': fpn_p6}`` (see the module docstring)."""
        del cfg
        c2, c3, c4, c5 = resnet_v1(
            mx.sym.var("data"),
            depth=self.depth,
            width=self.width,
            stages_out=(2, 3, 4, 5),
            **PRESETS[self.backbone],
        )
        n = self.fpn_channels

        def conv(data: mx.sym.Symbol, name: str, kernel: int, stride: int = 1) -> mx.sym.Symbol:
            pad = (kernel // 2, kernel // 2)
            return mx.sym.Convolution(data=data, kernel=(kernel, kernel), pad=pad,
                                      stride=(stride, stride), num_filter=n, name=name)  # fmt: skip

        lateral = {level: conv(c, f"fpn_{level}_1x1", 1) for level, c in
                   (("p5", c5), ("p4", c4), ("p3", c3), ("p2", c2))}  # fmt: skip
        merged = {"p5": lateral["p5"]}
        for coarse, fine in (("p5", "p4"), ("p4", "p3"), ("p3", "p2")):
            up = mx.sym.UpSampling(merged[coarse], scale=2, sample_type="nearest",
                                   name=f"fpn_{coarse}_upsample")  # fmt: skip
            merged[fine] = mx.sym.ElementWiseSum(up, lateral[fine], name=f"fpn_{fine}_sum")
        levels = {
            level: conv(merged[level], f"fpn_{level}", 3) for level in ("p2", "p3", "p4", "p5")
        }
        levels["p6"] = conv(c5, "fpn_p6", 3, stride=2)
        return {pyramid_level(s): levels[pyramid_level(s)] for s in self.strides}

    def head(
        self,
        feats: dict[str, mx.sym.Symbol],
        rois: mx.sym.Symbol,
        num_classes: int,
        num_reg_classes: int,
    ) -> tuple[mx.sym.Symbol, mx.sym.Symbol]:
        """``fpn_roi_pooling`` over P2..P5 -> 2fc -> ``(cls_score, bbox_pred)``."""
        x = fpn_roi_pooling_symbol(
            list(feats.values()),
            rois,
            self.deformable_roi_pool,
            name="fpn_roi_pooling",
            pooled_size=POOLED_SIZE,
            feat_strides=self.head_strides,
        )
        for i in (1, 2):
            x = mx.sym.FullyConnected(name=f"fc_new_{i}", data=x, num_hidden=self.fc_channels)
            x = mx.sym.Activation(data=x, act_type="relu", name=f"fc_new_{i}_relu")
        cls_score = mx.sym.FullyConnected(name="cls_score", data=x, num_hidden=num_classes)
        bbox_pred = mx.sym.FullyConnected(name="bbox_pred", data=x, num_hidden=4 * num_reg_classes)
        return cls_score, bbox_pred


def _dcn(**kwargs: Any) -> FPN:
    """Deformable FPN: deformable res3/res4 last units and res5 (4 offset groups), and
    deformable RoI pooling on every level."""
    return FPN(backbone="resnet_v1_101_fpn_dcn_rcnn", deformable_roi_pool=True, **kwargs)


# ResNet-v1-50 at a quarter of the width (C2..C5: 64, 128, 256, 512 channels) with a 64-channel
# pyramid, a narrow RPN and a half-width 2fc head: the networks of the synthetic CPU configs.
_CPU = {"depth": 50, "width": 16, "fpn_channels": 64, "rpn_channels": 64, "fc_channels": 512}

#: Network name (the config's ``symbol``) -> builder, ``SYMBOLS[name](cfg, is_train)``.
SYMBOLS: dict[str, FPN] = {
    "resnet_v1_101_fpn_rcnn": FPN(),
    "resnet_v1_101_fpn_dcn_rcnn": _dcn(),
    "resnet_v1_50_fpn_rcnn": FPN(depth=50),
    "resnet_v1_50_fpn_dcn_rcnn": _dcn(depth=50),
    "resnet_v1_50_w16_fpn_rcnn": FPN(**_CPU),
    "resnet_v1_50_w16_fpn_dcn_rcnn": _dcn(**_CPU),
}
