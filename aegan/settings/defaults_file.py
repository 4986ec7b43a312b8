"""`python -m aegan.settings.defaults_file` writes dcase2022/defaults.yaml from the declaration: every setting with
its default and doc, for people to read (tests/test_config.py fails when the file is not what this writes)."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import yaml

from aegan.core.files import write_text
from aegan.settings.checks import FIELDS, defaults, is_section

HEADER = """\
# DCASE 2022 Task 2: every setting with its default, generated from aegan/settings/schema.py (the one declaration:
# type, default, allowed values, doc) by `python -m aegan.settings.defaults_file`. Do not edit: put your settings
# in config.yaml, a --config file or --set. Key names are the original code's, so its config files load unchanged.
# The paper's per machine type settings are in ../pretrain/dcase2022/<mt>.yaml; the other datasets' defaults.yaml
# hold what differs. Relative paths resolve against this folder (dcase2022/), where the original's scripts run.
"""
PATH = Path(__file__).resolve().parents[2] / "dcase2022" / "defaults.yaml"


def _flow(value: Any) -> str:
    """A value as YAML on one line: 2048, ln, {mu: 1}, [leakyrelu, relu], null."""
    return yaml.safe_dump([value], default_flow_style=True, width=1000).strip()[1:-1]


def _lines(tree: dict, prefix: str = "", depth: int = 0) -> list[str]:
    """Each setting with its value and its doc as a comment, wrapped at 120 columns; a blank line between sections."""
    out = []
    for key, value in tree.items():
        name, indent = f"{prefix}{key}", "  " * depth
        if is_section(name):
            out += ([""] if depth == 0 else []) + [f"{indent}{key}:", *_lines(value, f"{name}.", depth + 1)]
            continue
        text = f"{indent}{key}: {_flow(value)}"
        column = max(28, len(text) + 2)
        doc = textwrap.wrap(FIELDS[name].description, 120 - column - 2)
        out += [f"{text:<{column}}# {doc[0]}", *(f"{'':<{column}}# {more}" for more in doc[1:])]
    return out


def render() -> str:
    return HEADER + "\n".join(_lines(defaults())) + "\n"


if __name__ == "__main__":
    write_text(PATH, render())
    print(f"wrote {PATH}")
