"""Configuration as data: defaults.yaml <- pretrain/<dataset>/<mt>.yaml <- config.yaml <- --config <- --set.

The dataset's defaults.yaml is the schema, written with the original code's key names (which differ
between the two datasets: `train.batch_size` in DCASE 2022, `train.bs` in DCASE 2020), so the
original's own config files load unchanged, as --config or in place of config.yaml. A key the schema
does not hold is a typo, and a value must have the type of its default. Keys of the original that
nothing here uses are accepted and dropped (listed in `Resolved.ignored`). The result is one plain
dict, validated once and passed down.

Relative paths: from a config file they resolve against the dataset folder (dcase2022/), where the
original's scripts run and read their config.yaml; from --set against the current directory.
"""

from __future__ import annotations

import copy
import difflib
import math
import re
import reprlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from aegan.core.errors import AeganError, shown
from aegan.core.files import write_text
from aegan.core.kinds import TORCH, sniff

PATH_KEYS = ("dataset_dir", "model_dir", "spec_dir", "log_dir", "detect_dir", "result_dir", "loc_dir")
# Mappings whose keys are data, not schema: the feature-matching weights.
OPEN_MAPPINGS = {"train.wgan.match_item": {"mu", "sigma"}}
# Keys whose default is null but which take a value of this type.
NULLABLE = {"detect.metric": str, "paper_result": float}
# The original's keys that nothing here reads: its label codes, its DCASE 2020 machine lists (the command
# line's --mt decides), its CUDA card (-c decides).
IGNORED = ("repre", "mt", "card_id")
# The batch size is `train.batch_size` in the original's DCASE 2022 files and `train.bs` in its DCASE 2020
# ones: each dataset's schema has its own spelling and takes the other as an alias.
ALIASES = {"train.bs": "batch_size", "train.batch_size": "bs"}
EXTENDS = "_extends"
RENAME = "_rename"  # in a schema file that extends another: {inherited key: this dataset's name for it}
# Settings with a few allowed values. The critic must use ln: a batch-coupled norm would break the
# per-sample gradient penalty.
CHOICES = {"train_set": ("dev", "eval", "deval", "auto"), "net.normalize.g": ("ln", "bn"), "net.normalize.d": ("ln",),
           "train.select": ("best", "metric", "last"), "train.amp": ("fp32", "bf16"), "detect.amp": ("fp32", "bf16"),
           "train.tf32": ("original", "fp32", "tf32")}
# Settings that were booleans in older config files, with the choice each boolean now means.
LEGACY_BOOLS = {"train.tf32": {True: "tf32", False: "fp32"}}
# Settings in an interval: (low, high, low included, high included). detect.p is the pAUC's max FPR.
RANGES = {"train.beta1": (0, 1, True, False), "detect.p": (0, 1, False, True),
          "detect.decision_percentile": (0, 1, False, False), "train.wgan.lambda_gp": (0, math.inf, True, False),
          "train.wgan.feat_match_eff": (0, math.inf, True, False), "feat.workers": (0, math.inf, True, False)}
# A config file is a few dozen settings; YAML aliases can make a small file expand to billions of nodes (the
# "billion laughs"), which would exhaust memory wherever the value is copied or shown. Refuse beyond this.
MAX_YAML_NODES = 100_000
# Values in messages are shown by a bounded repr: a message stays one short line whatever the value holds.
_SHORT = reprlib.Repr()
_SHORT.maxstring, _SHORT.maxother, _SHORT.maxlevel = 60, 60, 3


def short(value: Any) -> str:
    """repr(value), cut to a few items per level and a few levels: safe for any value in a one-line message."""
    return _SHORT.repr(value)


@dataclass
class Resolved:
    """One run's config, where it came from, which keys the user set explicitly, and what was dropped."""

    cfg: dict
    sources: list[str]
    explicit: set[str] = field(default_factory=set)  # keys of --config and --set
    ignored: list[str] = field(default_factory=list)
    user: set[str] = field(default_factory=set)  # keys of every layer the user writes: config.yaml, --config, --set


def _expanded_nodes(node: yaml.Node, memo: dict[int, int]) -> int:
    """How many nodes the document has once its aliases are expanded (each alias counted in full, once per use),
    computed on the composed graph, where an alias is a shared node: cheap whatever the expanded size."""
    if id(node) in memo:
        return memo[id(node)]
    memo[id(node)] = 1  # a recursive alias counts once
    if isinstance(node, yaml.SequenceNode):
        memo[id(node)] = 1 + sum(_expanded_nodes(x, memo) for x in node.value)
    elif isinstance(node, yaml.MappingNode):
        memo[id(node)] = 1 + sum(_expanded_nodes(k, memo) + _expanded_nodes(v, memo) for k, v in node.value)
    return memo[id(node)]


def _load_text(text: str, path: Path) -> Any:
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_nodes(node, {}) > MAX_YAML_NODES:
            raise AeganError(f"config file {shown(path)} expands to more than {MAX_YAML_NODES} values through YAML "
                             "aliases (&name / *name): write the settings out plainly")
        return loader.construct_document(node)
    finally:
        loader.dispose()


def read_yaml(path: Path) -> dict:
    kind = sniff(path)
    if kind not in (None, "a settings file (YAML)", "a JSON file"):  # JSON is YAML too
        kind = "a PyTorch file (a model or a run state)" if kind == TORCH else kind
        raise AeganError(f"config file {shown(path)} is {kind}, not a YAML file of settings: give a config file "
                         "(e.g. pretrain/<dataset>/<mt>.yaml)")
    try:
        text = Path(path).read_bytes().decode("utf-8")
        data = _load_text(text, Path(path))
    except FileNotFoundError:
        raise AeganError(f"config file not found: {shown(path)}") from None
    except IsADirectoryError:
        raise AeganError(f"config file {shown(path)} is a folder, not a YAML file") from None
    except UnicodeDecodeError as e:
        raise AeganError(f"config file {shown(path)} is not UTF-8 text (byte {e.start}): give a YAML file") from None
    except yaml.YAMLError as e:
        raise AeganError(f"config file {shown(path)} is not valid YAML: {str(e).splitlines()[0]}") from None
    except RecursionError:
        raise AeganError(f"config file {shown(path)} nests too deeply to be a config file") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise AeganError(f"config file {shown(path)} must hold a mapping of settings, not {type(data).__name__}")
    return data


def _type_ok(default: Any, value: Any) -> bool:
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, type(default))


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _unknown(source: str, name: str, key: str, known: dict) -> AeganError:
    close = difflib.get_close_matches(str(key), [str(k) for k in known], n=1)
    hint = f" (did you mean {name[: len(name) - len(str(key))]}{close[0]}?)" if close else ""
    return AeganError(f"{source}: unknown key {shown(name)}{hint}")


def _merge_value(default: Any, value: Any, name: str, source: str) -> Any:
    if isinstance(default, dict):
        if not isinstance(value, dict):
            raise AeganError(f"{source}: {shown(name)} must be a mapping, got {short(value)}")
        return merge(default, value, source, f"{name}.")
    if name in LEGACY_BOOLS and isinstance(value, bool):
        value = LEGACY_BOOLS[name][value]
    if default is None or name in NULLABLE:
        want = NULLABLE.get(name)
        if want is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if value is not None and want is not None and not isinstance(value, want):
            raise AeganError(f"{source}: {name} must be a {want.__name__} or null, got {short(value)}")
        return value
    if isinstance(default, float) and isinstance(value, str) and _is_float(value):
        return float(value)  # PyYAML reads 1e-3 (no dot) as a string
    if _type_ok(default, value):
        return float(value) if isinstance(default, float) else value
    raise AeganError(f"{source}: {name} must be of type {type(default).__name__} (like {default!r}), "
                     f"got {short(value)}")


def merge(base: dict, override: dict, source: str, prefix: str = "") -> dict:
    """Deep-merge `override` into a copy of `base`, refusing keys and types the base does not know."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        name = f"{prefix}{key}"
        if name in OPEN_MAPPINGS:
            if not isinstance(value, dict) or not set(value) <= OPEN_MAPPINGS[name]:
                allowed = ", ".join(sorted(OPEN_MAPPINGS[name]))
                raise AeganError(f"{source}: {name} must be a mapping with keys among {allowed}, got {short(value)}")
            for k, v in value.items():
                if not isinstance(v, (int, float)) or isinstance(v, bool):
                    raise AeganError(f"{source}: {name}.{k} must be a number, got {short(v)}")
            out[key] = dict(value)
            continue
        if key not in base and ALIASES.get(name) in base:
            key, name = ALIASES[name], f"{prefix}{ALIASES[name]}"
        if key not in base:
            raise _unknown(source, name, key, base)
        out[key] = _merge_value(base[key], value, name, source)
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
    """(dotted name, value) of every leaf of a settings tree (an open mapping counts as one leaf)."""
    for k, v in tree.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict) and name not in OPEN_MAPPINGS:
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


def _numbers(cfg: dict, prefix: str = "") -> list[tuple[str, float]]:
    """(dotted name, value) of every number in the config, the open mappings' included."""
    out = []
    for k, v in cfg.items():
        if isinstance(v, dict):
            out += _numbers(v, f"{prefix}{k}.")
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out.append((f"{prefix}{k}", v))
    return out


def validate(cfg: dict, source: str | None = None) -> None:
    """Cross-field checks that the type check cannot see; `source` names where the settings came from when they
    are not the files and flags of this run (a model's or run state's stored settings)."""
    try:
        _validate(cfg)
    except AeganError as e:
        if source is None:
            raise
        raise AeganError(f"{source}: {e}") from None


def _validate(cfg: dict) -> None:
    for name, value in _numbers(cfg):  # NaN passes every comparison below: refuse it (and inf) first
        if not math.isfinite(value):
            raise AeganError(f"{name} must be a finite number, got {value}")
    for k, v in cfg["train"]["wgan"]["match_item"].items():
        if v < 0:
            raise AeganError(f"train.wgan.match_item.{k} must be >= 0 (a loss weight), got {v}")
    feat, net, train = cfg["feat"], cfg["net"], cfg["train"]
    isize = net["isize"]
    if isize < 16 or isize & (isize - 1):
        raise AeganError(f"net.isize must be a power of two >= 16, got {isize}")
    if feat["mel_bin"] != isize:
        raise AeganError(f"feat.mel_bin ({feat['mel_bin']}) must equal net.isize ({isize}): segments are square")
    if feat["frame_num"] != isize:
        raise AeganError(f"feat.frame_num ({feat['frame_num']}) must equal net.isize ({isize}): segments are square")
    positive = {
        "feat.fft_num": feat["fft_num"], "feat.frame_hop": feat["frame_hop"], "feat.graph_hop_f": feat["graph_hop_f"],
        "net.nz": net["nz"], "net.ndf": net["ndf"], "net.ngf": net["ngf"], "train.epoch": train["epoch"],
        batch_key(cfg): batch_size(cfg), "train.wgan.ncritic": train["wgan"]["ncritic"],
        "train.lrD": train["lrD"], "train.lrG": train["lrG"],
    }
    for name, value in positive.items():
        if value <= 0:
            raise AeganError(f"{name} must be positive, got {value}")
    for name, allowed in CHOICES.items():
        if get(cfg, name) not in allowed:
            words = allowed[0] if len(allowed) == 1 else f"{', '.join(allowed[:-1])} or {allowed[-1]}"
            raise AeganError(f"{name} must be {words}, got {short(get(cfg, name))}")
    if net["act"] != ["leakyrelu", "relu"]:
        raise AeganError(f"net.act must be [leakyrelu, relu] (encoder/critic, decoder), got {short(net['act'])}")
    for name, (low, high, low_in, high_in) in RANGES.items():
        v = get(cfg, name)
        if not (low <= v if low_in else low < v) or not (v <= high if high_in else v < high):
            raise AeganError(f"{name} must be in {'[' if low_in else '('}{low}, {high}{']' if high_in else ')'}, "
                             f"got {v}")
    if cfg["detect"]["metric"]:
        from aegan.scoring.scores import resolve_metric  # a typo is named now, not after training

        resolve_metric(cfg["detect"]["metric"])
    if train["select"] == "metric" and not cfg["detect"]["metric"]:
        raise AeganError("train.select=metric needs detect.metric (e.g. --set detect.metric=D_lof)")


def load_config(dataset_root: Path, mt: str, config_file: str | None = None, sets: list[str] | None = None,
                cwd: Path | None = None) -> Resolved:
    """Resolve one run's config: defaults.yaml (the schema), the paper's settings for `mt`
    (pretrain/<dataset>/<mt>.yaml), the user's config.yaml (the original's files can replace it), then a
    --config file and --set items, each overriding the ones before."""
    ignored: list[str] = []
    schema = _schema_files(dataset_root / "defaults.yaml")
    files = [dataset_root.parent / "pretrain" / dataset_root.name / f"{mt}.yaml", dataset_root / "config.yaml"]
    layers = [(str(f), f, False) for f in files if f.exists()]
    if config_file:
        layers.append((config_file, Path(config_file), True))
    cfg: dict = {}
    for path in schema:  # the schema's own files may add keys; every later layer may only set them
        layer = _resolve_paths(read_yaml(path), dataset_root)
        layer.pop(EXTENDS, None)
        for old, new in layer.pop(RENAME, {}).items():  # the dataset's own spelling of an inherited key
            cfg = _renamed(cfg, old, new)
        cfg = _update(cfg, layer)
    explicit: set[str] = set()
    user: set[str] = set()
    sources = [str(f) for f in schema]
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
    validate(cfg)
    for key in PATH_KEYS:  # a path may name a top-level setting: ../data/dcase{year} (the first-shot years)
        cfg[key] = _fill(cfg[key], cfg, key)
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
        if name not in cfg or isinstance(cfg[name], (dict, list)):
            raise AeganError(f"{key}={path!r} names {{{name}}}, which is not a top-level setting")
        return str(cfg[name])

    return re.sub(r"\{(\w+)\}", value, path)


def _update(base: dict, layer: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in layer.items():
        out[key] = _update(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _schema_files(defaults: Path) -> list[Path]:
    """A defaults.yaml may start from another dataset's (`_extends: ../dcase2022/defaults.yaml`): one schema."""
    parent = read_yaml(defaults).get(EXTENDS)
    return [*_schema_files((defaults.parent / parent).resolve()), defaults] if parent else [defaults]


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


def dump(cfg: dict) -> str:
    return yaml.safe_dump(cfg, sort_keys=False, default_flow_style=None).rstrip()
