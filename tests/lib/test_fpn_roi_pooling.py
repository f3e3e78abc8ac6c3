"""fpn_roi_pooling (lib/operator_py/fpn_roi_pooling.py): the level rule against the FPN paper's
formula, each RoI pooled from its level in the input order (plain and deformable, against the
single-level ops), and gradients through bound executors against a reference graph of the
single-level ops and against central differences in float64.

Error paths (bad attributes and shapes) are in tests/lib/test_custom_op_errors.py.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import mxnet as mx
import numpy as np
import pytest

from lib import ops
from lib.operator_py import fpn_levels, fpn_roi_pooling_symbol
from lib.operator_py.fpn_roi_pooling import FPNROIPoolingProp

STRIDES = (4, 8, 16, 32)
K = 7
# An asymmetric image: maps 120x136, 60x68, 30x34, 15x17.
IMAGE = (480, 544)
# sqrt(w * h) ranges of each level with the defaults (the boundaries are tested on their own).
SIZES = {0: (12, 110), 1: (113, 222), 2: (226, 445), 3: (450, 530)}


@pytest.fixture(scope="module", autouse=True)
def _library():
    ops.load()


def reference_level(box, canonical_scale=224.0, k0=4, k_min=2, k_max=5) -> int:
    """The FPN paper's eq. 1, k = floor(k0 + log2(sqrt(w h) / 224)) clipped to [k_min, k_max],
    as an index from P{k_min}; w and h with the +1 convention."""
    x1, y1, x2, y2 = (float(c) for c in box[-4:])
    w, h = x2 - x1 + 1, y2 - y1 + 1
    k = math.floor(k0 + math.log2(math.sqrt(w * h) / canonical_scale))
    return min(max(k, k_min), k_max) - k_min


def make_rois(rng, levels, batch=2, image=IMAGE, sizes=SIZES):
    """One RoI per entry of ``levels``, of a size in that level's range, aspect ratio in
    [1/2, 2], anywhere in the image (large ones reach past it), batch index alternating."""
    rois = []
    for i, level in enumerate(levels):
        lo, hi = sizes[level]
        size = rng.uniform(lo, hi)
        ratio = math.exp(rng.uniform(-math.log(2), math.log(2)))
        w, h = size * math.sqrt(ratio), size / math.sqrt(ratio)
        x1, y1 = rng.uniform(-8, image[1] - w / 2), rng.uniform(-8, image[0] - h / 2)
        rois.append([i % batch, x1, y1, x1 + w - 1, y1 + h - 1])
    rois = np.array(rois, dtype=np.float64)
    assert [reference_level(r) for r in rois] == list(levels)
    return rois


def make_maps(rng, channels=3, batch=2, image=IMAGE, strides=STRIDES):
    return [rng.standard_normal((batch, channels, image[0] // s, image[1] // s)) for s in strides]


def make_offsets(rng, channels, k=K, std=0.05, levels=4):
    """Per level (weight (2 k k, k k C), bias (2 k k,)), small enough to move bins a little."""
    return [
        (rng.normal(0, std, (2 * k * k, k * k * channels)), rng.normal(0, std, 2 * k * k))
        for _ in range(levels)
    ]


def custom_args(maps, rois, offsets=None, dtype=np.float32):
    """NDArray inputs in the op's argument order."""
    arrays = list(maps)
    for weight, bias in offsets or ():
        arrays += [weight, bias]
    return [mx.nd.array(a, dtype=dtype) for a in [*arrays, rois]]


def run_op(maps, rois, offsets=None, dtype=np.float32, **attrs):
    args = custom_args(maps, rois, offsets, dtype)
    out, _ = mx.nd.Custom(
        *args, op_type="fpn_roi_pooling", with_deformable=offsets is not None, **attrs
    )
    return out.asnumpy()


def dpsroi_attrs(stride, channels, k=K, sample_per_part=4):
    return {
        "spatial_scale": 1.0 / stride,
        "output_dim": channels,
        "group_size": 1,
        "pooled_size": k,
        "part_size": k,
        "sample_per_part": sample_per_part,
    }


def single_roi_reference(
    maps,
    rois,
    offsets=None,
    dtype=np.float32,
    k=K,
    levels=None,
    strides=STRIDES,
    trans_std=0.1,
    sample_per_part=4,
):
    """Each RoI alone through the single-level ops on the map of its reference level."""
    out = []
    for i, roi in enumerate(rois):
        level = reference_level(roi) if levels is None else levels[i]
        data = mx.nd.array(maps[level], dtype=dtype)
        one = mx.nd.array(roi[None], dtype=dtype)
        stride = strides[level]
        if offsets is None:
            pooled = mx.nd.ROIPooling(data, one, pooled_size=(k, k), spatial_scale=1.0 / stride)
        else:
            attrs = dpsroi_attrs(stride, data.shape[1], k, sample_per_part)
            weight, bias = (mx.nd.array(a, dtype=dtype) for a in offsets[level])
            offset_t = ops.deformable_psroi_pooling(data, one, no_trans=True, **attrs)
            trans = mx.nd.FullyConnected(offset_t, weight, bias, num_hidden=2 * k * k)
            trans = trans.reshape((-1, 2, k, k))
            pooled = ops.deformable_psroi_pooling(data, one, trans, trans_std=trans_std, **attrs)
        out.append(pooled.asnumpy())
    return np.concatenate(out)


# ---------------------------------------------------------------------------------------------
# The level rule


def test_levels_match_the_paper_formula():
    rng = np.random.default_rng(0)
    num = 2000
    size = np.exp(rng.uniform(np.log(2), np.log(3000), num))
    ratio = np.exp(rng.uniform(-np.log(4), np.log(4), num))
    x1, y1 = rng.uniform(-50, 800, num), rng.uniform(-50, 800, num)
    w, h = size * np.sqrt(ratio), size / np.sqrt(ratio)
    rois = np.stack([rng.integers(0, 3, num), x1, y1, x1 + w - 1, y1 + h - 1], axis=1)
    got = fpn_levels(rois)
    assert got.dtype == np.int64 and got.shape == (num,)
    np.testing.assert_array_equal(got, [reference_level(r) for r in rois])
    assert set(got) == {0, 1, 2, 3}
    # float32 RoIs (what the network passes) and bare (R, 4) boxes give the same levels.
    rois32 = rois.astype(np.float32)
    np.testing.assert_array_equal(fpn_levels(rois32), [reference_level(r) for r in rois32])
    np.testing.assert_array_equal(fpn_levels(rois[:, 1:]), got)


def box(w, h, x1=10.0, y1=-3.0):
    """A box of w x h pixels with the +1 convention."""
    return [0, x1, y1, x1 + w - 1, y1 + h - 1]


# (w, h) -> level index (0..3 = P2..P5): exact boundaries at 112, 224 and 448 (sqrt(w h)).
BOUNDARIES = [
    ((224, 224), 2),  # the canonical scale: P4
    ((223.9, 224), 1),
    ((223, 224), 1),
    ((448, 112), 2),  # non-square: sqrt(w h) = 224
    ((112, 112), 1),
    ((111.9, 112), 0),
    ((111, 111), 0),
    ((447.9, 448), 2),
    ((448, 448), 3),
    ((2000, 5000), 3),  # clipped at P5
    ((1, 1), 0),  # clipped at P2
    ((0.01, 0.01), 0),
]


@pytest.mark.parametrize("size, level", BOUNDARIES, ids=[f"{w}x{h}" for (w, h), _ in BOUNDARIES])
def test_level_boundaries(size, level):
    roi = np.array([box(*size)])
    assert reference_level(roi[0]) == level
    assert fpn_levels(roi).tolist() == [level]
    assert fpn_levels(roi.astype(np.float32)).tolist() == [level]


def test_degenerate_rois_go_to_the_first_level():
    rois = np.array(
        [
            [0, 5, 5, 4, 4],  # w = h = 0
            [0, 5, 5, 4, 100],  # w = 0
            [0, 10, 10, 0, 0],  # inverted: w = h = -9
            [0, np.nan, 0, 100, 100],
            [0, 0, 0, np.inf, np.inf],  # infinite: the last level
        ]
    )
    assert fpn_levels(rois).tolist() == [0, 0, 0, 0, 3]
    assert fpn_levels(np.zeros((0, 5))).shape == (0,)


def test_canonical_scale_and_level_and_number_of_levels():
    rois = np.array([box(28, 28), box(27, 28), box(14, 14), box(13.9, 14), box(56, 56)])
    assert fpn_levels(rois, 4, 28, 2).tolist() == [2, 1, 1, 0, 3]
    assert fpn_levels(rois, 4, 28, 1).tolist() == [1, 0, 0, 0, 2]
    assert fpn_levels(rois, 3, 28, 2).tolist() == [2, 1, 1, 0, 2]


# ---------------------------------------------------------------------------------------------
# Forward


def test_arguments_follow_the_strides():
    prop = FPNROIPoolingProp()
    assert prop.list_arguments() == ["data_p2", "data_p3", "data_p4", "data_p5", "rois"]
    prop = FPNROIPoolingProp(with_deformable="True", feat_strides="(8, 16)")
    assert prop.list_arguments() == [
        "data_p3",
        "data_p4",
        "offset_weight_p3",
        "offset_bias_p3",
        "offset_weight_p4",
        "offset_bias_p4",
        "rois",
    ]
    assert prop.list_outputs() == ["output", "offset"]


def test_plain_pooling_is_roi_pooling_of_each_roi_on_its_level():
    rng = np.random.default_rng(1)
    levels = [3, 0, 2, 1, 0, 0, 3, 1, 2, 2, 0, 1, 3, 2, 0, 1, 1, 3]
    maps, rois = make_maps(rng), make_rois(rng, levels)
    out = run_op(maps, rois)
    assert out.shape == (len(levels), 3, K, K) and out.dtype == np.float32
    np.testing.assert_array_equal(out, single_roi_reference(maps, rois))
    # Through a bound executor too.
    sym = fpn_roi_pooling_symbol(
        [mx.sym.var(f"p{i}") for i in range(2, 6)], mx.sym.var("rois"), deformable=False
    )
    args = dict(zip(sym.list_arguments(), custom_args(maps, rois)))
    exe = sym.bind(mx.cpu(), args)
    exe.forward(is_train=False)
    np.testing.assert_array_equal(exe.outputs[0].asnumpy(), out)


def test_a_level_without_rois_and_all_rois_on_one_level():
    rng = np.random.default_rng(2)
    maps = make_maps(rng)
    for levels in ([0, 1, 3, 1, 0], [2, 2, 2], [3], [0, 0, 0, 0]):
        rois = make_rois(rng, levels)
        np.testing.assert_array_equal(run_op(maps, rois), single_roi_reference(maps, rois))


def test_deformable_with_zero_offsets_is_deformable_pooling_without_offsets():
    rng = np.random.default_rng(3)
    channels = 4
    levels = [1, 3, 0, 2, 2, 0, 1, 3, 0]
    maps, rois = make_maps(rng, channels), make_rois(rng, levels)
    zeros = [(np.zeros_like(w), np.zeros_like(b)) for w, b in make_offsets(rng, channels)]
    out = run_op(maps, rois, zeros)
    want = np.concatenate(
        [
            ops.deformable_psroi_pooling(
                mx.nd.array(maps[level]),
                mx.nd.array(roi[None]),
                no_trans=True,
                **dpsroi_attrs(STRIDES[level], channels),
            ).asnumpy()
            for roi, level in zip(rois, levels)
        ]
    )
    np.testing.assert_allclose(out, want, rtol=1e-6, atol=1e-6)
    # ... which is not plain RoI pooling.
    assert np.abs(out - single_roi_reference(maps, rois)).max() > 0.1


def test_deformable_with_offsets_is_the_single_level_composition():
    rng = np.random.default_rng(4)
    channels = 3
    levels = [2, 0, 3, 1, 0, 2, 3, 1, 1, 0]
    maps, rois = make_maps(rng, channels), make_rois(rng, levels)
    offsets = make_offsets(rng, channels, std=0.1)
    for dtype, tol in ((np.float64, 1e-10), (np.float32, 1e-5)):
        out = run_op(maps, rois, offsets, dtype)
        assert out.dtype == dtype
        want = single_roi_reference(maps, rois, offsets, dtype)
        np.testing.assert_allclose(out, want, rtol=tol, atol=tol)
    zero = run_op(maps, rois, [(0 * w, 0 * b) for w, b in offsets])
    assert np.abs(out - zero).max() > 0.01  # the offsets moved the bins


def test_offset_output_is_each_rois_offsets_in_roi_order():
    """The second output: the (R, 2, k, k) offsets each RoI's bins moved by (its level's FC on
    the unshifted pooling), zeros without offsets; the demo draws the bins from them."""
    rng = np.random.default_rng(6)
    channels = 3
    levels = [3, 0, 2, 1, 0, 2]
    maps, rois = make_maps(rng, channels), make_rois(rng, levels)
    offsets = make_offsets(rng, channels, std=0.1)
    args = custom_args(maps, rois, offsets, np.float64)
    _, got = mx.nd.Custom(*args, op_type="fpn_roi_pooling", with_deformable=True)
    for i, (roi, level) in enumerate(zip(rois, levels)):
        data = mx.nd.array(maps[level], dtype=np.float64)
        attrs = dpsroi_attrs(STRIDES[level], channels)
        offset_t = ops.deformable_psroi_pooling(data, mx.nd.array(roi[None], dtype=np.float64),
                                                no_trans=True, **attrs)  # fmt: skip
        weight, bias = (mx.nd.array(a, dtype=np.float64) for a in offsets[level])
        want = mx.nd.FullyConnected(offset_t, weight, bias, num_hidden=2 * K * K)
        np.testing.assert_allclose(got[i].asnumpy(), want.asnumpy().reshape(2, K, K), atol=1e-12)
    _, plain = mx.nd.Custom(*custom_args(maps, rois), op_type="fpn_roi_pooling")
    assert plain.shape == (len(rois), 2, K, K) and not plain.asnumpy().any()


def small_case(rng, channels=2, image=(64, 96)):
    """Maps of a 64 x 96 image and RoIs for canonical scale 28 (levels at 14, 28 and 56):
    sizes 10, 70, 20, 40, 8x12, 25x30, 80x50 -> levels 0, 3, 1, 2, 0, 1, 3, both images."""
    sizes = [(10, 10), (70, 70), (20, 20), (40, 40), (8, 12), (25, 30), (80, 50)]
    rois = np.array([box(w, h, *rng.uniform(-4, 40, 2)) for w, h in sizes])
    rois[:, 0] = np.arange(len(rois)) % 2
    levels = [0, 3, 1, 2, 0, 1, 3]
    assert [reference_level(r, canonical_scale=28) for r in rois] == levels
    return make_maps(rng, channels, image=image), rois, levels


def test_attributes_reach_the_pooling():
    """pooled_size, canonical_scale / canonical_level, trans_std and sample_per_part."""
    rng = np.random.default_rng(5)
    channels, k = 2, 3
    maps, rois, levels = small_case(rng, channels)
    attrs = {"pooled_size": k, "canonical_scale": 28, "trans_std": 0.3, "sample_per_part": 2}
    offsets = make_offsets(rng, channels, k=k, std=0.2)
    out = run_op(maps, rois, offsets, np.float64, **attrs)
    assert out.shape == (len(levels), channels, k, k)
    want = single_roi_reference(
        maps, rois, offsets, np.float64, k=k, levels=levels, trans_std=0.3, sample_per_part=2
    )
    np.testing.assert_allclose(out, want, rtol=1e-10, atol=1e-10)
    plain = run_op(maps, rois, None, np.float64, pooled_size=k, canonical_scale=28)
    want = single_roi_reference(maps, rois, dtype=np.float64, k=k, levels=levels)
    np.testing.assert_array_equal(plain, want)
    # canonical_level 1: every RoI one level finer (P5 unused).
    finer = run_op(
        maps, rois, None, np.float64, pooled_size=k, canonical_scale=28, canonical_level=1
    )
    finer_levels = [max(level - 1, 0) for level in levels]
    want = single_roi_reference(maps, rois, dtype=np.float64, k=k, levels=finer_levels)
    np.testing.assert_array_equal(finer, want)


# ---------------------------------------------------------------------------------------------
# Gradients through bound executors


def reference_symbol(levels, deformable, channels, k=K, strides=STRIDES):
    """The pooling written as a graph of single-level ops: RoIs of level l come in as
    ``rois_l``; the output rows are level after level (in RoI order within a level)."""
    pooled = []
    for level in sorted(set(levels)):
        name = f"p{round(math.log2(strides[level]))}"
        data, rois = mx.sym.var(f"data_{name}"), mx.sym.var(f"rois_{level}")
        if not deformable:
            pooled.append(
                mx.sym.ROIPooling(
                    data, rois, pooled_size=(k, k), spatial_scale=1.0 / strides[level]
                )
            )
            continue
        attrs = dpsroi_attrs(strides[level], channels, k)
        offset_t = ops.deformable_psroi_pooling(data, rois, no_trans=True, **attrs)
        trans = mx.sym.FullyConnected(
            offset_t,
            mx.sym.var(f"offset_weight_{name}"),
            mx.sym.var(f"offset_bias_{name}"),
            num_hidden=2 * k * k,
        )
        trans = mx.sym.Reshape(trans, shape=(-1, 2, k, k))
        pooled.append(ops.deformable_psroi_pooling(data, rois, trans, trans_std=0.1, **attrs))
    return pooled[0] if len(pooled) == 1 else mx.sym.concat(*pooled, dim=0)


def op_symbol(deformable, **attrs):
    names = ["data_p2", "data_p3", "data_p4", "data_p5"]
    inputs = {n: mx.sym.var(n) for n in names}
    if deformable:
        for p in ("p2", "p3", "p4", "p5"):
            inputs[f"offset_weight_{p}"] = mx.sym.var(f"offset_weight_{p}")
            inputs[f"offset_bias_{p}"] = mx.sym.var(f"offset_bias_{p}")
    return mx.sym.Custom(
        op_type="fpn_roi_pooling",
        rois=mx.sym.var("rois"),
        with_deformable=deformable,
        **inputs,
        **attrs,
    )[0]


def bind_with_grads(sym, values, dtype, grad_req="write", fill=0.0):
    """Binds ``sym`` with ``values`` (numpy) and gradient buffers filled with ``fill``."""
    args = {n: mx.nd.array(values[n], dtype=dtype) for n in sym.list_arguments()}
    grads = {n: mx.nd.full(a.shape, fill, dtype=dtype) for n, a in args.items()}
    return sym.bind(mx.cpu(), args, args_grad=grads, grad_req=grad_req)


def op_values(maps, rois, offsets=None):
    values = {f"data_p{i + 2}": m for i, m in enumerate(maps)}
    for i, (weight, bias) in enumerate(offsets or ()):
        values[f"offset_weight_p{i + 2}"], values[f"offset_bias_p{i + 2}"] = weight, bias
    values["rois"] = rois
    return values


@pytest.mark.parametrize("deformable", [False, True], ids=["plain", "deformable"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_executor_gradients_match_the_reference_graph(deformable, dtype):
    rng = np.random.default_rng(6)
    channels = 3
    levels = [2, 0, 3, 0, 1, 3, 2, 0, 1, 0, 3, 1]
    maps, rois = make_maps(rng, channels), make_rois(rng, levels)
    offsets = make_offsets(rng, channels, std=0.1) if deformable else None
    values = op_values(maps, rois, offsets)
    head = rng.standard_normal((len(levels), channels, K, K))

    exe = bind_with_grads(op_symbol(deformable), values, dtype, fill=7.0)
    exe.forward(is_train=True)
    exe.backward(mx.nd.array(head, dtype=dtype))
    got = {n: g.asnumpy() for n, g in exe.grad_dict.items()}

    order = np.argsort(levels, kind="stable")
    ref_sym = reference_symbol(levels, deformable, channels)
    ref_values = dict(values)
    for level in set(levels):
        ref_values[f"rois_{level}"] = rois[[i for i in order if levels[i] == level]]
    ref = bind_with_grads(ref_sym, ref_values, dtype)
    ref.forward(is_train=True)
    np.testing.assert_array_equal(exe.outputs[0].asnumpy()[order], ref.outputs[0].asnumpy())
    ref.backward(mx.nd.array(head[order], dtype=dtype))

    tol = 1e-10 if dtype == np.float64 else 1e-5
    assert not got["rois"].any()
    for name, want in ref.grad_dict.items():
        if name.startswith("rois_"):
            continue
        assert got[name].dtype == dtype
        assert np.abs(got[name]).max() > 0.01, f"{name} got no gradient"
        np.testing.assert_allclose(got[name], want.asnumpy(), rtol=tol, atol=tol, err_msg=name)


@pytest.mark.parametrize("deformable", [False, True], ids=["plain", "deformable"])
def test_levels_without_rois_get_zero_gradients_and_add_accumulates(deformable):
    rng = np.random.default_rng(7)
    channels = 2
    levels = [0, 3, 0, 3, 3]  # nothing on P3, P4
    maps, rois = make_maps(rng, channels), make_rois(rng, levels)
    offsets = make_offsets(rng, channels) if deformable else None
    values = op_values(maps, rois, offsets)
    head = mx.nd.array(rng.standard_normal((len(levels), channels, K, K)))
    sym = op_symbol(deformable)

    exe = bind_with_grads(sym, values, np.float32, fill=3.0)  # 'write' overwrites the 3s
    exe.forward(is_train=True)
    exe.backward(head)
    written = {n: g.asnumpy() for n, g in exe.grad_dict.items()}
    for name, grad in written.items():
        if "p3" in name or "p4" in name or name == "rois":
            assert not grad.any(), name
        else:
            assert np.abs(grad).max() > 0.01, name

    exe = bind_with_grads(sym, values, np.float32, grad_req="add", fill=3.0)
    for _ in range(2):
        exe.forward(is_train=True)
        exe.backward(head)
    for name, grad in exe.grad_dict.items():
        np.testing.assert_allclose(
            grad.asnumpy(), 3.0 + 2 * written[name], rtol=1e-5, atol=1e-5, err_msg=name
        )


def test_gradients_follow_the_latest_forward():
    """Nothing is kept from one forward to the next: backward uses the inputs it is given."""
    rng = np.random.default_rng(8)
    channels = 2
    maps, rois = make_maps(rng, channels), make_rois(rng, [1, 2, 0])
    offsets = make_offsets(rng, channels)
    values = op_values(maps, rois, offsets)
    head = mx.nd.array(rng.standard_normal((3, channels, K, K)))
    sym = op_symbol(True)
    other = op_values(
        make_maps(rng, channels), make_rois(rng, [3, 3, 0]), make_offsets(rng, channels)
    )

    fresh = bind_with_grads(sym, values, np.float32)
    fresh.forward(is_train=True)
    fresh.backward(head)
    exe = bind_with_grads(sym, other, np.float32)
    exe.forward(is_train=True)
    exe.backward(head)
    for name, value in values.items():
        exe.arg_dict[name][:] = value
    exe.forward(is_train=False)
    exe.forward(is_train=True)
    exe.backward(head)
    np.testing.assert_array_equal(exe.outputs[0].asnumpy(), fresh.outputs[0].asnumpy())
    for name, grad in exe.grad_dict.items():
        np.testing.assert_array_equal(grad.asnumpy(), fresh.grad_dict[name].asnumpy(), name)


def central_differences(exe, name, coords, head, eps=1e-6):
    """d sum(output * head) / d arg[name] at ``coords`` (float64 executor)."""
    arg = exe.arg_dict[name]
    base = arg.asnumpy()
    out = []
    for c in coords:
        values = []
        for step in (eps, -eps):
            moved = base.copy()
            moved[c] += step
            arg[:] = moved
            exe.forward(is_train=False)
            values.append(float((exe.outputs[0].asnumpy() * head).sum()))
        out.append((values[0] - values[1]) / (2 * eps))
    arg[:] = base
    return np.array(out)


@pytest.mark.parametrize("deformable", [False, True], ids=["plain", "deformable"])
def test_gradients_match_central_differences(deformable):
    """float64, small maps (canonical scale 28, pooled size 3): at the largest analytic
    gradients and at random points of every input."""
    rng = np.random.default_rng(9)
    channels, k = 2, 3
    maps, rois, levels = small_case(rng, channels)
    offsets = make_offsets(rng, channels, k=k, std=0.2) if deformable else None
    values = op_values(maps, rois, offsets)
    head = rng.standard_normal((len(rois), channels, k, k))

    exe = bind_with_grads(
        op_symbol(deformable, pooled_size=k, canonical_scale=28), values, np.float64
    )
    exe.forward(is_train=True)
    exe.backward(mx.nd.array(head, dtype=np.float64))
    checked = 0
    for name, grad in exe.grad_dict.items():
        if name == "rois":
            continue
        grad = grad.asnumpy()
        largest = np.argsort(-np.abs(grad).ravel())[:6]
        spread = rng.choice(grad.size, 6, replace=False)
        coords = [np.unravel_index(i, grad.shape) for i in np.concatenate([largest, spread])]
        want = central_differences(exe, name, coords, head)
        np.testing.assert_allclose(
            [grad[c] for c in coords], want, rtol=1e-6, atol=1e-7, err_msg=name
        )
        assert np.abs(want).max() > 1e-3, name
        checked += 1
    assert checked == (12 if deformable else 4)


def check_rois_outside_the_batch():
    """RoIs whose batch index is not an image (2 of 2, -1, 0.5, NaN) give zero rows and no
    gradient; the others are pooled as without them. Run in a subprocess: an exception in a
    custom op's forward can kill the process."""
    rng = np.random.default_rng(11)
    channels = 2
    maps, rois = make_maps(rng, channels), make_rois(rng, [0, 3, 1, 2, 0, 1, 2, 3])
    bad = [1, 2, 5, 6]
    rois[bad, 0] = [2, -1, 0.5, np.nan]
    good = [i for i in range(len(rois)) if i not in bad]
    head = rng.standard_normal((len(rois), channels, K, K))
    for deformable in (False, True):
        offsets = make_offsets(rng, channels) if deformable else None
        results = []
        for rows in (list(range(len(rois))), good):
            exe = bind_with_grads(
                op_symbol(deformable), op_values(maps, rois[rows], offsets), np.float64, fill=1.0
            )
            exe.forward(is_train=True)
            exe.backward(mx.nd.array(head[rows], dtype=np.float64))
            grads = {n: g.asnumpy() for n, g in exe.grad_dict.items() if n != "rois"}
            results.append((exe.outputs[0].asnumpy(), grads))
        (out, grads), (want, want_grads) = results
        assert not out[bad].any()
        np.testing.assert_array_equal(out[good], want)
        for name, grad in grads.items():
            np.testing.assert_allclose(grad, want_grads[name], rtol=1e-12, atol=1e-12)
    print("checked")


def test_rois_outside_the_batch_give_zeros_with_a_warning():
    code = "from tests.lib.test_fpn_roi_pooling import check_rois_outside_the_batch as f\nf()"
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "checked" in proc.stdout
    assert (
        "fpn_roi_pooling: 4 RoIs with a batch index that is not an image of the batch (0 .. 1) "
        "give zeros: [" in proc.stderr
    )


# ---------------------------------------------------------------------------------------------
# The builder


def test_builder_names_lr_mult_and_shapes():
    feats = [mx.sym.var(f"fpn_p{i}") for i in range(2, 6)]
    sym = fpn_roi_pooling_symbol(feats, mx.sym.var("rois"), deformable=True)
    offsets = [f"offset_p{i}_{kind}" for i in range(2, 6) for kind in ("weight", "bias")]
    assert sym.list_arguments() == [f"fpn_p{i}" for i in range(2, 6)] + offsets + ["rois"]
    assert sym.list_outputs() == ["fpn_roi_pooling_output"]
    attrs = sym.attr_dict()
    for name in offsets:
        assert attrs[name]["__lr_mult__"] == "0.01"
    assert attrs["fpn_roi_pooling"]["with_deformable"] == "True"
    shapes = {f"fpn_p{i}": (1, 256, 800 >> i, 1216 >> i) for i in range(2, 6)}
    arg_shapes, out_shapes, _ = sym.infer_shape(rois=(400, 5), **shapes)
    arg_shapes = dict(zip(sym.list_arguments(), arg_shapes))
    for i in range(2, 6):  # the original networks' shapes
        assert arg_shapes[f"offset_p{i}_weight"] == (98, 12544)
        assert arg_shapes[f"offset_p{i}_bias"] == (98,)
    assert out_shapes == [(400, 256, 7, 7)]
    # One dtype for all, the offset parameters included (a Module binds them so).
    arg_types, out_types, _ = sym.infer_type(fpn_p2=np.float32)
    assert set(arg_types) == {np.float32} and out_types == [np.float32]
    # Partial inference: nothing known about the maps yet.
    arg_shapes, out_shapes, _ = sym.infer_shape_partial(rois=(400, 5))
    assert out_shapes == [()]

    plain = fpn_roi_pooling_symbol(
        feats, mx.sym.var("rois"), deformable=False, name="pool", pooled_size=5
    )
    assert plain.list_arguments() == [f"fpn_p{i}" for i in range(2, 6)] + ["rois"]
    _, out_shapes, _ = plain.infer_shape(rois=(30, 5), **shapes)
    assert out_shapes == [(30, 256, 5, 5)]
    three = fpn_roi_pooling_symbol(feats[1:], mx.sym.var("rois"), True, feat_strides=(8, 16, 32))
    assert three.list_arguments()[3:5] == ["offset_p3_weight", "offset_p3_bias"]
    assert three.attr_dict()["fpn_roi_pooling"]["canonical_level"] == "1"  # still P4
    assert sym.attr_dict()["fpn_roi_pooling"]["canonical_level"] == "2"


def test_builder_rejects_bad_values():
    feats = [mx.sym.var(f"fpn_p{i}") for i in range(2, 6)]
    with pytest.raises(ValueError, match="fpn_roi_pooling: 3 feature maps for 4 feat_strides"):
        fpn_roi_pooling_symbol(feats[:3], mx.sym.var("rois"), True)
    with pytest.raises(ValueError, match="attribute pooled_size must be an integer >= 1"):
        fpn_roi_pooling_symbol(feats, mx.sym.var("rois"), True, pooled_size=0)
    with pytest.raises(ValueError, match="feat_strides must be increasing powers of 2"):
        fpn_roi_pooling_symbol(feats, mx.sym.var("rois"), True, feat_strides=(4, 8, 32, 16))


def test_module_update_reads_the_offset_lr_mult():
    """One SGD step of a Module: the offset parameters move by lr * 0.01 * gradient."""
    rng = np.random.default_rng(10)
    channels = 2
    maps, rois = make_maps(rng, channels, batch=1), make_rois(rng, [0, 1, 2, 3], batch=1)
    feats = [mx.sym.var(f"fpn_p{i}") for i in range(2, 6)]
    pooled = fpn_roi_pooling_symbol(feats, mx.sym.var("rois"), deformable=True)
    loss = mx.sym.MakeLoss(mx.sym.sum(pooled * mx.sym.var("head")))
    data_names = [f"fpn_p{i}" for i in range(2, 6)] + ["rois", "head"]
    head = rng.standard_normal((4, channels, K, K))
    arrays = [*maps, rois, head]
    mod = mx.mod.Module(loss, data_names=data_names, label_names=None, context=mx.cpu())
    # The RoIs and head have no batch axis (no "N" in the layout): they are not images.
    shapes = [
        mx.io.DataDesc(n, a.shape, layout="NCHW" if n.startswith("fpn") else "")
        for n, a in zip(data_names, arrays)
    ]
    mod.bind(data_shapes=shapes)
    initial = {
        f"offset_p{i}_{kind}": mx.nd.array(rng.normal(0, 0.05, s))
        for i in range(2, 6)
        for kind, s in (("weight", (98, 49 * channels)), ("bias", (98,)))
    }
    mod.init_params(arg_params=initial)
    mod.init_optimizer(optimizer="sgd", optimizer_params={"learning_rate": 1.0, "wd": 0})
    mod.forward_backward(mx.io.DataBatch([mx.nd.array(a) for a in arrays]))
    grads = {
        n: g[0].asnumpy() for n, g in zip(mod._exec_group.param_names, mod._exec_group.grad_arrays)
    }
    mod.update()
    params, _ = mod.get_params()
    for name, before in initial.items():
        step = before.asnumpy() - params[name].asnumpy()
        assert np.abs(grads[name]).max() > 0.01, name
        np.testing.assert_allclose(step, 0.01 * grads[name], rtol=1e-4, atol=1e-7, err_msg=name)
