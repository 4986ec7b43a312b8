"""`<mt>.scoring.pt`: what an original checkpoint lacks (the scaling, the critic's reference set), and thresholds fitted
later for other metrics (of any model). A cache keyed on the checkpoint's sha256, the identity and the settings it
was derived with: written by test.py / loc.py, derived again when it no longer matches."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from aegan.data.clips import Identity, clip_difference, identity_from
from aegan.settings.checks import tagged
from aegan.settings.layers import get
from aegan.settings.schema import FEATURES, SEGMENTS
from aegan.store import checkpoint
from aegan.store.model_dir import sidecar_of
from aegan.store.model_file import check_thresholds

VERSION = 2


@dataclass(kw_only=True)
class Sidecar:
    checkpoint_sha256: str
    identity: Identity | None  # of the data it was derived from (None: derived nothing, only thresholds)
    settings: dict  # derived_settings at derivation
    config: dict | None = None
    feat_max: float | None = None
    feat_min: float | None = None
    train_emb: np.ndarray | None = None
    sample_rate: int | None = None
    thresholds: dict[str, dict] = field(default_factory=dict)


def derived_settings(cfg: dict) -> dict:
    """What the derived parts depend on besides the training clips: the feature and segment settings."""
    return {k: get(cfg, k) for k in (*tagged(FEATURES), *tagged(SEGMENTS))}


@contextlib.contextmanager
def _locked(model: Path) -> Iterator[None]:
    """Held while a sidecar is read and replaced: an exclusive flock on the checkpoint file itself (no lock file
    left behind; the kernel releases it however the process ends). Without the file to lock, no lock."""
    try:
        fd = os.open(model, os.O_RDONLY)
    except OSError:
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _kept_by_others(target: Path, side: Sidecar) -> dict[str, dict]:
    """The thresholds the sidecar on disk holds for this same checkpoint, data and settings: other runs (another
    test.py with other detection settings) kept them since this one read it."""
    try:
        on_disk = _load(target)
    except Exception:  # noqa: BLE001 - absent, unreadable or of another version: nothing to keep
        return {}
    same = (on_disk.checkpoint_sha256, on_disk.identity, on_disk.settings) == (side.checkpoint_sha256,
                                                                                side.identity, side.settings)
    return on_disk.thresholds if same else {}


def write(model: Path, side: Sidecar) -> Path:
    """The sidecar of checkpoint `model`, beside it, merged under a lock with the thresholds that runs beside this
    one kept there (each threshold a run announces stays); returns its path."""
    target = sidecar_of(model)
    with _locked(model):
        side = dataclasses.replace(side, thresholds={**_kept_by_others(target, side), **side.thresholds})
        data = dataclasses.asdict(side)
        data["identity"] = side.identity.as_dict() if side.identity else None
        if side.train_emb is not None:
            data["train_emb"] = torch.from_numpy(np.ascontiguousarray(side.train_emb, dtype=np.float32))
        checkpoint.save(target, {"version": VERSION, **data})
    return target


def _load(path: Path) -> Sidecar:
    data = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(data, dict) or data.get("version") != VERSION:
        raise ValueError("another version")
    identity = identity_from(data["identity"]) if data.get("identity") is not None else None
    if data.get("identity") is not None and identity is None:
        raise ValueError("a malformed identity")
    emb = data.get("train_emb")
    return Sidecar(checkpoint_sha256=data["checkpoint_sha256"], identity=identity, settings=data["settings"],
                   config=data.get("config"), feat_max=data.get("feat_max"), feat_min=data.get("feat_min"),
                   train_emb=emb.float().numpy() if isinstance(emb, torch.Tensor) else None,
                   sample_rate=data.get("sample_rate"), thresholds=check_thresholds(data.get("thresholds", {}), path))


def read(model: Path, digest: str, expected: Identity | None = None, cfg: dict | None = None) -> Sidecar | None:
    """The sidecar of checkpoint `model` when it belongs to this checkpoint file (its sha256) and, given them, to
    this data and these settings; else None (it is a cache: the caller derives it again), saying why."""
    side = sidecar_of(model)
    if not side.exists():
        return None
    try:
        out = _load(side)
    except Exception:  # noqa: BLE001 - a cache that cannot be read is derived again
        print(f"model: sidecar {side} is unreadable or of another version; deriving it again")
        return None
    if out.checkpoint_sha256 != digest:
        print(f"model: sidecar {side} belongs to another checkpoint file; deriving it again")
        return None
    if expected is not None and out.identity is not None and out.identity != expected:
        print(f"model: sidecar {side} was derived from other training clips ("
              f"{clip_difference(out.identity.clips, expected.clips)}); deriving it again")
        return None
    if cfg is not None and out.identity is not None and out.settings != derived_settings(cfg):
        print(f"model: sidecar {side} was derived with other settings; deriving it again")
        return None
    return out
