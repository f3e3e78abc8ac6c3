"""lib.utils.run_lock: one run per output folder."""

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from lib.utils.run_lock import LOCK_NAME, FolderLockedError, RunLock, _process_start

HOLD = (
    "import sys, time; sys.path.insert(0, {repo!r});"
    "from lib.utils.run_lock import RunLock;"
    "lock = RunLock({folder!r}, 'training'); lock.acquire(); print('held', flush=True);"
    "time.sleep(60)"
)
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _holder(folder):
    """A live process of another PID holding ``folder``; stop it with .kill()."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD.format(repo=REPO, folder=str(folder))],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


def _write_lock(folder, **holder):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / LOCK_NAME).write_text(json.dumps(holder))


def test_lock_names_its_holder_and_is_released(tmp_path):
    folder = tmp_path / "out"
    with RunLock(str(folder), "training") as lock:
        holder = json.loads((folder / LOCK_NAME).read_text())
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
        assert holder["what"] == "training" and lock.path == str(folder / LOCK_NAME)
        # a second run (here: this same live process) is refused, naming the first
        with pytest.raises(FolderLockedError, match=rf"in use by training \(PID {os.getpid()}"):
            RunLock(str(folder), "testing").acquire()
        assert (folder / LOCK_NAME).exists()  # the refused run did not remove the lock
    assert not (folder / LOCK_NAME).exists()
    assert not folder.exists()  # created for the lock and left empty: removed again


def test_a_folder_with_files_stays(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "config.yaml").write_text("x")
    with RunLock(str(tmp_path / "out")):
        pass
    assert os.listdir(tmp_path / "out") == ["config.yaml"]


def test_a_live_process_in_another_pid_blocks_the_folder(tmp_path):
    proc = _holder(tmp_path)
    try:
        with pytest.raises(FolderLockedError, match=rf"PID {proc.pid} on {socket.gethostname()}"):
            RunLock(str(tmp_path)).acquire()
    finally:
        proc.kill()
        proc.wait()


def test_the_lock_of_a_killed_run_is_taken_over_with_a_note(tmp_path):
    proc = _holder(tmp_path)
    proc.kill()  # SIGKILL: no clean-up, the lock file stays
    proc.wait()
    assert (tmp_path / LOCK_NAME).exists()
    with RunLock(str(tmp_path)) as lock:
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert lock.notes == [
        f"took over the lock {tmp_path / LOCK_NAME} of a run that is gone: training (PID "
        f"{proc.pid} on {socket.gethostname()}, started {lock.notes[0].split('started ')[1]}"
    ]


def test_a_recycled_pid_is_not_the_holder(tmp_path):
    # this process's PID, but another start time: the holder died and the PID was reused
    start = _process_start(os.getpid())
    assert start is not None  # Linux
    _write_lock(tmp_path, pid=os.getpid(), pid_start=str(int(start) + 1),
                host=socket.gethostname(), started=time.time(), command="old")  # fmt: skip
    lock = RunLock(str(tmp_path))
    lock.acquire()
    assert "a run that is gone" in lock.notes[0]


def test_a_lock_from_another_host_is_refused_and_says_what_to_delete(tmp_path):
    _write_lock(tmp_path, pid=1, host="elsewhere", started=time.time(), command="train")
    with pytest.raises(FolderLockedError) as err:
        RunLock(str(tmp_path)).acquire()
    assert "PID 1 on elsewhere" in str(err.value)
    assert f"another host; if it is gone, delete {tmp_path / LOCK_NAME}" in str(err.value)


def test_an_unreadable_lock_file_is_refused_not_ignored(tmp_path):
    (tmp_path / LOCK_NAME).write_text("{half")
    with pytest.raises(FolderLockedError, match="lock file .* cannot be read") as err:
        RunLock(str(tmp_path)).acquire()
    assert f"If no run uses the folder, delete {tmp_path / LOCK_NAME}" in str(err.value)
