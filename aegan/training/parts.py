"""What one training run holds: its data (features scaled, the dev test set), its networks and optimizers, and its
progress (the selected epoch so far, the history), each built as the original builds it."""

from __future__ import annotations

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

from aegan.core.errors import AeganError
from aegan.data.cache import clip_features
from aegan.data.clips import Clip, DatasetSpec
from aegan.data.identity import Identity
from aegan.data.scaling import minmax, scaled_tensor
from aegan.method.device import apply_precision
from aegan.method.nets import build_nets
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
    pending: dict | None = None  # a resumed run's last epoch whose evaluation had not been settled

    def keep(self, weights: dict, train_emb) -> None:
        """Remember an epoch's weights ({'netG', 'netD'} state dicts) as the selected model's."""
        self.selected = {**weights, "train_emb": torch.from_numpy(np.ascontiguousarray(train_emb, dtype=np.float32))}


def get_logger(log_dir: Path, mt: str, active: bool = True) -> logging.Logger:
    """The run's log: train.log and stdout (ranks other than 0 of a distributed run stay silent)."""
    logger = logging.getLogger(f"aegan.{log_dir}.{mt}")
    logger.handlers.clear()
    logger.setLevel(logging.INFO)
    logger.propagate = False
    if not active:
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
    return Data(train_clips=train_clips, train_specs=train_specs, vmax=vmax, vmin=vmin, test_clips=test_clips,
                test_specs=test_specs, sample_rate=sf.info(str(train_clips[0].path)).samplerate, identity=identity)


def build(cfg: dict, device: torch.device) -> Nets:
    """G, D (in the original's order of random draws) and their Adam optimizers, with the speed options."""
    tcfg = cfg["train"]
    netG, netD = build_nets(cfg["net"], tcfg["depthwise_sum"])
    apply_precision(tcfg["tf32"], device)  # for training and its per-epoch evaluation (docs/PERFORMANCE.md)
    fmt = torch.channels_last if tcfg["channels_last"] else torch.contiguous_format
    netG.to(device, memory_format=fmt)
    netD.to(device, memory_format=fmt)
    optD = torch.optim.Adam(netD.parameters(), lr=tcfg["lrD"], betas=(tcfg["beta1"], 0.999))
    optG = torch.optim.Adam(netG.parameters(), lr=tcfg["lrG"], betas=(tcfg["beta1"], 0.999))
    return Nets(netG=netG, netD=netD, gen=torch.compile(netG) if tcfg["compile"] else netG, optD=optD, optG=optG,
                fmt=fmt)
