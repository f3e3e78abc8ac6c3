"""RoI pooling over a feature pyramid (``op_type='fpn_roi_pooling'``), from FPN (Lin et al.,
CVPR 2017) and Deformable ConvNets (Dai et al., ICCV 2017).

Each RoI is pooled from one pyramid level, chosen by its size (the FPN paper's eq. 1,
``k = floor(k0 + log2(sqrt(w * h) / 224))`` clipped to the pyramid), as a level *index* into
``feat_strides``::

    level = clip(floor(canonical_level + log2(sqrt(w * h) / canonical_scale)), 0, L - 1)
    w = x2 - x1 + 1, h = y2 - y1 + 1            (input-image pixels, the +1 box convention)

With the defaults (strides 4, 8, 16, 32 = P2..P5, canonical level 2 = P4, scale 224): a 224 x 224
RoI goes to P4, 112 x 112 to P3, anything smaller than 112 x 112 to P2 and from 448 x 448 on to P5.
:func:`fpn_levels` is that rule in numpy.

Inputs, in this order (the original's, which the networks' argument order follows):

- ``data_p{l}`` (N, C, H_l, W_l) for each stride ``2**l`` of ``feat_strides`` (``data_p2`` ..
  ``data_p5``): every level has the same N and C;
- with ``with_deformable``, per level in turn: ``offset_weight_p{l}`` (2 * k * k, k * k * C) and
  ``offset_bias_p{l}`` (2 * k * k,) (k = ``pooled_size``);
- ``rois`` (R, 5): ``(batch index, x1, y1, x2, y2)`` in input-image pixels.

Outputs: ``output`` (R, C, k, k), row i pooled from RoI i (the input order), and ``offset``
(R, 2, k, k), the normalised bin offsets each RoI was pooled with (zeros without
``with_deformable``), for inspection (the offset demo draws them): no gradient flows back through
``offset``. All inputs and outputs share one dtype, float32 or float64 (the offset parameters are
given the maps' dtype).

Per level, with ``spatial_scale = 1 / stride``: plain, ``ROIPooling`` k x k (max pooling over the
rounded RoI); deformable, the Deformable Faster R-CNN head's RoI pooling: ``DeformablePSROIPooling``
(group size 1, part size k, ``sample_per_part`` samples per bin, output_dim C) without offsets ->
``FullyConnected`` with the level's offset weight and bias -> reshape (R, 2, k, k), channel 0 the x
and channel 1 the y offset of each bin, in units of the RoI's width / height times ``trans_std``
-> ``DeformablePSROIPooling`` again with those offsets.

Backward: gradients to every level's data and to the offset weights and biases (levels without
a RoI get zeros), none to ``rois``. ``backward`` re-runs the pooling of the levels that have RoIs
under ``mx.autograd.record`` on the inputs it is given (so it needs ``in_data``, declared in
``declare_backward_dependency``) and back-propagates the output gradient, written straight into
``in_grad`` with its ``req`` ('write' or 'add'). Nothing is kept between ``forward`` and
``backward``: this is what stays right in a bound executor, whose ``forward`` / ``backward`` run
on MXNet's custom-op threads and whose memory planner may reuse buffers that no backward
dependency names.

Differences from the original: levels without a RoI are skipped (the original pooled a dummy
RoI on them); the level rule is computed in float64, and a RoI with a non-finite or negative
size goes to the first level instead of an undefined one; a RoI whose batch index is not an
image of the batch gives a row of zeros (and no gradient) with a warning, where the pooling ops
would raise in ``forward``; ``feat_strides``, ``pooled_size``,
``canonical_scale``, ``canonical_level``, ``trans_std`` and ``sample_per_part`` are attributes
(the original hard-coded them, and ``output_dim`` 256, which here is C); the autograd graph is
not kept in the op between calls (the original appended gradient buffers to a list that grew
with every training iteration); attributes and shapes are checked when the symbol is built and
bound (see :mod:`lib.operator_py.base`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import mxnet as mx
import numpy as np

from lib import ops
from lib.config.defaults import COUNT, FRACTION, Int, Num
from lib.operator_py.base import (
    CheckedProp,
    bool_attr,
    check_attrs,
    float_attr,
    floats_attr,
    int_attr,
)

__all__ = ["FPNROIPoolingProp", "fpn_levels", "fpn_roi_pooling_symbol", "level_name"]

logger = logging.getLogger(__name__)

#: The offset branch's learning-rate multiplier (the original networks').
OFFSET_LR_MULT = 0.01
#: The pyramid level (P4) of the canonical RoI size, 224 pixels (the FPN paper's k0).
CANONICAL_P = 4


def fpn_levels(
    rois: np.ndarray,
    num_levels: int = 4,
    canonical_scale: float = 224.0,
    canonical_level: int = 2,
) -> np.ndarray:
    """The pyramid level index (0 .. num_levels - 1) of each RoI, by its size.

    ``clip(floor(canonical_level + log2(sqrt(w * h) / canonical_scale)), 0, num_levels - 1)``
    with ``w = x2 - x1 + 1``, ``h = y2 - y1 + 1``, in float64. A RoI with a negative side or a
    NaN coordinate goes to level 0; an infinite one to the last level.

    Args:
        rois: (R, 5) ``(batch index, x1, y1, x2, y2)`` or (R, 4) boxes: the last 4 columns.
        num_levels: the number of pyramid levels (4 for P2..P5).
        canonical_scale: the RoI size that maps to ``canonical_level`` (224, ImageNet's).
        canonical_level: the level index of ``canonical_scale`` (2: P4 of P2..P5).

    Returns:
        (R,) int64 level indices.
    """
    boxes = np.asarray(rois, dtype=np.float64).reshape(-1, np.shape(rois)[-1])[:, -4:]
    w = np.maximum(boxes[:, 2] - boxes[:, 0] + 1, 0)
    h = np.maximum(boxes[:, 3] - boxes[:, 1] + 1, 0)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        level = np.floor(canonical_level + np.log2(np.sqrt(w * h) / canonical_scale))
    level = np.nan_to_num(level, nan=0.0, posinf=num_levels - 1, neginf=0.0)
    return np.clip(level, 0, num_levels - 1).astype(np.int64)


def level_name(stride: float) -> str:
    """``'p2'`` for stride 4: P{log2(stride)}, the FPN level names."""
    return f"p{round(math.log2(stride))}"


def _is_power_of_2(stride: float) -> bool:
    return stride >= 1 and stride == 2 ** round(math.log2(stride))


class FPNROIPoolingOperator(mx.operator.CustomOp):
    """Forward: per level, the pooling of its RoIs, scattered back to the RoI order; backward:
    the same pooling recorded with ``mx.autograd`` and back-propagated (see the module doc)."""

    def __init__(
        self,
        feat_strides: Sequence[float],
        with_deformable: bool,
        pooled_size: int,
        canonical_scale: float,
        canonical_level: int,
        trans_std: float,
        sample_per_part: int,
        channels: int,
    ) -> None:
        super().__init__()
        self._scales = [1.0 / s for s in feat_strides]
        self._deformable = with_deformable
        self._k = pooled_size
        self._canonical_scale = canonical_scale
        self._canonical_level = canonical_level
        self._trans_std = trans_std
        self._sample_per_part = sample_per_part
        self._channels = channels

    def _groups(
        self, rois: mx.nd.NDArray, batch: int, warn: bool = False
    ) -> list[tuple[int, np.ndarray]]:
        """``(level, RoI indices)`` for each level that has RoIs. RoIs whose batch index is not
        an image of the batch are left out (their output rows stay zero): the pooling ops
        would raise on them, and an exception in a custom op can kill the process."""
        rois = rois.asnumpy()
        levels = fpn_levels(rois, len(self._scales), self._canonical_scale, self._canonical_level)
        index = rois[:, 0]
        with np.errstate(invalid="ignore"):
            bad = ~((index >= 0) & (index < batch) & (index == np.floor(index)))
        if bad.any():
            if warn:
                logger.warning(
                    "fpn_roi_pooling: %d RoIs with a batch index that is not an image of the "
                    "batch (0 .. %d) give zeros: %s",
                    int(bad.sum()),
                    batch - 1,
                    sorted(set(index[bad].tolist()))[:10],
                )
            levels[bad] = -1
        order = np.argsort(levels, kind="stable")
        bounds = np.searchsorted(levels[order], np.arange(len(self._scales) + 1))
        return [
            (level, order[bounds[level] : bounds[level + 1]])
            for level in range(len(self._scales))
            if bounds[level + 1] > bounds[level]
        ]

    def _inputs(self, level: int) -> list[int]:
        """The positions in ``in_data`` of the level's data (and offset weight and bias)."""
        num_levels = len(self._scales)
        if not self._deformable:
            return [level]
        return [level, num_levels + 2 * level, num_levels + 2 * level + 1]

    def _pool(
        self, in_data: list, level: int, rois: mx.nd.NDArray
    ) -> tuple[mx.nd.NDArray, mx.nd.NDArray | None]:
        """``(pooled, offsets)`` of the level's ``rois`` (offsets None when not deformable)."""
        data = in_data[level]
        k = self._k
        if not self._deformable:
            pooled = mx.nd.ROIPooling(
                data, rois, pooled_size=(k, k), spatial_scale=self._scales[level]
            )
            return pooled, None
        _, weight, bias = (in_data[i] for i in self._inputs(level))
        common = {
            "spatial_scale": self._scales[level],
            "output_dim": self._channels,
            "group_size": 1,
            "pooled_size": k,
            "part_size": k,
            "sample_per_part": self._sample_per_part,
        }
        offset_t = ops.deformable_psroi_pooling(data, rois, no_trans=True, **common)
        offset = mx.nd.FullyConnected(offset_t, weight, bias, num_hidden=2 * k * k)
        offset = offset.reshape((-1, 2, k, k))
        pooled = ops.deformable_psroi_pooling(
            data, rois, offset, no_trans=False, trans_std=self._trans_std, **common
        )
        return pooled, offset

    @staticmethod
    def _index(indices: np.ndarray, ctx: mx.Context) -> mx.nd.NDArray:
        return mx.nd.array(indices, ctx=ctx, dtype=np.int64)

    def forward(self, is_train, req, in_data, out_data, aux):
        # FPNROIPoolingProp.infer_shape checked the shapes when the symbol was bound.
        rois = in_data[-1]
        num = rois.shape[0]
        groups = self._groups(rois, in_data[0].shape[0], warn=True)
        if not groups:  # no (valid) RoI
            for i in range(len(out_data)):
                self.assign(out_data[i], req[i], 0)
            return
        ctx = rois.context
        k = self._k
        # Nothing to record: backward recomputes (see the module doc).
        with mx.autograd.pause():
            pooled, offsets = [], []
            for level, idx in groups:
                out, offset = self._pool(in_data, level, mx.nd.take(rois, self._index(idx, ctx)))
                pooled.append(out)
                offsets.append(mx.nd.zeros((len(idx), 2, k, k), ctx, dtype=out.dtype)
                               if offset is None else offset)  # fmt: skip
            order = np.concatenate([idx for _, idx in groups])
            inverse = None
            if order.size < num or (order != np.arange(num)).any():
                inverse = np.full(num, order.size)  # left-out RoIs read a row of zeros, last
                inverse[order] = np.arange(order.size)
                inverse = self._index(inverse, ctx)
            for i, parts in enumerate((pooled, offsets)):
                if order.size < num:
                    parts.append(mx.nd.zeros((1, *parts[0].shape[1:]), ctx, dtype=rois.dtype))
                out = parts[0] if len(parts) == 1 else mx.nd.concat(*parts, dim=0)
                self.assign(
                    out_data[i], req[i], out if inverse is None else mx.nd.take(out, inverse)
                )

    def backward(self, req, out_grad, in_data, out_data, in_grad, aux):
        rois = in_data[-1]
        self.assign(in_grad[-1], req[-1], 0)
        groups = self._groups(rois, in_data[0].shape[0])
        with_rois = {level for level, _ in groups}
        variables, grads, reqs, needed = [], [], [], set()
        for level in range(len(self._scales)):
            for i in self._inputs(level):
                if req[i] == "null":
                    continue
                if level not in with_rois:
                    self.assign(in_grad[i], req[i], 0)
                    continue
                needed.add(level)
                variables.append(in_data[i])
                grads.append(in_grad[i])
                reqs.append("add" if req[i] == "add" else "write")
        # Levels whose inputs all have req 'null' need no recomputation.
        groups = [(lv, idx) for lv, idx in groups if lv in needed]
        if not groups:
            return
        ctx = rois.context
        mx.autograd.mark_variables(variables, grads, reqs)
        heads, head_grads = [], []
        for level, idx in groups:
            index = self._index(idx, ctx)
            with mx.autograd.record():
                heads.append(self._pool(in_data, level, mx.nd.take(rois, index))[0])
            head_grads.append(mx.nd.take(out_grad[0], index))
        mx.autograd.backward(heads, head_grads)


@mx.operator.register("fpn_roi_pooling")
class FPNROIPoolingProp(CheckedProp):
    """Attributes: ``with_deformable``, ``feat_strides``, ``pooled_size``, ``canonical_scale``,
    ``canonical_level``, ``trans_std``, ``sample_per_part`` (see :meth:`parse`); arguments from
    the strides (see the module doc)."""

    op_type = "fpn_roi_pooling"

    def __init__(self, **attrs: str) -> None:
        super().__init__(**attrs)
        self.need_top_grad_ = True

    def parse(
        self,
        with_deformable: str = "False",
        feat_strides: str = "(4, 8, 16, 32)",
        pooled_size: str = "7",
        canonical_scale: str = "224",
        canonical_level: str = "2",
        trans_std: str = "0.1",
        sample_per_part: str = "4",
    ) -> None:
        """``with_deformable``: deformable RoI pooling; ``feat_strides``: increasing powers of
        2, one per level; ``pooled_size`` k >= 1; ``canonical_scale`` > 0 and
        ``canonical_level`` (an index into ``feat_strides``) of the level rule; ``trans_std``
        in [0, 1] and ``sample_per_part`` >= 1 of the deformable pooling."""
        self._deformable = bool_attr("with_deformable", with_deformable)
        strides = floats_attr("feat_strides", feat_strides, Num(min=1))
        if not all(map(_is_power_of_2, strides)) or any(
            a >= b for a, b in zip(strides, strides[1:])
        ):
            raise ValueError(
                f"attribute feat_strides must be increasing powers of 2, got {feat_strides!r}"
            )
        self._strides = strides
        self._k = int_attr("pooled_size", pooled_size, COUNT)
        self._canonical_scale = float_attr("canonical_scale", canonical_scale, Num(above=0))
        # Any integer: the rule clips to the pyramid (a canonical level outside it is valid).
        self._canonical_level = int_attr("canonical_level", canonical_level, Int())
        self._trans_std = float_attr("trans_std", trans_std, FRACTION)
        self._sample_per_part = int_attr("sample_per_part", sample_per_part, COUNT)

        names = [level_name(s) for s in strides]
        self._data_names = [f"data_{p}" for p in names]
        self._offset_names = [f"offset_{kind}_{p}" for p in names for kind in ("weight", "bias")]
        offsets = self._offset_names if self._deformable else []
        self.arguments = (*self._data_names, *offsets, "rois")

    def list_outputs(self):
        return ["output", "offset"]

    def declare_backward_dependency(self, out_grad, in_data, out_data):
        # backward re-runs the pooling on the inputs (see the module doc).
        return list(out_grad) + list(in_data)

    def infer_shape(self, in_shape):
        num_levels, k = len(self._strides), self._k
        maps = list(zip(self._data_names, in_shape[:num_levels]))
        rois_shape = in_shape[-1]
        for name, shape in maps:
            self.expect_shape(name, shape, (None,) * 4, "(N, C, H, W)")
        self.expect_shape("rois", rois_shape, (None, 5), "(R, 5)")
        for axis in (0, 1):
            if len({s[axis] for _, s in maps if s and s[axis] > 0}) > 1:
                self.fail(
                    "the pyramid levels must have the same batch size and channels, got "
                    + ", ".join(f"{n} {tuple(s)}" for n, s in maps if s)
                )
        channels = next((s[1] for _, s in maps if s and s[1] > 0), 0)
        shapes = [tuple(s) for s in in_shape]
        if self._deformable:
            weight = (2 * k * k, k * k * channels if channels else None)
            weight_layout = f"(2 * {k} * {k}, {k} * {k} * C)"
            if channels:
                weight_layout += f" = {weight}"
            bias, bias_layout = (2 * k * k,), f"({2 * k * k},)"
            for i, name in enumerate(self._offset_names, start=num_levels):
                want, layout = (bias, bias_layout) if "bias" in name else (weight, weight_layout)
                self.expect_shape(name, in_shape[i], want, layout)
                if None not in want:
                    shapes[i] = want
        rois = rois_shape[0] if rois_shape and rois_shape[0] > 0 else 0
        if rois:
            shapes[-1] = (rois, 5)
        if not (rois and channels):  # partial inference
            return shapes, [(), ()], []
        return shapes, [(rois, channels, k, k), (rois, 2, k, k)], []

    def infer_type(self, in_type):
        # Every input and the output share one dtype, also the offset parameters, which only
        # this op sees (MXNet cannot bind variables of unknown dtype).
        known = [(n, np.dtype(t)) for n, t in zip(self.arguments, in_type) if t is not None]
        if len({t for _, t in known}) > 1:
            self.fail(
                "the inputs must have the same dtype, got "
                + ", ".join(f"{n} {t.name}" for n, t in known)
            )
        if not known:
            return in_type, [None, None], []
        dtype = known[0][1]
        if dtype not in (np.float32, np.float64):
            self.fail(f"the inputs must be float32 or float64, got {dtype.name}")
        return [dtype.type] * len(in_type), [dtype.type] * 2, []

    def create_operator(self, ctx, shapes, dtypes):
        if self._deformable:
            ops.load()
        return FPNROIPoolingOperator(
            self._strides,
            self._deformable,
            self._k,
            self._canonical_scale,
            self._canonical_level,
            self._trans_std,
            self._sample_per_part,
            channels=int(shapes[0][1]),
        )


def fpn_roi_pooling_symbol(
    feats: Sequence[mx.sym.Symbol],
    rois: mx.sym.Symbol,
    deformable: bool,
    name: str = "fpn_roi_pooling",
    pooled_size: int = 7,
    feat_strides: Sequence[int] = (4, 8, 16, 32),
) -> mx.sym.Symbol:
    """RoI pooling over the pyramid ``feats`` (one per stride of ``feat_strides``, finest first).

    With ``deformable``, creates the offset FC parameters of each level as the original networks
    name them, ``offset_p{l}_weight`` (2 * k * k, k * k * C) and ``offset_p{l}_bias``, with
    ``lr_mult`` 0.01 (their shapes are inferred; initialise them to zero, so that training
    starts from the unshifted bins). RoIs of 224 x 224 pixels are pooled from P4 (the FPN
    paper's canonical level), whichever ``feat_strides``.

    Args:
        feats: the pyramid maps, e.g. ``(fpn_p2, fpn_p3, fpn_p4, fpn_p5)``, all with C channels.
        rois: (R, 5) RoIs ``(batch index, x1, y1, x2, y2)`` in input-image pixels.
        deformable: deformable RoI pooling instead of ``ROIPooling``.
        name: the op's name.
        pooled_size: k, the output's spatial size.
        feat_strides: the strides of ``feats``, increasing powers of 2.

    Returns:
        The pooled (R, C, k, k) symbol, rows in the order of ``rois`` (the op's second output,
        the offsets, is the symbol internal ``<name>_offset``).

    Raises:
        ValueError: a bad attribute, e.g. ``fpn_roi_pooling: attribute pooled_size must be an
            integer >= 1, got '0'``, or not one map per stride.
    """
    attrs = {
        "with_deformable": bool(deformable),
        "feat_strides": tuple(feat_strides),
        "pooled_size": pooled_size,
    }
    check_attrs(FPNROIPoolingProp, attrs)
    # P4 (k0 = 4 in the FPN paper) stays the canonical level whatever the finest stride.
    attrs["canonical_level"] = CANONICAL_P - round(math.log2(feat_strides[0]))
    if len(feats) != len(feat_strides):
        raise ValueError(
            f"fpn_roi_pooling: {len(feats)} feature maps for {len(feat_strides)} feat_strides "
            f"{tuple(feat_strides)}"
        )
    inputs = {}
    names = [level_name(s) for s in feat_strides]
    for p, feat in zip(names, feats):
        inputs[f"data_{p}"] = feat
    if deformable:
        for p in names:
            inputs[f"offset_weight_{p}"] = mx.sym.var(f"offset_{p}_weight", lr_mult=OFFSET_LR_MULT)
            inputs[f"offset_bias_{p}"] = mx.sym.var(f"offset_{p}_bias", lr_mult=OFFSET_LR_MULT)
    pooling = mx.sym.Custom(op_type="fpn_roi_pooling", name=name, rois=rois, **inputs, **attrs)
    return pooling[0]  # the pooled features; pooling[1], the offsets, is for inspection
