"""The training loop: critic step then generator step per batch, evaluation and model selection per epoch,
checkpoints written atomically (`<mt>.pth` = selected model, `<mt>_last.pth` = resumable state)."""

from __future__ import annotations

import logging
import math
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from . import checkpoint, distributed
from .config import batch_size
from .dataset import DatasetSpec
from .device import seed_everything
from .errors import AeganError
from .features import SegmentSampler, minmax, skip_loader_draw
from .losses import ddp_train_step, train_step
from .nets import build_nets
from .pipeline import (
    best_metric,
    evaluate_all,
    features,
    fit_decision,
    model_paths,
    resolve_metric,
    scaled_tensor,
    score_clips,
    train_features,
)

SELECT_NOTE = {
    "best": "model selection: the epoch and metric with the highest {key} on the LABELLED dev test set, as in the "
            "paper (numbers selected this way are optimistic; use --set train.select=last or =metric for an "
            "honest run)",
    "metric": "model selection: the epoch with the highest {key} of detect.metric={metric} on the labelled dev "
              "test set (the metric is fixed, the epoch is still chosen on test labels)",
    "last": "model selection: the last epoch (the test set is only reported, never used to choose)",
}


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


def train(spec: DatasetSpec, cfg: dict, mt: str, device: torch.device, seed: int, resume: bool = False) -> dict:
    """Train one machine type; returns {'epoch', 'metric', 'value'} of the selected model.

    Under torchrun each process trains on its shard of every global batch through DDP; rank 0 alone
    evaluates, logs and writes checkpoints while the others wait at a barrier."""
    device, rank, world = distributed.init(device)
    main = rank == 0
    seed_everything(seed)  # the same seed on every rank: same permutations and interpolation weights
    logger = get_logger(Path(cfg["log_dir"]) / mt, mt, main)
    if world > 1:
        logger.info(f"distributed: {world} processes ({'nccl' if device.type == 'cuda' else 'gloo'}), global batch "
                    f"{batch_size(cfg)} = {world} x {batch_size(cfg) // world}")
    tcfg, wgan, feat = cfg["train"], cfg["train"]["wgan"], cfg["feat"]
    select = tcfg["select"]
    fixed_metric = resolve_metric(spec, cfg["detect"]["metric"]) if cfg["detect"]["metric"] else None
    best_path, last_path = model_paths(cfg, mt)

    if not main:
        distributed.barrier(world)  # rank 0 builds the feature caches first; the others then read them
    train_clips, raw = train_features(spec, cfg, mt)
    vmax, vmin = minmax(raw)
    train_specs = scaled_tensor(raw, vmax, vmin, device)
    del raw
    test_clips = spec.test_clips(cfg, mt, True, train_clips)
    test_specs = scaled_tensor(features(spec, cfg, mt, test_clips, "test_dev"), vmax, vmin, device) if main else None
    if main:
        distributed.barrier(world)
    logger.info(f"{mt}: {len(train_clips)} training clips ({cfg['train_set']}), {len(test_clips)} dev test clips, "
                f"feature max {vmax:.4f} min {vmin:.4f}")

    first_norm = spec.first_norm(mt)
    netG, netD = build_nets(cfg["net"], first_norm)
    # speed options (README, Performance); the defaults are the exact fp32 computation
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = tcfg["tf32"]
        torch.backends.cudnn.allow_tf32 = tcfg["tf32"]
    fmt = torch.channels_last if tcfg["channels_last"] else torch.contiguous_format
    netG.to(device, memory_format=fmt)
    netD.to(device, memory_format=fmt)
    gen = torch.compile(netG) if tcfg["compile"] else netG  # shares netG's parameters
    optD = torch.optim.Adam(netD.parameters(), lr=tcfg["lrD"], betas=(tcfg["beta1"], 0.999))
    optG = torch.optim.Adam(netG.parameters(), lr=tcfg["lrG"], betas=(tcfg["beta1"], 0.999))
    sampler = SegmentSampler(train_specs, feat["frame_num"], feat["graph_hop_f"], batch_size(cfg), rank, world)
    arch = checkpoint.describe_arch(cfg["net"], first_norm)

    start, best, history = 0, {"value": -math.inf, "epoch": 0, "metric": None}, []
    if resume:
        if not last_path.exists():
            raise AeganError(f"--resume: no resumable checkpoint {last_path} (train without --resume first)")
        state = checkpoint.load(last_path, device)
        checkpoint.load_weights(netG, state["netG"], last_path, "netG", arch)
        checkpoint.load_weights(netD, state["netD"], last_path, "netD", arch)
        optG.load_state_dict(state["optG"])
        optD.load_state_dict(state["optD"])
        torch.set_rng_state(state["rng_cpu"].cpu())
        if device.type == "cuda" and "rng_cuda" in state:
            torch.cuda.set_rng_state(state["rng_cuda"].cpu(), device)
        start, best, history = state["epoch"], state["best"], state.get("history", [])
        logger.info(f"resuming from {last_path} at epoch {start + 1}")
        if start >= tcfg["epoch"]:
            logger.info(f"nothing to do: {last_path} already holds {start} of train.epoch={tcfg['epoch']} epochs")
            distributed.finish(world)
            return best
    if world > 1:  # after loading: DDP broadcasts rank 0's weights, which are the same here
        ddpG, ddpD = distributed.wrap(netG, device), distributed.wrap(netD, device)
        netG, netD = ddpG.module, ddpD.module  # SyncBatchNorm conversion makes new modules on CUDA

    logger.info(SELECT_NOTE[select].format(key=spec.summary_key, metric=fixed_metric))
    for epoch in range(start, tcfg["epoch"]):
        t0 = time.time()
        netG.train()
        netD.train()
        sums: dict[str, float] = {}
        bar = tqdm(sampler.epoch(), total=len(sampler), desc=f"epoch {epoch + 1}/{tcfg['epoch']}", leave=False,
                   disable=not main)
        with torch.autocast(device.type, torch.bfloat16, enabled=tcfg["amp"] == "bf16"):
            for i, x in enumerate(bar):
                x = x.to(device, non_blocking=True).contiguous(memory_format=fmt)
                g_update = i % wgan["ncritic"] == 0
                if world > 1:
                    losses = ddp_train_step(ddpD, ddpG, optD, optG, x, wgan, rank, world, g_update)
                else:
                    losses = train_step(netD, gen, optD, optG, x, wgan, g_update)
                for k, v in losses.items():
                    sums[k] = sums.get(k, 0.0) + v
                if not all(math.isfinite(v) for v in losses.values()):
                    raise AeganError(f"epoch {epoch + 1}, batch {i}: loss is not finite ({losses}); stopped, the last "
                                     f"good checkpoint {last_path} is kept (lower train.lrD/lrG?)")
                bar.set_postfix(lossD=f"{losses['lossD']:.3f}", lossG=f"{losses.get('lossG', float('nan')):.3f}")
        n_g = len(range(0, len(sampler), wgan["ncritic"]))
        mean = {k: v / (n_g if k in ("lossG", "recon", "feat_match") else len(sampler)) for k, v in sums.items()}
        skip_loader_draw()  # the original's per-epoch dev test DataLoader: one draw on every rank
        if not main:
            distributed.barrier(world)  # rank 0 evaluates and writes the checkpoints
            continue

        scores = score_clips(netG, netD, train_specs, train_clips, test_specs, cfg, device)
        results = evaluate_all(spec, test_clips, scores, cfg["detect"]["p"])
        top = best_metric(spec, results)
        shown = fixed_metric if select == "metric" else top
        value = results[shown][1][spec.summary_key]
        # nan (no group with both classes) never beats a number, but the first epoch is always saved
        improved = select == "last" or best["epoch"] == 0 or value > best["value"]
        history.append({"epoch": epoch + 1, **mean, "best_metric": top, "metric": shown, "value": float(value),
                        "best_value": float(results[top][1][spec.summary_key])})
        if improved:
            best = {"value": float(value), "epoch": epoch + 1, "metric": shown}
            checkpoint.save(best_path, {
                "netD": netD.state_dict(), "netG": netG.state_dict(), spec.best_key: float(value),
                "feat_max": float(vmax), "feat_min": float(vmin), "config": cfg, "epoch": epoch + 1,
                "metric": shown, "select": select, "seed": seed, "history": history,
            })
        last = {"netD": netD.state_dict(), "netG": netG.state_dict(), "optD": optD.state_dict(),
                "optG": optG.state_dict(), "epoch": epoch + 1, "best": best, "rng_cpu": torch.get_rng_state(),
                "feat_max": float(vmax), "feat_min": float(vmin), "config": cfg, "seed": seed, "history": history}
        if device.type == "cuda":
            last["rng_cuda"] = torch.cuda.get_rng_state(device)
        checkpoint.save(last_path, last)
        summ = results[shown][1]
        logger.info(
            f"epoch {epoch + 1}/{tcfg['epoch']} lossD {mean['lossD']:.4f} lossG {mean.get('lossG', math.nan):.4f} "
            f"recon {mean.get('recon', math.nan):.5f} {time.time() - t0:.1f}s | {shown}: "
            + " ".join(f"{c} {100 * summ[c]:.2f}" for c in spec.summary_columns)
            + (" *saved" if improved else "")
        )
        distributed.barrier(world)
    if not main:
        distributed.finish(world)
        return best
    # the decision threshold (DCASE baselines' gamma rule) of the metric test.py will write, from the selected
    # weights, stored with them so that test-time decisions need no refit
    state = checkpoint.load(best_path, device)
    netG.load_state_dict(state["netG"])
    netD.load_state_dict(state["netD"])
    state["decision"] = fit_decision(netG, netD, train_specs, train_clips, cfg, fixed_metric or best["metric"], device)
    checkpoint.save(best_path, state)
    logger.info(f"decision threshold of {state['decision']['metric']}: {state['decision']['threshold']:.6g} "
                f"(gamma fit, {state['decision']['percentile']:.0%} of the training clips' scores)")
    logger.info(f"selected model: epoch {best['epoch']}, metric {best['metric']}, {spec.summary_key} "
                f"{100 * best['value']:.2f} -> {best_path}")
    distributed.finish(world)
    return best
