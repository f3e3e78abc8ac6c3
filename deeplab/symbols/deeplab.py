"""DeepLab (Chen et al., TPAMI 2017) and Deformable DeepLab (Dai et al., ICCV 2017), one builder.

The network of the original release, with its layer names (the released checkpoints
``deeplab_cityscapes`` / ``deeplab_dcn_cityscapes`` load by name)::

    data (B, 3, H, W) ─ ResNet-v1 res2..res5 (res5 stride 1, dilation 2: output stride 16;
                        deformable res5a-c in the DCN net)                      (B, 2048, h, w)
      ─ fc6 1x1 (1024, bias lr_mult 2) ─ fc6_relu                               (B, 1024, h, w)
      ─ score 1x1 (C, bias lr_mult 2)                                           (B, C, h, w)
      ─ upsampling: Deconvolution 32x32 / 16, one group per class, fixed
                    bilinear kernel (lr_mult 0), no bias                (B, C, 16h + 16, 16w + 16)
      ─ croped_score: Crop to data's H x W at offset (8, 8)                     (B, C, H, W)
      ─ softmax: SoftmaxOutput(multi_output, use_ignore, ignore_label 255,
                 normalization 'valid')                                         (B, C, H, W)

with C = ``dataset.NUM_CLASSES`` and h, w about H/16, W/16. The offset 8 centres the
kernels: the bilinear kernel of score cell ``i`` peaks at deconvolution output ``16 i + 15.5``,
i.e. input pixel ``16 i + 7.5``, the centre of the 16-pixel block the cell covers.

The only output is ``softmax_output``: per-pixel class probabilities at the input resolution.
Training (``is_train=True``) reads the label input ``label`` (B, 1, H, W) of class indices
(255 = ignore; :class:`lib.core.seg_loader.TrainDataLoader`); the test symbol builds the same
``SoftmaxOutput`` without a label, so it has an extra argument ``softmax_label`` (B, H*W), as the
original: it is not a parameter, so a module binding the test symbol must name it a label
(``label_names=['softmax_label']``; MXNet infers its shape from ``data``).

The deformable network differs only in its backbone preset
(``PRESETS['resnet_v1_101_deeplab_dcn']``): res5a-c get deformable 3x3s (pad 2, dilation 2) with
one offset group, their offsets from a 3x3 ``res5*_branch2b_offset`` convolution with pad 1 and
*no* dilation (18 channels, ``[y0, x0, y1, x1, ...]``), weight lr_mult 1 and bias lr_mult 2.

Smaller networks for CPU experiments are registered through the same builder (:data:`SYMBOLS`):
ResNet-v1-50, and ResNet-v1-50 at a quarter of the width with a narrower ``fc6``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import mxnet as mx

from lib.core.network import SegmentationNetwork
from lib.symbols.resnet_v1 import BASE_WIDTH, PRESETS, resnet_v1

__all__ = ["SYMBOLS", "DeepLab"]

#: Output stride of the backbone (res5 dilated), which the upsampling undoes.
FEAT_STRIDE = 16
#: cuDNN workspace (MB) of the head layers, as the original's ``self.workspace``.
WORKSPACE = 4096
#: Label value SoftmaxOutput ignores (void pixels, the padding of the loaders).
IGNORE_LABEL = 255


@dataclasses.dataclass(frozen=True)
class DeepLab(SegmentationNetwork):
    """A DeepLab network as data; ``DeepLab(...)(cfg, is_train)`` builds its symbol.

    Attributes:
        depth: ResNet-v1 depth (50, 101, 152).
        backbone: the :data:`lib.symbols.resnet_v1.PRESETS` entry of the backbone
            (``'resnet_v1_101_deeplab'``; ``'resnet_v1_101_deeplab_dcn'`` for deformable res5).
        width: backbone width of res2's bottleneck (64 in the real networks).
        fc6_channels: channels of ``fc6`` (1024).
    """

    depth: int = 101
    backbone: str = "resnet_v1_101_deeplab"
    width: int = BASE_WIDTH
    fc6_channels: int = 1024

    #: stride of the score map relative to the input
    feat_stride: ClassVar[int] = FEAT_STRIDE

    @property
    def deformable(self) -> bool:
        """Whether res5 has deformable convolutions."""
        return bool(PRESETS[self.backbone].get("deform_units"))

    def __call__(self, cfg: Any, is_train: bool = True) -> mx.sym.Symbol:
        """The training (``is_train``) or test symbol for ``cfg`` (see the module docstring)."""
        num_classes = int(cfg.dataset.NUM_CLASSES)
        data = mx.sym.var("data")
        (res5,) = resnet_v1(
            data, depth=self.depth, width=self.width, stages_out=(5,), **PRESETS[self.backbone]
        )
        fc6 = mx.sym.Convolution(
            data=res5,
            kernel=(1, 1),
            pad=(0, 0),
            num_filter=self.fc6_channels,
            name="fc6",
            weight=mx.sym.var("fc6_weight", lr_mult=1.0),
            bias=mx.sym.var("fc6_bias", lr_mult=2.0),
            workspace=WORKSPACE,
        )
        fc6_relu = mx.sym.Activation(data=fc6, act_type="relu", name="fc6_relu")
        score = mx.sym.Convolution(
            data=fc6_relu,
            kernel=(1, 1),
            pad=(0, 0),
            num_filter=num_classes,
            name="score",
            weight=mx.sym.var("score_weight", lr_mult=1.0),
            bias=mx.sym.var("score_bias", lr_mult=2.0),
            workspace=WORKSPACE,
        )
        # A fixed per-class bilinear interpolation (initialised bilinear, never trained): the
        # lr_mult 0 sits on the layer and on its weight, as the original's attr={'lr_mult': 0}.
        upsampling = mx.sym.Deconvolution(
            data=score,
            num_filter=num_classes,
            kernel=(2 * FEAT_STRIDE, 2 * FEAT_STRIDE),
            stride=(FEAT_STRIDE, FEAT_STRIDE),
            num_group=num_classes,
            no_bias=True,
            name="upsampling",
            weight=mx.sym.var("upsampling_weight", lr_mult=0.0),
            attr={"__lr_mult__": "0.0"},
            workspace=WORKSPACE,
        )
        croped_score = mx.sym.Crop(
            upsampling, data, offset=(FEAT_STRIDE // 2, FEAT_STRIDE // 2), name="croped_score"
        )
        # Training reads 'label'; the test symbol lets SoftmaxOutput create 'softmax_label'.
        label = {"label": mx.sym.var("label")} if is_train else {}
        return mx.sym.SoftmaxOutput(
            data=croped_score,
            normalization="valid",
            multi_output=True,
            use_ignore=True,
            ignore_label=IGNORE_LABEL,
            name="softmax",
            **label,
        )


def _dcn(**kwargs: Any) -> DeepLab:
    """Deformable DeepLab: deformable res5a-c, one offset group."""
    return DeepLab(backbone="resnet_v1_101_deeplab_dcn", **kwargs)


# ResNet-v1-50 at a quarter of the width (res5 outputs 512 channels) with a narrow fc6: the
# networks of the synthetic CPU configs (as R-FCN's resnet_v1_50_w16_* networks).
_CPU = {"depth": 50, "width": 16, "fc6_channels": 256}

#: Network name (the config's ``symbol``) -> builder, ``SYMBOLS[name](cfg, is_train)``.
SYMBOLS: dict[str, DeepLab] = {
    "resnet_v1_101_deeplab": DeepLab(),
    "resnet_v1_101_deeplab_dcn": _dcn(),
    "resnet_v1_50_deeplab": DeepLab(depth=50),
    "resnet_v1_50_deeplab_dcn": _dcn(depth=50),
    "resnet_v1_50_w16_deeplab": DeepLab(**_CPU),
    "resnet_v1_50_w16_deeplab_dcn": _dcn(**_CPU),
}
