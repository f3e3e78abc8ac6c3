"""``python -m lib.tools.inspect_model --params F`` on a file that is not a checkpoint.

The message names the file and the reason, and the file is read before the network is built;
run as a command, it is one line and exit status 1 (no traceback). (The checks of readable
checkpoints are in the architectures' tests, ``tests/symbols/test_*_params.py``.)
"""

from __future__ import annotations

import re
import subprocess
import sys

import mxnet as mx
import pytest

from lib.tools import inspect_model
from tests.e2e.detection import REPO

CFG = "experiments/rfcn/cfgs/synthetic_rfcn_dcn.yaml"


def _params_bytes(tmp_path) -> bytes:
    path = tmp_path / "good.params"
    mx.nd.save(str(path), {"arg:a_weight": mx.nd.zeros((64, 64)), "aux:b_var": mx.nd.ones(3)})
    return path.read_bytes()


@pytest.mark.parametrize(
    "name, content, reason",
    [
        ("notes.params", b"just some text\n", "not an MXNet .params file"),
        ("truncated.params", "half", "truncated or corrupt"),
        ("empty.params", b"", "(0 bytes)"),
    ],
)
def test_unreadable_params_file(name, content, reason, tmp_path):
    if content == "half":
        good = _params_bytes(tmp_path)
        content = good[: len(good) // 2]
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ValueError) as err:
        inspect_model.main(["--cfg", CFG, "--params", str(path)])
    message = str(err.value)
    assert message.startswith(f"cannot read --params {path} ({len(content)} bytes)")
    assert reason in message and message.endswith(": Invalid NDArray file format)")


def test_missing_params_file(tmp_path):
    path = tmp_path / "missing.params"
    with pytest.raises(FileNotFoundError, match=f"^--params {re.escape(str(path))}: no such file$"):
        inspect_model.main(["--cfg", CFG, "--params", str(path)])


def test_params_file_of_a_list(tmp_path):
    path = tmp_path / "list.params"
    mx.nd.save(str(path), [mx.nd.zeros(2)])
    with pytest.raises(ValueError, match="holds a list of arrays, not an arg:/aux: dict"):
        inspect_model.main(["--cfg", CFG, "--params", str(path)])


def test_the_command_prints_one_line(tmp_path):
    path = tmp_path / "notes.params"
    path.write_text("just some text\n")
    proc = subprocess.run(
        [sys.executable, "-m", "lib.tools.inspect_model", "--cfg", CFG, "--params", str(path)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 1 and not proc.stdout and "Traceback" not in proc.stderr
    assert proc.stderr.splitlines()[0].startswith(
        f"inspect_model: error: cannot read --params {path} (15 bytes): not an MXNet .params "
        "file, or truncated or corrupt (MXNet: "
    )


def test_a_demo_network_with_given_rois_is_described():
    """The deformable PS-RoI demo network reads given ``rois``: its shapes are inferred too."""
    report = inspect_model.describe(
        inspect_model.config_from_args(
            inspect_model.argparse.Namespace(
                cfg="experiments/rfcn/cfgs/deform_psroi_demo.yaml", overrides=None
            )  # fmt: skip
        )
    )
    assert report["arg_params"]["rfcn_cls_offset_t_weight"] == [378, 1024, 1, 1]
