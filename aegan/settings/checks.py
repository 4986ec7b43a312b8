"""The declaration (schema.py) asked, and its verdicts as one clear line: each value checked against its declared
type and range (pydantic), the checks across settings, the settings a tag marks, the defaults."""

from __future__ import annotations

import functools
import math
import reprlib
import typing
from collections.abc import Iterator
from typing import Any

from pydantic import TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

from aegan.core.errors import AeganError
from aegan.core.metrics import resolve_metric
from aegan.settings.schema import ALIASES, Section, Settings, number_text

# Values in messages are shown by a bounded repr: a message stays one short line whatever the value holds.
_SHORT = reprlib.Repr()
_SHORT.maxstring, _SHORT.maxother, _SHORT.maxlevel = 60, 60, 3
short = _SHORT.repr


def _fields(model: type[Section], prefix: str = "") -> Iterator[tuple[str, FieldInfo]]:
    for key, fi in model.model_fields.items():
        name = f"{prefix}{key}"
        yield name, fi
        if isinstance(fi.annotation, type) and issubclass(fi.annotation, Section):
            yield from _fields(fi.annotation, f"{name}.")


FIELDS: dict[str, FieldInfo] = dict(_fields(Settings))


def canonical(name: str) -> str:
    """The declared name of a setting: an alias not declared (train.bs, DCASE 2020's) is declared as the other."""
    return f"{name.rpartition('.')[0]}.{ALIASES[name]}" if name in ALIASES and name not in FIELDS else name


def field(name: str) -> FieldInfo | None:
    """The declaration of a dotted setting name (either spelling of the batch size), or None."""
    return FIELDS.get(canonical(name))


def is_section(name: str) -> bool:
    """A group of settings (`train`), not a setting: a dict there is walked, not a value."""
    fi = field(name)
    return fi is not None and isinstance(fi.annotation, type) and issubclass(fi.annotation, Section)


def tagged(tag: str) -> tuple[str, ...]:
    """The dotted names of the settings a tag marks (schema.FREE, FEATURES, SEGMENTS)."""
    return tuple(name for name, fi in FIELDS.items() if tag in (fi.json_schema_extra or {}).get("tags", ()))


def unusual(cfg: dict) -> list[str]:
    """A line for each value its declaration allows but calls unusual (outside its `sane` range), naming the setting:
    a learning rate typed 2e4 for 2e-4 trains to losses of 1e15 without an error."""
    lines = []
    for name, fi in FIELDS.items():
        sane = (fi.json_schema_extra or {}).get("sane")
        value = functools.reduce(lambda node, key: node.get(key) if isinstance(node, dict) else None,
                                 name.split("."), cfg)
        if sane and isinstance(value, (int, float)) and not isinstance(value, bool) and not sane[0] <= value <= sane[1]:
            lines.append(f"{name}={value:g} is outside its usual range [{sane[0]:g}, {sane[1]:g}] ({fi.description}; "
                         f"default {fi.default:g}): check it was typed as meant")
    return lines


def defaults() -> dict:
    """Every setting at its declared default, as one plain dict in declaration order."""
    return Settings().model_dump()


def completed(stored: dict, base: dict | None = None, prefix: str = "") -> dict:
    """Stored settings (a model file's) with each setting declared since they were written at its declared default,
    which is the behaviour before it: a model trained before a new setting builds and scores as it did. What is
    stored is kept as it is (a setting no longer declared, the other spelling of the batch size)."""
    base = defaults() if base is None else base
    out = dict(stored)
    for key, value in base.items():
        name = f"{prefix}{key}"
        if key not in out and ALIASES.get(name) not in out:
            out[key] = value
        elif is_section(name) and isinstance(out.get(key), dict):
            out[key] = completed(out[key], value, f"{name}.")
    return out


@functools.cache
def _adapter(name: str) -> TypeAdapter:
    fi = FIELDS[name]
    annotation = typing.Annotated[fi.annotation, *fi.metadata] if fi.metadata else fi.annotation
    return TypeAdapter(annotation, config={"strict": True})


def check_value(name: str, value: Any) -> Any:
    """`value` as setting `name` types it (an int for a float setting becomes a float), or a line on what it must be."""
    fi = field(name)
    try:
        checked = _adapter(canonical(name)).validate_python(value)
    except ValidationError as e:
        raise AeganError(_verdict(name, fi, value, e.errors()[0])) from None
    if name == "detect.metric" and checked is not None:
        resolve_metric(checked)  # a typo is named now, not after training
    return checked


def _range(metadata: list) -> str:
    b = {k: getattr(m, k) for m in metadata for k in ("gt", "ge", "lt", "le") if getattr(m, k, None) is not None}
    if set(b) == {"gt"} and b["gt"] == 0:
        return "positive"
    low = f"[{b['ge']}" if "ge" in b else f"({b.get('gt', -math.inf)}"
    high = f"{b['le']}]" if "le" in b else f"{b.get('lt', math.inf)})"
    return f"in {low}, {high}"


def _verdict(name: str, fi: FieldInfo, value: Any, error: dict) -> str:
    kind, where = error["type"], [str(x) for x in error["loc"] if not str(x).startswith(("function-", "literal"))]
    weights = typing.get_origin(fi.annotation) is dict  # the feature-matching weights: keys among mu, sigma
    if weights:
        keys = typing.get_args(typing.get_args(fi.annotation)[0])
        if not isinstance(value, dict) or kind == "literal_error":
            return f"{name} must be a mapping with keys among {', '.join(keys)}, got {short(value)}"
        name, value = f"{name}.{where[0]}", value[where[0]]
    number = number_text(value)  # "nan" from --set fails a bound before it fails finiteness: say the root cause
    if kind == "finite_number" or isinstance(number, float) and not math.isfinite(number):
        return f"{name} must be a finite number, got {number}"
    if kind.startswith(("greater", "less")):
        return f"{name} must be {'>= 0 (a loss weight)' if weights else _range(fi.metadata)}, got {short(value)}"
    if weights:
        return f"{name} must be a number, got {short(value)}"
    allowed = choices(name)
    if allowed:
        words = allowed[0] if len(allowed) == 1 else f"{', '.join(allowed[:-1])} or {allowed[-1]}"
        return f"{name} must be {words}, got {short(value)}"
    if fi.default is None:
        kinds = [t.__name__ for t in typing.get_args(fi.annotation) if t is not type(None)]
        return f"{name} must be a {kinds[0]} or null, got {short(value)}"
    return f"{name} must be of type {type(fi.default).__name__} (like {fi.default!r}), got {short(value)}"


def choices(name: str) -> tuple:
    """The allowed values of a setting declared with a few (net.normalize.g: ln, bn); () for any other."""
    fi = field(name)
    literal = fi is not None and typing.get_origin(fi.annotation) is typing.Literal
    return typing.get_args(fi.annotation) if literal else ()


def cross_checks(cfg: dict) -> None:
    """What one declaration cannot see: square power-of-two segments, the paper's activations, train.select's metric."""
    feat, net = cfg["feat"], cfg["net"]
    isize = net["isize"]
    if isize < 16 or isize & (isize - 1):
        raise AeganError(f"net.isize must be a power of two >= 16, got {isize}")
    for key in ("mel_bin", "frame_num"):
        if feat[key] != isize:
            raise AeganError(f"feat.{key} ({feat[key]}) must equal net.isize ({isize}): segments are square")
    if net["act"] != ["leakyrelu", "relu"]:
        raise AeganError(f"net.act must be [leakyrelu, relu] (encoder/critic, decoder), got {short(net['act'])}")
    if cfg["train"]["select"] == "metric" and not cfg["detect"]["metric"]:
        raise AeganError("train.select=metric needs detect.metric (e.g. --set detect.metric=D_lof)")
