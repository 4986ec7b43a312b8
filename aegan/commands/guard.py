"""How every command runs: its argument parser (a bad argument is one line), the one ladder that turns every failure
into one line on stderr (the traceback with --debug) and an interruption into the command's own line (exit 130),
SIGTERM taken as Ctrl-C, and the allocator set up for training's large blocks."""

from __future__ import annotations

import argparse
import ctypes
import signal
import sys
import traceback
from collections.abc import Callable

from tqdm import tqdm

from aegan.core.errors import AeganError
from aegan.core.files import os_error_line


class Parser(argparse.ArgumentParser):
    """Every command's argument parser: a bad argument is one line on stderr (exit 2), not the usage block."""

    def error(self, message: str) -> None:
        print(f"error: {message} (see --help)", file=sys.stderr)
        sys.exit(2)


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def sigterm_as_interrupt() -> None:
    """SIGTERM (scancel, kill, torchrun ending a rank) stops a command as Ctrl-C does: the command's own
    KeyboardInterrupt handling runs, and files are only ever replaced whole."""
    signal.signal(signal.SIGTERM, _raise_interrupt)


def _close_bars() -> None:
    """End any progress bar an error cut short, so that the error starts on a line of its own."""
    for bar in list(getattr(tqdm, "_instances", [])):
        bar.close()


def guarded(fn: Callable[[argparse.Namespace], int | None], args: argparse.Namespace,
            interrupted: Callable[[], str]) -> None:
    """Run a command, exiting with its status when it returns one: every failure one line on stderr (the traceback
    with --debug), Ctrl-C and SIGTERM exit 130 with `interrupted()`, the command's own line about what it had
    done."""
    tune_allocator()
    sigterm_as_interrupt()
    debug = getattr(args, "debug", False)
    try:
        try:
            code = fn(args)
        finally:
            _close_bars()
    except AeganError as e:
        if debug:
            traceback.print_exc()
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print(f"error: {interrupted()}", file=sys.stderr)
        sys.exit(130)
    except OSError as e:  # a folder the command could not make or a file it could not open
        if debug:
            traceback.print_exc()
        print(f"error: {os_error_line(e)}", file=sys.stderr)
        sys.exit(1)
    except Exception as e:  # noqa: BLE001 - last resort: still one line unless --debug
        if debug:
            traceback.print_exc()
        print(f"error: unexpected {type(e).__name__}: {e} (rerun with --debug for the traceback)", file=sys.stderr)
        sys.exit(1)
    if code:
        sys.exit(code)


def tune_allocator() -> bool:
    """glibc malloc: serve every block from the heap (no mmap) and never trim it, instead of mapping each
    large block fresh from the OS and unmapping it on free. A training iteration allocates and frees
    hundreds of MB of activations, several above glibc's largest mmap threshold (32 MB: a 64 x 32 x 64 x 64
    float map is 33.5 MB), and each fresh mapping is page-faulted and zeroed again: about 260k page faults
    and a tenth of a CPU training step (bench/run.py). Freed heap blocks are reused instead; the heap still
    falls back to mmap when it cannot grow. Changes no result. Returns False where there is no glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(M_MMAP_MAX, 0) and libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1))
    except (OSError, AttributeError):
        return False


M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc mallopt parameters
