"""Our two torch files' only writer and reader: the model `<mt>.pth`, written once when its training run finishes (the
weights under the original's key names), and the run state `<mt>_last.pth`, rewritten after every epoch for --resume.
Every entry is checked on read: a damaged file is one line naming it, never a wrong result."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import torch

from aegan.core.errors import AeganError, shown
from aegan.data.clips import Identity, identity_from
from aegan.settings.checks import completed
from aegan.settings.layers import validate
from aegan.store import checkpoint
from aegan.store.model_dir import model_of

FORMAT = "aegan-ad model"
RUN_STATE = FORMAT + " run state"
VERSION = 2


@dataclass(kw_only=True)
class ModelFile:
    """Everything `<mt>.pth` holds, type-checked."""

    netG: dict
    netD: dict
    config: dict
    identity: Identity
    feat_max: float
    feat_min: float
    train_emb: np.ndarray  # (training clips, C) float32, in the original's reference order
    sample_rate: int
    epoch: int  # the selected epoch
    metric: str  # the metric selected in training (the scores' metric when detect.metric is unset)
    value: float  # its summary value (nan without a labelled dev test set)
    best_key: str  # the original's name of that value: best_hmean / best_aver
    thresholds: dict[str, dict] = field(default_factory=dict)  # "<metric>@<percentile>" -> the fitted rule
    history: list[dict] = field(default_factory=list)
    seed: int = 0
    run_id: str = ""


def threshold_key(metric: str, percentile: float) -> str:
    return f"{metric}@{percentile}"


def write(path: Path, m: ModelFile) -> None:
    """The model, in one atomic step."""
    state = {"format": FORMAT, "version": VERSION, "netG": m.netG, "netD": m.netD, m.best_key: m.value,
             "config": m.config, "identity": m.identity.as_dict(),
             "feat_max": float(m.feat_max), "feat_min": float(m.feat_min),
             "train_emb": torch.from_numpy(np.ascontiguousarray(m.train_emb, dtype=np.float32)),
             "sample_rate": int(m.sample_rate), "epoch": int(m.epoch), "metric": m.metric,
             "thresholds": m.thresholds, "history": m.history, "seed": int(m.seed), "run_id": m.run_id}
    checkpoint.save(path, state)


def is_original(state: dict) -> bool:
    """The original code's checkpoint: the weights and its best value, nothing of ours."""
    return "format" not in state and "config" not in state


def _checked(state: dict, path: Path) -> ModelFile:
    """The model file's entries, each checked: a damaged or foreign file is one line, never a wrong result."""
    if state.get("version") != VERSION:
        raise AeganError(f"model {shown(path)} has format version {state.get('version')!r}; this code reads "
                         f"version {VERSION}: train it again with this version")
    # the selected value under the original's key, named by the evaluation rule (evaluation.Rule.best_key)
    best = [k for k in state if isinstance(k, str) and k.startswith("best_")]
    best_key = best[0] if len(best) == 1 else None
    checks = {"config": isinstance(state.get("config"), dict) and isinstance(state["config"].get("net"), dict),
              "feat_max": finite(state.get("feat_max")), "feat_min": finite(state.get("feat_min")),
              "train_emb": isinstance(state.get("train_emb"), torch.Tensor) and state["train_emb"].dim() == 2,
              "sample_rate": isinstance(state.get("sample_rate"), int) and state["sample_rate"] > 0,
              "epoch": isinstance(state.get("epoch"), int), "metric": isinstance(state.get("metric"), str),
              "best value": best_key is not None and isinstance(state[best_key], float),
              "thresholds": isinstance(state.get("thresholds"), dict),
              "history": isinstance(state.get("history"), list),
              "netG": weights(state.get("netG")), "netD": weights(state.get("netD"))}
    for name, ok in checks.items():
        if not ok:
            raise damaged(path, name)
    if not state["feat_max"] > state["feat_min"]:
        raise damaged(path, "feat_max/feat_min")
    identity = stored_identity(state, path)
    if state["train_emb"].shape[0] != len(identity.clips):
        raise damaged(path, "train_emb (one row per training clip)")
    check_settings(state["config"], path)
    return ModelFile(netG=state["netG"], netD=state["netD"], config=completed(state["config"]), identity=identity,
                     feat_max=float(state["feat_max"]), feat_min=float(state["feat_min"]),
                     train_emb=state["train_emb"].float().numpy(), sample_rate=state["sample_rate"],
                     epoch=state["epoch"], metric=state["metric"], value=float(state[best_key]), best_key=best_key,
                     thresholds=check_thresholds(state["thresholds"], path), history=state["history"],
                     seed=int(state.get("seed", 0)), run_id=str(state.get("run_id", "")))


def stored_identity(state: dict, path: Path) -> Identity:
    identity = identity_from(state.get("identity"))
    if identity is None:
        raise damaged(path, "identity")
    return identity


def check_settings(cfg: dict, path: Path) -> None:
    """The stored settings pass the checks of their declaration: a damaged value never reaches features or networks."""
    try:
        validate(cfg, f"the settings stored in {shown(path)}")
    except (KeyError, TypeError):
        raise damaged(path, "config") from None


def check_thresholds(raw: object, path: Path) -> dict[str, dict]:
    if not isinstance(raw, dict):
        raise damaged(path, "thresholds")
    for key, rule in raw.items():
        if not (isinstance(key, str) and isinstance(rule, dict) and isinstance(rule.get("metric"), str)
                and finite(rule.get("threshold")) and finite(rule.get("percentile"))):
            raise damaged(path, f"thresholds[{key!r}]")
    return raw


def finite(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def weights(sd: object) -> bool:
    return isinstance(sd, dict) and bool(sd) and all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                    for k, v in sd.items())


def damaged(path: Path, entry: str) -> AeganError:
    return AeganError(f"model file {shown(path)} is damaged or was not written by AEGAN-AD: its entry {entry} is "
                      "missing or malformed; train it again or restore the file")


def read(path: str | Path, device: torch.device | str = "cpu") -> tuple[dict, ModelFile | None]:
    """(the raw checkpoint, its checked ModelFile; None for the original code's format); any other file is one line."""
    path = Path(path)
    state = checkpoint.load(path, device)
    if state.get("format") == FORMAT:
        return state, _checked(state, path)
    if state.get("format") == RUN_STATE:
        raise AeganError(f"{shown(path)} is the run state of a training run (train.py --resume continues from it), "
                         f"not a model: give {model_of(path).name}, written when training finishes")
    if not is_original(state):
        raise AeganError(f"model {shown(path)} was written by an earlier version of AEGAN-AD (no format version): "
                         "train it again with this version")
    for name in ("netG", "netD"):
        if not weights(state[name]):
            raise damaged(path, name)
    return state, None


@dataclass(kw_only=True)
class RunState:
    """Everything `<mt>_last.pth` holds."""

    netG: dict  # the networks and their optimizers as they are after `epoch` epochs
    netD: dict
    optG: dict
    optD: dict
    epoch: int  # epochs completed
    best: dict  # {"value", "epoch", "metric"} of the epoch selected so far
    history: list[dict]  # per epoch: its losses and evaluation
    selected: dict | None  # the selected epoch's netG, netD state dicts and training embeddings
    config: dict
    seed: int
    identity: Identity
    run_id: str
    feat_max: float
    feat_min: float
    rng_cpu: torch.Tensor  # the random generators' states: a resumed run draws what an uninterrupted one would
    rng_cuda: torch.Tensor | None = None
    pending: dict | None = None  # an evaluated epoch whose selection was not settled (training.overlap.Pending)


def write_run_state(path: Path, state: RunState) -> None:
    data = {f.name: getattr(state, f.name) for f in fields(state)}
    data["identity"] = state.identity.as_dict()
    if state.rng_cuda is None:
        del data["rng_cuda"]
    checkpoint.save(path, {"format": RUN_STATE, "version": VERSION, **data})


def read_run_state(path: Path, device: torch.device) -> RunState:
    """The run state at `path`; a model file there, a damaged entry or another version is one line."""
    state = checkpoint.load(path, device)
    if state.get("format") == FORMAT or is_original(state):
        raise AeganError(f"{shown(path)} is a model file, not the run state of a training run: --resume continues "
                         f"from the {path.name} that train.py writes after every epoch (train anew without --resume)")
    if state.get("format") != RUN_STATE or state.get("version") != VERSION:
        raise AeganError(f"{shown(path)} is not a run state of this version of AEGAN-AD: train anew without --resume")
    for key in ("epoch", "config", "identity", "seed", "run_id", "optG", "optD", "rng_cpu", "best", "history"):
        if key not in state:
            raise damaged(path, key)
    check_settings(state["config"], path)
    names = {f.name for f in fields(RunState)}
    return RunState(**{k: v for k, v in state.items() if k in names and k != "identity"},
                    identity=stored_identity(state, path))
