"""Configuration as data: defaults <- pretrain/<dataset>/<mt>.yaml <- --config FILE <- --set k=v.

The dataset's config.yaml is the schema: a key it does not hold is a typo, and a value must have the
type of its default. The result is one plain dict, validated once and passed down.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from .errors import AeganError

PATH_KEYS = ("dataset_dir", "model_dir", "spec_dir", "log_dir", "detect_dir", "result_dir", "loc_dir")
# Mappings whose keys are data, not schema: the feature-matching weights.
OPEN_MAPPINGS = {"train.wgan.match_item": {"mu", "sigma"}}
# Keys whose default is null but which take a value of this type.
NULLABLE = {"detect.metric": str}


def read_yaml(path: Path) -> dict:
    try:
        with open(path) as f:
            data = yaml.safe_load(f)
    except FileNotFoundError:
        raise AeganError(f"config file not found: {path}") from None
    except yaml.YAMLError as e:
        raise AeganError(f"config file {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise AeganError(f"config file {path} must hold a mapping of settings, not {type(data).__name__}")
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


def merge(base: dict, override: dict, source: str, prefix: str = "") -> dict:
    """Deep-merge `override` into a copy of `base`, refusing keys and types the base does not know."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        name = f"{prefix}{key}"
        if name in OPEN_MAPPINGS:
            if not isinstance(value, dict) or not set(value) <= OPEN_MAPPINGS[name]:
                allowed = ", ".join(sorted(OPEN_MAPPINGS[name]))
                raise AeganError(f"{source}: {name} must be a mapping with keys among {allowed}, got {value!r}")
            for k, v in value.items():
                if not isinstance(v, (int, float)) or isinstance(v, bool):
                    raise AeganError(f"{source}: {name}.{k} must be a number, got {v!r}")
            out[key] = dict(value)
            continue
        if key not in base:
            raise AeganError(f"{source}: unknown key {name}")
        default = base[key]
        if isinstance(default, dict):
            if not isinstance(value, dict):
                raise AeganError(f"{source}: {name} must be a mapping, got {value!r}")
            out[key] = merge(default, value, source, f"{name}.")
        elif default is None or name in NULLABLE:
            want = NULLABLE.get(name)
            if value is not None and want is not None and not isinstance(value, want):
                raise AeganError(f"{source}: {name} must be a {want.__name__} or null, got {value!r}")
            out[key] = value
        elif isinstance(default, float) and isinstance(value, str) and _is_float(value):
            out[key] = float(value)  # PyYAML reads 1e-3 (no dot) as a string
        elif _type_ok(default, value):
            out[key] = float(value) if isinstance(default, float) else value
        else:
            raise AeganError(
                f"{source}: {name} must be of type {type(default).__name__} (like {default!r}), got {value!r}"
            )
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


def validate(cfg: dict) -> None:
    """Cross-field checks that the type check cannot see."""
    feat, net, train = cfg["feat"], cfg["net"], cfg["train"]
    isize = net["isize"]
    if isize < 16 or isize & (isize - 1):
        raise AeganError(f"net.isize must be a power of two >= 16, got {isize}")
    if feat["n_mels"] != isize:
        raise AeganError(f"feat.n_mels ({feat['n_mels']}) must equal net.isize ({isize}): segments are square")
    if feat["frame_num"] != isize:
        raise AeganError(f"feat.frame_num ({feat['frame_num']}) must equal net.isize ({isize}): segments are square")
    positive = {
        "feat.n_fft": feat["n_fft"], "feat.hop_length": feat["hop_length"], "feat.graph_hop_f": feat["graph_hop_f"],
        "net.nz": net["nz"], "net.ndf": net["ndf"], "net.ngf": net["ngf"], "train.epoch": train["epoch"],
        "train.bs": train["bs"], "train.wgan.ncritic": train["wgan"]["ncritic"],
        "train.lrD": train["lrD"], "train.lrG": train["lrG"],
    }
    for name, value in positive.items():
        if value <= 0:
            raise AeganError(f"{name} must be positive, got {value}")
    if cfg["train_set"] not in ("dev", "eval", "deval"):
        raise AeganError(f"train_set must be dev, eval or deval, got {cfg['train_set']!r}")
    if net["normalize"]["g"] not in ("ln", "bn"):
        raise AeganError(f"net.normalize.g must be ln or bn, got {net['normalize']['g']!r}")
    if net["normalize"]["d"] != "ln":
        # A batch-coupled norm in the critic would break the per-sample gradient penalty.
        raise AeganError(f"net.normalize.d must be ln (the WGAN-GP critic), got {net['normalize']['d']!r}")
    if net["act"] != ["leakyrelu", "relu"]:
        raise AeganError(f"net.act must be [leakyrelu, relu] (encoder/critic, decoder), got {net['act']!r}")
    if not 0 <= train["beta1"] < 1:
        raise AeganError(f"train.beta1 must be in [0, 1), got {train['beta1']}")
    if train["select"] not in ("best", "metric", "last"):
        raise AeganError(f"train.select must be best, metric or last, got {train['select']!r}")
    if train["select"] == "metric" and not cfg["detect"]["metric"]:
        raise AeganError("train.select=metric needs detect.metric (e.g. --set detect.metric=D_lof)")
    if not 0 < cfg["detect"]["p"] <= 1:
        raise AeganError(f"detect.p (the pAUC max FPR) must be in (0, 1], got {cfg['detect']['p']}")
    if not 0 < cfg["detect"]["decision_percentile"] < 1:
        raise AeganError(f"detect.decision_percentile must be in (0, 1), got {cfg['detect']['decision_percentile']}")
    if train["amp"] not in ("fp32", "bf16"):
        raise AeganError(f"train.amp must be fp32 or bf16, got {train['amp']!r}")


def load_config(
    dataset_root: Path, mt: str, config_file: str | None = None, sets: list[str] | None = None
) -> tuple[dict, list[str]]:
    """Resolve the config of one run; returns it with the list of sources that were applied."""
    defaults_path = dataset_root / "config.yaml"
    cfg = read_yaml(defaults_path)
    sources = [str(defaults_path)]
    repo_root = dataset_root.parent
    pretrain = repo_root / "pretrain" / dataset_root.name / f"{mt}.yaml"
    if pretrain.exists():
        cfg = merge(cfg, read_yaml(pretrain), str(pretrain))
        sources.append(str(pretrain))
    if config_file:
        path = Path(config_file)
        cfg = merge(cfg, read_yaml(path), str(path))
        sources.append(str(path))
    for item in sets or []:
        cfg = merge(cfg, parse_set(item), f"--set {item}")
        sources.append(f"--set {item}")
    validate(cfg)
    for key in PATH_KEYS:
        path = Path(cfg[key]).expanduser()
        cfg[key] = str(path if path.is_absolute() else (repo_root / path).resolve())
    return cfg, sources


def dump(cfg: dict) -> str:
    return yaml.safe_dump(cfg, sort_keys=False, default_flow_style=None).rstrip()
