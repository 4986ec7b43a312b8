"""The trained model as one file, and the files beside it in model_dir: this module alone writes and reads them.

- `<mt>.pth`, the model: the weights (under the original's key names, so its test.py loads them too),
  `format` and `version`, `identity` (below), the resolved settings (the network's in `config.net`), the
  feature scaling, the
  critic's reference set (the training clips' embeddings), `thresholds`, the selected epoch and metric, the
  history. Written once, atomically, when a training run finishes.
- `<mt>_last.pth`, the run's resumable state: weights, optimizers, random generators, the selected epoch's
  weights, the same identity and settings. Written atomically after every epoch.
- `<mt>.scoring.pt`, a cache for a checkpoint that lacks what scoring needs (the original code's): the derived
  scaling and reference set, and thresholds fitted later, keyed on the checkpoint's sha256, the identity and
  feature settings it was derived with. Written by test.py / loc.py, re-derived when it no longer matches.
- `<mt>.lock`, held by the training run of `<mt>` (its pid, host, start); removed when the run ends, taken
  over from a killed run.

Identity: the dataset (and year), the machine type, the training parts and the training clips (each clip's
name and a digest of its content), recorded when training starts and checked on every read against the
data the command is about to use: a model is never silently used for another machine type, dataset or set of
training clips. Every entry of a file is checked for its type on read; a damaged file is one line naming it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import math
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from aegan.core.errors import AeganError, shown
from aegan.settings.checks import tagged
from aegan.settings.layers import get, validate
from aegan.settings.schema import FEATURES, SEGMENTS
from aegan.store import checkpoint

FORMAT = "aegan-ad model"
RUN_STATE = FORMAT + " run state"
VERSION = 2
SIDECAR_VERSION = 2
# What a derived part of an original checkpoint depends on: the features, the segments and the training clips.
DERIVED_SETTINGS = (*tagged(FEATURES), *tagged(SEGMENTS))


# ---- identity -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Identity:
    """What a model was trained on."""

    dataset: str  # "dcase2022", or the first-shot year's "dcase2025"
    mt: str
    parts: str  # the training parts, "dev" / "eval" / "dev+eval"
    clips: tuple[tuple[str, str], ...]  # (clip path below dataset_dir, content digest), in listing order

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(repr(self.clips).encode()).hexdigest()[:16]

    def as_dict(self) -> dict:
        return {"dataset": self.dataset, "mt": self.mt, "parts": self.parts, "clips": [list(c) for c in self.clips],
                "fingerprint": self.fingerprint}


def identity_of(dataset: str, mt: str, parts: list[str], clips: list, dataset_dir: str | Path) -> Identity:
    """The identity of a model trained on `clips` (data.clips.Clip) of `dataset_dir`."""
    from aegan.data.cache import clip_digest  # the same digests the feature cache is keyed on

    root = Path(dataset_dir)
    rows = []
    for c in clips:
        try:
            name = c.path.relative_to(root).as_posix()
        except ValueError:
            name = c.path.name
        rows.append((name, clip_digest(c.path)))
    return Identity(dataset, mt, "+".join(parts), tuple(rows))


def _identity_from(raw: object, path: Path) -> Identity:
    if not (isinstance(raw, dict) and all(isinstance(raw.get(k), str) for k in ("dataset", "mt", "parts"))
            and isinstance(raw.get("clips"), list)
            and all(isinstance(c, (list, tuple)) and len(c) == 2 and all(isinstance(x, str) for x in c)
                    for c in raw["clips"])):
        raise _damaged(path, "identity")
    return Identity(raw["dataset"], raw["mt"], raw["parts"], tuple(tuple(c) for c in raw["clips"]))


def check_identity(path: Path, stored: Identity, expected: Identity, what: str = "model") -> None:
    """One line naming what differs between the data a model was trained on and the data at hand."""
    where = shown(path)
    if stored.mt != expected.mt:
        raise AeganError(f"{what} {where} was trained on {stored.mt}, not {expected.mt}: train {expected.mt} "
                         f"(or point model_dir at its model)")
    if stored.dataset != expected.dataset:
        raise AeganError(f"{what} {where} was trained on {stored.dataset}, not {expected.dataset}: use that "
                         f"dataset's scripts, or train on {expected.dataset}")
    if stored.parts != expected.parts:
        raise AeganError(f"{what} {where} was trained on the {stored.parts} training clips, but train_set gives "
                         f"{expected.parts} now: set train_set back, or train again")
    if stored.clips != expected.clips:
        raise AeganError(f"{what} {where} was trained on other training clips than dataset_dir holds now "
                         f"({_clip_difference(stored.clips, expected.clips)}): point dataset_dir at the data it "
                         "was trained on, or train again")


def _clip_difference(old: tuple, new: tuple) -> str:
    before, now = dict(old), dict(new)
    added = [n for n in now if n not in before]
    removed = [n for n in before if n not in now]
    changed = [n for n in now if n in before and before[n] != now[n]]
    parts = []
    for words, names in (("added", added), ("removed", removed), ("changed", changed)):
        if names:
            parts.append(f"{len(names)} {words}, e.g. {shown(names[0])}")
    return "; ".join(parts) or "the same clips in another order"


# ---- settings ------------------------------------------------------------------------------------------
# ---- the model file -----------------------------------------------------------------------------------
@dataclass
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


def write_model(path: Path, m: ModelFile) -> None:
    """The model, in one atomic step."""
    state = {"format": FORMAT, "version": VERSION, "netG": m.netG, "netD": m.netD, m.best_key: m.value,
             "config": m.config, "identity": m.identity.as_dict(),
             "feat_max": float(m.feat_max), "feat_min": float(m.feat_min),
             "train_emb": torch.from_numpy(np.ascontiguousarray(m.train_emb, dtype=np.float32)),
             "sample_rate": int(m.sample_rate), "epoch": int(m.epoch), "metric": m.metric,
             "thresholds": m.thresholds, "history": m.history, "seed": int(m.seed), "run_id": m.run_id}
    checkpoint.save(path, state)


def is_ours(state: dict) -> bool:
    return state.get("format") == FORMAT


def is_original(state: dict) -> bool:
    """The original code's checkpoint: the weights and its best value, nothing of ours."""
    return "format" not in state and "config" not in state


def model_from_state(state: dict, path: Path) -> ModelFile:
    """The model file's entries, each checked: a damaged or foreign file is one line, never a wrong result."""
    if state.get("version") != VERSION:
        raise AeganError(f"model {shown(path)} has format version {state.get('version')!r}; this code reads "
                         f"version {VERSION}: train it again with this version")
    # the selected value under the original's key, named by the evaluation rule (evaluation.Rule.best_key)
    best = [k for k in state if isinstance(k, str) and k.startswith("best_")]
    best_key = best[0] if len(best) == 1 else None
    checks = {"config": isinstance(state.get("config"), dict) and isinstance(state["config"].get("net"), dict),
              "feat_max": _finite(state.get("feat_max")), "feat_min": _finite(state.get("feat_min")),
              "train_emb": isinstance(state.get("train_emb"), torch.Tensor) and state["train_emb"].dim() == 2,
              "sample_rate": isinstance(state.get("sample_rate"), int) and state["sample_rate"] > 0,
              "epoch": isinstance(state.get("epoch"), int), "metric": isinstance(state.get("metric"), str),
              "best value": best_key is not None and isinstance(state[best_key], float),
              "thresholds": isinstance(state.get("thresholds"), dict),
              "history": isinstance(state.get("history"), list),
              "netG": _weights(state.get("netG")), "netD": _weights(state.get("netD"))}
    for name, ok in checks.items():
        if not ok:
            raise _damaged(path, name)
    if not state["feat_max"] > state["feat_min"]:
        raise _damaged(path, "feat_max/feat_min")
    identity = _identity_from(state.get("identity"), path)
    if state["train_emb"].shape[0] != len(identity.clips):
        raise _damaged(path, "train_emb (one row per training clip)")
    thresholds = check_thresholds(state["thresholds"], path)
    check_settings(state["config"], path)
    return ModelFile(state["netG"], state["netD"], state["config"], identity,
                     float(state["feat_max"]), float(state["feat_min"]), state["train_emb"].float().numpy(),
                     state["sample_rate"], state["epoch"], state["metric"], float(state[best_key]), best_key,
                     thresholds, state["history"], int(state.get("seed", 0)), str(state.get("run_id", "")))


def check_settings(cfg: dict, path: Path) -> None:
    """The settings a model or run state stores pass the checks of settings from a file (config.validate), the
    message naming the file: a damaged value never reaches the features or the networks."""
    try:
        validate(cfg, f"the settings stored in {shown(path)}")
    except (KeyError, TypeError):
        raise _damaged(path, "config") from None


def check_thresholds(raw: object, path: Path) -> dict[str, dict]:
    if not isinstance(raw, dict):
        raise _damaged(path, "thresholds")
    for key, rule in raw.items():
        if not (isinstance(key, str) and isinstance(rule, dict) and isinstance(rule.get("metric"), str)
                and _finite(rule.get("threshold")) and _finite(rule.get("percentile"))):
            raise _damaged(path, f"thresholds[{key!r}]")
    return raw


def _finite(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _weights(sd: object) -> bool:
    return isinstance(sd, dict) and bool(sd) and all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                    for k, v in sd.items())


def _damaged(path: Path, entry: str) -> AeganError:
    return AeganError(f"model file {shown(path)} is damaged or was not written by AEGAN-AD: its entry {entry} is "
                      "missing or malformed; train it again or restore the file")


def read(path: str | Path, device: torch.device | str = "cpu") -> tuple[dict, ModelFile | None]:
    """(the raw checkpoint, its checked ModelFile when it is ours; None for the original code's format). A file
    of an earlier version of this code is one line."""
    path = Path(path)
    state = checkpoint.load(path, device)
    if is_ours(state):
        return state, model_from_state(state, path)
    if state.get("format") == RUN_STATE:
        raise AeganError(f"{shown(path)} is the run state of a training run (train.py --resume continues from it), "
                         f"not a model: give {path.name.removesuffix('_last.pth')}.pth, written when training "
                         "finishes")
    if not is_original(state):
        raise AeganError(f"model {shown(path)} was written by an earlier version of AEGAN-AD (no format version): "
                         "train it again with this version")
    for name in ("netG", "netD"):
        if not _weights(state[name]):
            raise _damaged(path, name)
    return state, None


# ---- the sidecar of a checkpoint that lacks what scoring needs -----------------------------------------
@dataclass
class Sidecar:
    checkpoint_sha256: str
    identity: Identity | None  # of the data it was derived from (None: derived nothing, only thresholds)
    settings: dict  # DERIVED_SETTINGS at derivation
    config: dict | None = None
    feat_max: float | None = None
    feat_min: float | None = None
    train_emb: np.ndarray | None = None
    sample_rate: int | None = None
    thresholds: dict[str, dict] = field(default_factory=dict)


def sidecar_path(path: Path) -> Path:
    return path.with_name(f"{path.stem}.scoring.pt")


def derived_settings(cfg: dict) -> dict:
    return {k: get(cfg, k) for k in DERIVED_SETTINGS}


def write_sidecar(path: Path, side: Sidecar) -> Path:
    target = sidecar_path(path)
    data = asdict(side)
    data["identity"] = side.identity.as_dict() if side.identity else None
    if side.train_emb is not None:
        data["train_emb"] = torch.from_numpy(np.ascontiguousarray(side.train_emb, dtype=np.float32))
    checkpoint.save(target, {"version": SIDECAR_VERSION, **data})
    return target


def read_sidecar(path: Path, digest: str, expected: Identity | None = None, cfg: dict | None = None) -> Sidecar | None:
    """The sidecar of checkpoint `path` when it belongs to this checkpoint file (its sha256) and, given them, to
    this data and these settings; else None (it is a cache: the caller derives it again), saying why."""
    side = sidecar_path(path)
    if not side.exists():
        return None
    try:
        data = torch.load(side, map_location="cpu", weights_only=True)
        if not isinstance(data, dict) or data.get("version") != SIDECAR_VERSION:
            raise ValueError("another version")
        identity = _identity_from(data["identity"], side) if data.get("identity") is not None else None
        thresholds = check_thresholds(data.get("thresholds", {}), side)
        emb = data.get("train_emb")
        emb = emb.float().numpy() if isinstance(emb, torch.Tensor) else None
        out = Sidecar(data["checkpoint_sha256"], identity, data["settings"], data.get("config"), data.get("feat_max"),
                      data.get("feat_min"), emb, data.get("sample_rate"), thresholds)
    except Exception:  # noqa: BLE001 - a cache that cannot be read is derived again
        print(f"model: sidecar {side} is unreadable or of another version; deriving it again")
        return None
    if out.checkpoint_sha256 != digest:
        print(f"model: sidecar {side} belongs to another checkpoint file; deriving it again")
        return None
    if expected is not None and out.identity is not None and out.identity != expected:
        print(f"model: sidecar {side} was derived from other training clips ("
              f"{_clip_difference(out.identity.clips, expected.clips)}); deriving it again")
        return None
    if cfg is not None and out.identity is not None and out.settings != derived_settings(cfg):
        print(f"model: sidecar {side} was derived with other settings; deriving it again")
        return None
    return out


# ---- the run's resumable state -----------------------------------------------------------------------
def write_last(path: Path, state: dict) -> None:
    """`<mt>_last.pth`: the run state after an epoch (built by training_setup.save_last), atomically."""
    checkpoint.save(path, {"format": RUN_STATE, "version": VERSION, **state})


def read_last(path: Path, device: torch.device) -> dict:
    state = checkpoint.load(path, device)
    if is_ours(state) or is_original(state):
        raise AeganError(f"{shown(path)} is a model file, not the run state of a training run: --resume continues "
                         f"from the {path.name} that train.py writes after every epoch (train anew without --resume)")
    if state.get("format") != RUN_STATE or state.get("version") != VERSION:
        raise AeganError(f"{shown(path)} is not a run state of this version of AEGAN-AD: train anew without --resume")
    for key in ("epoch", "config", "identity", "seed", "run_id", "optG", "optD", "rng_cpu", "best", "history"):
        if key not in state:
            raise _damaged(path, key)
    state["identity"] = _identity_from(state["identity"], path)
    check_settings(state["config"], path)
    return state


# ---- one run per model at a time -----------------------------------------------------------------------
def lock_path(model_dir: str | Path, mt: str) -> Path:
    return Path(model_dir) / f"{mt}.lock"


@contextlib.contextmanager
def training_lock(model_dir: str | Path, mt: str) -> Iterator[Path]:
    """Held for a whole training run of `mt` in `model_dir`. The kernel releases it when its process dies,
    however it dies, so the lock of a killed run is taken over; the file is removed when the run ends."""
    path = lock_path(model_dir, mt)
    created = not path.parent.exists()
    while True:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise AeganError(f"cannot write in model_dir {shown(path.parent)}: {e.strerror or e} (make it writable, "
                             "or set model_dir to a folder you can write)") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 512).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise AeganError(f"{shown(Path(model_dir) / mt)} is being trained by {holder} (lock {shown(path)}): "
                             "wait for that run to end, or give this one another model_dir") from None
        try:  # the file may have been removed by its previous holder between our open and lock: retry
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    left = os.read(fd, 512).decode(errors="replace").strip()
    if left:
        print(f"model: took over the lock {shown(path)} left by {left}, which is no longer running")
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"process {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}"
              .encode(), 0)
    try:
        yield path
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(fd)
        if created:  # a run that failed before writing anything leaves no empty model_dir behind
            with contextlib.suppress(OSError):
                path.parent.rmdir()
