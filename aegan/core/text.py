"""How numbers and counts read wherever a person reads them: results in percent with two decimals (the paper's
unit), counts with the right plural."""

from __future__ import annotations

import math


def pct(fraction: float | None) -> str:
    """A fraction as a percentage with two decimals: 0.62996 -> "63.00"; rounding noise (an hmean floored at
    machine epsilon, 2e-16) and -0 read "0.00"; undefined reads "nan"."""
    if fraction is None or math.isnan(fraction):
        return "nan"
    return f"{100 * fraction + 0.0:.2f}".replace("-0.00", "0.00")


def plural(n: int, word: str, words: str | None = None) -> str:
    """'1 file', '2 files' ('1 machine type', '3 machine types'); `words` for an irregular plural."""
    return f"{n} {word if n == 1 else words or word + 's'}"
