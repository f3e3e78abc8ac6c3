"""The CUDA sources compile (nvcc, no GPU needed): `make -C operator_cxx cuda-check`."""

import os
import shutil
import subprocess
import sys

import pytest

import lib.ops as ops


@pytest.mark.skipif(
    shutil.which(os.environ.get("NVCC", "nvcc")) is None,
    reason="nvcc is not installed, so the CUDA sources cannot be compiled here",
)
def test_cuda_sources_compile(tmp_path):
    # One architecture is enough to check that the device code compiles.
    cmd = [
        "make",
        "-C",
        str(ops.SOURCE_DIR),
        "-j2",
        "cuda-check",
        f"BUILD={tmp_path}",
        f"PYTHON={sys.executable}",
        "CUDA_ARCH=-gencode arch=compute_75,code=sm_75",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "cuda-check: compiled" in proc.stdout
    assert list(tmp_path.glob("cuda/*.cu.o"))
