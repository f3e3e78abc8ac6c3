"""Where deformable layers sample: the geometry of the offset visualisations.

Read from a network's symbol (the attributes of its ``DeformableConvolution`` and
``DeformablePSROIPooling`` nodes), so one code path serves every network: the original demo
networks (1 offset group, 3x3 PS-RoI bins) and the R-FCN / Faster R-CNN / DeepLab networks
(4 or 1 offset groups, 7x7 bins, class-specific or shared part offsets), and FPN's pooling over
its pyramid, each RoI's bins on the level its size chooses.

**Deformable convolution** (Dai et al. 2017, eq. 2). Output location ``(h, w)`` of a layer with
kernel ``kh x kw``, stride ``s``, pad ``p`` and dilation ``d`` samples its input at::

    y = h * s - p + i * d + offset[g * 2*kh*kw + 2 * (i*kw + j),     h, w]
    x = w * s - p + j * d + offset[g * 2*kh*kw + 2 * (i*kw + j) + 1, h, w]

for every tap ``(i, j)`` and offset group ``g`` (channel layout ``[y0, x0, y1, x1, ...]`` per
group, the operator's). Stacking layers, as res5a-c do, every sampling point of the upper layer
is (rounded to) an output location of the layer below, whose own 9 points follow: three
3x3 layers give 9^3 = 729 points for one activation, as the original ``show_dconv_offset``.
Feature cell ``q`` of a stride-``S`` map is drawn at input pixel ``(q + 0.5) * S - 0.5``, the
centre of the ``S`` pixels it covers.

**Deformable PS-RoI pooling** (Dai et al. 2017, eq. 6). A RoI ``(x1, y1, x2, y2)`` in input
pixels spans feature coordinates ``round(x1) * s - 0.5`` to ``(round(x2) + 1) * s - 0.5`` (s =
``spatial_scale``), split into ``k x k`` bins; bin ``(i, j)`` moves by ``trans * trans_std *``
RoI size, where ``trans`` is the offset input ``(R, 2T, part, part)``: channel ``2c`` is x and
``2c + 1`` is y (the opposite order to the convolution's) of class ``c``, and T = 1 for offsets
shared by all classes. Bins go back to pixels through the operator's own mapping, ``pixel =
(feature + 0.5) / s``. See ``operator_cxx/include/dcn/psroi.h``.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence

import mxnet as mx
import numpy as np

__all__ = [
    "DeformConvLayer",
    "DeformPsroiLayer",
    "conv_sampling_locations",
    "deformable_convolutions",
    "deformable_psroi_poolings",
    "feature_to_pixel",
    "pixel_to_feature",
    "psroi_bins",
]


def _tuple(text: str, default: tuple[int, int]) -> tuple[int, int]:
    """'(3, 3)' -> (3, 3); '2' -> (2, 2); missing -> default."""
    if not text:
        return default
    values = [int(v) for v in text.strip("()[] ").split(",") if v.strip()]
    return (values[0], values[0]) if len(values) == 1 else (values[0], values[1])


def _nodes(sym: mx.sym.Symbol) -> list[dict]:
    return json.loads(sym.tojson())["nodes"]


@dataclasses.dataclass(frozen=True)
class DeformConvLayer:
    """A ``DeformableConvolution`` node: its name, offset input and geometry."""

    name: str
    offset: str
    kernel: tuple[int, int]
    stride: tuple[int, int]
    pad: tuple[int, int]
    dilate: tuple[int, int]
    groups: int

    @property
    def output(self) -> str:
        """The name of the offset map among a symbol's internals (``<offset>_output``)."""
        return f"{self.offset}_output"


@dataclasses.dataclass(frozen=True)
class DeformPsroiLayer:
    """A deformable (PS-)RoI pooling that applies offsets: a ``DeformablePSROIPooling`` node
    (``no_trans`` False), or FPN's ``fpn_roi_pooling`` with ``with_deformable``, which pools
    each RoI on the level its size chooses (``level_strides``, :meth:`for_roi`).

    Attributes:
        output: the name of the offsets among a symbol's internals.
    """

    name: str
    trans: str
    output_dim: int
    pooled_size: int
    part_size: int
    trans_std: float
    spatial_scale: float
    output: str
    level_strides: tuple[float, ...] = ()
    canonical_scale: float = 224.0
    canonical_level: int = 2

    def for_roi(self, roi: Sequence[float]) -> DeformPsroiLayer:
        """The layer as it pools ``roi`` ``(x1, y1, x2, y2)``: on a pyramid, with the spatial
        scale of the RoI's level (:func:`lib.operator_py.fpn_roi_pooling.fpn_levels`)."""
        if not self.level_strides:
            return self
        from lib.operator_py.fpn_roi_pooling import fpn_levels

        level = int(fpn_levels(np.asarray([roi], np.float64), len(self.level_strides),
                               self.canonical_scale, self.canonical_level)[0])  # fmt: skip
        return dataclasses.replace(self, spatial_scale=1.0 / self.level_strides[level])


def deformable_convolutions(sym: mx.sym.Symbol) -> list[DeformConvLayer]:
    """The ``DeformableConvolution`` nodes of ``sym`` in graph order (res5a, res5b, res5c)."""
    nodes = _nodes(sym)
    layers = []
    for node in nodes:
        if node["op"] != "DeformableConvolution":
            continue
        attrs = node.get("attrs", {})
        kernel = _tuple(attrs.get("kernel", ""), (1, 1))
        layers.append(
            DeformConvLayer(
                name=node["name"],
                offset=nodes[node["inputs"][1][0]]["name"],
                kernel=kernel,
                stride=_tuple(attrs.get("stride", ""), (1, 1)),
                pad=_tuple(attrs.get("pad", ""), (0, 0)),
                dilate=_tuple(attrs.get("dilate", ""), (1, 1)),
                groups=int(attrs.get("num_deformable_group", 1)),
            )
        )
    return layers


def deformable_psroi_poolings(sym: mx.sym.Symbol) -> list[DeformPsroiLayer]:
    """The ``DeformablePSROIPooling`` nodes of ``sym`` that move their bins, in graph order."""
    nodes = _nodes(sym)
    layers = []
    for node in nodes:
        attrs = node.get("attrs", {})
        if node["op"] != "DeformablePSROIPooling" or attrs.get("no_trans", "False") == "True":
            continue
        if len(node["inputs"]) < 3:
            continue
        pooled = int(attrs.get("pooled_size", 7))
        trans = nodes[node["inputs"][2][0]]["name"]
        layers.append(
            DeformPsroiLayer(
                name=node["name"],
                trans=trans,
                output_dim=int(attrs["output_dim"]),
                pooled_size=pooled,
                part_size=int(attrs.get("part_size", 0)) or pooled,
                trans_std=float(attrs.get("trans_std", 0.0)),
                spatial_scale=float(attrs["spatial_scale"]),
                output=f"{trans}_output",
            )
        )
    for node in nodes:  # FPN's pyramid RoI pooling (a CustomOp), deformable
        attrs = node.get("attrs", {})
        if attrs.get("op_type") != "fpn_roi_pooling" or attrs.get("with_deformable") != "True":
            continue
        pooled = int(attrs.get("pooled_size", 7))
        strides = tuple(float(v) for v in attrs.get("feat_strides", "(4, 8, 16, 32)")
                        .strip("()[] ").split(",") if v.strip())  # fmt: skip
        layers.append(
            DeformPsroiLayer(
                name=node["name"],
                trans=f"offset_p* (per level, {node['name']})",
                output_dim=0,
                pooled_size=pooled,
                part_size=pooled,
                trans_std=float(attrs.get("trans_std", 0.1)),
                spatial_scale=1.0 / strides[0],
                output=f"{node['name']}_offset",
                level_strides=strides,
                canonical_scale=float(attrs.get("canonical_scale", 224)),
                canonical_level=int(attrs.get("canonical_level", 2)),
            )
        )
    return layers


def feature_to_pixel(q: np.ndarray | float, stride: float) -> np.ndarray | float:
    """Feature coordinate -> input pixel: the centre of the pixels the cell covers."""
    return (np.asarray(q, dtype=np.float64) + 0.5) * stride - 0.5


def pixel_to_feature(x: np.ndarray | float, stride: float) -> np.ndarray | float:
    """Input pixel -> feature coordinate (inverse of :func:`feature_to_pixel`)."""
    return (np.asarray(x, dtype=np.float64) + 0.5) / stride - 0.5


def conv_sampling_locations(
    layers: Sequence[DeformConvLayer],
    offsets: Sequence[np.ndarray],
    point: tuple[int, int],
    group: int = 0,
) -> np.ndarray:
    """Input locations of stacked deformable convolutions for one activation of the last.

    Args:
        layers: the stacked layers, bottom first (res5a, res5b, res5c).
        offsets: their offset maps, each (2 * groups * kh * kw, H, W) for one image, all on one
            feature grid.
        point: ``(row, column)`` of the activation in the last layer's output.
        group: the offset group drawn (layers with fewer groups use their last).

    Returns:
        (N, 2) ``(y, x)`` feature coordinates of the first layer's sampling points: N = prod of
        kh * kw over the layers (729 for three 3x3 layers), fewer when points of an upper
        layer fall outside the map (they have no offsets to follow, as in the original).

    Raises:
        ValueError: the layers are not stride-1 layers on one grid, or shapes disagree.
    """
    if len(layers) != len(offsets) or not layers:
        raise ValueError(f"{len(layers)} layers but {len(offsets)} offset maps")
    grid_shape = offsets[0].shape[1:]
    for layer, off in zip(layers, offsets):
        kh, kw = layer.kernel
        if layer.stride != (1, 1) or off.shape[1:] != grid_shape:
            raise ValueError(
                f"{layer.name}: the sampling of stacked layers is drawn for stride-1 layers on "
                f"one grid; got stride {layer.stride}, map {off.shape[1:]} vs {grid_shape}"
            )
        if off.shape[0] != 2 * layer.groups * kh * kw:
            raise ValueError(
                f"{layer.output}: {off.shape[0]} channels, expected 2 * {layer.groups} groups * "
                f"{kh * kw} taps"
            )
    height, width = grid_shape
    points = np.array([point], dtype=np.float64)
    for layer, off in zip(reversed(layers), reversed(offsets)):
        kh, kw = layer.kernel
        taps = kh * kw
        g = min(group, layer.groups - 1)
        ii, jj = np.divmod(np.arange(taps), kw)
        found = []
        for y, x in points:
            h, w = int(round(y)), int(round(x))
            if not (0 <= h < height and 0 <= w < width):
                continue
            dyx = off[g * 2 * taps : (g + 1) * 2 * taps, h, w].reshape(taps, 2)
            ys = h * layer.stride[0] - layer.pad[0] + ii * layer.dilate[0] + dyx[:, 0]
            xs = w * layer.stride[1] - layer.pad[1] + jj * layer.dilate[1] + dyx[:, 1]
            found.append(np.stack([ys, xs], axis=1))
        points = np.concatenate(found) if found else np.zeros((0, 2))
    return points


def _round_half_away(v: float) -> float:
    """C's ``roundf``, which the operator uses (numpy rounds halves to even)."""
    return math.copysign(math.floor(abs(v) + 0.5), v)


def psroi_bins(
    layer: DeformPsroiLayer, roi: Sequence[float], trans: np.ndarray, cls: int
) -> np.ndarray:
    """The k x k bins of one RoI after the part offsets of class ``cls``, as the operator.

    Args:
        layer: the pooling node.
        roi: ``(x1, y1, x2, y2)`` in input pixels.
        trans: the RoI's offsets (2T, part, part), T classes (T = 1: shared by all classes).
        cls: class whose offsets move the bins (ignored when T = 1).

    Returns:
        (k, k, 4) ``(x1, y1, x2, y2)`` of each bin in input pixels, row-major.
    """
    k, part, s = layer.pooled_size, layer.part_size, layer.spatial_scale
    num_trans = trans.shape[0] // 2
    c = 0 if num_trans == 1 else int(cls)
    if not 0 <= c < num_trans:
        raise ValueError(f"class {cls} has no offsets in {layer.trans} ({num_trans} classes)")
    start_w = _round_half_away(roi[0]) * s - 0.5
    start_h = _round_half_away(roi[1]) * s - 0.5
    width = max((_round_half_away(roi[2]) + 1) * s - 0.5 - start_w, 0.1)
    height = max((_round_half_away(roi[3]) + 1) * s - 0.5 - start_h, 0.1)
    bin_w, bin_h = width / k, height / k
    bins = np.zeros((k, k, 4))
    for i in range(k):
        for j in range(k):
            # the operator's part index: floor(p / pooled * part), clamped
            pi, pj = min(int(i / k * part), part - 1), min(int(j / k * part), part - 1)
            x0 = j * bin_w + start_w + trans[2 * c, pi, pj] * layer.trans_std * width
            y0 = i * bin_h + start_h + trans[2 * c + 1, pi, pj] * layer.trans_std * height
            bins[i, j] = (x0, y0, x0 + bin_w, y0 + bin_h)
    # back through the operator's own mapping (feature = pixel * s - 0.5), so an undeformed
    # grid spans round(x1) .. round(x2) + 1 exactly
    return (bins + 0.5) / s
