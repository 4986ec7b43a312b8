"""What one training run holds (its data, networks and optimizers, progress) and how that is set up, resumed
from its last state and saved; the files themselves belong to aegan/artifact.py."""

from __future__ import annotations

import copy
import logging
import math
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch import nn

from aegan.core.errors import AeganError, shown
from aegan.core.text import plural
from aegan.data.cache import clip_features
from aegan.data.clips import Clip, DatasetSpec
from aegan.data.scaling import minmax, scaled_tensor
from aegan.method.device import apply_precision
from aegan.method.nets import build_nets
from aegan.settings.checks import tagged
from aegan.settings.layers import Resolved, differences, leaves, put, validate
from aegan.settings.schema import FREE, PATH_KEYS
from aegan.store import artifact, checkpoint
from aegan.store.artifact import Identity
from aegan.training import distributed


@dataclass
class Data:
    train_clips: list[Clip]
    train_specs: torch.Tensor
    vmax: np.float32
    vmin: np.float32
    test_clips: list[Clip]  # the labelled dev test set; empty for a machine type without one
    test_specs: torch.Tensor | None  # rank 0 only
    sample_rate: int  # of the training clips; scoring new recordings checks theirs against it
    identity: Identity  # what the model is trained on (dataset, machine type, the clips' names and content)


@dataclass
class Nets:
    netG: nn.Module
    netD: nn.Module
    gen: nn.Module  # netG, or torch.compile(netG) (same parameters)
    optD: torch.optim.Optimizer
    optG: torch.optim.Optimizer
    fmt: torch.memory_format
    ddp: tuple[nn.Module, nn.Module] | None = None  # (DDP G, DDP D) under torchrun


@dataclass
class Progress:
    start: int = 0
    best: dict = field(default_factory=lambda: {"value": -math.inf, "epoch": 0, "metric": None})
    history: list[dict] = field(default_factory=list)
    selected: dict | None = None  # the selected epoch's netG, netD (state dicts) and training embeddings
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    pending: dict | None = None  # a resumed run's last epoch whose evaluation had not been settled

    def keep(self, weights: dict, train_emb) -> None:
        """Remember an epoch's weights ({'netG', 'netD'} state dicts) as the selected model's."""
        self.selected = {**weights, "train_emb": torch.from_numpy(np.ascontiguousarray(train_emb, dtype=np.float32))}


def snapshot(nets: Nets) -> dict:
    """A copy of both networks' weights as they are now ({'netG', 'netD'} state dicts)."""
    return {name: {k: v.detach().clone() for k, v in net.state_dict().items()}
            for name, net in (("netG", nets.netG), ("netD", nets.netD))}


def get_logger(log_dir: Path, mt: str, active: bool = True) -> logging.Logger:
    logger = logging.getLogger(f"aegan.{log_dir}.{mt}")
    logger.handlers.clear()
    logger.setLevel(logging.INFO)
    logger.propagate = False
    if not active:  # ranks other than 0 of a distributed run stay silent
        logger.addHandler(logging.NullHandler())
        return logger
    log_dir.mkdir(parents=True, exist_ok=True)
    fh = logging.FileHandler(log_dir / "train.log")
    fh.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    sh = logging.StreamHandler(sys.stdout)
    sh.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(fh)
    logger.addHandler(sh)
    return logger


def load_data(spec: DatasetSpec, cfg: dict, mt: str, device: torch.device, main: bool, world: int,
              check=lambda identity: None) -> Data:
    """Training features scaled with their own max/min, and (rank 0) the dev test set for the evaluation.
    Rank 0 builds the feature caches first; the others then read them. `check` sees the training clips' identity
    before any feature is extracted."""
    if not main:
        distributed.barrier(world)
    train_clips = spec.train_clips(cfg, mt)
    identity = spec.identity(cfg, mt, train_clips)
    check(identity)
    raw = clip_features(cfg, mt, train_clips, f"train_{cfg['train_set']}")
    vmax, vmin = minmax(raw)
    train_specs = scaled_tensor(raw, vmax, vmin, device)
    del raw
    test_clips = spec.test_clips(cfg, mt, True, train_clips) if spec.has_dev_test(cfg, mt) else []
    test_specs = None
    if main and test_clips:
        test_raw = clip_features(cfg, mt, test_clips, "test_dev")
        if test_raw.shape[2] != train_specs.shape[2]:
            raise AeganError(f"{test_clips[0].path} gives {test_raw.shape[2]} frames, the training clips "
                             f"{train_specs.shape[2]}: all clips of a machine type must have the same length")
        test_specs = scaled_tensor(test_raw, vmax, vmin, device)
    if main:
        distributed.barrier(world)
    rate = sf.info(str(train_clips[0].path)).samplerate
    return Data(train_clips, train_specs, vmax, vmin, test_clips, test_specs, rate, identity)


def build(cfg: dict, device: torch.device) -> Nets:
    """G, D (in the original's order of random draws) and their Adam optimizers, with the speed options."""
    tcfg = cfg["train"]
    netG, netD = build_nets(cfg["net"], tcfg["depthwise_sum"])
    apply_precision(tcfg["tf32"], device)  # for training and its per-epoch evaluation (README, Performance)
    fmt = torch.channels_last if tcfg["channels_last"] else torch.contiguous_format
    netG.to(device, memory_format=fmt)
    netD.to(device, memory_format=fmt)
    optD = torch.optim.Adam(netD.parameters(), lr=tcfg["lrD"], betas=(tcfg["beta1"], 0.999))
    optG = torch.optim.Adam(netG.parameters(), lr=tcfg["lrG"], betas=(tcfg["beta1"], 0.999))
    return Nets(netG, netD, torch.compile(netG) if tcfg["compile"] else netG, optD, optG, fmt)


def resumed_settings(resolved: Resolved, state: dict, last_path: Path, seed: int | None) -> tuple[dict, int]:
    """(settings, seed) of the run in `state` that --resume continues: the run's own, stored in its run state, so
    that resuming needs no --config or --set again. A setting the user gives now (in config.yaml, --config or
    --set) that changes the numbers and differs from the run's, or another --seed, is refused, each named with
    both values; one that may change (schema.FREE: output folders, train.epoch, ...) applies."""
    now, cfg = dict(leaves(resolved.cfg)), copy.deepcopy(resolved.cfg)
    stored = dict(leaves(state["config"]))
    diffs = [f"--seed {state['seed']} -> {seed}"] if seed is not None and seed != state["seed"] else []
    kept = []  # settings whose files' value differs from the run's: the run's value is kept
    for key, value in stored.items():
        if key not in now or key in PATH_KEYS or value == now[key]:
            continue  # a setting this version no longer has; paths: where the command finds the run and writes
        if key not in resolved.user:
            put(cfg, key, value)
            kept.append(f"{key}={value!r}")
        elif key not in tagged(FREE):
            diffs.append(f"{key} {value!r} -> {now[key]!r}")
    if diffs:
        raise AeganError(f"--resume: {last_path} is a run with other settings ({'; '.join(diffs)}): resume with the "
                         "run's settings (give none: --resume takes them from the run), or train anew without "
                         "--resume")
    validate(cfg, f"the settings stored in {shown(last_path)}")
    print(f"resume: the settings of the run in {shown(last_path)}" + (
        f"; {plural(len(kept), 'setting')} of the config files differ and keep the run's value: "
        f"{', '.join(kept[:4])}{' ...' if len(kept) > 4 else ''}" if kept else ""))
    return cfg, state["seed"]


def resume(nets: Nets, state: dict, last_path: Path, device: torch.device, cfg: dict, identity: Identity
           ) -> Progress:
    """The state after the last completed epoch (weights, optimizers, random generators, the selected epoch),
    when it is the same run (resumed_settings took its settings): other training clips are refused."""
    artifact.check_identity(last_path, state["identity"], identity, "the run in")
    diffs = differences(state["config"], cfg)
    if diffs:  # a setting the run's state lacks (written by an earlier version): its numbers could differ
        raise AeganError(f"--resume: {last_path} is a run with other settings ({'; '.join(diffs)}): resume with the "
                         "run's settings, or train anew without --resume")
    checkpoint.load_weights(nets.netG, state["netG"], last_path, "netG", cfg["net"])
    checkpoint.load_weights(nets.netD, state["netD"], last_path, "netD", cfg["net"])
    nets.optG.load_state_dict(state["optG"])
    nets.optD.load_state_dict(state["optD"])
    torch.set_rng_state(state["rng_cpu"].cpu())
    if device.type == "cuda" and "rng_cuda" in state:
        torch.cuda.set_rng_state(state["rng_cuda"].cpu(), device)
    return Progress(state["epoch"], state["best"], state["history"], state.get("selected"), state["run_id"],
                    state.get("pending"))


def save_last(path: Path, cfg: dict, seed: int, nets: Nets, data: Data, progress: Progress, epoch: int,
              device: torch.device, pending: dict | None = None) -> None:
    """The run state after `epoch` epochs, with the selected epoch's weights: what --resume continues from and
    what the model file is written from when the run finishes."""
    last = {"netD": nets.netD.state_dict(), "netG": nets.netG.state_dict(), "optD": nets.optD.state_dict(),
            "optG": nets.optG.state_dict(), "epoch": epoch, "best": progress.best, "history": progress.history,
            "selected": progress.selected, "rng_cpu": torch.get_rng_state(), "feat_max": float(data.vmax),
            "feat_min": float(data.vmin), "config": cfg, "seed": seed, "identity": data.identity.as_dict(),
            "run_id": progress.run_id, "pending": pending}
    if device.type == "cuda":
        last["rng_cuda"] = torch.cuda.get_rng_state(device)
    artifact.write_last(path, last)


def model_file(best_key: str, cfg: dict, seed: int, data: Data, progress: Progress, thresholds: dict
               ) -> artifact.ModelFile:
    """The finished run's model file: the selected epoch's weights and everything scoring needs."""
    sel, best = progress.selected, progress.best
    return artifact.ModelFile(
        sel["netG"], sel["netD"], copy.deepcopy(cfg), data.identity, float(data.vmax), float(data.vmin),
        sel["train_emb"].numpy(), data.sample_rate, best["epoch"], best["metric"], float(best["value"]),
        best_key, thresholds, progress.history, seed, progress.run_id)
