"""What one training run holds (its data, networks and optimizers, progress), each built as the original builds it, or
restored by --resume from its run state: the run's own settings, weights, optimizers and random generators."""

from __future__ import annotations

import copy
import logging
import math
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch import nn

from aegan.core.errors import AeganError, shown
from aegan.core.text import plural
from aegan.data.cache import clip_features
from aegan.data.clips import Clip, DatasetSpec, Identity
from aegan.data.segments import minmax, scaled_tensor
from aegan.method.device import apply_precision, sized_by
from aegan.method.nets import build_nets
from aegan.settings.checks import tagged
from aegan.settings.layers import Resolved, differences, leaves, put, validate
from aegan.settings.schema import FREE, PATH_KEYS
from aegan.store import checkpoint, model_file
from aegan.store.model_dir import ModelDir
from aegan.store.model_file import RunState
from aegan.training import distributed


@dataclass(kw_only=True)
class Data:
    train_clips: list[Clip]
    train_specs: torch.Tensor
    vmax: np.float32
    vmin: np.float32
    test_clips: list[Clip]  # the labelled dev test set; empty for a machine type without one
    test_specs: torch.Tensor | None  # rank 0 only
    sample_rate: int  # of the training clips; scoring new recordings checks theirs against it
    identity: Identity  # what the model is trained on (dataset, machine type, the clips' names and content)


@dataclass(kw_only=True)
class Nets:
    netG: nn.Module
    netD: nn.Module
    gen: nn.Module  # netG, or torch.compile(netG) (same parameters)
    optD: torch.optim.Optimizer
    optG: torch.optim.Optimizer
    fmt: torch.memory_format
    ddp: tuple[nn.Module, nn.Module] | None = None  # (DDP G, DDP D) under torchrun

    def snapshot(self) -> dict:
        """A copy of both networks' weights as they are now ({'netG', 'netD'} state dicts)."""
        return {name: {k: v.detach().clone() for k, v in net.state_dict().items()}
                for name, net in (("netG", self.netG), ("netD", self.netD))}


@dataclass(kw_only=True)
class Progress:
    start: int = 0  # epochs completed when this process began (a resumed run's)
    best: dict = field(default_factory=lambda: {"value": -math.inf, "epoch": 0, "metric": None})
    history: list[dict] = field(default_factory=list)
    selected: dict | None = None  # the selected epoch's netG, netD (state dicts) and training embeddings
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def keep(self, weights: dict, train_emb) -> None:
        """Remember an epoch's weights ({'netG', 'netD'} state dicts) as the selected model's."""
        self.selected = {**weights, "train_emb": torch.from_numpy(np.ascontiguousarray(train_emb, dtype=np.float32))}


def get_logger(log_dir: Path, mt: str, active: bool) -> logging.Logger:
    """The run's log: train.log and stdout (ranks other than 0 of a distributed run stay silent)."""
    logger = logging.getLogger(f"aegan.{log_dir}.{mt}")
    logger.handlers.clear()
    logger.setLevel(logging.INFO)
    logger.propagate = False
    if not active:
        logger.addHandler(logging.NullHandler())
        return logger
    log_dir.mkdir(parents=True, exist_ok=True)
    for handler, form in ((logging.FileHandler(log_dir / "train.log"), "%(asctime)s %(message)s"),
                          (logging.StreamHandler(sys.stdout), "%(message)s")):
        handler.setFormatter(logging.Formatter(form))
        logger.addHandler(handler)
    return logger


def load_data(spec: DatasetSpec, cfg: dict, mt: str, device: torch.device,
              check: Callable[[Identity], None] = lambda identity: None) -> Data:
    """Training features scaled with their own max/min, and (rank 0) the dev test set; rank 0 builds the feature
    caches, then the others read them. `check` sees the training clips' identity before any feature work."""
    main = distributed.rank() == 0
    if not main:
        distributed.barrier()
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
        distributed.barrier()
    return Data(train_clips=train_clips, train_specs=train_specs, vmax=vmax, vmin=vmin, test_clips=test_clips,
                test_specs=test_specs, sample_rate=sf.info(str(train_clips[0].path)).samplerate, identity=identity)


def build(cfg: dict, device: torch.device) -> Nets:
    """G, D (in the original's order of random draws) and their Adam optimizers, with the speed options."""
    tcfg = cfg["train"]
    with sized_by(cfg, f"building the networks on {device}"):
        netG, netD = build_nets(cfg["net"], tcfg["depthwise_sum"])
        apply_precision(tcfg["tf32"], device)  # for training and its per-epoch evaluation (docs/PERFORMANCE.md)
        fmt = torch.channels_last if tcfg["channels_last"] else torch.contiguous_format
        netG.to(device, memory_format=fmt)
        netD.to(device, memory_format=fmt)
    optD = torch.optim.Adam(netD.parameters(), lr=tcfg["lrD"], betas=(tcfg["beta1"], 0.999))
    optG = torch.optim.Adam(netG.parameters(), lr=tcfg["lrG"], betas=(tcfg["beta1"], 0.999))
    return Nets(netG=netG, netD=netD, gen=torch.compile(netG) if tcfg["compile"] else netG, optD=optD, optG=optG,
                fmt=fmt)


def run_settings(resolved: Resolved, mt: str, seed: int | None, resume_run: bool
                 ) -> tuple[dict, int, RunState | None]:
    """(settings, seed, run state) of a training run; with --resume the run's own settings, so that it needs no
    --config or --set again. `seed` None: not given (42 for a new run)."""
    if not resume_run:
        return resolved.cfg, 42 if seed is None else seed, None
    path = ModelDir.of(resolved.cfg, mt).run_state
    if not path.exists():
        raise AeganError(f"--resume: no resumable checkpoint {path} (train without --resume first)")
    state = model_file.read_run_state(path, torch.device("cpu"))
    now, cfg = dict(leaves(resolved.cfg)), copy.deepcopy(resolved.cfg)
    diffs = [f"--seed {state.seed} -> {seed}"] if seed is not None and seed != state.seed else []
    kept = []  # settings whose files' value differs from the run's: the run's value is kept
    for key, value in leaves(state.config):
        if key not in now or key in PATH_KEYS or value == now[key]:
            continue  # a setting this version no longer has; paths: where the command finds the run and writes
        if key not in resolved.user:
            put(cfg, key, value)
            kept.append(f"{key}={value!r}")
        elif key not in tagged(FREE):  # a setting the user gives now that changes the numbers
            diffs.append(f"{key} {value!r} -> {now[key]!r}")
    if diffs:
        raise AeganError(f"--resume: {path} is a run with other settings ({'; '.join(diffs)}): resume with the "
                         "run's settings (give none: --resume takes them from the run), or train anew without "
                         "--resume")
    validate(cfg, f"the settings stored in {shown(path)}")
    print(f"resume: the settings of the run in {shown(path)}" + (
        f"; {plural(len(kept), 'setting')} of the config files differ and keep the run's value: "
        f"{', '.join(kept[:4])}{' ...' if len(kept) > 4 else ''}" if kept else ""))
    return cfg, state.seed, state


def restore(nets: Nets, state: RunState, path: Path, device: torch.device, cfg: dict) -> Progress:
    """The state after the last completed epoch: weights, optimizers, random generators, the selected epoch."""
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
                    run_id=state.run_id)
