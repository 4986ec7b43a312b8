"""What one training run holds (its data, networks and optimizers, progress) and how that is set up, resumed
from the last checkpoint and saved: the selected model (`<mt>.pth`) and the resumable state (`<mt>_last.pth`)."""

from __future__ import annotations

import logging
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch import nn

from . import checkpoint, distributed
from .data.cache import clip_features
from .data.clips import Clip, DatasetSpec
from .data.scaling import minmax, scaled_tensor
from .device import apply_precision
from .errors import AeganError
from .nets import build_nets


@dataclass
class Data:
    train_clips: list[Clip]
    train_specs: torch.Tensor
    vmax: np.float32
    vmin: np.float32
    test_clips: list[Clip]  # the labelled dev test set; empty for a machine type without one
    test_specs: torch.Tensor | None  # rank 0 only
    sample_rate: int  # of the training clips; scoring new recordings checks theirs against it


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


def load_data(spec: DatasetSpec, cfg: dict, mt: str, device: torch.device, main: bool, world: int) -> Data:
    """Training features scaled with their own max/min, and (rank 0) the dev test set for the evaluation.
    Rank 0 builds the feature caches first; the others then read them."""
    if not main:
        distributed.barrier(world)
    train_clips = spec.train_clips(cfg, mt)
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
    return Data(train_clips, train_specs, vmax, vmin, test_clips, test_specs, rate)


def build(cfg: dict, first_norm: bool, device: torch.device) -> Nets:
    """G, D (in the original's order of random draws) and their Adam optimizers, with the speed options."""
    tcfg = cfg["train"]
    netG, netD = build_nets(cfg["net"], first_norm, tcfg["depthwise_sum"])
    apply_precision(tcfg["tf32"], device)  # for training and its per-epoch evaluation (README, Performance)
    fmt = torch.channels_last if tcfg["channels_last"] else torch.contiguous_format
    netG.to(device, memory_format=fmt)
    netD.to(device, memory_format=fmt)
    optD = torch.optim.Adam(netD.parameters(), lr=tcfg["lrD"], betas=(tcfg["beta1"], 0.999))
    optG = torch.optim.Adam(netG.parameters(), lr=tcfg["lrG"], betas=(tcfg["beta1"], 0.999))
    return Nets(netG, netD, torch.compile(netG) if tcfg["compile"] else netG, optD, optG, fmt)


def resume(nets: Nets, last_path: Path, arch: str, device: torch.device) -> Progress:
    """Weights, optimizer states and the random generators' states of the last completed epoch."""
    state = checkpoint.load(last_path, device)
    checkpoint.load_weights(nets.netG, state["netG"], last_path, "netG", arch)
    checkpoint.load_weights(nets.netD, state["netD"], last_path, "netD", arch)
    nets.optG.load_state_dict(state["optG"])
    nets.optD.load_state_dict(state["optD"])
    torch.set_rng_state(state["rng_cpu"].cpu())
    if device.type == "cuda" and "rng_cuda" in state:
        torch.cuda.set_rng_state(state["rng_cuda"].cpu(), device)
    return Progress(state["epoch"], state["best"], state.get("history", []))


def save_selected(path: Path, spec: DatasetSpec, cfg: dict, mt: str, seed: int, nets: Nets, data: Data,
                  progress: Progress, train_emb: np.ndarray) -> None:
    best = progress.best
    checkpoint.save(path, {
        "netD": nets.netD.state_dict(), "netG": nets.netG.state_dict(), spec.best_key: best["value"],
        "feat_max": float(data.vmax), "feat_min": float(data.vmin), "config": cfg, "epoch": best["epoch"],
        "metric": best["metric"], "select": cfg["train"]["select"], "seed": seed, "history": progress.history,
        "train_emb": torch.from_numpy(train_emb), "dataset": spec.name, "mt": mt, "sample_rate": data.sample_rate})


def save_last(path: Path, cfg: dict, seed: int, nets: Nets, data: Data, progress: Progress, epoch: int,
              device: torch.device) -> None:
    last = {"netD": nets.netD.state_dict(), "netG": nets.netG.state_dict(), "optD": nets.optD.state_dict(),
            "optG": nets.optG.state_dict(), "epoch": epoch, "best": progress.best, "history": progress.history,
            "rng_cpu": torch.get_rng_state(), "feat_max": float(data.vmax), "feat_min": float(data.vmin),
            "config": cfg, "seed": seed}
    if device.type == "cuda":
        last["rng_cuda"] = torch.cuda.get_rng_state(device)
    checkpoint.save(path, last)
