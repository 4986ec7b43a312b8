"""One run's settings from its layers: the declaration's defaults (schema.py) <- <dataset>/defaults.yaml <-
pretrain/<dataset>/<mt>.yaml <- config.yaml <- --config <- --set, each layer's keys and values checked against the
declaration with the layer named. The result is one plain dict, passed down.

A dataset's defaults.yaml holds what differs from the declaration (`_extends` another's, `_rename` a key to the
dataset's own spelling: `train.bs` in DCASE 2020). Relative paths: from a file they resolve against the dataset
folder (dcase2022/), where the original's scripts run and read their config.yaml; from --set against the current
directory. A path may name a top-level setting: `../data/dcase{year}`.
"""

from __future__ import annotations

import copy
import difflib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from aegan.core.errors import AeganError, shown
from aegan.core.files import write_text
from aegan.settings.checks import check_value, cross_checks, defaults, is_section, short, tagged
from aegan.settings.checks import field as declared
from aegan.settings.schema import ALIASES, FREE, IGNORED, PATH_KEYS
from aegan.settings.yaml_files import dump, read_yaml

EXTENDS = "_extends"
RENAME = "_rename"  # in a dataset's defaults.yaml: {declared key: this dataset's name for it}


@dataclass
class Resolved:
    """One run's config, where it came from, which keys the user set explicitly, and what was dropped."""

    cfg: dict
    sources: list[str]
    explicit: set[str] = field(default_factory=set)  # keys of --config and --set
    ignored: list[str] = field(default_factory=list)
    user: set[str] = field(default_factory=set)  # keys of every layer the user writes: config.yaml, --config, --set


def _unknown(source: str, name: str, key: str, known: dict) -> AeganError:
    close = difflib.get_close_matches(str(key), [str(k) for k in known], n=1)
    hint = f" (did you mean {name[: len(name) - len(str(key))]}{close[0]}?)" if close else ""
    return AeganError(f"{source}: unknown key {shown(name)}{hint}")


def merge(base: dict, override: dict, source: str, prefix: str = "") -> dict:
    """Deep-merge `override` into a copy of `base`: a key `base` does not hold is refused, and every value is
    checked against its declaration (schema.py), the message naming `source`."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        name = f"{prefix}{key}"
        if key not in base and ALIASES.get(name) in base:  # the other dataset's spelling of the batch size
            key, name = ALIASES[name], f"{prefix}{ALIASES[name]}"
        if key not in base:
            raise _unknown(source, name, key, base)
        if is_section(name):
            if not isinstance(value, dict):
                raise AeganError(f"{source}: {shown(name)} must be a mapping, got {short(value)}")
            out[key] = merge(base[key], value, source, f"{name}.")
            continue
        try:
            out[key] = check_value(name, value)
        except AeganError as e:
            raise AeganError(f"{source}: {e}") from None
    return out


def parse_set(item: str) -> dict:
    """`train.epoch=3` -> {'train': {'epoch': 3}}; the value is read as YAML (3, 0.1, ln, [a, b])."""
    if "=" not in item:
        raise AeganError(f"--set {item!r}: expected key=value, e.g. --set train.epoch=3")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise AeganError(f"--set {item!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    node: dict = {}
    root = node
    parts = key.split(".")
    for part in parts[:-1]:
        node[part] = {}
        node = node[part]
    node[parts[-1]] = value
    return root


def leaves(tree: dict, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted name, value) of every setting of a settings tree (a mapping-valued setting counts as one)."""
    for k, v in tree.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict) and (is_section(name) or declared(name) is None):
            yield from leaves(v, f"{name}.")
        else:
            yield name, v


def _keys(layer: dict, cfg: dict) -> set[str]:
    """Dotted names of every leaf a layer sets, as the merged config names them (an alias, train.bs in a DCASE
    2022 run, under the dataset's own spelling)."""
    out = set()
    for name, _ in leaves(layer):
        parent, _, leaf = name.rpartition(".")
        if name in ALIASES and not _has(cfg, name):
            name = f"{parent}.{ALIASES[name]}" if parent else ALIASES[name]
        out.add(name)
    return out


def _has(cfg: dict, name: str) -> bool:
    try:
        get(cfg, name)
    except (KeyError, TypeError):
        return False
    return True


def _drop_ignored(layer: dict, source: str, ignored: list[str]) -> dict:
    """The original's unused keys leave the layer here; feat.spec is checked, as it changes the features."""
    layer = dict(layer)
    for key in IGNORED:
        if key in layer:
            layer.pop(key)
            if key not in ignored:
                ignored.append(key)
    feat = layer.get("feat")
    if isinstance(feat, dict) and "spec" in feat:
        if feat["spec"] != "mel":
            raise AeganError(f"{source}: feat.spec must be mel (log-mel features), got {short(feat['spec'])}")
        layer["feat"] = {k: v for k, v in feat.items() if k != "spec"}
        if "feat.spec" not in ignored:
            ignored.append("feat.spec")
    return layer


def _resolve_paths(layer: dict, base: Path) -> dict:
    out = dict(layer)
    for key in PATH_KEYS:
        if isinstance(out.get(key), str):
            path = Path(out[key]).expanduser()
            out[key] = str(path if path.is_absolute() else (base / path).resolve())
    return out


def output_settings(root: Path) -> list[str]:
    """`--set` items that put every output of a run (models, caches, logs, results, figures) under `root`."""
    return [f"{key}={Path(root) / key.removesuffix('_dir')}" for key in PATH_KEYS if key != "dataset_dir"]


def batch_key(cfg: dict) -> str:
    """The training batch's key: `train.batch_size` (the original's DCASE 2022 key) or `train.bs` (DCASE 2020)."""
    return "train.batch_size" if "batch_size" in cfg["train"] else "train.bs"


def batch_size(cfg: dict) -> int:
    return get(cfg, batch_key(cfg))


def validate(cfg: dict, source: str | None = None) -> None:
    """Every setting of a whole settings tree checked against its declaration, then across settings; `source`
    names where they came from when they are not this run's files and flags (a model's stored settings). A
    setting this version no longer declares is passed over."""
    try:
        for name, value in leaves(cfg):
            if declared(name) is not None:
                check_value(name, value)
        cross_checks(cfg)
    except AeganError as e:
        if source is None:
            raise
        raise AeganError(f"{source}: {e}") from None


def _dataset_defaults(cfg: dict, dataset_root: Path) -> tuple[dict, list[str]]:
    """The declaration's defaults with the dataset's defaults.yaml applied (and the file it `_extends`, first)."""
    chain, path = [], dataset_root / "defaults.yaml"
    while path is not None:
        chain.insert(0, path)
        parent = read_yaml(path).get(EXTENDS)
        path = (path.parent / parent).resolve() if parent else None
    for path in chain:
        layer = _resolve_paths(read_yaml(path), dataset_root)
        layer.pop(EXTENDS, None)
        for old, new in layer.pop(RENAME, {}).items():  # the dataset's own spelling of a declared key
            cfg = _renamed(cfg, old, new)
        cfg = merge(cfg, layer, shown(path))
    return cfg, [str(p) for p in chain]


def load_config(dataset_root: Path, mt: str, config_file: str | None = None, sets: list[str] | None = None,
                cwd: Path | None = None) -> Resolved:
    """Resolve one run's config: the dataset's defaults, the paper's settings for `mt` (pretrain/<dataset>/<mt>.yaml),
    the user's config.yaml (the original's files can replace it), then a --config file and --set items, each
    overriding the ones before."""
    ignored: list[str] = []
    cfg, sources = _dataset_defaults(defaults(), dataset_root)
    files = [dataset_root.parent / "pretrain" / dataset_root.name / f"{mt}.yaml", dataset_root / "config.yaml"]
    # a file that is there, or a link to one that is gone (read_yaml names it: never left out in silence)
    layers = [(str(f), f, False) for f in files if os.path.lexists(f)]
    if config_file:
        layers.append((config_file, Path(config_file), True))
    explicit: set[str] = set()
    user: set[str] = set()
    for source, path, is_explicit in layers:
        layer = _resolve_paths(_drop_ignored(read_yaml(path), shown(source), ignored), dataset_root)
        cfg = merge(cfg, layer, shown(source))
        explicit |= _keys(layer, cfg) if is_explicit else set()
        user |= _keys(layer, cfg) if is_explicit or path.name == "config.yaml" else set()
        sources.append(source)
    for item in sets or []:
        source = f"--set {item}"
        layer = _resolve_paths(_drop_ignored(parse_set(item), shown(source), ignored), cwd or Path.cwd())
        cfg = merge(cfg, layer, shown(source))
        explicit |= _keys(layer, cfg)
        user |= _keys(layer, cfg)
        sources.append(source)
    cross_checks(cfg)
    for key in PATH_KEYS:  # a path may name a top-level setting: ../data/dcase{year} (the first-shot years)
        cfg[key] = _fill(cfg[key], cfg, key) if cfg[key] is not None else None
    return Resolved(cfg, sources, explicit, ignored, user)


def _renamed(cfg: dict, old: str, new: str) -> dict:
    """`old` (a dotted key) renamed to `new` in the same mapping, in the same place."""
    out = copy.deepcopy(cfg)
    *parents, leaf = old.split(".")
    node = out
    for part in parents:
        node = node[part]
    items = list(node.items())
    node.clear()
    node.update((new.rsplit(".", 1)[-1] if k == leaf else k, v) for k, v in items)
    return out


def _fill(path: str, cfg: dict, key: str) -> str:
    """`{name}` in a path setting replaced by the top-level setting `name`."""
    def value(m: re.Match) -> str:
        name = m.group(1)
        if name not in cfg or cfg[name] is None or isinstance(cfg[name], (dict, list)):
            raise AeganError(f"{key}={path!r} names {{{name}}}, which is not a top-level setting with a value")
        return str(cfg[name])

    return re.sub(r"\{(\w+)\}", value, path)


def differences(stored: dict, now: dict) -> list[str]:
    """'key: stored -> now' for every setting that changes the numbers (not schema.FREE) and differs. A setting
    the stored settings lack (they predate it) is the same when it is at its declared default."""
    a, b = dict(leaves(stored)), dict(leaves(now))
    free, declared_defaults = set(tagged(FREE)), dict(leaves(defaults()))
    out = []
    for key in sorted(set(a) | set(b)):
        old = a.get(key, declared_defaults.get(key, "<absent>"))
        if key not in free and old != b.get(key, "<absent>"):
            out.append(f"{key} {old!r} -> {b.get(key, '<absent>')!r}")
    return out


def put(cfg: dict, name: str, value: Any) -> None:
    """Set the value of a dotted key (`train.epoch`) in place."""
    *parents, leaf = name.split(".")
    for part in parents:
        cfg = cfg[part]
    cfg[leaf] = value


def get(cfg: dict, name: str) -> Any:
    """The value of a dotted key (`feat.mel_bin`)."""
    for part in name.split("."):
        cfg = cfg[part]
    return cfg


def settings_file(cfg: dict, mt: str, command: str) -> Path:
    """Where a command records the settings it ran with: <log_dir>/<mt>/<command>.settings.yaml, beside the log."""
    return Path(cfg["log_dir"]) / mt / f"{command}.settings.yaml"


def record_settings(cfg: dict, mt: str, command: str) -> Path:
    """Write the settings a command runs with to its settings file and say where (the console shows one line, not
    the whole tree; --print-config prints it)."""
    path = settings_file(cfg, mt, command)
    write_text(path, f"# the settings {command}.py ran with for {mt}, resolved from every layer\n{dump(cfg)}\n")
    print(f"settings: {path} (--print-config prints them)")
    return path
