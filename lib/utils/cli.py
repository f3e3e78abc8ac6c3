"""How every entry point ends on a user error: one message, a non-zero exit, no traceback.

A user error is a bad config, bad data, a missing or damaged file, a checkpoint that does not
fit, an output folder in use, a diverged training (:data:`USER_ERRORS`). An entry point's
``if __name__ == "__main__":`` block runs its ``main`` through :func:`run_cli`, which prints

    train_end2end.py: error: <the message>
    (the traceback is in output/.../x_2026-12-04-10-00-00.log; --debug prints it here)

to stderr and exits 1. The traceback goes to the run's log file when logging has started
(:mod:`lib.utils.logger`), never to the terminal; with ``--debug`` the error propagates as
usual. Any other exception is a bug and keeps its full traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["USER_ERRORS", "add_debug_arg", "report_user_error", "run_cli"]

#: Exceptions that report a user's mistake (their message says what to do), not a bug.
#: ``FloatingPointError`` is a training that diverged (``NonFiniteLossError``).
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, FloatingPointError)


def add_debug_arg(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Adds ``--debug``: errors show their Python traceback (see :func:`run_cli`)."""
    parser.add_argument(
        "--debug",
        action="store_true",
        help="on an error, print the Python traceback (by default it goes to the log only)",
    )
    return parser


def _log_file() -> str | None:
    # The file handler of lib.utils.logger.setup_logger, if logging has started.
    from lib.utils.logger import current_log_file

    return current_log_file()


def _write_traceback_to_log(log_file: str, err: BaseException) -> None:
    record = logging.LogRecord(
        "lib.utils.cli", logging.ERROR, __file__, 0, "stopped by an error: %s", (err,),
        (type(err), err, err.__traceback__),
    )  # fmt: skip
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler) and handler.baseFilename == log_file:
            handler.handle(record)


def report_user_error(err: BaseException, prog: str | None = None) -> None:
    """Prints ``<prog>: error: <message>`` and where the traceback is (see the module
    docstring), and writes the traceback to the run's log file if logging has started."""
    prog = prog or os.path.basename(sys.argv[0]) or "dcn"
    log_file = _log_file()
    if log_file:
        _write_traceback_to_log(log_file, err)
    print(f"{prog}: error: {str(err) or type(err).__name__}", file=sys.stderr)
    where = f"is in {log_file}; --debug prints it here" if log_file else "is shown with --debug"
    print(f"(the Python traceback {where})", file=sys.stderr)


def run_cli(
    main: Callable[[Sequence[str] | None], Any],
    argv: Sequence[str] | None = None,
    prog: str | None = None,
) -> int:
    """Runs ``main(argv)`` and returns the process exit status (see the module docstring).

    Args:
        main: the entry point's ``main``; its parser must accept ``--debug``
            (:func:`add_debug_arg`). An int it returns is the exit status; anything else is 0.
        argv: the arguments (default ``sys.argv[1:]``).
        prog: the program name in the message (default the script's file name).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        result = main(args)
    except USER_ERRORS as err:
        if "--debug" in args:
            raise
        report_user_error(err, prog)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    return result if isinstance(result, int) and not isinstance(result, bool) else 0
