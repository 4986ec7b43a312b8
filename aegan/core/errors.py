"""One exception type for every user-facing failure, so that every command prints it as one line."""


class AeganError(Exception):
    """A problem the user can fix (bad setting, missing or broken file); the message names it."""


def shown(path: object) -> str:
    """A path as an error message shows it: verbatim when printable, else escaped, so the message stays one line."""
    text = str(path)
    return text if text.isprintable() else repr(text)
