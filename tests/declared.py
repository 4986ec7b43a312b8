"""Settings for the tests that call the library directly: the declared defaults (aegan/settings/schema.py) with the
overrides a test means, each checked as a settings file's value is. A setting added to the schema reaches every such
test at its default, so library code never needs a fallback for a key a test left out."""

from __future__ import annotations

import typing
from typing import Any

from aegan.settings.checks import defaults
from aegan.settings.layers import merge
from aegan.settings.schema import Net, Section

# the tests' small networks (the paper's 128 x 128 is in tests/test_nets.py)
SMALL_NET = {"isize": 32, "nz": 16, "ndf": 8, "ngf": 8}


def settings(**sections: dict) -> dict:
    """Every setting at its declared default, with each named section's overrides deep-merged and checked:
    settings(net={"isize": 32, "normalize": {"g": "bn"}})."""
    return merge(defaults(), sections, "a test's settings")


def section(name: str, **overrides: Any) -> dict:
    """One section at its declared defaults with `overrides`: section("net", isize=32)."""
    return settings(**{name: overrides})[name]


def train_section(**wgan: Any) -> dict:
    """The train section, with train.wgan overrides: what the method's steps take."""
    return settings(train={"wgan": wgan})["train"]


def small_net(**overrides: Any) -> dict:
    """The net section of the tests' small networks, with `overrides`."""
    return section("net", **{**SMALL_NET, **overrides})


def network_options(model: type[Section] = Net) -> list[dict]:
    """Each network option other than its default, as a net override on its own: every other choice of a Literal
    setting, the other boolean, and the values a setting declares as its examples (schema: examples=[...])."""
    out = []
    for name, fi in model.model_fields.items():
        kind = fi.annotation
        if isinstance(kind, type) and issubclass(kind, Section):
            out += [{name: o} for o in network_options(kind)]
            continue
        if typing.get_origin(kind) is typing.Literal:
            values = list(typing.get_args(kind))
        elif kind is bool:
            values = [not fi.default]
        else:
            values = list(fi.examples or [])
        out += [{name: v} for v in values if v != fi.default]
    return out
