"""The resumable state of a training run, `<mt>_last.pth`: its only writer and reader. Rewritten atomically after
every epoch; --resume continues from it, and the model file is written from it when the run finishes."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch

from aegan.core.errors import AeganError, shown
from aegan.data.identity import Identity
from aegan.store import checkpoint
from aegan.store.model_file import RUN_STATE, VERSION, check_settings, damaged, is_original, is_ours, stored_identity


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


def write(path: Path, state: RunState) -> None:
    data = {f.name: getattr(state, f.name) for f in dataclasses.fields(state)}
    data["identity"] = state.identity.as_dict()
    if state.rng_cuda is None:
        del data["rng_cuda"]
    checkpoint.save(path, {"format": RUN_STATE, "version": VERSION, **data})


def read(path: Path, device: torch.device) -> RunState:
    """The run state at `path`; a model file there, a damaged entry or another version is one line."""
    state = checkpoint.load(path, device)
    if is_ours(state) or is_original(state):
        raise AeganError(f"{shown(path)} is a model file, not the run state of a training run: --resume continues "
                         f"from the {path.name} that train.py writes after every epoch (train anew without --resume)")
    if state.get("format") != RUN_STATE or state.get("version") != VERSION:
        raise AeganError(f"{shown(path)} is not a run state of this version of AEGAN-AD: train anew without --resume")
    for key in ("epoch", "config", "identity", "seed", "run_id", "optG", "optD", "rng_cpu", "best", "history"):
        if key not in state:
            raise damaged(path, key)
    check_settings(state["config"], path)
    fields = {f.name for f in dataclasses.fields(RunState)}
    return RunState(**{k: v for k, v in state.items() if k in fields and k != "identity"},
                    identity=stored_identity(state, path))
