"""One run per output folder: a lock file naming the run that holds the folder.

Two trainings (or tests) started into the same output folder would overwrite each other's
checkpoints, config and detections, and write one interleaved log. A run therefore holds
``<folder>/.run.lock`` while it works: a JSON file with the holder's PID, the start time of that
process (so a recycled PID is not mistaken for the holder), host, start time and command line.

* A second run into the folder stops at once with :class:`FolderLockedError`, naming the first.
* A lock whose holder is gone (same host, no process with that PID and start time) is taken over,
  and :attr:`RunLock.notes` says so for the run's log: a run killed with ``kill -9`` does not
  block the folder for ever.
* A lock held from another host cannot be checked from here: it is refused like a live one, and
  the message says which file to delete once that run is known to be gone.

The lock is created with ``O_CREAT | O_EXCL``, so of two runs starting together exactly one gets
it. Releasing it removes the file, and the folders the lock had to create when they are still
empty (a run that stops at start-up leaves nothing behind).

Example:
    >>> with RunLock(output_dir, "training"):
    ...     train()
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from typing import Any

__all__ = ["LOCK_NAME", "FolderLockedError", "RunLock"]

LOCK_NAME = ".run.lock"


class FolderLockedError(FileExistsError):
    """Another run holds the output folder."""


def _process_start(pid: int) -> str | None:
    """The start time of process ``pid`` in clock ticks since boot (Linux), else None."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            stat = f.read()
    except OSError:
        return None
    # Field 22; the command name (field 2) is in parentheses and may hold spaces.
    fields = stat[stat.rfind(")") + 2 :].split()
    return fields[19] if len(fields) > 19 else None


def _alive(holder: dict[str, Any]) -> bool:
    """Whether the process that wrote ``holder`` (on this host) still runs."""
    pid = holder.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        pass
    recorded, now = holder.get("pid_start"), _process_start(pid)
    return recorded is None or now is None or recorded == now


def _describe(holder: dict[str, Any]) -> str:
    started = holder.get("started")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if started else "?"
    pid, host = holder.get("pid", "?"), holder.get("host", "?")
    return (
        f"{holder.get('what', 'a run')} (PID {pid} on {host}, started {when}: "
        f"{holder.get('command', '?')})"
    )


class RunLock:
    """Holds ``<directory>/.run.lock`` for one run (a context manager; see the module docstring).

    Args:
        directory: the output folder; created if missing.
        what: what the run does, for the messages ("training", "testing").
    """

    def __init__(self, directory: str, what: str = "a run") -> None:
        self.directory = os.path.abspath(directory)
        self.path = os.path.join(self.directory, LOCK_NAME)
        self.what = what
        self._created: list[str] = []
        self._held = False
        #: What acquiring did that the run's log should say (a stale lock taken over); the
        #: run logs these once its log is set up.
        self.notes: list[str] = []

    def _make_dirs(self) -> None:
        missing = []
        path = self.directory
        while not os.path.isdir(path):
            missing.append(path)
            parent = os.path.dirname(path)
            if parent == path:
                break
            path = parent
        os.makedirs(self.directory, exist_ok=True)
        self._created = missing  # deepest first

    def _read(self) -> dict[str, Any] | None:
        try:
            with open(self.path, encoding="utf-8") as f:
                holder = json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            holder = None
        return holder if isinstance(holder, dict) else {}

    def acquire(self) -> None:
        """Takes the lock, or raises :class:`FolderLockedError` naming its holder."""
        self._make_dirs()
        me = {
            "what": self.what,
            "pid": os.getpid(),
            "pid_start": _process_start(os.getpid()),
            "host": socket.gethostname(),
            "started": time.time(),
            "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
        }
        for _ in range(2):  # a second try after taking over a stale lock
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                holder = self._read()
                if holder is None:  # released in between
                    continue
                if holder and holder.get("host") == me["host"] and not _alive(holder):
                    self.notes.append(
                        f"took over the lock {self.path} of a run that is gone: {_describe(holder)}"
                    )
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(self.path)
                    continue
                self._release_dirs()
                if not holder:  # being written right now, or damaged
                    other = f"another run (its lock file {self.path} cannot be read)"
                    where = f" If no run uses the folder, delete {self.path}."
                else:
                    other = _describe(holder)
                    where = (
                        ""
                        if holder.get("host") == me["host"]
                        else f" It runs on another host; if it is gone, delete {self.path}."
                    )
                raise FolderLockedError(
                    f"{self.directory} is in use by {other}: two runs in one output folder "
                    "would overwrite each other's files. Wait for it to finish, or use another "
                    f"folder (--set output_path=...).{where}"
                ) from None
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(me, f)
            self._held = True
            return
        raise FolderLockedError(f"could not take the lock {self.path}: another run keeps taking it")

    def _release_dirs(self) -> None:
        for path in self._created:  # deepest first; only the ones still empty
            with contextlib.suppress(OSError):
                os.rmdir(path)
        self._created = []

    def release(self) -> None:
        """Removes the lock file (if this run holds it) and the folders it created, if empty."""
        if self._held:
            holder = self._read()
            if holder is not None and holder.get("pid") == os.getpid():
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path)
            self._held = False
        self._release_dirs()

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
