"""--resume: the run's own settings and seed from its run state (checked before any feature work), and its
networks, optimizers, random generators and progress restored, so that it ends with the weights of an
uninterrupted run."""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from aegan.core.errors import AeganError, shown
from aegan.core.text import plural
from aegan.data.identity import Identity, check_identity
from aegan.settings.checks import tagged
from aegan.settings.layers import Resolved, differences, leaves, put, validate
from aegan.settings.schema import FREE, PATH_KEYS
from aegan.store import checkpoint, run_state
from aegan.store.model_dir import ModelDir
from aegan.store.run_state import RunState
from aegan.training.parts import Nets, Progress


def run_settings(resolved: Resolved, mt: str, seed: int | None, resume_run: bool
                 ) -> tuple[dict, int, RunState | None]:
    """(settings, seed, run state) of a training run: the files' and flags', or with --resume the run's own
    (resumed_settings). `seed` None: not given (42 for a new run)."""
    if not resume_run:
        return resolved.cfg, 42 if seed is None else seed, None
    path = ModelDir.of(resolved.cfg, mt).run_state
    if not path.exists():
        raise AeganError(f"--resume: no resumable checkpoint {path} (train without --resume first)")
    state = run_state.read(path, torch.device("cpu"))
    cfg, seed = resumed_settings(resolved, state, path, seed)
    return cfg, seed, state


def resumed_settings(resolved: Resolved, state: RunState, path: Path, seed: int | None) -> tuple[dict, int]:
    """(settings, seed) of the run in `state` that --resume continues: the run's own, stored in its run state, so
    that resuming needs no --config or --set again. A setting the user gives now (in config.yaml, --config or
    --set) that changes the numbers and differs from the run's, or another --seed, is refused, each named with
    both values; one that may change (schema.FREE: output folders, train.epoch, ...) applies."""
    now, cfg = dict(leaves(resolved.cfg)), copy.deepcopy(resolved.cfg)
    diffs = [f"--seed {state.seed} -> {seed}"] if seed is not None and seed != state.seed else []
    kept = []  # settings whose files' value differs from the run's: the run's value is kept
    for key, value in leaves(state.config):
        if key not in now or key in PATH_KEYS or value == now[key]:
            continue  # a setting this version no longer has; paths: where the command finds the run and writes
        if key not in resolved.user:
            put(cfg, key, value)
            kept.append(f"{key}={value!r}")
        elif key not in tagged(FREE):
            diffs.append(f"{key} {value!r} -> {now[key]!r}")
    if diffs:
        raise AeganError(f"--resume: {path} is a run with other settings ({'; '.join(diffs)}): resume with the "
                         "run's settings (give none: --resume takes them from the run), or train anew without "
                         "--resume")
    validate(cfg, f"the settings stored in {shown(path)}")
    print(f"resume: the settings of the run in {shown(path)}" + (
        f"; {plural(len(kept), 'setting')} of the config files differ and keep the run's value: "
        f"{', '.join(kept[:4])}{' ...' if len(kept) > 4 else ''}" if kept else ""))
    return cfg, state.seed


def restore(nets: Nets, state: RunState, path: Path, device: torch.device, cfg: dict, identity: Identity
            ) -> Progress:
    """The state after the last completed epoch (weights, optimizers, random generators, the selected epoch),
    when it is the same run (resumed_settings took its settings): other training clips are refused."""
    check_identity(path, state.identity, identity, "the run in")
    diffs = differences(state.config, cfg)
    if diffs:  # a setting the run's state lacks (written by an earlier version): its numbers could differ
        raise AeganError(f"--resume: {path} is a run with other settings ({'; '.join(diffs)}): resume with the "
                         "run's settings, or train anew without --resume")
    checkpoint.load_weights(nets.netG, state.netG, path, "netG", cfg["net"])
    checkpoint.load_weights(nets.netD, state.netD, path, "netD", cfg["net"])
    nets.optG.load_state_dict(state.optG)
    nets.optD.load_state_dict(state.optD)
    torch.set_rng_state(state.rng_cpu.cpu())
    if device.type == "cuda" and state.rng_cuda is not None:
        torch.cuda.set_rng_state(state.rng_cuda.cpu(), device)
    return Progress(start=state.epoch, best=state.best, history=state.history, selected=state.selected,
                    run_id=state.run_id, pending=state.pending)
