"""Gluon blocks around the library's deformable convolutions.

Each block owns its offset convolution (a plain ``Convolution`` with the same kernel, stride,
padding and dilation, so that its output has the deformable conv's spatial size), initialised to
zeros as in the original networks: at initialisation the offsets are 0 and the block computes
exactly a plain convolution with its ``weight`` / ``bias``.

``ModulatedDeformableConvolution`` follows the original DCNv2 example: one offset convolution
gives ``dg*3*kh*kw`` channels, the first ``dg*2*kh*kw`` are the offsets and the rest are mask
logits, and mask = 2·sigmoid(logits) as in the original, so a zero-initialised block also starts
as the plain convolution (mask = 1).

Parameter names: ``{prefix}weight``, ``{prefix}bias``, ``{prefix}offset_weight``,
``{prefix}offset_bias``. Blocks hybridize and ``export``; load the exported graph back with
``SymbolBlock.imports`` after :func:`lib.ops.load` (the blocks call it when created).
"""

from __future__ import annotations

from typing import Optional, Union

from mxnet import initializer
from mxnet.gluon import HybridBlock

from lib.ops import load

IntPair = Union[int, tuple[int, int]]


def _pair(v: IntPair) -> tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    v = tuple(int(x) for x in v)
    if len(v) != 2:
        raise ValueError(f"expected an int or a pair, got {v}")
    return v


class _DeformableConvBase(HybridBlock):
    _op = ""
    _modulated = False

    def __init__(
        self,
        channels: int,
        kernel_size: IntPair = (3, 3),
        strides: IntPair = (1, 1),
        padding: IntPair = (0, 0),
        dilation: IntPair = (1, 1),
        groups: int = 1,
        num_deformable_group: int = 1,
        use_bias: bool = True,
        in_channels: int = 0,
        im2col_step: int = 64,
        weight_initializer=None,
        bias_initializer="zeros",
        offset_weight_initializer="zeros",
        offset_bias_initializer="zeros",
        prefix: Optional[str] = None,
        params=None,
    ):
        super().__init__(prefix=prefix, params=params)
        load()
        kh, kw = _pair(kernel_size)
        self._channels = channels
        self._in_channels = in_channels
        self._use_bias = use_bias
        self._attrs = dict(
            kernel=(kh, kw),
            stride=_pair(strides),
            pad=_pair(padding),
            dilate=_pair(dilation),
            num_filter=channels,
            num_group=groups,
            num_deformable_group=num_deformable_group,
            no_bias=not use_bias,
            im2col_step=im2col_step,
        )
        per_tap = 3 if self._modulated else 2
        self._offset_channels = num_deformable_group * per_tap * kh * kw
        self._offset_attrs = dict(
            kernel=(kh, kw),
            stride=self._attrs["stride"],
            pad=self._attrs["pad"],
            dilate=self._attrs["dilate"],
            num_filter=self._offset_channels,
        )
        wshape = (channels, in_channels // groups if in_channels else 0, kh, kw)
        with self.name_scope():
            self.weight = self.params.get(
                "weight", shape=wshape, init=weight_initializer, allow_deferred_init=True
            )
            self.bias = (
                self.params.get(
                    "bias", shape=(channels,), init=bias_initializer, allow_deferred_init=True
                )
                if use_bias
                else None
            )
            self.offset_weight = self.params.get(
                "offset_weight",
                shape=(self._offset_channels, in_channels, kh, kw),
                init=initializer.create(offset_weight_initializer),
                allow_deferred_init=True,
            )
            self.offset_bias = self.params.get(
                "offset_bias",
                shape=(self._offset_channels,),
                init=initializer.create(offset_bias_initializer),
                allow_deferred_init=True,
            )

    def _offsets(self, F, x, offset_weight, offset_bias):
        return F.Convolution(x, offset_weight, offset_bias, **self._offset_attrs)

    def __repr__(self):
        a = self._attrs
        return (
            f"{self.__class__.__name__}({self._in_channels or None} -> {self._channels}, "
            f"kernel_size={a['kernel']}, stride={a['stride']}, padding={a['pad']}, "
            f"dilation={a['dilate']}, groups={a['num_group']}, "
            f"num_deformable_group={a['num_deformable_group']}, bias={self._use_bias})"
        )


class DeformableConvolution(_DeformableConvBase):
    """Deformable convolution block (DCNv1) with its own zero-initialised offset convolution.

    Args:
        channels: output channels F.
        kernel_size, strides, padding, dilation: int or pair, as ``gluon.nn.Conv2D``.
        groups: weight groups (``num_group``).
        num_deformable_group: offset groups dg.
        use_bias: add a bias.
        in_channels: input channels C, or 0 to infer them at the first forward.
        im2col_step: images per im2col + GEMM chunk (see :mod:`lib.ops`).
    """

    _op = "DeformableConvolution"

    def hybrid_forward(self, F, x, weight, offset_weight, offset_bias, bias=None):
        offset = self._offsets(F, x, offset_weight, offset_bias)
        args = [x, offset, weight] + ([bias] if bias is not None else [])
        return F.DeformableConvolution(*args, **self._attrs)


class ModulatedDeformableConvolution(_DeformableConvBase):
    """Modulated deformable convolution block (DCNv2): offsets and mask from one zero-initialised
    convolution, mask = 2·sigmoid(logits) as in the original (1 at initialisation).

    Args: as :class:`DeformableConvolution`.
    """

    _op = "ModulatedDeformableConvolution"
    _modulated = True

    def hybrid_forward(self, F, x, weight, offset_weight, offset_bias, bias=None):
        out = self._offsets(F, x, offset_weight, offset_bias)
        n_off = self._offset_channels * 2 // 3
        offset = F.slice_axis(out, axis=1, begin=0, end=n_off)
        mask = 2 * F.sigmoid(F.slice_axis(out, axis=1, begin=n_off, end=self._offset_channels))
        args = [x, offset, mask, weight] + ([bias] if bias is not None else [])
        return F.ModulatedDeformableConvolution(*args, **self._attrs)
