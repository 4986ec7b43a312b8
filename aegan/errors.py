"""One exception type for every user-facing failure, so the CLI can print it as one line."""


class AeganError(Exception):
    """A problem the user can fix (bad setting, missing or broken file); the message names it."""
