"""ResNet-v1 backbones (MSRA / Caffe flavour) with the original Deformable ConvNets names.

The parameter names are the compatibility interface: the converted ImageNet models
(``model/pretrained_model/resnet_v1_101-0000.params``) and the released checkpoints load by
name. Every layer is emitted by a loop over a depth table, so the names follow two rules:

- units of a stage are named by :func:`unit_names`: ``res2a, res2b, res2c``,
  ``res3a, res3b1..res3b3``, ``res4a, res4b1..res4b22``, ``res5a..res5c`` for ResNet-101;
- a unit ``u`` holds ``res{u}_branch2{a,b,c}`` convolutions, ``bn{u}_branch2{a,b,c}`` batch
  norms, ``res{u}_branch1`` / ``bn{u}_branch1`` on the projection shortcut of the first unit
  of a stage, the sum ``res{u}`` and ``res{u}_relu``; a deformable unit adds the offset
  convolution ``res{u}_branch2b_offset`` (with bias) feeding the deformable ``res{u}_branch2b``.

Conventions of the original networks (MSRA ResNet-v1, as converted from Caffe):

- the stride of a stage sits on the 1x1 ``branch2a`` (and on ``branch1``), not on the 3x3;
- every convolution has ``no_bias=True`` (except the offset convolutions);
- batch norm is frozen: ``use_global_stats=True, fix_gamma=False, eps=1e-5``;
- ``pool1`` is a 3x3/2 max pool with pad 0 and ``pooling_convention='full'`` (ceil).

What differs between architectures is data, see :data:`PRESETS`: R-FCN, Faster R-CNN and
DeepLab keep res5 at stride 1 with dilation 2 (output stride 16) and make res5a-c deformable;
FPN keeps the stride-2 res5 and makes the last units of res3 and res4 and all of res5
deformable (:class:`DeformUnits`: res3b3, res4b22 and res5a-c at depth 101, at any depth the
same positions).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Collection, Sequence
from typing import Any

import mxnet as mx

from lib import ops  # the compiled library is loaded on the first deformable unit
from lib.core.initializer import Rule, constant, from_mx, ones, zeros

logger = logging.getLogger(__name__)

# Units per stage (res2, res3, res4, res5) of the bottleneck ResNets.
DEPTHS: dict[int, tuple[int, int, int, int]] = {
    50: (3, 4, 6, 3),
    101: (3, 4, 23, 3),
    152: (3, 8, 36, 3),
}

# Bottleneck width of res2 at the standard width 64; stages double it, a unit outputs 4x.
BASE_WIDTH = 64

BN_EPS = 1e-5


@dataclasses.dataclass(frozen=True)
class DeformUnits:
    """Deformable units chosen by their position in a stage, so that every depth gets the
    original's layout (ResNet-101's ``res4b22`` is ResNet-50's ``res4b5``: the last of res4).

    Attributes:
        last: stages (2..5) whose last unit is deformable.
        every: stages all of whose units are deformable.
    """

    last: tuple[int, ...] = ()
    every: tuple[int, ...] = ()

    def names(self, depth: int) -> frozenset[str]:
        """The unit suffixes at ``depth``, e.g. ``{'3b3', '4b22', '5a', '5b', '5c'}``."""
        units = stage_units(depth)
        if any(s not in (2, 3, 4, 5) for s in self.last + self.every):
            raise ValueError(f"deformable stages must be among 2..5, got {self}")
        chosen = {unit for stage in self.every for unit in units[stage - 2]}
        return frozenset(chosen | {units[stage - 2][-1] for stage in self.last})


# The deformable units of the original networks: res5 (R-FCN, Faster R-CNN, DeepLab); the last
# units of res3 and res4 and all of res5 (FPN: res3b3, res4b22, res5a-c at depth 101).
RES5_UNITS = DeformUnits(every=(5,))
FPN_DCN_UNITS = DeformUnits(last=(3, 4), every=(5,))


@dataclasses.dataclass(frozen=True)
class DeformSpec:
    """How a deformable ``branch2b`` is built.

    The deformable 3x3 itself always uses the unit's dilation (pad = dilation). Its offsets
    come from a 3x3 convolution with bias, ``num_deformable_group * 2 * 9`` channels, laid out
    ``[y0, x0, y1, x1, ...]`` per group.

    Attributes:
        num_deformable_group: offset groups (4 for the detection networks, 1 for DeepLab).
        offset_dilate: dilation (and pad) of the offset convolution; ``None`` uses the unit's
            dilation (detection: 3x3 pad 2 dilate 2 on res5); DeepLab uses 1 (3x3 pad 1).
        cudnn_off: set ``cudnn_off=True`` on the offset convolution (R-FCN / Faster R-CNN).
        offset_lr_mult: ``(weight, bias)`` ``lr_mult`` attributes of the offset variables,
            ``None`` for none (DeepLab uses ``(1.0, 2.0)``).
    """

    num_deformable_group: int = 4
    offset_dilate: int | None = None
    cudnn_off: bool = False
    offset_lr_mult: tuple[float, float] | None = None


# Backbone arguments of each original network, for resnet_v1(data, **PRESETS[name]).
# res5_cudnn_off: R-FCN turns cuDNN off on its plain dilated res5 3x3s.
PRESETS: dict[str, dict[str, Any]] = {
    "resnet_v1_101_rfcn": {"res5_stride": 1, "res5_dilate": 2, "res5_cudnn_off": True},
    "resnet_v1_101_rfcn_dcn": {
        "res5_stride": 1,
        "res5_dilate": 2,
        "deform_units": RES5_UNITS,
        "deform": DeformSpec(4, cudnn_off=True),
    },
    "resnet_v1_101_rcnn": {"res5_stride": 1, "res5_dilate": 2},
    "resnet_v1_101_rcnn_dcn": {
        "res5_stride": 1,
        "res5_dilate": 2,
        "deform_units": RES5_UNITS,
        "deform": DeformSpec(4, cudnn_off=True),
    },
    "resnet_v1_101_fpn_rcnn": {"res5_stride": 2, "res5_dilate": 1},
    "resnet_v1_101_fpn_dcn_rcnn": {
        "res5_stride": 2,
        "res5_dilate": 1,
        "deform_units": FPN_DCN_UNITS,
        "deform": DeformSpec(4),
    },
    "resnet_v1_101_deeplab": {"res5_stride": 1, "res5_dilate": 2},
    "resnet_v1_101_deeplab_dcn": {
        "res5_stride": 1,
        "res5_dilate": 2,
        "deform_units": RES5_UNITS,
        "deform": DeformSpec(1, offset_dilate=1, offset_lr_mult=(1.0, 2.0)),
    },
    "deform_conv_demo": {
        "res5_stride": 1,
        "res5_dilate": 2,
        "deform_units": RES5_UNITS,
        "deform": DeformSpec(1, offset_dilate=1, cudnn_off=True),
    },
    "deform_psroi_demo": {"res5_stride": 1, "res5_dilate": 2, "res5_cudnn_off": True},
}


#: Second moment of conv1's output under He init: 2 x (pixel RMS after mean subtraction, ~64)^2.
STEM_VARIANCE = 2.0 * 64.0**2

#: Backbone initialisation for training without a pretrained model (CPU experiments). The BN
#: layers are frozen (``use_global_stats``), so nothing normalises the activations: MSRA (He)
#: init keeps their scale from layer to layer; ``bn_conv1``'s fixed variance is set to
#: :data:`STEM_VARIANCE`, so the network sees unit-scale input instead of raw pixels (+-130);
#: the last 1x1 of each residual branch starts at zero, so every unit starts as its shortcut
#: (Goyal et al. 2017, "zero-gamma"; Zhang et al. 2019, Fixup). Other BN statistics and affine
#: params start as the identity.
SCRATCH_BACKBONE_RULES: list[Rule] = [
    ("bn_conv1_moving_var", constant(STEM_VARIANCE)),
    ("res*_branch2c_weight", zeros()),
    ("conv1_weight", from_mx(mx.init.Xavier("gaussian", "in", 2.0))),
    ("res*_weight", from_mx(mx.init.Xavier("gaussian", "in", 2.0))),
    ("bn*_gamma", ones()),
    ("bn*_beta", zeros()),
    ("bn*_moving_mean", zeros()),
    ("bn*_moving_var", ones()),
]


def unit_names(n: int) -> list[str]:
    """Suffixes of the ``n`` units of a stage, Caffe ResNet-101 style.

    ``['a', 'b', 'c'][:n]`` when ``n <= 3``, else ``['a', 'b1', ..., f'b{n-1}']``. (Caffe's
    ResNet-50 spells res3/res4 with letters, ``res4a..res4f``; we apply this one rule to every
    depth, so a converted ResNet-50 has ``res4a, res4b1..res4b5``.)
    """
    if n < 1:
        raise ValueError(f"a stage needs at least one unit, got {n}")
    if n <= 3:
        return ["a", "b", "c"][:n]
    return ["a"] + [f"b{i}" for i in range(1, n)]


def stage_units(depth: int) -> list[list[str]]:
    """Unit names per stage, e.g. ``[['2a', '2b', '2c'], ['3a', '3b1', ...], ...]``."""
    if depth not in DEPTHS:
        raise ValueError(f"unsupported ResNet depth {depth}; expected one of {sorted(DEPTHS)}")
    return [
        [f"{stage}{suffix}" for suffix in unit_names(n)]
        for stage, n in zip(range(2, 6), DEPTHS[depth])
    ]


def stage_output_name(depth: int, stage: int) -> str:
    """Name of the output of ``stage`` (2..5): the ReLU of its last unit, e.g. ``res4b22_relu``."""
    if stage not in (2, 3, 4, 5):
        raise ValueError(f"stage must be 2, 3, 4 or 5, got {stage}")
    return f"res{stage_units(depth)[stage - 2][-1]}_relu"


def _conv(
    data: mx.sym.Symbol,
    name: str,
    num_filter: int,
    kernel: int,
    stride: int = 1,
    pad: int = 0,
    dilate: int = 1,
    cudnn_off: bool = False,
) -> mx.sym.Symbol:
    kwargs: dict[str, Any] = {}
    if dilate != 1:
        kwargs["dilate"] = (dilate, dilate)
    if cudnn_off:
        kwargs["cudnn_off"] = True
    return mx.sym.Convolution(
        data=data,
        name=name,
        num_filter=num_filter,
        kernel=(kernel, kernel),
        stride=(stride, stride),
        pad=(pad, pad),
        no_bias=True,
        **kwargs,
    )


def _bn(data: mx.sym.Symbol, name: str) -> mx.sym.Symbol:
    # Frozen BN, as in the original: the batch of 1 image cannot estimate statistics.
    return mx.sym.BatchNorm(
        data=data, name=name, use_global_stats=True, fix_gamma=False, eps=BN_EPS
    )


def _relu(data: mx.sym.Symbol, name: str) -> mx.sym.Symbol:
    return mx.sym.Activation(data=data, name=name, act_type="relu")


def deformable_conv(
    data: mx.sym.Symbol,
    offset: mx.sym.Symbol,
    name: str,
    num_filter: int,
    dilate: int,
    num_deformable_group: int,
) -> mx.sym.Symbol:
    """The 3x3, stride-1, no-bias deformable convolution of a unit (the one place choosing the op).

    Uses our operator library (``lib.ops``, op ``DeformableConvolution``); the weight variable is
    ``{name}_weight`` as with ``mx.sym.contrib.DeformableConvolution``.
    """
    return ops.deformable_convolution(
        data,
        offset,
        name=name,
        num_filter=num_filter,
        kernel=(3, 3),
        stride=(1, 1),
        pad=(dilate, dilate),
        dilate=(dilate, dilate),
        num_deformable_group=num_deformable_group,
        no_bias=True,
    )


def _offset_conv(data: mx.sym.Symbol, name: str, dilate: int, deform: DeformSpec) -> mx.sym.Symbol:
    offset_dilate = dilate if deform.offset_dilate is None else deform.offset_dilate
    kwargs: dict[str, Any] = {}
    if deform.offset_lr_mult is not None:
        weight_mult, bias_mult = deform.offset_lr_mult
        kwargs["weight"] = mx.sym.var(f"{name}_weight", lr_mult=weight_mult)
        kwargs["bias"] = mx.sym.var(f"{name}_bias", lr_mult=bias_mult)
    if deform.cudnn_off:
        kwargs["cudnn_off"] = True
    return mx.sym.Convolution(
        data=data,
        name=name,
        num_filter=deform.num_deformable_group * 2 * 3 * 3,
        kernel=(3, 3),
        stride=(1, 1),
        pad=(offset_dilate, offset_dilate),
        dilate=(offset_dilate, offset_dilate),  # always written, as the original FPN's res5
        **kwargs,
    )


def stem(
    data: mx.sym.Symbol,
    width: int = BASE_WIDTH,
    pool1_pad: int = 0,
    pool1_convention: str = "full",
) -> mx.sym.Symbol:
    """``conv1`` 7x7/2 (pad 3) -> ``bn_conv1`` -> ``conv1_relu`` -> ``pool1`` 3x3/2 max.

    The defaults are the original's pool (pad 0, ``'full'`` = ceil). Gluon's model zoo uses
    pad 1, ``'valid'`` (floor): equal output sizes for an even conv1 map, but a window grid
    shifted by one conv1 pixel, so pass ``pool1_pad=1, pool1_convention='valid'`` to reproduce
    a Gluon network exactly.
    """
    x = mx.sym.Convolution(
        data=data,
        name="conv1",
        num_filter=width,
        kernel=(7, 7),
        stride=(2, 2),
        pad=(3, 3),
        no_bias=True,
    )
    x = _relu(_bn(x, "bn_conv1"), "conv1_relu")
    return mx.sym.Pooling(
        data=x,
        name="pool1",
        kernel=(3, 3),
        stride=(2, 2),
        pad=(pool1_pad, pool1_pad),
        pool_type="max",
        pooling_convention=pool1_convention,
    )


def bottleneck(
    data: mx.sym.Symbol,
    unit: str,
    num_filter: int,
    stride: int,
    dilate: int,
    proj: bool,
    deform: DeformSpec | None = None,
    cudnn_off: bool = False,
) -> mx.sym.Symbol:
    """One bottleneck unit ``res{unit}``: 1x1 (stride) -> 3x3 (dilate) -> 1x1 (x4), + shortcut.

    Args:
        data: input feature map.
        unit: unit suffix, e.g. ``'4b22'``.
        num_filter: bottleneck width; the unit outputs ``4 * num_filter`` channels.
        stride: stride, on ``branch2a`` and ``branch1`` (stride on the 1x1 as in MSRA ResNet-v1).
        dilate: dilation (and pad) of the 3x3 ``branch2b``.
        proj: project the shortcut with ``branch1`` (first unit of a stage).
        deform: make ``branch2b`` deformable, ``None`` for a plain convolution.
        cudnn_off: ``cudnn_off=True`` on a plain ``branch2b`` (R-FCN's dilated res5).

    Returns:
        ``res{unit}_relu``.
    """
    if proj:
        shortcut = _bn(
            _conv(data, f"res{unit}_branch1", 4 * num_filter, 1, stride), f"bn{unit}_branch1"
        )
    else:
        shortcut = data
    x = _conv(data, f"res{unit}_branch2a", num_filter, 1, stride)
    x = _relu(_bn(x, f"bn{unit}_branch2a"), f"res{unit}_branch2a_relu")
    if deform is None:
        x = _conv(x, f"res{unit}_branch2b", num_filter, 3, 1, dilate, dilate, cudnn_off)
    else:
        offset = _offset_conv(x, f"res{unit}_branch2b_offset", dilate, deform)
        x = deformable_conv(
            x, offset, f"res{unit}_branch2b", num_filter, dilate, deform.num_deformable_group
        )
    x = _relu(_bn(x, f"bn{unit}_branch2b"), f"res{unit}_branch2b_relu")
    x = _bn(_conv(x, f"res{unit}_branch2c", 4 * num_filter, 1), f"bn{unit}_branch2c")
    # broadcast_add(shortcut, residual) as in the original: fixes the argument order.
    x = mx.sym.broadcast_add(shortcut, x, name=f"res{unit}")
    return _relu(x, f"res{unit}_relu")


def resnet_v1(
    data: mx.sym.Symbol,
    depth: int = 101,
    res5_stride: int = 1,
    res5_dilate: int = 2,
    deform_units: DeformUnits | Collection[str] = frozenset(),
    deform: DeformSpec = DeformSpec(),
    stages_out: Sequence[int] = (5,),
    width: int = BASE_WIDTH,
    res5_cudnn_off: bool = False,
    pool1_pad: int = 0,
    pool1_convention: str = "full",
) -> list[mx.sym.Symbol]:
    """ResNet-v1 backbone up to the last requested stage.

    Args:
        data: the image, (N, 3, H, W).
        depth: 50, 101 or 152 (see :data:`DEPTHS`).
        res5_stride: stride of res5 (1 with dilation 2 keeps output stride 16; FPN uses 2).
        res5_dilate: dilation of the res5 3x3s.
        deform_units: the units whose ``branch2b`` is deformable: by position
            (:class:`DeformUnits`, e.g. :data:`RES5_UNITS`) or as unit suffixes (``{'4b5'}``).
        deform: how those units are built.
        stages_out: stages (2..5) whose outputs are returned, in this order.
        width: bottleneck width of res2 (64 in the real networks); stages double it. A smaller
            width gives a narrow network for CPU tests with the same names.
        res5_cudnn_off: ``cudnn_off=True`` on the plain res5 3x3s.
        pool1_pad, pool1_convention: see :func:`stem`.

    Returns:
        The output symbols of ``stages_out``, e.g. ``[res2c_relu, res3b3_relu, res4b22_relu,
        res5c_relu]`` for ``stages_out=(2, 3, 4, 5)`` at depth 101.
    """
    units = stage_units(depth)
    all_units = {u for stage in units for u in stage}
    if isinstance(deform_units, DeformUnits):
        deform_units = deform_units.names(depth)
    unknown = set(deform_units) - all_units
    if unknown:
        raise ValueError(f"deform_units {sorted(unknown)} are not units of ResNet-{depth}")
    if not stages_out or any(s not in (2, 3, 4, 5) for s in stages_out):
        raise ValueError(f"stages_out must list stages among 2..5, got {tuple(stages_out)}")

    x = stem(data, width, pool1_pad, pool1_convention)
    outputs: dict[int, mx.sym.Symbol] = {}
    for stage, names in zip(range(2, max(stages_out) + 1), units):
        stride = {2: 1, 5: res5_stride}.get(stage, 2)
        dilate = res5_dilate if stage == 5 else 1
        num_filter = width * 2 ** (stage - 2)
        for i, unit in enumerate(names):
            x = bottleneck(
                x,
                unit,
                num_filter,
                stride=stride if i == 0 else 1,
                dilate=dilate,
                proj=i == 0,
                deform=deform if unit in deform_units else None,
                cudnn_off=res5_cudnn_off and stage == 5,
            )
        outputs[stage] = x
    return [outputs[s] for s in stages_out]
