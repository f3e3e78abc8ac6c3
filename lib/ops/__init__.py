"""The compiled operator library (``operator_cxx/``): loader, build info and thin wrappers.

This module is the only Python that loads ``operator_cxx/build/libdcn_ops.so``. :func:`load` loads
it once per process, checks that every op in :data:`EXPECTED_OPS` registered, and raises a
``RuntimeError`` that says to run ``sh init.sh`` when the library is missing or older than a
source file under ``operator_cxx/``. Set ``DCN_OPS_LIB=/path/to/libdcn_ops.so`` to load another
build (no staleness check then). The wrappers below (and :mod:`lib.ops.gluon`) call :func:`load`
themselves; call it yourself before ``mx.sym.load`` / ``Module.load`` of a graph that uses the ops.

The ops are registered under plain names (``mx.nd.DeformableConvolution``,
``mx.sym.ModulatedDeformableConvolution``, ...) beside MXNet's untouched ``_contrib_`` built-ins.
Library ops take their inputs positionally only and do not create missing weight variables, so
use the wrappers, which do both with the original keyword names.

Symbol inputs must have a known number of dimensions when MXNet infers shapes (an MXNet 1.9.1
bug corrupts the heap otherwise, see :func:`shape_hint`); the wrappers give the variables they
create, and bare input variables, partial shapes such as ``(-1, -1, -1, -1)``.

Gradients are always overwritten: an external MXNet library never learns ``grad_req``, so
``grad_req='add'`` is not supported for these ops (accumulate in Python instead).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any, Optional, Union

import mxnet as mx

logger = logging.getLogger(__name__)

# Every op the library must register. Add new ops here (and to operator_cxx/register.cc).
EXPECTED_OPS: tuple[str, ...] = (
    "DeformableConvolution",
    "ModulatedDeformableConvolution",
    "DeformablePSROIPooling",
    "PSROIPooling",
)

REPO_ROOT = Path(__file__).resolve().parents[2]
SOURCE_DIR = REPO_ROOT / "operator_cxx"
DEFAULT_LIBRARY = SOURCE_DIR / "build" / "libdcn_ops.so"
ENV_VAR = "DCN_OPS_LIB"
_SOURCE_SUFFIXES = (".h", ".cuh", ".cc", ".cu")

_lock = threading.Lock()
_loaded: Optional[Path] = None

Data = Union[mx.sym.Symbol, mx.nd.NDArray]


def library_path() -> Path:
    """The library that :func:`load` uses: ``$DCN_OPS_LIB`` or ``operator_cxx/build``."""
    env = os.environ.get(ENV_VAR)
    return Path(env).expanduser().resolve() if env else DEFAULT_LIBRARY


def _recorded_build(path: Path) -> dict[str, Any]:
    meta = path.parent / "build_info.json"
    return json.loads(meta.read_text()) if meta.is_file() else {}


def _newest_source(with_cuda: bool = True) -> tuple[float, Optional[Path]]:
    """Newest source of the library under operator_cxx/ (CUDA sources count for a CUDA build)."""
    suffixes = tuple(s for s in _SOURCE_SUFFIXES if with_cuda or "cu" not in s)
    newest, path = 0.0, None
    for root, dirs, files in os.walk(SOURCE_DIR):
        dirs[:] = [d for d in dirs if d not in ("build", "tests") and not d.startswith(".")]
        for name in files:
            if name == "Makefile" or name.endswith(suffixes):
                p = Path(root) / name
                mtime = p.stat().st_mtime
                if mtime > newest:
                    newest, path = mtime, p
    return newest, path


def _registered_ops() -> set[str]:
    return set(mx.operator.get_all_registered_operators())


def load() -> Path:
    """Loads the operator library once per process and returns its path.

    Raises:
        RuntimeError: the library is missing, stale (older than a source under operator_cxx/,
            when not overridden by $DCN_OPS_LIB) or lacks one of :data:`EXPECTED_OPS`.
    """
    global _loaded
    with _lock:
        if _loaded is not None:
            return _loaded
        path = library_path()
        if not path.is_file():
            how = f" (${ENV_VAR} points there)" if os.environ.get(ENV_VAR) else ""
            raise RuntimeError(
                f"operator library not built: {path} does not exist{how} - run `sh init.sh` "
                "(or `make -C operator_cxx`) from the repository root"
            )
        if not os.environ.get(ENV_VAR):
            with_cuda = _recorded_build(path).get("with_cuda", True)
            newest, source = _newest_source(with_cuda=bool(with_cuda))
            if newest > path.stat().st_mtime:
                raise RuntimeError(
                    f"operator library is stale: {source} is newer than {path} - run "
                    "`sh init.sh` (or `make -C operator_cxx`) to rebuild it"
                )
        mx.library.load(str(path), verbose=False)
        missing = [op for op in EXPECTED_OPS if op not in _registered_ops()]
        if missing:
            raise RuntimeError(
                f"operator library {path} did not register {', '.join(missing)} - rebuild it "
                "with `sh init.sh`"
            )
        _loaded = path
        logger.info("loaded operator library %s", path)
        return path


def build_info() -> dict[str, Any]:
    """How the library was built: path, mtime, sha256, with_cuda (from build/build_info.json),
    and whether this process has loaded it."""
    path = library_path()
    info: dict[str, Any] = {"path": str(path), "exists": path.is_file(), "loaded": _loaded}
    if not path.is_file():
        return info
    info["mtime"] = path.stat().st_mtime
    info["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    info["with_cuda"] = None
    info.update(
        {k: v for k, v in _recorded_build(path).items() if k not in info or k == "with_cuda"}
    )
    info["ops"] = [op for op in EXPECTED_OPS if _loaded is not None and op in _registered_ops()]
    info["loaded"] = str(_loaded) if _loaded is not None else None
    return info


# ---------------------------------------------------------------------------------------------
# Thin wrappers (mx.sym and mx.nd) with the original keyword names

_CONV_ATTRS_DOC = """
    Attributes (the table of ``operator_cxx/include/dcn/geometry.h``):

    ====================  ========  =====================================================
    name                  default   meaning
    ====================  ========  =====================================================
    kernel                required  (kh, kw) kernel size; an int k means (k, k)
    num_filter            required  F, number of output channels
    stride                (1, 1)    (sh, sw)
    dilate                (1, 1)    (dh, dw) dilation of the kernel taps
    pad                   (0, 0)    (ph, pw) implicit zero padding
    num_group             1         weight groups; C and F divisible by it
    num_deformable_group  1         offset (and mask) groups dg; C divisible by it
    no_bias               False     drop the bias input
    workspace             1024      cap in MB on the temporary memory of one call (fewer
                                    images / output rows per chunk; error if one row
                                    does not fit)
    layout                None      None or 'NCHW' (the only layout implemented)
    im2col_step           64        most images per im2col + GEMM chunk; S = min(step, N)
                                    must divide N (as in the original)
    ====================  ========  =====================================================

    Sampling (the updated DCNv2 rule): tap (i, j) of output (ho, wo) samples
    ``h = ho*sh - ph + i*dh + dy``, ``w = wo*sw - pw + j*dw + dx`` bilinearly; the sample counts
    when -1 < h < H and -1 < w < W, its corners outside the image read as 0, and anything else
    (including NaN / inf / huge offsets) gives 0 with zero gradient. MXNet's
    ``_contrib_DeformableConvolution`` uses the old rule (0 <= h < H, last row replicated).

    Offset layout, shape (N, dg*2*kh*kw, Ho, Wo), K = kh*kw, per deformable group g::

        channel   g*2K+0   g*2K+1   g*2K+2   g*2K+3   ...  g*2K+2K-2      g*2K+2K-1
        meaning   dy(0,0)  dx(0,0)  dy(0,1)  dx(0,1)  ...  dy(kh-1,kw-1)  dx(kh-1,kw-1)

    i.e. ``[y0, x0, y1, x1, ...]`` with taps in row-major order; group g covers input channels
    [g*C/dg, (g+1)*C/dg).
"""

_MASK_DOC = """
    Mask layout, shape (N, dg*kh*kw, Ho, Wo)::

        channel   g*K+0   g*K+1   ...  g*K+K-1
        meaning   m(0,0)  m(0,1)  ...  m(kh-1,kw-1)

    Each sample is multiplied by its mask value (DCNv2 modulation).
"""


def _pair(v) -> tuple[int, int]:
    if isinstance(v, str):
        v = tuple(int(x) for x in v.strip("()[] ").split(",") if x.strip())
    if isinstance(v, int):
        return (v, v)
    v = tuple(int(x) for x in v)
    return (v[0], v[0]) if len(v) == 1 else (v[0], v[1])


def _conv_attrs(
    kernel,
    num_filter,
    stride,
    dilate,
    pad,
    num_group,
    num_deformable_group,
    no_bias,
    workspace,
    layout,
    im2col_step,
) -> dict[str, Any]:
    attrs = dict(
        kernel=kernel,
        num_filter=num_filter,
        stride=stride,
        dilate=dilate,
        pad=pad,
        num_group=num_group,
        num_deformable_group=num_deformable_group,
        no_bias=no_bias,
        workspace=workspace,
        im2col_step=im2col_step,
    )
    if layout is not None:
        attrs["layout"] = layout
    return attrs


def shape_hint(sym: mx.sym.Symbol, shape: tuple) -> mx.sym.Symbol:
    """Gives a bare variable without a shape a partial shape (-1 = unknown dimension).

    MXNet 1.9.1 corrupts its heap when it infers the shapes of a library op one of whose inputs
    has a completely unknown shape (unknown number of dimensions): its shape buffer is sized
    with ndim = -1 for such inputs. Every input of a library op must therefore have a known
    number of dimensions by the time the op's shapes are inferred; outputs of other layers have
    it, bare variables get it here.
    """
    if sym.get_children() is None and sym.attr("__shape__") is None:
        sym._set_attr(__shape__=str(tuple(shape)))
    return sym


def _full_name(name: Optional[str], op: str) -> str:
    # The full name (with any mx.name.Prefix), resolved once: variables are named after it, and
    # the op is then created under a plain NameManager so that a prefix is not applied twice.
    manager = getattr(mx.name.NameManager._current, "value", None) or mx.name.NameManager()
    return manager.get(name, op.lower())


def _symbol(op: str, args: list, shapes: list, attrs: dict, name: str) -> mx.sym.Symbol:
    for arg, shape in zip(args, shapes):
        shape_hint(arg, shape)
    with mx.name.NameManager():
        return getattr(mx.sym, op)(*args, name=name, **attrs)


def _call(
    op: str, inputs: list, weight, bias, attrs: dict, name: Optional[str], input_shapes: list
):
    """Calls a convolution op with positional inputs, creating weight / bias for symbols."""
    load()
    no_bias = attrs["no_bias"]
    if isinstance(no_bias, str):
        no_bias = no_bias.strip() in ("True", "true", "1")
    attrs = {k: v for k, v in attrs.items() if v is not None}  # the library reports missing ones
    if isinstance(inputs[0], mx.sym.Symbol):
        name = _full_name(name, op)
        if weight is None:
            weight = mx.sym.var(f"{name}_weight")
        if bias is None and not no_bias:
            bias = mx.sym.var(f"{name}_bias")
        args = [*inputs, weight] + ([] if no_bias else [bias])
        kh, kw = _pair(attrs.get("kernel", (-1, -1)))
        num_filter = int(attrs.get("num_filter", -1))
        shapes = input_shapes + [(num_filter, -1, kh, kw), (num_filter,)]
        return _symbol(op, args, shapes, attrs, name)
    if weight is None or (bias is None and not no_bias):
        raise ValueError(f"{op}: NDArray calls need weight (and bias unless no_bias=True)")
    args = [*inputs, weight] + ([] if no_bias else [bias])
    return getattr(mx.nd, op)(*args, **attrs)


def _call_pool(op: str, inputs: list, attrs: dict, name: Optional[str]):
    load()
    attrs = {k: v for k, v in attrs.items() if v is not None}
    if isinstance(inputs[0], mx.sym.Symbol):
        shapes = [(-1, -1, -1, -1), (-1, 5), (-1, -1, -1, -1)]
        return _symbol(op, inputs, shapes, attrs, _full_name(name, op))
    return getattr(mx.nd, op)(*inputs, **attrs)


def deformable_convolution(
    data: Data,
    offset: Data,
    weight: Optional[Data] = None,
    bias: Optional[Data] = None,
    kernel=None,
    num_filter: Optional[int] = None,
    stride=(1, 1),
    dilate=(1, 1),
    pad=(0, 0),
    num_group: int = 1,
    num_deformable_group: int = 1,
    no_bias: bool = False,
    workspace: int = 1024,
    layout: Optional[str] = None,
    im2col_step: int = 64,
    name: Optional[str] = None,
) -> Data:
    """Deformable convolution (Dai et al., ICCV 2017) as ``mx.sym`` or ``mx.nd``.

    Inputs: data (N, C, H, W), offset (N, dg*2*kh*kw, Ho, Wo), weight (F, C/num_group, kh, kw),
    bias (F,) unless no_bias. For symbols, missing weight / bias become variables
    ``{name}_weight`` / ``{name}_bias`` (the original parameter names). Output (N, F, Ho, Wo).
    """
    attrs = _conv_attrs(
        kernel,
        num_filter,
        stride,
        dilate,
        pad,
        num_group,
        num_deformable_group,
        no_bias,
        workspace,
        layout,
        im2col_step,
    )
    k = _pair(kernel) if kernel is not None else (-1, -1)
    dg2k = num_deformable_group * 2 * k[0] * k[1] if kernel is not None else -1
    shapes = [(-1, -1, -1, -1), (-1, dg2k, -1, -1)]
    return _call("DeformableConvolution", [data, offset], weight, bias, attrs, name, shapes)


def modulated_deformable_convolution(
    data: Data,
    offset: Data,
    mask: Data,
    weight: Optional[Data] = None,
    bias: Optional[Data] = None,
    kernel=None,
    num_filter: Optional[int] = None,
    stride=(1, 1),
    dilate=(1, 1),
    pad=(0, 0),
    num_group: int = 1,
    num_deformable_group: int = 1,
    no_bias: bool = False,
    workspace: int = 1024,
    layout: Optional[str] = None,
    im2col_step: int = 64,
    name: Optional[str] = None,
) -> Data:
    """Modulated deformable convolution (DCNv2, Zhu et al., CVPR 2019) as ``mx.sym`` or ``mx.nd``.

    Inputs: data (N, C, H, W), offset (N, dg*2*kh*kw, Ho, Wo), mask (N, dg*kh*kw, Ho, Wo),
    weight (F, C/num_group, kh, kw), bias (F,) unless no_bias. Output (N, F, Ho, Wo).
    """
    attrs = _conv_attrs(
        kernel,
        num_filter,
        stride,
        dilate,
        pad,
        num_group,
        num_deformable_group,
        no_bias,
        workspace,
        layout,
        im2col_step,
    )
    k = _pair(kernel) if kernel is not None else (-1, -1)
    dgk = num_deformable_group * k[0] * k[1] if kernel is not None else -1
    shapes = [(-1, -1, -1, -1), (-1, 2 * dgk if dgk > 0 else -1, -1, -1), (-1, dgk, -1, -1)]
    return _call(
        "ModulatedDeformableConvolution", [data, offset, mask], weight, bias, attrs, name, shapes
    )


def psroi_pooling(
    data: Data,
    rois: Data,
    spatial_scale: Optional[float] = None,
    output_dim: Optional[int] = None,
    pooled_size: Optional[int] = None,
    group_size: int = 0,
    name: Optional[str] = None,
) -> Data:
    """Position-sensitive RoI pooling (R-FCN), op ``PSROIPooling``, as ``mx.sym`` or ``mx.nd``.

    Inputs: data (N, output_dim * group_size**2, H, W), rois (R, 5) ``[batch, x1, y1, x2, y2]``
    in image pixels. Output (R, output_dim, pooled_size, pooled_size). Attributes and semantics
    (those of ``_contrib_PSROIPooling``) are documented in ``operator_cxx/ops/psroi_pooling.cc``;
    group_size 0 means pooled_size.
    """
    attrs = dict(
        spatial_scale=spatial_scale,
        output_dim=output_dim,
        pooled_size=pooled_size,
        group_size=group_size,
    )
    return _call_pool("PSROIPooling", [data, rois], attrs, name)


def deformable_psroi_pooling(
    data: Data,
    rois: Data,
    trans: Optional[Data] = None,
    spatial_scale: Optional[float] = None,
    output_dim: Optional[int] = None,
    group_size: Optional[int] = None,
    pooled_size: Optional[int] = None,
    part_size: int = 0,
    sample_per_part: int = 1,
    trans_std: float = 0.0,
    no_trans: bool = False,
    name: Optional[str] = None,
) -> Data:
    """Deformable PS-RoI pooling, op ``DeformablePSROIPooling``, as ``mx.sym`` or ``mx.nd``.

    Inputs: data (N, C, H, W), rois (R, 5), trans (R, 2 * num_classes, part_size, part_size)
    unless no_trans (then pass no trans). Output (R, output_dim, pooled_size, pooled_size).
    Attributes and semantics (those of ``_contrib_DeformablePSROIPooling``; trans channel
    2*cls is the x offset and 2*cls+1 the y offset, the opposite order to the convolution's
    offsets) are documented in ``operator_cxx/ops/psroi_pooling.cc``.
    """
    attrs = dict(
        spatial_scale=spatial_scale,
        output_dim=output_dim,
        group_size=group_size,
        pooled_size=pooled_size,
        part_size=part_size,
        sample_per_part=sample_per_part,
        trans_std=trans_std,
        no_trans=no_trans,
    )
    inputs = [data, rois] if trans is None else [data, rois, trans]
    return _call_pool("DeformablePSROIPooling", inputs, attrs, name)


deformable_convolution.__doc__ += _CONV_ATTRS_DOC
modulated_deformable_convolution.__doc__ += _CONV_ATTRS_DOC + _MASK_DOC

# The original spelling, for symbol code ported from mx.contrib.sym.DeformableConvolution.
DeformableConvolution = deformable_convolution
ModulatedDeformableConvolution = modulated_deformable_convolution

__all__ = [
    "EXPECTED_OPS",
    "build_info",
    "deformable_convolution",
    "deformable_psroi_pooling",
    "library_path",
    "load",
    "modulated_deformable_convolution",
    "psroi_pooling",
    "shape_hint",
]
