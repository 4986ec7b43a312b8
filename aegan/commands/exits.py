"""How every command exits: the one ladder that turns every failure into one line on stderr (the traceback with
--debug) and an interruption, Ctrl-C or SIGTERM, into the command's own line (exit 130)."""

from __future__ import annotations

import argparse
import signal
import sys
import traceback
from collections.abc import Callable

from tqdm import tqdm

from aegan.core.errors import AeganError
from aegan.core.files import os_error_line


def sigterm_as_interrupt() -> None:
    """SIGTERM (scancel, kill, torchrun ending a rank) stops a command as Ctrl-C does: files are only replaced whole."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)


def during_interrupt(e: BaseException | None) -> bool:
    """Whether `e` was raised while an interruption unwound (Ctrl-C inside matplotlib's savefig left a transform
    half-computed, and its cleanup raised "Invalid affine transformation matrix" in place of the interruption)."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, KeyboardInterrupt):
            return True
        seen.add(id(e))
        e = e.__context__
    return False


def guarded(fn: Callable[[argparse.Namespace], int | None], args: argparse.Namespace,
            interrupted: Callable[[], str]) -> None:
    """Run a command, exiting with its status when it returns one; `interrupted()` says what it had done."""
    sigterm_as_interrupt()
    try:
        try:
            code = fn(args)
        finally:  # end any progress bar an error cut short, so that the error starts on a line of its own
            for bar in list(getattr(tqdm, "_instances", [])):
                bar.close()
    except KeyboardInterrupt:
        print(f"error: {interrupted()}", file=sys.stderr)
        sys.exit(130)
    except Exception as e:  # noqa: BLE001 - last resort: still one line unless --debug
        if getattr(args, "debug", False):
            traceback.print_exc()
        if during_interrupt(e):  # a library's cleanup that failed on state the signal cut short: still the signal
            print(f"error: {interrupted()}", file=sys.stderr)
            sys.exit(130)
        if isinstance(e, AeganError):
            line = str(e)
        elif isinstance(e, OSError):  # a folder the command could not make or a file it could not open
            line = os_error_line(e)
        else:
            line = f"unexpected {type(e).__name__}: {e} (rerun with --debug for the traceback)"
        print(f"error: {line}", file=sys.stderr)
        sys.exit(1)
    if code:
        sys.exit(code)
