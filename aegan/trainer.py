"""The training loop: per batch the method's two steps, per epoch an evaluation on the dev test set and the
model selection, checkpoints written atomically (`<mt>.pth` = selected model, `<mt>_last.pth` = resumable
state). Under torchrun each process trains on its shard of every global batch through DDP; rank 0 alone
evaluates, logs and writes checkpoints while the others wait at a barrier."""

from __future__ import annotations

import logging
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch import nn
from tqdm import tqdm

from . import checkpoint, distributed
from .config import batch_size
from .data.cache import clip_features
from .data.clips import Clip, DatasetSpec
from .data.scaling import minmax, scaled_tensor
from .data.segments import SegmentSampler, skip_loader_draw
from .decision import fit_threshold
from .device import seed_everything
from .errors import AeganError
from .evaluation import best_metric, evaluate_all
from .fast_steps import ddp_train_step, train_step
from .nets import build_nets
from .scores import EmbeddingDetectors, embed_clips, reference_order, resolve_metric, score_clips, training_scores

SELECT_NOTE = {
    "best": "model selection: the epoch and metric with the highest {key} on the LABELLED dev test set, as in the "
            "paper (numbers selected this way are optimistic; use --set train.select=last or =metric for an "
            "honest run)",
    "metric": "model selection: the epoch with the highest {key} of detect.metric={metric} on the labelled dev "
              "test set (the metric is fixed, the epoch is still chosen on test labels)",
    "last": "model selection: the last epoch (the test set is only reported, never used to choose)",
}
G_TERMS = ("lossG", "recon", "feat_match")  # logged once per generator step, not per critic step
# A machine type without a labelled dev test set (a first-shot evaluation type) gives no metric to select:
# its scores use detect.metric, else D_lof, the metric the paper's configurations choose most often (3 of 11).
UNLABELLED_METRIC = "D_lof"


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
    netG, netD = build_nets(cfg["net"], first_norm)
    if device.type == "cuda":  # README, Performance; the defaults are the exact fp32 computation
        torch.backends.cuda.matmul.allow_tf32 = tcfg["tf32"]
        torch.backends.cudnn.allow_tf32 = tcfg["tf32"]
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


def train_epoch(nets: Nets, sampler: SegmentSampler, wgan: dict, amp: str, device: torch.device, rank: int,
                world: int, desc: str, last_path: Path) -> dict:
    """One pass over the shuffled training segments; the mean of each logged loss term."""
    nets.netG.train()
    nets.netD.train()
    sums: dict[str, float] = {}
    bar = tqdm(sampler.epoch(), total=len(sampler), desc=desc, leave=False, disable=rank > 0)
    with torch.autocast(device.type, torch.bfloat16, enabled=amp == "bf16"):
        for i, x in enumerate(bar):
            x = x.to(device, non_blocking=True).contiguous(memory_format=nets.fmt)
            g_update = i % wgan["ncritic"] == 0
            if nets.ddp:
                losses = ddp_train_step(nets.ddp[1], nets.ddp[0], nets.optD, nets.optG, x, wgan, rank, world, g_update)
            else:
                losses = train_step(nets.netD, nets.gen, nets.optD, nets.optG, x, wgan, g_update)
            if not all(math.isfinite(v) for v in losses.values()):
                raise AeganError(f"{desc}, batch {i}: loss is not finite ({losses}); stopped, the last good "
                                 f"checkpoint {last_path} is kept (lower train.lrD/lrG?)")
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + v
            bar.set_postfix(lossD=f"{losses['lossD']:.3f}", lossG=f"{losses.get('lossG', float('nan')):.3f}")
    n_g = len(range(0, len(sampler), wgan["ncritic"]))
    return {k: v / (n_g if k in G_TERMS else len(sampler)) for k, v in sums.items()}


def evaluate(spec: DatasetSpec, cfg: dict, nets: Nets, data: Data, device: torch.device) -> tuple[dict, np.ndarray]:
    """All 19 metrics on the labelled dev test set, and the training embeddings they were scored against."""
    feat = cfg["feat"]
    train_emb = embed_clips(nets.netD, data.train_specs, feat["frame_num"], feat["graph_hop_f"], device,
                            cfg["detect"]["amp"], "evaluation: training embeddings")[reference_order(data.train_clips)]
    scores, _ = score_clips(nets.netG, nets.netD, EmbeddingDetectors(train_emb), data.test_specs, feat, device,
                            cfg["detect"]["amp"])
    return evaluate_all(spec, data.test_clips, scores, cfg["detect"]["p"]), train_emb


def select(results: dict, spec: DatasetSpec, cfg: dict, progress: Progress, epoch: int) -> tuple[str, float, bool]:
    """(metric shown, its value, whether this epoch becomes the selected model) under train.select."""
    how = cfg["train"]["select"]
    top = best_metric(results, spec.summary_key)
    shown = resolve_metric(cfg["detect"]["metric"]) if how == "metric" else top
    value = float(results[shown][1][spec.summary_key])
    # nan (no group with both classes) never beats a number, but the first epoch is always saved
    improved = how == "last" or progress.best["epoch"] == 0 or value > progress.best["value"]
    return shown, value, improved


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


def fit_decision(path: Path, cfg: dict, data: Data, nets: Nets, device: torch.device, metric: str) -> dict:
    """The decision threshold (DCASE baselines' gamma rule) of the metric test.py will write, from the selected
    weights, stored with them so that test-time decisions need no fit."""
    state = checkpoint.load(path, device)
    nets.netG.load_state_dict(state["netG"])
    emb = state["train_emb"].numpy()
    scores = training_scores(metric, nets.netG, EmbeddingDetectors(emb), emb, lambda: data.train_specs, cfg["feat"],
                             device, cfg["detect"]["amp"])
    state["decision"] = {"metric": metric, **fit_threshold(scores, cfg["detect"]["decision_percentile"])}
    checkpoint.save(path, state)
    return state["decision"]


def end_epoch(spec: DatasetSpec, cfg: dict, mt: str, seed: int, nets: Nets, data: Data, progress: Progress, epoch: int,
              mean: dict, device: torch.device, logger: logging.Logger, seconds: float) -> None:
    """Rank 0 after an epoch: evaluate, select, save both checkpoints, log one line."""
    if not data.test_clips:
        return end_unlabelled_epoch(spec, cfg, mt, seed, nets, data, progress, epoch, mean, device, logger, seconds)
    results, train_emb = evaluate(spec, cfg, nets, data, device)
    shown, value, improved = select(results, spec, cfg, progress, epoch)
    top = best_metric(results, spec.summary_key)
    progress.history.append({"epoch": epoch + 1, **mean, "best_metric": top, "metric": shown, "value": value,
                             "best_value": float(results[top][1][spec.summary_key])})
    best_path, last_path = checkpoint.model_paths(cfg, mt)
    if improved:
        progress.best = {"value": value, "epoch": epoch + 1, "metric": shown}
        save_selected(best_path, spec, cfg, mt, seed, nets, data, progress, train_emb)
    save_last(last_path, cfg, seed, nets, data, progress, epoch + 1, device)
    summ = results[shown][1]
    logger.info(f"epoch {epoch + 1}/{cfg['train']['epoch']} lossD {mean['lossD']:.4f} lossG "
                f"{mean.get('lossG', math.nan):.4f} recon {mean.get('recon', math.nan):.5f} {seconds:.1f}s | {shown}: "
                + " ".join(f"{c} {100 * summ[c]:.2f}" for c in spec.summary_columns) + (" *saved" if improved else ""))


def end_unlabelled_epoch(spec: DatasetSpec, cfg: dict, mt: str, seed: int, nets: Nets, data: Data, progress: Progress,
                         epoch: int, mean: dict, device: torch.device, logger: logging.Logger, seconds: float) -> None:
    """Without a labelled dev test set the last epoch is the model; its training embeddings are kept."""
    feat = cfg["feat"]
    train_emb = embed_clips(nets.netD, data.train_specs, feat["frame_num"], feat["graph_hop_f"], device,
                            cfg["detect"]["amp"], "training embeddings")[reference_order(data.train_clips)]
    metric = resolve_metric(cfg["detect"]["metric"] or UNLABELLED_METRIC)
    progress.history.append({"epoch": epoch + 1, **mean})
    progress.best = {"value": math.nan, "epoch": epoch + 1, "metric": metric}
    best_path, last_path = checkpoint.model_paths(cfg, mt)
    save_selected(best_path, spec, cfg, mt, seed, nets, data, progress, train_emb)
    save_last(last_path, cfg, seed, nets, data, progress, epoch + 1, device)
    logger.info(f"epoch {epoch + 1}/{cfg['train']['epoch']} lossD {mean['lossD']:.4f} lossG "
                f"{mean.get('lossG', math.nan):.4f} recon {mean.get('recon', math.nan):.5f} {seconds:.1f}s *saved")


def train(spec: DatasetSpec, cfg: dict, mt: str, device: torch.device, seed: int, resume_run: bool = False) -> dict:
    """Train one machine type; returns {'epoch', 'metric', 'value'} of the selected model."""
    best_path, last_path = checkpoint.model_paths(cfg, mt)
    if resume_run and not last_path.exists():
        raise AeganError(f"--resume: no resumable checkpoint {last_path} (train without --resume first)")
    device, rank, world = distributed.init(device)
    main = rank == 0
    seed_everything(seed)  # the same seed on every rank: same permutations and interpolation weights
    data = load_data(spec, cfg, mt, device, main, world)
    logger = get_logger(Path(cfg["log_dir"]) / mt, mt, main)
    if world > 1:
        logger.info(f"distributed: {world} processes ({'nccl' if device.type == 'cuda' else 'gloo'}), global batch "
                    f"{batch_size(cfg)} = {world} x {batch_size(cfg) // world}")
    logger.info(f"{mt}: {len(data.train_clips)} training clips ({'+'.join(spec.train_parts(cfg, mt))}), "
                f"{len(data.test_clips)} dev test clips, feature max {data.vmax:.4f} min {data.vmin:.4f}")
    tcfg, first_norm = cfg["train"], spec.first_norm(mt)
    nets = build(cfg, first_norm, device)
    progress = Progress()
    if resume_run:
        progress = resume(nets, last_path, checkpoint.describe_arch(cfg["net"], first_norm), device)
        logger.info(f"resuming from {last_path} at epoch {progress.start + 1}")
    if progress.start >= tcfg["epoch"]:
        logger.info(f"nothing to do: {last_path} already holds {progress.start} of train.epoch={tcfg['epoch']} epochs")
        distributed.finish(world)
        return progress.best
    if world > 1:  # after loading: DDP broadcasts rank 0's weights, which are the same here
        ddpG, ddpD = distributed.wrap(nets.netG, device), distributed.wrap(nets.netD, device)
        nets.netG, nets.netD, nets.gen, nets.ddp = ddpG.module, ddpD.module, ddpG.module, (ddpG, ddpD)
    sampler = SegmentSampler(data.train_specs, cfg["feat"]["frame_num"], cfg["feat"]["graph_hop_f"], batch_size(cfg),
                             rank, world)
    if data.test_clips:
        logger.info(SELECT_NOTE[tcfg["select"]].format(key=spec.summary_key, metric=cfg["detect"]["metric"]))
    else:
        logger.info(f"{mt} has no labelled dev test set (an evaluation machine type): no evaluation during training, "
                    f"the last epoch is kept, and its scores use {cfg['detect']['metric'] or UNLABELLED_METRIC} "
                    f"(detect.metric)")
    for epoch in range(progress.start, tcfg["epoch"]):
        t0 = time.time()
        mean = train_epoch(nets, sampler, tcfg["wgan"], tcfg["amp"], device, rank, world,
                           f"epoch {epoch + 1}/{tcfg['epoch']}", last_path)
        skip_loader_draw()  # the original's per-epoch dev test DataLoader: one draw on every rank
        if main:
            end_epoch(spec, cfg, mt, seed, nets, data, progress, epoch, mean, device, logger, time.time() - t0)
        distributed.barrier(world)
    if main:
        metric = resolve_metric(cfg["detect"]["metric"]) if cfg["detect"]["metric"] else progress.best["metric"]
        decision = fit_decision(best_path, cfg, data, nets, device, metric)
        logger.info(f"decision threshold of {metric}: {decision['threshold']:.6g} "
                    f"(gamma fit, {decision['percentile']:.0%} of the training clips' scores)")
        best = progress.best
        value = "" if math.isnan(best["value"]) else f", {spec.summary_key} {100 * best['value']:.2f}"
        logger.info(f"selected model: epoch {best['epoch']}, metric {best['metric']}{value} -> {best_path}")
    distributed.finish(world)
    return progress.best
