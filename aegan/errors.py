"""One exception type for every user-facing failure, so the CLI can print it as one line, and the commands'
argument parser, whose errors are one line too."""

import argparse
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
