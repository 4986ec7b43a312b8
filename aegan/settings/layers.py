"""One run's settings, a plain dict, from its layers: the declaration's defaults <- <dataset>/defaults.yaml <-
pretrain/<dataset>/<mt>.yaml <- config.yaml <- --config <- --set, each checked with the layer named. Relative paths
resolve against the dataset folder (where the original's scripts run), from --set against the current directory."""

from __future__ import annotations

import copy
import difflib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aegan.core.errors import AeganError, shown
from aegan.core.files import write_text
from aegan.settings.checks import check_value, cross_checks, defaults, is_section, short, tagged
from aegan.settings.checks import field as declared
from aegan.settings.schema import ALIASES, FREE, IGNORED, PATH_KEYS
from aegan.settings.yaml_files import dump, load_text, read_yaml

EXTENDS = "_extends"
RENAME = "_rename"  # in a dataset's defaults.yaml: {declared key: this dataset's name for it}


@dataclass
class Resolved:
    """One run's config, where it came from, which keys the user set, and what was dropped."""

    cfg: dict
    sources: list[str]
    explicit: set[str] = field(default_factory=set)  # keys of --config and --set
    ignored: list[str] = field(default_factory=list)
    user: set[str] = field(default_factory=set)  # keys of every layer the user writes: config.yaml, --config, --set


def node_of(cfg: dict, name: str) -> tuple[dict, str]:
    """(the mapping that holds the dotted key `name`, its last part): every walk down `a.b.c` names, in one place."""
    *parents, leaf = name.split(".")
    for part in parents:
        cfg = cfg[part]
    return cfg, leaf


def get(cfg: dict, name: str) -> Any:
    """The value of a dotted key (`feat.mel_bin`)."""
    node, leaf = node_of(cfg, name)
    return node[leaf]


def put(cfg: dict, name: str, value: Any) -> None:
    """Set the value of a dotted key (`train.epoch`) in place."""
    node, leaf = node_of(cfg, name)
    node[leaf] = value


def merge(base: dict, override: dict, source: str, prefix: str = "") -> dict:
    """A copy of `base` with `override` deep-merged, each key and value checked, the message naming `source`."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        name = f"{prefix}{key}"
        if key not in base and ALIASES.get(name) in base:  # the other dataset's spelling of the batch size
            key, name = ALIASES[name], f"{prefix}{ALIASES[name]}"
        if key not in base:
            close = difflib.get_close_matches(str(key), [str(k) for k in base], n=1)
            hint = f" (did you mean {name[: len(name) - len(str(key))]}{close[0]}?)" if close else ""
            raise AeganError(f"{source}: unknown key {shown(name)}{hint}")
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
    """`train.epoch=3` -> {'train': {'epoch': 3}}; the value is read as a config file's are (YAML 1.2: 3, 010 = 10,
    0.1, 1e-3, ln, [a, b]); text that is not YAML stays text."""
    if "=" not in item:
        raise AeganError(f"--set {item!r}: expected key=value, e.g. --set train.epoch=3")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise AeganError(f"--set {item!r}: empty key")
    value = load_text(raw, f"--set {item!r}", lenient=True) if raw.strip() else ""
    for part in reversed(key.split(".")):
        value = {part: value}
    return value


def leaves(tree: dict, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted name, value) of every setting of a settings tree (a mapping-valued setting counts as one)."""
    for k, v in tree.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict) and (is_section(name) or declared(name) is None):
            yield from leaves(v, f"{name}.")
        else:
            yield name, v


def _keys(layer: dict, cfg: dict) -> set[str]:
    """Dotted names of every leaf a layer sets, as the merged config names them (train.bs in DCASE 2022: batch_size)."""
    out = set()
    for name, _ in leaves(layer):
        if name in ALIASES:
            node, leaf = node_of(cfg, name)
            name = name if leaf in node else name.removesuffix(leaf) + ALIASES[name]
        out.add(name)
    return out


def _drop_ignored(layer: dict, source: str, ignored: list[str]) -> dict:
    """The original's unused keys leave the layer here; feat.spec is checked, as it changes the features."""
    dropped = [key for key in IGNORED if key in layer]
    layer = {k: v for k, v in layer.items() if k not in IGNORED}
    feat = layer.get("feat")
    if isinstance(feat, dict) and "spec" in feat:
        if feat["spec"] != "mel":
            raise AeganError(f"{source}: feat.spec must be mel (log-mel features), got {short(feat['spec'])}")
        layer["feat"] = {k: v for k, v in feat.items() if k != "spec"}
        dropped.append("feat.spec")
    ignored += [key for key in dropped if key not in ignored]
    return layer


def _resolve_paths(layer: dict, base: Path, source: str) -> dict:
    """Relative folders against `base`; an empty one is refused (it would put the outputs in the current folder)."""
    out = dict(layer)
    for key in PATH_KEYS:
        if isinstance(out.get(key), str) and not out[key].strip():
            raise AeganError(f"{source}: {key} is empty (that would write into the current folder): give it a folder, "
                             "or leave it out for its default")
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
    """A whole settings tree checked (a setting no longer declared is passed over); `source` names where it came from
    when not from this run's files and flags (a model's stored settings)."""
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
        chain.insert(0, (path, read_yaml(path)))
        parent = chain[0][1].pop(EXTENDS, None)
        path = (path.parent / parent).resolve() if parent else None
    for path, layer in chain:
        layer = _resolve_paths(layer, dataset_root, shown(path))
        for old, new in layer.pop(RENAME, {}).items():  # the dataset's own spelling of a declared key, in its place
            node, leaf = node_of(cfg, old)
            items = list(node.items())
            node.clear()
            node.update((new.rsplit(".", 1)[-1] if k == leaf else k, v) for k, v in items)
        cfg = merge(cfg, layer, shown(path))
    return cfg, [str(p) for p, _ in chain]


def load_config(dataset_root: Path, mt: str, config_file: str | None = None, sets: list[str] | None = None,
                cwd: Path | None = None) -> Resolved:
    """One run's config from the layers in the module docstring (the original's files can replace config.yaml)."""
    ignored: list[str] = []
    cfg, sources = _dataset_defaults(defaults(), dataset_root)
    files = [dataset_root.parent / "pretrain" / dataset_root.name / f"{mt}.yaml", dataset_root / "config.yaml"]
    # (source, a file or a --set item, where its paths start, explicit, the user's); a file that is there, or a link
    # to one that is gone (read_yaml names it: never left out in silence)
    layers = [(str(f), f, dataset_root, False, f.name == "config.yaml") for f in files if os.path.lexists(f)]
    layers += [(config_file, Path(config_file), dataset_root, True, True)] if config_file else []
    layers += [(f"--set {item}", item, cwd or Path.cwd(), True, True) for item in sets or []]
    explicit: set[str] = set()
    user: set[str] = set()
    for source, what, base, is_explicit, is_user in layers:
        raw = parse_set(what) if isinstance(what, str) else read_yaml(what)
        layer = _resolve_paths(_drop_ignored(raw, shown(source), ignored), base, shown(source))
        cfg = merge(cfg, layer, shown(source))
        keys = _keys(layer, cfg)
        explicit |= keys if is_explicit else set()
        user |= keys if is_user else set()
        sources.append(source)
    cross_checks(cfg)
    for key in PATH_KEYS:  # a path may name a top-level setting: ../data/dcase{year} (the first-shot years)
        cfg[key] = _fill(cfg[key], cfg, key) if cfg[key] is not None else None
    return Resolved(cfg, sources, explicit, ignored, user)


def _fill(path: str, cfg: dict, key: str) -> str:
    """`{name}` in a path setting replaced by the top-level setting `name`."""
    def value(m: re.Match) -> str:
        name = m.group(1)
        if name not in cfg or cfg[name] is None or isinstance(cfg[name], (dict, list)):
            raise AeganError(f"{key}={path!r} names {{{name}}}, which is not a top-level setting with a value")
        return str(cfg[name])

    return re.sub(r"\{(\w+)\}", value, path)


def differences(stored: dict, now: dict) -> list[str]:
    """'key: stored -> now' for every setting that changes the numbers (not schema.FREE) and differs; one the stored
    settings predate is the same when it is at its declared default."""
    a, b = dict(leaves(stored)), dict(leaves(now))
    free, declared_defaults = set(tagged(FREE)), dict(leaves(defaults()))
    out = []
    for key in sorted(set(a) | set(b)):
        old = a.get(key, declared_defaults.get(key, "<absent>"))
        if key not in free and old != b.get(key, "<absent>"):
            out.append(f"{key} {old!r} -> {b.get(key, '<absent>')!r}")
    return out


def record_settings(cfg: dict, mt: str, command: str) -> Path:
    """Write the settings a command runs with to <log_dir>/<mt>/<command>.settings.yaml and say where in one line."""
    path = Path(cfg["log_dir"]) / mt / f"{command}.settings.yaml"
    write_text(path, f"# the settings {command}.py ran with for {mt}, resolved from every layer\n{dump(cfg)}\n")
    print(f"settings: {path} (--print-config prints them)")
    return path
