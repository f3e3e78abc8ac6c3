import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lib.nms.nms import (
    cpu_nms_wrapper,
    gpu_nms_wrapper,
    nms,
    py_nms_wrapper,
    py_softnms_wrapper,
    soft_nms,
)

THRESHOLDS = [0.0, 0.05, 0.1, 0.3, 0.5, 0.7, 0.9, 0.99, 1.0]


def iou(a, b):
    """IoU from the definition, "+1 pixel" convention, python floats."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]) + 1)
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]) + 1)
    area_a = (a[2] - a[0] + 1) * (a[3] - a[1] + 1)
    area_b = (b[2] - b[0] + 1) * (b[3] - b[1] + 1)
    return w * h / (area_a + area_b - w * h)


def brute_force_nms(dets, thresh, suppress_at_equal):
    """O(n^2) greedy NMS: by descending score (ties: lower index), keep a box unless a kept box
    overlaps it by more than thresh (or exactly thresh when suppress_at_equal)."""
    order = sorted(range(len(dets)), key=lambda i: (-dets[i, 4], i))
    keep = []
    for i in order:
        ovrs = [iou(dets[k], dets[i]) for k in keep]
        if not any(o > thresh or (suppress_at_equal and o == thresh) for o in ovrs):
            keep.append(i)
    return keep


def random_dets(seed, n=120):
    rng = np.random.RandomState(seed)
    xy = rng.uniform(0, 200, (n, 2))
    wh = rng.uniform(5, 80, (n, 2))
    dets = np.hstack((xy, xy + wh, rng.rand(n, 1)))
    dets[-10:] = dets[:10]  # exact duplicates: IoU 1 and score ties
    dets[:20, :4] = np.round(dets[:20, :4])  # integer boxes
    return dets


def test_cython_extension_is_built():
    try:
        importlib.import_module("lib.nms.cpu_nms")
    except ImportError as err:
        pytest.fail(f"lib.nms.cpu_nms is not built ({err}): run `sh init.sh`")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_nms_matches_brute_force(seed):
    dets = random_dets(seed)
    for thresh in THRESHOLDS:
        want_gt = brute_force_nms(dets, thresh, suppress_at_equal=False)
        want_ge = brute_force_nms(dets, thresh, suppress_at_equal=True)
        assert nms(dets, thresh) == want_gt, thresh
        assert py_nms_wrapper(thresh)(dets) == want_gt, thresh
        assert cpu_nms_wrapper(thresh)(dets) == want_ge, thresh
        assert cpu_nms_wrapper(thresh)(dets.astype(np.float32)) == brute_force_nms(
            dets.astype(np.float32).astype(np.float64), thresh, suppress_at_equal=True
        )


def test_nms_boundary_convention():
    # IoU exactly 0.5: the numpy nms keeps the second box (ovr <= thresh), cpu_nms drops it.
    dets = np.array([[0, 0, 9, 9, 0.9], [0, 0, 19, 9, 0.8]], dtype=np.float64)
    assert iou(dets[0], dets[1]) == 0.5
    assert nms(dets, 0.5) == [0, 1]
    assert cpu_nms_wrapper(0.5)(dets) == [0]


def test_nms_returns_python_ints_sorted_by_score():
    dets = np.array([[0, 0, 9, 9, 0.1], [50, 50, 59, 59, 0.9], [100, 0, 109, 9, 0.5]])
    for keep in (nms(dets, 0.3), cpu_nms_wrapper(0.3)(dets)):
        assert keep == [1, 2, 0]
        assert all(type(i) is int for i in keep)


def test_nms_empty_input():
    empty = np.zeros((0, 5), dtype=np.float32)
    assert nms(empty, 0.3) == []
    assert cpu_nms_wrapper(0.3)(empty) == []
    out = soft_nms(empty, 0.3)
    assert out.shape == (0, 5)
    assert py_softnms_wrapper(0.3)(empty).shape == (0, 5)


def test_nms_nan_scores_do_not_crash():
    dets = np.array(
        [[0, 0, 9, 9, np.nan], [0, 0, 9, 9, 0.5], [1, 1, 10, 10, 0.7], [50, 50, 60, 60, np.nan]]
    )
    # NaN scores go last: the 0.7 box suppresses its duplicates, NaN ones included
    assert nms(dets, 0.3) == [2, 3]
    assert cpu_nms_wrapper(0.3)(dets) == [2, 3]
    out = soft_nms(dets, 0.3)
    assert out.shape == (4, 5)
    assert out[0, 4] == 0.7


def test_soft_nms_linear_hand_worked():
    # A, B overlap 100/200 = 0.5; B, C overlap 100/300 = 1/3; A, C do not overlap.
    a, b, c = [0, 0, 9, 9, 0.9], [0, 0, 9, 19, 0.8], [0, 10, 9, 29, 0.7]
    dets = np.array([b, c, a])
    before = dets.copy()
    # thresh 0.3: A keeps 0.9; B -> 0.8 * (1 - 0.5) = 0.4, below C (0.7);
    # C keeps 0.7; B -> 0.4 * (1 - 1/3)
    out = soft_nms(dets, 0.3, method="linear")
    np.testing.assert_allclose(out[:, :4], np.array([a, c, b])[:, :4])
    np.testing.assert_allclose(out[:, 4], [0.9, 0.7, 0.8 * 0.5 * (2 / 3)], rtol=1e-12)
    np.testing.assert_array_equal(dets, before)  # input untouched
    # thresh 0.5: an overlap of exactly 0.5 is not decayed (ovr > thresh), nor is 1/3
    out = soft_nms(dets, 0.5, method="linear")
    np.testing.assert_allclose(out[:, 4], [0.9, 0.8, 0.7], rtol=1e-12)
    np.testing.assert_allclose(out[:, :4], np.array([a, b, c])[:, :4])


def test_soft_nms_gaussian_hand_worked():
    a, b, c = [0, 0, 9, 9, 0.9], [0, 0, 9, 19, 0.8], [0, 10, 9, 29, 0.7]
    dets = np.array([a, b, c])
    # sigma = thresh = 0.5: B -> 0.8 * exp(-0.5**2 / 0.5) = 0.485 < C; then
    # B -> 0.485 * exp(-(1/3)**2 / 0.5)
    want = [0.9, 0.7, 0.8 * np.exp(-0.5) * np.exp(-2 / 9)]
    out = soft_nms(dets, 0.5)
    np.testing.assert_allclose(out[:, 4], want, rtol=1e-12)
    np.testing.assert_allclose(out[:, :4], np.array([a, c, b])[:, :4])
    np.testing.assert_allclose(py_softnms_wrapper(0.5)(dets), out)
    # explicit sigma overrides thresh; max_dets truncates
    out = soft_nms(dets, 0.3, sigma=0.5, max_dets=2)
    np.testing.assert_allclose(out[:, 4], want[:2], rtol=1e-12)
    assert py_softnms_wrapper(0.5, max_dets=1)(dets).shape == (1, 5)


def test_soft_nms_scores_sorted_and_never_increase():
    dets = random_dets(3)
    for method in ("gaussian", "linear"):
        out = soft_nms(dets, 0.5, method=method)
        assert out.shape == dets.shape
        assert np.all(np.diff(out[:, 4]) <= 0)
        # each output row is an input row with a score no higher than before
        for row in out:
            src = np.where((dets[:, :4] == row[:4]).all(axis=1))[0]
            assert row[4] <= dets[src, 4].max() + 1e-12


def test_soft_nms_bad_method():
    with pytest.raises(ValueError, match="'gaussian' or 'linear'"):
        soft_nms(random_dets(0), 0.3, method="hard")


def test_gpu_nms_wrapper_clear_error_when_not_built(monkeypatch):
    monkeypatch.setitem(sys.modules, "lib.nms.gpu_nms", None)  # makes the import fail
    with pytest.raises(RuntimeError, match="GPU NMS was not built: install a CUDA MXNet"):
        gpu_nms_wrapper(0.3, 0)


def test_gpu_nms_matches_brute_force():
    pytest.importorskip("lib.nms.gpu_nms", reason="built only with DCN_WITH_CUDA=1")
    import mxnet as mx

    if mx.context.num_gpus() == 0:
        pytest.skip("no GPU")
    # > 64 boxes: several mask blocks
    dets = random_dets(4, n=300).astype(np.float32).astype(np.float64)
    for thresh in THRESHOLDS:
        want = brute_force_nms(dets, thresh, suppress_at_equal=False)
        assert gpu_nms_wrapper(thresh, 0)(dets) == want, thresh
    assert gpu_nms_wrapper(0.3, 0)(np.zeros((0, 5))) == []


@pytest.mark.skipif(
    shutil.which(os.environ.get("NVCC", "nvcc")) is None,
    reason="nvcc is not installed, so the CUDA NMS kernel cannot be compiled here",
)
def test_gpu_nms_kernel_compiles(tmp_path):
    """The CUDA NMS source compiles with nvcc (CI has nvcc but no GPU)."""
    src = Path(__file__).resolve().parents[2] / "lib" / "nms" / "nms_kernel.cu"
    obj = tmp_path / "nms_kernel.o"
    cmd = [
        os.environ.get("NVCC", "nvcc"),
        "-c",
        str(src),
        "-o",
        str(obj),
        "-arch=sm_75",
        "-Xcompiler",
        "-fPIC",
        "-std=c++17",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert obj.stat().st_size > 0
