"""One exception type for every user-facing failure, so the CLI can print it as one line, the commands'
argument parser, whose errors are one line too, and how a command is stopped."""

import argparse
import signal
import sys


class AeganError(Exception):
    """A problem the user can fix (bad setting, missing or broken file); the message names it."""


def shown(path: object) -> str:
    """A path as an error message shows it: verbatim when printable, else escaped, so the message stays one line."""
    text = str(path)
    return text if text.isprintable() else repr(text)


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
