"""A user error at an entry point: one message and exit status 1, the traceback in the log
(``--debug``: on the terminal). Run as a user runs them, in a subprocess."""

import glob
import os
import subprocess
import sys

import pytest

from tests.e2e.detection import REPO

CFG = "experiments/rfcn/cfgs/synthetic_rfcn.yaml"


def _run(*args, cwd=REPO):
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)  # fmt: skip


@pytest.mark.parametrize(
    "script",
    ["rfcn/train_end2end.py", "experiments/rfcn/rfcn_end2end_train_test.py", "deeplab/test.py"],
)
def test_a_config_error_is_one_message(script):
    proc = _run(script, "--cfg", CFG, "--set", "TRAIN.lr_stepp=4")
    assert proc.returncode == 1, proc.stderr
    name = os.path.basename(script)
    assert proc.stderr.splitlines() == [
        f"{name}: error: unknown config key TRAIN.lr_stepp in --set TRAIN.lr_stepp=4",
        "(the Python traceback is shown with --debug)",
    ]
    debug = _run(script, "--cfg", CFG, "--set", "TRAIN.lr_stepp=4", "--debug")
    assert debug.returncode == 1
    assert "Traceback (most recent call last)" in debug.stderr
    assert debug.stderr.rstrip().endswith("unknown config key TRAIN.lr_stepp in --set TRAIN.lr_s"
                                          "tepp=4")  # fmt: skip


def test_an_error_after_logging_started_puts_the_traceback_in_the_log(tmp_path):
    proc = _run("rfcn/test.py", "--cfg", CFG, "--epoch", "99", "--set", f"output_path={tmp_path}")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and errors[0].startswith("test.py: error: checkpoint ")
    assert "-0099.params does not exist" in errors[0]
    (log,) = glob.glob(str(tmp_path / "synthetic_rfcn" / "val" / "*.log"))
    assert f"(the Python traceback is in {log}; --debug prints it here)" in proc.stderr
    text = open(log).read()
    assert "ERROR lib.utils.cli: stopped by an error: checkpoint" in text
    assert "Traceback (most recent call last)" in text and "FileNotFoundError" in text
    # nothing of the failed test but its log
    assert sorted(os.listdir(tmp_path / "synthetic_rfcn" / "val")) == [os.path.basename(log)]


def test_a_missing_config_file_is_one_message(tmp_path):
    proc = _run("faster_rcnn/train_end2end.py", "--cfg", str(tmp_path / "nope.yaml"))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("train_end2end.py: error: [Errno 2] No such file or directory")
    assert str(tmp_path / "nope.yaml") in proc.stderr
