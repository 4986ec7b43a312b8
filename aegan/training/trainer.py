"""The training loop: per batch the method's two steps, per epoch an evaluation on the dev test set and the
model selection, checkpoints written atomically (`<mt>.pth` = selected model, `<mt>_last.pth` = resumable
state). Under torchrun each process trains on its shard of every global batch through DDP; rank 0 alone
evaluates, logs and writes checkpoints while the others wait at a barrier."""

from __future__ import annotations

import contextlib
import logging
import math
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from aegan import registry
from aegan.core.errors import AeganError
from aegan.core.metrics import choose_metric, resolve_metric
from aegan.core.progress import Bar, epochs_file, write_epochs
from aegan.data.clips import DatasetSpec
from aegan.data.segments import SegmentSampler, skip_loader_draw
from aegan.method.device import seed_everything
from aegan.method.fast_steps import ddp_train_step, train_step
from aegan.scoring.decision import fit_threshold
from aegan.scoring.evaluation import Rule
from aegan.scoring.scores import (
    EmbeddingDetectors,
    embed_clips,
    reference_order,
    score_clips,
    training_scores,
    with_critic_scores,
)
from aegan.settings.layers import Resolved, batch_size, record_settings
from aegan.store import checkpoint
from aegan.store.artifact import Identity, check_identity, read_last, threshold_key, training_lock, write_model
from aegan.store.artifact import read as read_model
from aegan.training import distributed
from aegan.training.setup import (
    Data,
    Nets,
    Progress,
    build,
    get_logger,
    load_data,
    model_file,
    resume,
    resumed_settings,
    save_last,
    snapshot,
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
LOG_EVERY = 25  # training iterations between reads of the losses (each read waits for the device)


def train_epoch(nets: Nets, sampler: SegmentSampler, wgan: dict, amp: str, device: torch.device, rank: int,
                world: int, desc: str, last_path: Path) -> dict:
    """One pass over the shuffled training segments; the mean of each logged loss term. The losses stay on the
    device and are read every LOG_EVERY iterations (one host sync, not six per iteration)."""
    nets.netG.train()
    nets.netD.train()
    sums: dict[str, float] = {}
    pending: list[tuple[int, dict]] = []
    bar = Bar(sampler.epoch(), desc, total=len(sampler), unit="batches", disable=rank > 0, start_line=True)
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
            kept = (f"the last good run state {last_path} is kept" if last_path.exists() else
                    "no run state was written yet")
            raise AeganError(f"{desc}, batch {i}: loss is not finite ({row}); stopped, {kept} (lower "
                             "train.lrD/lrG, or train.wgan.lambda_gp?)")
        for k, v in row.items():
            sums[k] = sums.get(k, 0.0) + v
    return row


def _show(bar: Bar, row: dict) -> None:
    bar.note(lossD=f"{row['lossD']:.3f}", lossG=f"{row.get('lossG', float('nan')):.3f}")


@dataclass
class Run:
    """One training run of one machine type: what every step after the setup needs."""

    rule: Rule  # how the dev test results are scored: selects the epoch and the metric
    cfg: dict
    mt: str
    seed: int
    device: torch.device
    data: Data
    nets: Nets
    progress: Progress
    logger: logging.Logger
    pool: ThreadPoolExecutor | None = None  # the evaluation's background thread
    pending: Pending | None = None

    @property
    def paths(self) -> tuple[Path, Path]:
        return checkpoint.model_paths(self.cfg, self.mt)


@dataclass
class Pending:
    """An evaluated epoch whose critic detector queries may still be running (train.eval_overlap): the GPU part
    of the scoring pass is done with that epoch's weights; fitting the detectors on its training embeddings and
    querying them with its test embeddings runs in a thread while the next epoch trains. Its selection is
    settled when the result is ready, exactly as if it had been waited for."""

    epoch: int
    mean: dict
    seconds: float
    g_scores: dict[str, np.ndarray]
    test_emb: np.ndarray
    train_emb: np.ndarray
    weights: dict  # the epoch's netG and netD state dicts (the selected model's if it wins)
    future: Future | None = None

    def state(self) -> dict:
        """What the run state keeps of it, so that a resumed run settles it with the same numbers."""
        return {"epoch": self.epoch, "mean": self.mean, "seconds": self.seconds, "test_emb": _t(self.test_emb),
                "train_emb": _t(self.train_emb), "g_scores": {k: _t(v) for k, v in self.g_scores.items()}}

    @classmethod
    def from_state(cls, p: dict, weights: dict) -> Pending:
        """The pending epoch kept by state(), with its weights (a resumed run's nets hold them)."""
        return cls(p["epoch"], p["mean"], p["seconds"], {k: v.numpy() for k, v in p["g_scores"].items()},
                   p["test_emb"].numpy(), p["train_emb"].numpy(), weights)


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a))


def train_embeddings(cfg: dict, nets: Nets, data: Data, device: torch.device, desc: str) -> np.ndarray:
    """The training clips' critic embeddings in the original's reference order: the critic detectors'
    reference set, kept with the selected model."""
    feat = cfg["feat"]
    return embed_clips(nets.netD, data.train_specs, feat["frame_num"], feat["graph_hop_f"], device,
                       cfg["detect"]["amp"], desc)[reference_order(data.train_clips)]


def score_epoch(cfg: dict, nets: Nets, data: Data, device: torch.device
                ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """The evaluation's device part: the training clips' critic embeddings (the detectors' reference set) and the
    scoring pass over the dev test clips without the detectors: (generator scores, test and training embeddings)."""
    train_emb = train_embeddings(cfg, nets, data, device, "evaluation: training embeddings")
    scored = score_clips(nets.netG, nets.netD, None, data.test_specs, cfg["feat"], device, cfg["detect"]["amp"],
                         desc="evaluation: dev test clips")
    return scored.scores, scored.emb, train_emb


def critic_results(rule: Rule, cfg: dict, test_clips: list, g_scores: dict[str, np.ndarray],
                   test_emb: np.ndarray, train_emb: np.ndarray) -> dict:
    """The evaluation's CPU part (it may run beside the next epoch): the detectors fitted and queried, then the
    19 metrics' results."""
    scores = with_critic_scores(g_scores, test_emb, EmbeddingDetectors(train_emb))
    return rule.evaluate_all(test_clips, scores, cfg["detect"]["p"])


def evaluate(rule: Rule, cfg: dict, nets: Nets, data: Data, device: torch.device) -> dict:
    """One epoch's evaluation, waited for: all 19 metrics on the labelled dev test set (bench/gpu.py times it)."""
    return critic_results(rule, cfg, data.test_clips, *score_epoch(cfg, nets, data, device))


def start_evaluation(run: Run, epoch: int, mean: dict, seconds: float) -> Pending:
    """This epoch's weights scored on the device now; the critic detectors handed to the evaluation thread."""
    nets = run.nets
    g_scores, test_emb, train_emb = score_epoch(run.cfg, nets, run.data, run.device)
    pending = Pending(epoch, mean, seconds, g_scores, test_emb, train_emb, snapshot(nets))
    pending.future = run.pool.submit(critic_results, run.rule, run.cfg, run.data.test_clips, g_scores, test_emb,
                                     train_emb)
    return pending


def settle(run: Run) -> None:
    """Wait for the pending epoch's results (ready by now when it ran beside a whole epoch), then select and log
    it as the synchronous evaluation would have."""
    p, run.pending = run.pending, None
    if p is None:
        return
    results = (p.future.result() if p.future else
               critic_results(run.rule, run.cfg, run.data.test_clips, p.g_scores, p.test_emb, p.train_emb))
    cfg, progress, rule = run.cfg, run.progress, run.rule
    shown, value, improved = select(results, rule, cfg, progress)
    top = rule.best_metric(results)
    progress.history.append({"epoch": p.epoch + 1, **p.mean, "best_metric": top, "metric": shown, "value": value,
                             "best_value": float(results[top][1][rule.summary_key])})
    if improved:
        progress.best = {"value": value, "epoch": p.epoch + 1, "metric": shown}
        progress.keep(p.weights, p.train_emb)
    summ = results[shown][1]
    run.logger.info(f"{_epoch_line(cfg, p.epoch, p.mean, p.seconds)} | {shown}: "
                    + " ".join(f"{c} {100 * summ[c]:.2f}" for c in rule.summary_columns)
                    + (" *selected" if improved else ""))


def select(results: dict, rule: Rule, cfg: dict, progress: Progress) -> tuple[str, float, bool]:
    """(metric shown, its value, whether this epoch becomes the selected model) under train.select."""
    how = cfg["train"]["select"]
    shown = resolve_metric(cfg["detect"]["metric"]) if how == "metric" else rule.best_metric(results)
    value = float(results[shown][1][rule.summary_key])
    # nan (no group with both classes) never beats a number, but the first epoch is always kept
    improved = how == "last" or progress.best["epoch"] == 0 or value > progress.best["value"]
    return shown, value, improved


def end_epoch(run: Run, epoch: int, mean: dict, seconds: float) -> None:
    """Rank 0 after an epoch: settle the previous epoch's evaluation, start this one's, save the run state."""
    if not run.data.test_clips:
        return end_unlabelled_epoch(run, epoch, mean, seconds)
    settle(run)
    run.pending = start_evaluation(run, epoch, mean, seconds)
    if not run.cfg["train"]["eval_overlap"]:
        settle(run)
    save_last(run.paths[1], run.cfg, run.seed, run.nets, run.data, run.progress, epoch + 1, run.device,
              run.pending.state() if run.pending else None)


def _epoch_line(cfg: dict, epoch: int, mean: dict, seconds: float) -> str:
    return (f"epoch {epoch + 1}/{cfg['train']['epoch']} lossD {mean['lossD']:.4f} "
            f"lossG {mean.get('lossG', math.nan):.4f} recon {mean.get('recon', math.nan):.5f} {seconds:.1f}s")


def end_unlabelled_epoch(run: Run, epoch: int, mean: dict, seconds: float) -> None:
    """Without a labelled dev test set the last epoch is the model; its training embeddings are kept."""
    cfg, nets, data = run.cfg, run.nets, run.data
    train_emb = train_embeddings(cfg, nets, data, run.device, "training embeddings")
    run.progress.history.append({"epoch": epoch + 1, **mean})
    run.progress.best = {"value": math.nan, "epoch": epoch + 1, "metric": choose_metric(cfg["detect"]["metric"])}
    run.progress.keep(snapshot(nets), train_emb)
    save_last(run.paths[1], cfg, run.seed, nets, data, run.progress, epoch + 1, run.device)
    run.logger.info(f"{_epoch_line(cfg, epoch, mean, seconds)} *selected")


def finish(run: Run) -> None:
    """Rank 0 after the last epoch: the decision threshold of the metric test.py will write, fitted with the
    selected weights, and the model file written once with everything scoring needs. Run again by --resume
    when a run stopped after its last epoch but before its model file was written."""
    cfg, progress = run.cfg, run.progress
    metric = choose_metric(cfg["detect"]["metric"], None, progress.best["metric"])
    sel = progress.selected
    run.nets.netG.load_state_dict(sel["netG"])  # training is over: G now holds the selected weights
    emb = sel["train_emb"].numpy()
    scores = training_scores(metric, run.nets.netG, EmbeddingDetectors(emb), emb, lambda: run.data.train_specs,
                             cfg["feat"], run.device, cfg["detect"]["amp"])
    percentile = cfg["detect"]["decision_percentile"]
    decision = {"metric": metric, **fit_threshold(scores, percentile)}
    best_path = run.paths[0]
    write_model(best_path, model_file(run.rule.best_key, cfg, run.seed, run.data, progress,
                                      {threshold_key(metric, percentile): decision}))
    run.logger.info(f"decision threshold of {metric}: {decision['threshold']:.6g} "
                    f"(gamma fit, {decision['percentile']:.0%} of the training clips' scores)")
    best = progress.best
    value = "" if math.isnan(best["value"]) else f", {run.rule.summary_key} {100 * best['value']:.2f}"
    run.logger.info(f"selected model: epoch {best['epoch']}, metric {best['metric']}{value} -> {best_path}")


def finished(best_path: Path, progress: Progress) -> bool:
    """Whether this run's model file is written, after the epochs trained so far (a model file of another run,
    or of this run before it was extended, does not count)."""
    if not best_path.exists():
        return False
    try:
        _, mf = read_model(best_path)
    except AeganError:
        return False
    return mf is not None and mf.run_id == progress.run_id and len(mf.history) == len(progress.history)


def run_settings(resolved: Resolved, mt: str, seed: int | None, resume_run: bool) -> tuple[dict, int, dict | None]:
    """(settings, seed, run state) of a training run: the files' and flags', or with --resume the run's own
    (training_setup.resumed_settings), checked before any feature work. `seed` None: not given (42 for a new run)."""
    if not resume_run:
        return resolved.cfg, 42 if seed is None else seed, None
    last_path = checkpoint.model_paths(resolved.cfg, mt)[1]
    if not last_path.exists():
        raise AeganError(f"--resume: no resumable checkpoint {last_path} (train without --resume first)")
    state = read_last(last_path, torch.device("cpu"))
    cfg, seed = resumed_settings(resolved, state, last_path, seed)
    return cfg, seed, state


def train(spec: DatasetSpec, cfg: dict, mt: str, device: torch.device, seed: int, state: dict | None = None) -> dict:
    """Train one machine type (continue the run whose run state is `state`, with its settings: run_settings);
    returns {'epoch', 'metric', 'value'} of the selected model."""
    rule = registry.of(spec, cfg).rule  # before any work: an unregistered dataset is one line
    best_path, last_path = checkpoint.model_paths(cfg, mt)
    device, rank, world = distributed.init(device)
    lock = training_lock(cfg["model_dir"], mt) if rank == 0 else contextlib.nullcontext()
    with lock:
        run = setup(spec, rule, cfg, mt, device, seed, state, rank, world)
        trained = run.progress.start < cfg["train"]["epoch"]
        if trained:
            train_epochs(run, rank, world)
        if rank == 0 and not trained and finished(best_path, run.progress):
            run.logger.info(f"nothing to do: {last_path} already holds {run.progress.start} of "
                            f"train.epoch={cfg['train']['epoch']} epochs, and {best_path} is its model")
        elif rank == 0:
            finish(run)
        distributed.finish(world)
    return run.progress.best


def setup(spec: DatasetSpec, rule: Rule, cfg: dict, mt: str, device: torch.device, seed: int, state: dict | None,
          rank: int, world: int) -> Run:
    """Data, networks and progress of a new run, or of the run whose state --resume read from <mt>_last.pth."""
    main = rank == 0
    seed_everything(seed)  # the same seed on every rank: same permutations and interpolation weights
    last_path = checkpoint.model_paths(cfg, mt)[1]

    def same_clips(identity: Identity) -> None:  # before any feature work: other training clips are one line
        if state is not None:
            check_identity(last_path, state["identity"], identity, "the run in")

    data = load_data(spec, cfg, mt, device, main, world, same_clips)
    logger = get_logger(Path(cfg["log_dir"]) / mt, mt, main)
    if main:
        record_settings(cfg, mt, "train")  # beside the log, once the data is there
    if world > 1:
        logger.info(f"distributed: {world} processes ({'nccl' if device.type == 'cuda' else 'gloo'}), global batch "
                    f"{batch_size(cfg)} = {world} x {batch_size(cfg) // world}")
    logger.info(f"{mt}: {len(data.train_clips)} training clips ({'+'.join(spec.train_parts(cfg, mt))}), "
                f"{len(data.test_clips)} dev test clips, feature max {data.vmax:.4f} min {data.vmin:.4f}")
    nets = build(cfg, device)
    progress = Progress()
    if state is not None:
        progress = resume(nets, state, last_path, device, cfg, data.identity)
        logger.info(f"resuming from {last_path} at epoch {progress.start + 1}")
    run = Run(rule, cfg, mt, seed, device, data, nets, progress, logger)
    if progress.pending and main:  # the last epoch's evaluation was still running when the run stopped
        run.pending = Pending.from_state(progress.pending, snapshot(nets))  # the nets hold its weights
        settle(run)
    progress.pending = None
    return run


def train_epochs(run: Run, rank: int, world: int) -> None:
    """The epochs from where the run stands to train.epoch."""
    cfg, data, nets, tcfg = run.cfg, run.data, run.nets, run.cfg["train"]
    if world > 1:  # after loading: DDP broadcasts rank 0's weights, which are the same here
        ddpG, ddpD = distributed.wrap(nets.netG, run.device), distributed.wrap(nets.netD, run.device)
        nets.netG, nets.netD, nets.gen, nets.ddp = ddpG.module, ddpD.module, ddpG.module, (ddpG, ddpD)
    sampler = SegmentSampler(data.train_specs, cfg["feat"]["frame_num"], cfg["feat"]["graph_hop_f"], batch_size(cfg),
                             rank, world)
    if data.test_clips:
        run.logger.info(SELECT_NOTE[tcfg["select"]].format(key=run.rule.summary_key, metric=cfg["detect"]["metric"]))
    else:
        run.logger.info(f"{run.mt} has no labelled dev test set (an evaluation machine type): no evaluation during "
                        f"training, the last epoch is kept, and its scores use {choose_metric(cfg['detect']['metric'])}"
                        " (detect.metric)")
    last_path = run.paths[1]
    epochs, start = epochs_file(cfg["log_dir"], run.mt), time.time()
    with ThreadPoolExecutor(1, thread_name_prefix="evaluation") as run.pool:
        for epoch in range(run.progress.start, tcfg["epoch"]):
            t0 = time.time()
            mean = train_epoch(nets, sampler, tcfg["wgan"], tcfg["amp"], run.device, rank, world,
                               f"epoch {epoch + 1}/{tcfg['epoch']}", last_path)
            skip_loader_draw()  # the original's per-epoch dev test DataLoader: one draw on every rank
            if rank == 0:
                end_epoch(run, epoch, mean, time.time() - t0)
                write_epochs(epochs, epoch + 1, tcfg["epoch"], run.progress.start + 1, time.time() - start)
            distributed.barrier(world)
        settle(run)
