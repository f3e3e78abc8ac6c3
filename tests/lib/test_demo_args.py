"""The demos' bad arguments, refused before any image is read and without a traceback.

Options that need no model (score threshold, warm-up runs, epoch, GPU, box count, the output
folder) are refused before the model is looked up: the tests give a config whose model does
not exist, so a check made later would print the missing-model message instead. The checks
that need the model's config (the offset group, a box's class) run before its parameters are
read: the tests give an empty ``.params`` file, which a later check would fail to read first.
"""

from __future__ import annotations

import pytest

from rfcn import deform_conv_demo, deform_psroi_demo
from rfcn import demo as rfcn_demo

RFCN_DCN = "experiments/rfcn/cfgs/synthetic_rfcn_dcn.yaml"


@pytest.fixture
def no_model(tmp_path):
    """``--cfg`` / ``--set`` arguments of a config that has no trained model."""
    return ["--cfg", RFCN_DCN, "--set", f"output_path={tmp_path / 'empty'}"]


@pytest.fixture
def empty_model(tmp_path):
    """``--cfg`` / ``--params`` arguments of a checkpoint that exists but cannot be read."""
    (tmp_path / "m-0000.params").write_bytes(b"")
    return ["--cfg", RFCN_DCN, "--params", str(tmp_path / "m"), "--out", str(tmp_path / "o")]


def _refused(main, args: list[str], capsys, one_line: bool = True) -> str:
    """Runs the demo; asserts exit status 2 and a message without traceback; returns it."""
    assert main(args) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    # where the traceback is: with --debug, or in a log of this process (of an earlier test)
    assert "Traceback" not in err and lines[-1].startswith("(the Python traceback is ")
    assert len(lines) == 2 or not one_line, err
    return err


@pytest.mark.parametrize(
    "main, option, value, allowed",
    [
        (rfcn_demo.main, "--thresh", "2", "in [0, 1], got 2"),
        (rfcn_demo.main, "--thresh", "-0.5", "in [0, 1], got -0.5"),
        (rfcn_demo.main, "--thresh", "nan", "in [0, 1], got nan"),
        (rfcn_demo.main, "--warmup", "-1", ">= 0, got -1"),
        (rfcn_demo.main, "--epoch", "-1", ">= 0, got -1"),
        (rfcn_demo.main, "--gpu", "-1", ">= 0, got -1"),
        (deform_psroi_demo.main, "--num_boxes", "0", ">= 1, got 0"),
        (deform_conv_demo.main, "--offset_group", "-1", ">= 0, got -1"),
    ],
)
def test_numeric_option_out_of_range(main, option, value, allowed, no_model, tmp_path, capsys):
    err = _refused(main, [*no_model, option, value, "--out", str(tmp_path / "o")], capsys)
    assert f"{option} must be {allowed}" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "main, option, value",
    [
        (rfcn_demo.main, "--thresh", "0"),
        (rfcn_demo.main, "--thresh", "1"),
        (rfcn_demo.main, "--warmup", "0"),
        (rfcn_demo.main, "--epoch", "0"),
        (deform_psroi_demo.main, "--num_boxes", "1"),
        (deform_conv_demo.main, "--offset_group", "0"),
    ],
)
def test_numeric_option_at_its_bound(main, option, value, no_model, tmp_path, capsys):
    """Accepted: the demo goes on to look for the model (there is none here)."""
    args = [*no_model, option, value, "--out", str(tmp_path / "o")]
    err = _refused(main, args, capsys, one_line=False)  # the missing model's message
    assert "no checkpoint of" in err and "must be" not in err


def test_out_naming_a_file(no_model, tmp_path, capsys):
    existing = tmp_path / "pictures"
    existing.write_text("a file\n")
    err = _refused(rfcn_demo.main, [*no_model, "--out", str(existing)], capsys)
    assert f"output folder {existing} (--out): it exists and is a file" in err

    err = _refused(rfcn_demo.main, [*no_model, "--out", str(existing / "sub")], capsys)
    assert f"output folder {existing / 'sub'} (--out) cannot be created: {existing} is" in err


def test_offset_group_beyond_the_layers(empty_model, capsys):
    err = _refused(deform_conv_demo.main, [*empty_model, "--offset_group", "4"], capsys)
    # the synthetic Deformable R-FCN: 4 offset groups in res5a-c
    assert "--offset_group must be in [0, 3]" in err and "got 4" in err
    assert "res5c_branch2b" in err


@pytest.mark.parametrize("cls", ["5", "0", "-1"])
def test_box_class_out_of_range(cls, empty_model, capsys):
    args = [*empty_model, "--boxes", f"10,20,30,40;1,2,30,40,{cls}"]
    err = _refused(deform_psroi_demo.main, args, capsys)
    assert f"class {cls} of box (1, 2, 30, 40) is out of range" in err
    assert "1..4 (circle, square, triangle, star)" in err


@pytest.mark.parametrize(
    "boxes, message",
    [
        ("30,20,10,40", "must have x1 <= x2 and y1 <= y2"),
        ("10,40,30,20", "must have x1 <= x2 and y1 <= y2"),
        ("10,20,30,40,1.5", "must be an integer"),
        ("10,20,inf,40", "boxes must be 'x1,y1,x2,y2[,class];...'"),
    ],
)
def test_malformed_boxes(boxes, message, no_model, capsys):
    with pytest.raises(SystemExit) as exit_:
        deform_psroi_demo.main([*no_model, "--boxes", boxes])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "argument --boxes" in err and message in err and "Traceback" not in err


def test_malformed_points(no_model, capsys):
    with pytest.raises(SystemExit) as exit_:
        deform_conv_demo.main([*no_model, "--points", "10,nan"])
    assert exit_.value.code == 2
    assert "points must be 'x,y;x,y;...'" in capsys.readouterr().err
