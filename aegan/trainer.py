"""The training loop: per batch the method's two steps, per epoch an evaluation on the dev test set and the
model selection, checkpoints written atomically (`<mt>.pth` = selected model, `<mt>_last.pth` = resumable
state). Under torchrun each process trains on its shard of every global batch through DDP; rank 0 alone
evaluates, logs and writes checkpoints while the others wait at a barrier."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from . import checkpoint, distributed
from .config import batch_size
from .data.clips import DatasetSpec
from .data.segments import SegmentSampler, skip_loader_draw
from .decision import fit_threshold
from .device import seed_everything
from .errors import AeganError
from .evaluation import best_metric, evaluate_all
from .fast_steps import ddp_train_step, train_step
from .scores import EmbeddingDetectors, embed_clips, reference_order, resolve_metric, score_clips, training_scores
from .training_setup import (
    Data,
    Nets,
    Progress,
    build,
    get_logger,
    load_data,
    resume,
    save_last,
    save_selected,
)

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
LOG_EVERY = 25  # training iterations between reads of the losses (each read waits for the device)


def train_epoch(nets: Nets, sampler: SegmentSampler, wgan: dict, amp: str, device: torch.device, rank: int,
                world: int, desc: str, last_path: Path) -> dict:
    """One pass over the shuffled training segments; the mean of each logged loss term. The losses stay on the
    device and are read every LOG_EVERY iterations (one host sync, not six per iteration)."""
    nets.netG.train()
    nets.netD.train()
    sums: dict[str, float] = {}
    pending: list[tuple[int, dict]] = []
    bar = tqdm(sampler.epoch(), total=len(sampler), desc=desc, leave=False, disable=rank > 0)
    with torch.autocast(device.type, torch.bfloat16, enabled=amp == "bf16"):
        for i, x in enumerate(bar):
            x = x.to(device, non_blocking=True).contiguous(memory_format=nets.fmt)
            g_update = i % wgan["ncritic"] == 0
            if nets.ddp:
                losses = ddp_train_step(nets.ddp[1], nets.ddp[0], nets.optD, nets.optG, x, wgan, rank, world, g_update)
            else:
                losses = train_step(nets.netD, nets.gen, nets.optD, nets.optG, x, wgan, g_update)
            pending.append((i, losses))
            if len(pending) == LOG_EVERY:
                _show(bar, read_losses(pending, sums, desc, last_path))
                pending = []
    if pending:
        _show(bar, read_losses(pending, sums, desc, last_path))
    n_g = len(range(0, len(sampler), wgan["ncritic"]))
    return {k: v / (n_g if k in G_TERMS else len(sampler)) for k, v in sums.items()}


def read_losses(pending: list[tuple[int, dict]], sums: dict[str, float], desc: str, last_path: Path) -> dict:
    """The pending iterations' losses in one host sync, added to `sums` as Python floats in iteration order (the
    epoch means of reading each with .item(), to the bit); the first non-finite one stops training. Returns the
    last iteration's losses."""
    flat = iter(torch.stack([v.float() for _, losses in pending for v in losses.values()]).tolist())
    row: dict[str, float] = {}
    for i, losses in pending:
        row = {k: next(flat) for k in losses}
        if not all(math.isfinite(v) for v in row.values()):
            raise AeganError(f"{desc}, batch {i}: loss is not finite ({row}); stopped, the last good "
                             f"checkpoint {last_path} is kept (lower train.lrD/lrG?)")
        for k, v in row.items():
            sums[k] = sums.get(k, 0.0) + v
    return row


def _show(bar: tqdm, row: dict) -> None:
    bar.set_postfix(lossD=f"{row['lossD']:.3f}", lossG=f"{row.get('lossG', float('nan')):.3f}")


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
