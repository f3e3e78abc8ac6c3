"""The standalone GPU check, ``make -C operator_cxx gpu-check`` (operator_cxx/tests/gpu_check.cc).

The check links the CUDA launchers and the CPU loops without MXNet and compares the two on a GPU.
Here (no GPU) it must still build and run its CPU side, and that CPU side must compute what the
op library computes through MXNet on the same inputs: then its GPU-vs-CPU comparison on a GPU
machine compares the kernels with the library's own results.
"""

import json
import os
import shutil
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest

import lib.ops as ops

pytestmark = pytest.mark.skipif(
    shutil.which(os.environ.get("NVCC", "nvcc")) is None,
    reason="nvcc is not installed, so the GPU check cannot be built here",
)

WRAPPERS = {
    "DeformableConvolution": ops.deformable_convolution,
    "ModulatedDeformableConvolution": ops.modulated_deformable_convolution,
    "PSROIPooling": ops.psroi_pooling,
    "DeformablePSROIPooling": ops.deformable_psroi_pooling,
}


@pytest.fixture(scope="module")
def check(tmp_path_factory):
    """Builds the check with the one command, runs it with --dump; (process, manifest, dir)."""
    build = tmp_path_factory.mktemp("gpu_check")
    dump = build / "dump"
    cmd = [
        "make",
        "-C",
        str(ops.SOURCE_DIR),
        "-j2",
        "gpu-check",
        f"BUILD={build}",
        f"PYTHON={sys.executable}",
        f"GPU_CHECK_ARGS=--no-bench --dump {dump}",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    manifest = dump / "manifest.json"
    cases = json.loads(manifest.read_text())["cases"] if manifest.is_file() else None
    return proc, cases, dump


def _load(dump, entry):
    return np.fromfile(dump / entry["file"], dtype=np.float32).reshape(entry["shape"])


def _attrs(attrs):
    return {k: tuple(v) if isinstance(v, list) else v for k, v in attrs.items()}


def test_check_builds_and_runs(check):
    proc, cases, _ = check
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert cases is not None, out
    for case in cases:
        assert f"  {case['name']} " in out
    assert "FAILED" not in out and "MISMATCH" not in out, out
    assert "tensors compared" in out and "all passed" in out
    if "no CUDA device is present" in out:  # CI, and this machine
        assert "gpu_check: CPU side ok" in out
    else:  # a GPU machine: the comparisons ran and passed
        assert "GPU vs CPU, float32" in out and "gpu_check: ok" in out


def test_cases_cover_the_issue(check):
    """All four ops, 1 and 4 offset groups, stride 2 and dilation 2, pooling with and without
    offsets, and samples outside the image."""
    _, cases, dump = check
    assert {c["op"] for c in cases} == set(WRAPPERS)
    conv = [c["attrs"] for c in cases if "Convolution" in c["op"]]
    assert {a.get("num_deformable_group", 1) for a in conv} >= {1, 4}
    assert any(a.get("stride") == [2, 2] and a.get("dilate") == [2, 2] for a in conv)
    dpsroi = [c["attrs"] for c in cases if c["op"] == "DeformablePSROIPooling"]
    assert {a["no_trans"] for a in dpsroi} == {True, False}
    for case in cases:
        data = _load(dump, case["inputs"][0])
        if "Convolution" in case["op"]:  # some samples outside the image
            offset = _load(dump, case["inputs"][1])
            assert np.nanmax(np.abs(offset)) > 2
        else:  # rois reaching outside the feature map
            rois = _load(dump, case["inputs"][1])
            scale = case["attrs"]["spatial_scale"]
            assert rois[:, 1].min() < 0 or rois[:, 3].max() * scale > data.shape[3]


def test_cpu_side_matches_the_op_library(check):
    """Every output and gradient of the check's CPU side equals the library op's (same float32
    inputs and output gradient, through the lib.ops wrappers and mx.autograd)."""
    _, cases, dump = check
    assert cases, "the check wrote no cases"
    mismatches = []
    for case in cases:
        inputs = {e["name"]: mx.nd.array(_load(dump, e), dtype=np.float32) for e in case["inputs"]}
        for x in inputs.values():
            x.attach_grad()
        with mx.autograd.record():
            out = WRAPPERS[case["op"]](**inputs, **_attrs(case["attrs"]))
        out.backward(mx.nd.array(_load(dump, case["head"]), dtype=np.float32))
        ours = {"out": out.asnumpy()}
        ours.update({f"grad_{name}": x.grad.asnumpy() for name, x in inputs.items()})
        assert [e["name"] for e in case["cpu"]] == list(ours)
        for entry in case["cpu"]:
            want = ours[entry["name"]]
            got = _load(dump, entry)
            scale = max(1.0, float(np.abs(want).max(initial=0)))
            err = float(np.abs(got - want).max(initial=0)) / scale
            if not err <= 1e-5:  # OpenBLAS may block a GEMM differently inside MXNet
                mismatches.append(f"{case['name']} {entry['name']}: max diff {err:.3g} * scale")
    assert not mismatches, "\n".join(mismatches)


def test_seed_draws_other_inputs(check, tmp_path):
    """--seed N gives the same cases with other random inputs (the CPU side still passes); a bad
    seed is a usage error."""
    _, cases, dump = check
    binary = dump.parent / "gpu-check" / "gpu_check"
    proc = subprocess.run(
        [str(binary), "--no-bench", "--seed", "7", "--dump", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0 and "FAILED" not in proc.stdout, proc.stdout
    seeded = json.loads((tmp_path / "manifest.json").read_text())["cases"]
    assert [c["name"] for c in seeded] == [c["name"] for c in cases]
    for a, b in zip(cases, seeded):
        x, y = _load(dump, a["inputs"][0]), _load(tmp_path, b["inputs"][0])
        assert x.shape == y.shape and not np.array_equal(x, y), a["name"]
    bad = subprocess.run([str(binary), "--seed", "x"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "usage" in bad.stderr
