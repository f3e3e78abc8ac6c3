"""The loader of the operator library (lib.ops): registration check, build info, and the
messages for a missing or stale library."""

import os
import time

import mxnet as mx
import pytest

import lib.ops as ops


def test_every_expected_op_is_registered():
    path = ops.load()
    assert path == ops.library_path()
    registered = set(mx.operator.get_all_registered_operators())
    assert set(ops.EXPECTED_OPS) <= registered
    # The contrib built-ins stay intact beside ours.
    assert {
        "_contrib_DeformableConvolution",
        "_contrib_ModulatedDeformableConvolution",
    } <= registered
    assert ops.load() == path  # loaded once


def test_build_info():
    ops.load()
    info = ops.build_info()
    assert info["exists"] and info["loaded"] == str(ops.library_path())
    assert len(info["sha256"]) == 64 and info["mtime"] > 0
    assert isinstance(info["with_cuda"], bool)
    assert set(info["ops"]) == set(ops.EXPECTED_OPS)


@pytest.fixture
def unloaded(monkeypatch):
    monkeypatch.setattr(ops, "_loaded", None)


def test_missing_library_says_run_init(unloaded, monkeypatch, tmp_path):
    monkeypatch.setenv(ops.ENV_VAR, str(tmp_path / "libdcn_ops.so"))
    with pytest.raises(RuntimeError, match=r"operator library not built.*run `sh init.sh`"):
        ops.load()


def test_stale_library_says_rebuild(unloaded, monkeypatch, tmp_path):
    src = tmp_path / "operator_cxx"
    (src / "build").mkdir(parents=True)
    lib = src / "build" / "libdcn_ops.so"
    lib.write_bytes(b"")
    (src / "build" / "build_info.json").write_text('{"with_cuda": false}')
    kernel = src / "cpu" / "deform_conv.cc"
    kernel.parent.mkdir()
    kernel.write_text("// newer than the library")
    old = time.time() - 100
    os.utime(lib, (old, old))
    monkeypatch.delenv(ops.ENV_VAR, raising=False)
    monkeypatch.setattr(ops, "SOURCE_DIR", src)
    monkeypatch.setattr(ops, "DEFAULT_LIBRARY", lib)
    with pytest.raises(RuntimeError, match=r"stale: .*deform_conv.cc is newer.*sh init.sh"):
        ops.load()
    # A CUDA source does not make a CPU-only build stale.
    os.utime(kernel, (old - 10, old - 10))
    cu = src / "cuda" / "deform_conv.cu"
    cu.parent.mkdir()
    cu.write_text("// newer")
    assert ops._newest_source(with_cuda=False)[1] == kernel
    assert ops._newest_source(with_cuda=True)[1] == cu


def test_psroi_wrappers_build_symbols_and_run_on_ndarrays():
    data, rois, trans = mx.sym.var("data"), mx.sym.var("rois"), mx.sym.var("trans")
    plain = ops.psroi_pooling(
        data, rois, spatial_scale=0.0625, output_dim=2, pooled_size=3, name="psroi"
    )
    assert plain.list_arguments() == ["data", "rois"]
    assert plain.list_outputs() == ["psroi_output"]
    assert plain.infer_shape(data=(1, 18, 8, 8), rois=(4, 5))[1] == [(4, 2, 3, 3)]
    deformable = ops.deformable_psroi_pooling(
        data,
        rois,
        trans,
        spatial_scale=0.0625,
        output_dim=2,
        group_size=3,
        pooled_size=3,
        part_size=3,
        sample_per_part=2,
        trans_std=0.1,
        name="dpsroi",
    )
    assert deformable.list_arguments() == ["data", "rois", "trans"]
    shapes = dict(data=(1, 18, 8, 8), rois=(4, 5), trans=(4, 2, 3, 3))
    assert deformable.infer_shape(**shapes)[1] == [(4, 2, 3, 3)]
    rois_nd = mx.nd.array([[0, 0, 0, 63, 63]] * 4)
    out = ops.psroi_pooling(
        mx.nd.ones((1, 18, 8, 8)), rois_nd, spatial_scale=0.0625, output_dim=2, pooled_size=3
    )
    assert out.shape == (4, 2, 3, 3)
    no_trans = ops.deformable_psroi_pooling(
        mx.nd.ones((1, 18, 8, 8)),
        rois_nd,
        no_trans=True,
        spatial_scale=0.0625,
        output_dim=2,
        group_size=3,
        pooled_size=3,
    )
    assert no_trans.shape == (4, 2, 3, 3)
