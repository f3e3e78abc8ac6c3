"""The per-element functions that the CUDA kernels run agree with the CPU loops.

No GPU is needed: `make elem-check` compiles operator_cxx/tests/elem_consistency.cc, which runs
im2col_elem, col2im_elem, col2im_coord_elem, pad/unpad_elem and the weight permutation serially
(as the grid-stride kernels would) and compares them with the CPU launchers, which the other
tests check against the float64 reference.
"""

import shutil
import subprocess
import sys

import pytest

import lib.ops as ops


@pytest.mark.skipif(
    shutil.which("make") is None or shutil.which("g++") is None,
    reason="make and g++ are needed to build the check",
)
def test_cuda_element_functions_match_cpu_loops(tmp_path):
    cmd = [
        "make",
        "-C",
        str(ops.SOURCE_DIR),
        "elem-check",
        f"BUILD={tmp_path}",
        "OPT=-O1",
        f"PYTHON={sys.executable}",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "elem-check: ok" in proc.stdout
