"""R-FCN (Dai et al., NIPS 2016) and Deformable R-FCN (Dai et al., ICCV 2017), one builder.

The network, with the original layer names (the released checkpoints load by name)::

    data ─ ResNet-v1 res2..res4 ─┬─ RPN (rpn_conv_3x3, rpn_cls_score, rpn_bbox_pred) ─ rois
                                 └─ res5 (stride 1, dilation 2; deformable 3x3s in the DCN net)
                                     └─ conv_new_1 (1x1, lr_mult 3) ─ relu1 ─┬─ rfcn_cls  (k*k*C)
                                                                            └─ rfcn_bbox (k*k*4*R)
    rfcn_cls,  rois ─ PS-RoI pooling psroipooled_cls_rois (C, k, k) ─ ave_cls_scors_rois ─ (C)
    rfcn_bbox, rois ─ PS-RoI pooling psroipooled_loc_rois (4R, k, k) ─ ave_bbox_pred_rois ─ (4R)

with C classes (background included), R = 2 regression classes when ``CLASS_AGNOSTIC`` (else C)
and k = 7. Score-map channel ``c * k*k + gh * k + gw`` holds class (or coordinate) ``c`` of bin
``(gh, gw)``. The pooled maps are averaged over the k x k bins (the sic names
``ave_cls_scors_rois`` / ``ave_bbox_pred_rois`` are the original's).

The deformable network differs only in data (:class:`RFCN` fields): res5a-c get
deformable 3x3s (4 offset groups, offsets from ``res5*_branch2b_offset``), and each PS-RoI
pooling becomes deformable: 1x1 convs ``rfcn_cls_offset_t`` (2*k*k*C channels) /
``rfcn_bbox_offset_t`` (2*k*k) are pooled without offsets (``rfcn_cls_offset`` /
``rfcn_bbox_offset``, part size k, 4 samples per bin) into normalised per-bin offsets
``(R, 2*C, k, k)`` / ``(R, 2, k, k)``, which shift the bins of ``psroipooled_cls_rois`` /
``psroipooled_loc_rois`` by ``offset * 0.1 * roi size``.

Training (``is_train=True``) outputs, in order: ``rpn_cls_prob``, ``rpn_bbox_loss``,
``cls_prob_reshape`` (1, R', C), ``bbox_loss_reshape`` (1, R', 4R) and ``blockgrad0`` (the
sampled / OHEM labels (1, R'), gradient blocked; named as MXNet's auto-name in the original).
Testing outputs ``rois`` (300, 5), ``cls_prob_reshape`` (1, 300, C), ``bbox_pred_reshape``
(1, 300, 4R).

Smaller networks for CPU experiments are registered through the same builder (:data:`SYMBOLS`):
ResNet-v1-50, and ResNet-v1-50 at a quarter of the width with narrower RPN and head convs.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import mxnet as mx

from lib import ops
from lib.core.checkpoint import RFCN_BBOX_PRED, BboxPredSpec
from lib.core.network import TwoStageDetector
from lib.symbols.resnet_v1 import BASE_WIDTH, PRESETS

__all__ = ["RFCN", "SYMBOLS"]

# Feature stride of res4 / res5 (res5 is dilated): PS-RoI pooling's spatial_scale is 1/16.
FEAT_STRIDE = TwoStageDetector.feat_stride


@dataclasses.dataclass(frozen=True)
class RFCN(TwoStageDetector):
    """An R-FCN network as data; ``RFCN(...)(cfg, is_train)`` builds its symbol
    (:meth:`lib.core.network.TwoStageDetector.__call__` with the head :meth:`head`).

    Attributes:
        depth: ResNet-v1 depth (50, 101, 152).
        backbone: the :data:`lib.symbols.resnet_v1.PRESETS` entry of the backbone: which res5
            units are deformable and how (``'resnet_v1_101_rfcn_dcn'``, ``'deform_conv_demo'``).
        deformable_psroi: deformable PS-RoI pooling in the head (Deformable R-FCN).
        width: backbone width of res2's bottleneck (64 in the real networks).
        rpn_channels: channels of ``rpn_conv_3x3`` (512).
        head_channels: channels of ``conv_new_1`` (1024).
        group_size: k of the k x k position-sensitive bins (7; the PS-RoI demo uses 3).
        test_outputs: internal layers whose outputs the test symbol shows first (the offset
            demos plot ``res5*_branch2b_offset`` / ``rfcn_cls_offset``).
    """

    depth: int = 101
    backbone: str = "resnet_v1_101_rfcn"
    deformable_psroi: bool = False
    width: int = BASE_WIDTH
    rpn_channels: int = 512
    head_channels: int = 1024
    group_size: int = 7
    test_outputs: tuple[str, ...] = ()

    @property
    def deformable(self) -> bool:
        """Any deformable layer (res5 convolutions or PS-RoI pooling)."""
        return self.deformable_psroi or bool(PRESETS[self.backbone].get("deform_units"))

    @property
    def bbox_pred_spec(self) -> BboxPredSpec:
        """Where ``lib.core.checkpoint`` folds the target normalisation in (``*_test``)."""
        return dataclasses.replace(RFCN_BBOX_PRED, spatial_repeat=self.group_size**2)

    def head(
        self, feat: mx.sym.Symbol, rois: mx.sym.Symbol, num_classes: int, num_reg_classes: int
    ) -> tuple[mx.sym.Symbol, mx.sym.Symbol]:
        """Position-sensitive scores: ``(cls_score (R, C), bbox_pred (R, 4 * num_reg))``."""
        k = self.group_size
        conv_new_1 = mx.sym.Convolution(
            data=feat,
            kernel=(1, 1),
            num_filter=self.head_channels,
            name="conv_new_1",
            weight=mx.sym.var("conv_new_1_weight", lr_mult=3.0),
            bias=mx.sym.var("conv_new_1_bias", lr_mult=3.0),
        )
        relu_new_1 = mx.sym.Activation(data=conv_new_1, act_type="relu", name="relu1")
        rfcn_cls = mx.sym.Convolution(
            data=relu_new_1, kernel=(1, 1), num_filter=k * k * num_classes, name="rfcn_cls"
        )
        rfcn_bbox = mx.sym.Convolution(
            data=relu_new_1,
            kernel=(1, 1),
            num_filter=k * k * 4 * num_reg_classes,
            name="rfcn_bbox",
        )
        pooled = []
        for branch, scores, output_dim in (
            ("cls", rfcn_cls, num_classes),
            ("loc", rfcn_bbox, 4 * num_reg_classes),
        ):
            name = f"psroipooled_{branch}_rois"
            if self.deformable_psroi:
                pooled.append(self._deformable_pool(relu_new_1, scores, rois, branch, output_dim))
            else:
                pooled.append(
                    ops.psroi_pooling(
                        scores,
                        rois,
                        name=name,
                        group_size=k,
                        pooled_size=k,
                        output_dim=output_dim,
                        spatial_scale=1.0 / FEAT_STRIDE,
                    )
                )
        cls_score = mx.sym.Pooling(
            name="ave_cls_scors_rois",
            data=pooled[0],
            pool_type="avg",
            global_pool=True,
            kernel=(k, k),
        )
        bbox_pred = mx.sym.Pooling(
            name="ave_bbox_pred_rois",
            data=pooled[1],
            pool_type="avg",
            global_pool=True,
            kernel=(k, k),
        )
        cls_score = mx.sym.Reshape(
            name="cls_score_reshape", data=cls_score, shape=(-1, num_classes)
        )
        bbox_pred = mx.sym.Reshape(
            name="bbox_pred_reshape", data=bbox_pred, shape=(-1, 4 * num_reg_classes)
        )
        return cls_score, bbox_pred

    def _deformable_pool(
        self,
        feat: mx.sym.Symbol,
        scores: mx.sym.Symbol,
        rois: mx.sym.Symbol,
        branch: str,
        output_dim: int,
    ) -> mx.sym.Symbol:
        """Deformable PS-RoI pooling of one branch: offsets pooled from their own 1x1 conv.

        cls: ``rfcn_cls_offset_t`` (2*k*k*C) -> ``rfcn_cls_offset`` (R, 2C, k, k), one offset per
        class and bin; loc: ``rfcn_bbox_offset_t`` (2*k*k) -> ``rfcn_bbox_offset`` (R, 2, k, k),
        shared by the coordinates (the original's layout).
        """
        k = self.group_size
        prefix = "rfcn_cls" if branch == "cls" else "rfcn_bbox"
        offset_classes = output_dim if branch == "cls" else 1
        offset_t = mx.sym.Convolution(
            data=feat,
            kernel=(1, 1),
            num_filter=2 * k * k * offset_classes,
            name=f"{prefix}_offset_t",
        )
        common = {
            "group_size": k,
            "pooled_size": k,
            "part_size": k,
            "sample_per_part": 4,
            "spatial_scale": 1.0 / FEAT_STRIDE,
        }
        offset = ops.deformable_psroi_pooling(
            offset_t,
            rois,
            name=f"{prefix}_offset",
            no_trans=True,
            output_dim=2 * offset_classes,
            **common,
        )
        return ops.deformable_psroi_pooling(
            scores,
            rois,
            offset,
            name=f"psroipooled_{branch}_rois",
            no_trans=False,
            trans_std=0.1,
            output_dim=output_dim,
            **common,
        )


def _dcn(**kwargs: Any) -> RFCN:
    """Deformable R-FCN: deformable res5a-c (4 offset groups) and deformable PS-RoI pooling."""
    return RFCN(backbone="resnet_v1_101_rfcn_dcn", deformable_psroi=True, **kwargs)


# ResNet-v1-50 at a quarter of the width (res4 256, res5 512 channels) with a narrow RPN and
# head: the networks of the synthetic CPU configs.
_CPU = {"depth": 50, "width": 16, "rpn_channels": 128, "head_channels": 256}

#: Network name (the config's ``symbol``) -> builder, ``SYMBOLS[name](cfg, is_train)``.
SYMBOLS: dict[str, RFCN] = {
    "resnet_v1_101_rfcn": RFCN(),
    "resnet_v1_101_rfcn_dcn": _dcn(),
    "resnet_v1_50_rfcn": RFCN(depth=50),
    "resnet_v1_50_rfcn_dcn": _dcn(depth=50),
    "resnet_v1_50_w16_rfcn": RFCN(**_CPU),
    "resnet_v1_50_w16_rfcn_dcn": _dcn(**_CPU),
    # The networks of the original offset demos (VOC): deformable res5 (1 offset group, 3x3
    # offset convs without dilation) with plain PS-RoI pooling; deformable 3x3 PS-RoI pooling
    # on a plain dilated res5.
    "deform_conv_demo": RFCN(
        backbone="deform_conv_demo",
        test_outputs=("res5a_branch2b_offset", "res5b_branch2b_offset", "res5c_branch2b_offset"),
    ),
    "deform_psroi_demo": RFCN(
        backbone="deform_psroi_demo",
        deformable_psroi=True,
        group_size=3,
        test_outputs=("rfcn_cls_offset",),
    ),
}
