"""A training run of one machine type as one object whose methods are its phases: set up, the epochs (train, evaluate,
select, save the run state), finish (the decision threshold and the model file). Under torchrun every rank trains
its shard of each global batch through DDP; rank 0 alone evaluates, logs and writes files."""

from __future__ import annotations

import contextlib
import logging
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

from aegan import registry
from aegan.core.errors import AeganError
from aegan.core.metrics import metric_choice, resolve_metric
from aegan.core.progress import epochs_file, write_epochs
from aegan.data.clips import DatasetSpec, Identity, check_identity
from aegan.data.segments import SegmentSampler, skip_loader_draw
from aegan.method.device import NET_SIZES, seed_everything, sized_by
from aegan.method.steps import terms_text
from aegan.scoring.clip_scores import EmbeddingDetectors, training_scores
from aegan.scoring.evaluation import Rule
from aegan.scoring.held_out import BASIS_KEY, fitted_rule
from aegan.settings.layers import batch_size, record_settings
from aegan.store import model_file
from aegan.store.model_dir import ModelDir, training_lock
from aegan.store.model_file import ModelFile, RunState, threshold_key
from aegan.store.model_file import write as write_model  # a name of this module: tests stop a run right there
from aegan.training import distributed
from aegan.training.epoch import train_epoch
from aegan.training.events import Events, folder
from aegan.training.overlap import Overlap, train_embeddings
from aegan.training.parts import Data, Nets, Progress, build, get_logger, load_data, restore

SELECT_NOTE = {
    "best": "model selection: the epoch and metric with the highest {key} on the LABELLED dev test set, as in the "
            "paper (numbers selected this way are optimistic; use --set train.select=last or =metric for an "
            "honest run)",
    "metric": "model selection: the epoch with the highest {key} of detect.metric={metric} on the labelled dev "
              "test set (the metric is fixed, the epoch is still chosen on test labels)",
    "last": "model selection: the last epoch (the test set is only reported, never used to choose)",
}


@dataclass(kw_only=True)
class TrainingRun:
    rule: Rule  # how the dev test results are scored: selects the epoch and the metric
    cfg: dict
    mt: str
    seed: int
    device: torch.device
    rank: int
    world: int
    files: ModelDir
    data: Data
    nets: Nets
    progress: Progress
    logger: logging.Logger
    evaluation: Overlap
    sampler: SegmentSampler
    events: Events

    def step(self, epochs: int) -> int:
        """The global iteration after `epochs` epochs: every event's step."""
        return epochs * len(self.sampler)

    @classmethod
    def set_up(cls, spec: DatasetSpec, cfg: dict, mt: str, device: torch.device, seed: int, state: RunState | None
               ) -> TrainingRun:
        """Data, networks and progress of a new run, or of the run whose state --resume read."""
        rule, files = registry.of(spec, cfg).rule, ModelDir.of(cfg, mt)
        rank, world = distributed.rank(), distributed.world_size()
        main = rank == 0
        seed_everything(seed)  # the same seed on every rank: same permutations and interpolation weights

        def same_clips(identity: Identity) -> None:  # before any feature work: other training clips are one line
            if state is not None:
                check_identity(files.run_state, state.identity, identity, "the run in")

        data = load_data(spec, cfg, mt, device, same_clips)
        logger = get_logger(Path(cfg["log_dir"]) / mt, mt, main)
        if main:
            record_settings(cfg, mt, "train")  # beside the log, once the data is there
        if world > 1:
            logger.info(f"distributed: {world} processes ({'nccl' if device.type == 'cuda' else 'gloo'}), global "
                        f"batch {batch_size(cfg)} = {world} x {batch_size(cfg) // world}")
        logger.info(f"{mt}: {len(data.train_clips)} training clips ({'+'.join(spec.train_parts(cfg, mt))}), "
                    f"{len(data.test_clips)} dev test clips, feature max {data.vmax:.4f} min {data.vmin:.4f}")
        nets = build(cfg, device)
        progress = Progress() if state is None else restore(nets, state, files.run_state, device, cfg)
        if state is not None:
            logger.info(f"resuming from {files.run_state} at epoch {progress.start + 1}")
        sampler = SegmentSampler(data.train_specs, cfg["feat"]["frame_num"], cfg["feat"]["graph_hop_f"],
                                 batch_size(cfg), rank, world)
        logged = folder(cfg, mt, seed, progress.run_id) if main and cfg["train"]["tensorboard"] else None
        # a resumed run hides what the stopped one logged after the last completed epoch (its run state)
        events = Events(logged, rule, progress.start if state is not None else None, len(sampler))
        run = cls(rule=rule, cfg=cfg, mt=mt, seed=seed, device=device, rank=rank, world=world, files=files,
                  data=data, nets=nets, progress=progress, logger=logger,
                  evaluation=Overlap(rule, cfg, data, None), sampler=sampler, events=events)
        if state is not None and state.pending and main:  # the last epoch's evaluation was running when it stopped
            run.evaluation.resume(state.pending, nets.snapshot())  # the nets hold its weights
            # its events, unless the stopped run logged them in the moment between settling it and its next state
            run.settle(log=not events.logged(progress.start))
        return run

    def train_epochs(self) -> None:
        """The epochs from where the run stands to train.epoch."""
        cfg, data, nets, tcfg = self.cfg, self.data, self.nets, self.cfg["train"]
        if self.world > 1:  # after loading: DDP broadcasts rank 0's weights, which are the same here
            ddpG, ddpD = distributed.wrap(nets.netG, self.device), distributed.wrap(nets.netD, self.device)
            nets.netG, nets.netD, nets.gen, nets.ddp = ddpG.module, ddpD.module, ddpG.module, (ddpG, ddpD)
        if data.test_clips:
            self.logger.info(SELECT_NOTE[tcfg["select"]].format(key=self.rule.summary_key,
                                                                metric=cfg["detect"]["metric"]))
        else:
            metric, how = metric_choice(cfg["detect"]["metric"])  # test.py names the choice in the same words
            self.logger.info(f"{self.mt} has no labelled dev test set (an evaluation machine type): no evaluation "
                             f"during training, the last epoch is kept, and its scores use {metric} ({how})")
        epochs, start = epochs_file(cfg["log_dir"], self.mt), time.time()
        with (sized_by(cfg, "training", (*NET_SIZES, "train.batch_size")),
              ThreadPoolExecutor(1, thread_name_prefix="evaluation") as self.evaluation.pool):
            for epoch in range(self.progress.start, tcfg["epoch"]):
                t0, first = time.time(), self.step(epoch)
                mean = train_epoch(nets, self.sampler, tcfg, self.device, f"epoch {epoch + 1}/{tcfg['epoch']}",
                                   self.files.run_state, lambda i, m, at=first: self.events.losses(at + i + 1, m))
                skip_loader_draw()  # the original's per-epoch dev test DataLoader: one draw on every rank
                if self.rank == 0:
                    self.end_epoch(epoch, mean, time.time() - t0)
                    write_epochs(epochs, epoch + 1, tcfg["epoch"], self.progress.start + 1, time.time() - start)
                distributed.barrier()
            self.settle()

    def end_epoch(self, epoch: int, mean: dict, seconds: float) -> None:
        """Rank 0 after an epoch: settle the previous epoch's evaluation, start this one's, save the run state."""
        lrs = self.nets.optD.param_groups[0]["lr"], self.nets.optG.param_groups[0]["lr"]
        if self.data.test_clips:  # now, not when its evaluation is ready (beside the next epoch)
            self.logger.info(self.epoch_line(epoch, mean, seconds))
        else:  # the last epoch is the model, with its training embeddings
            train_emb = train_embeddings(self.cfg, self.nets, self.data, "training embeddings")
            self.progress.history.append({"epoch": epoch + 1, **mean})
            self.progress.best = {"value": math.nan, "epoch": epoch + 1,
                                  "metric": metric_choice(self.cfg["detect"]["metric"])[0]}
            self.progress.keep(self.nets.snapshot(), train_emb)
            self.save(epoch + 1)
            self.logger.info(f"{self.epoch_line(epoch, mean, seconds)} *selected (the last epoch)")
            self.events.epoch(epoch + 1, mean, seconds, len(self.sampler) * batch_size(self.cfg), lrs)
            return
        self.settle()
        self.evaluation.start(epoch, mean, seconds, self.nets)
        if not self.cfg["train"]["eval_overlap"]:
            self.settle()
        pending = self.evaluation.pending
        self.save(epoch + 1, pending.state() if pending else None)
        # after the run state: an event that cannot be written stops a run that --resume continues
        self.events.epoch(epoch + 1, mean, seconds, len(self.sampler) * batch_size(self.cfg), lrs)

    def settle(self, log: bool = True) -> None:
        """The pending epoch's results selected under train.select and logged (`log`: in TensorBoard too)."""
        taken = self.evaluation.take()
        if taken is None:
            return
        p, results = taken
        rule, progress, how = self.rule, self.progress, self.cfg["train"]["select"]
        top = rule.best_metric(results)
        shown = resolve_metric(self.cfg["detect"]["metric"]) if how == "metric" else top
        value = float(results[shown][1][rule.summary_key])
        # nan (no group with both classes) never beats a number, but the first epoch is always kept
        improved = how == "last" or progress.best["epoch"] == 0 or value > progress.best["value"]
        progress.history.append({"epoch": p.epoch + 1, **p.mean, "best_metric": top, "metric": shown,
                                 "value": value, "best_value": float(results[top][1][rule.summary_key]),
                                 "values": {m: float(s[rule.summary_key]) for m, (_, s) in results.items()}})
        if improved:
            progress.best = {"value": value, "epoch": p.epoch + 1, "metric": shown}
            progress.keep(p.weights, p.train_emb)
        if log:
            self.events.evaluation(p.epoch + 1, results, progress.best, improved)
        summ = results[shown][1]
        self.logger.info(f"epoch {p.epoch + 1}/{self.cfg['train']['epoch']} evaluation on the labelled dev test set, "
                         f"{shown}{' (the best metric)' if how != 'metric' else ' (detect.metric)'}: "
                         + " ".join(f"{c} {100 * summ[c]:.2f}" for c in rule.summary_columns)
                         + (" *selected" if improved else ""))

    def epoch_line(self, epoch: int, mean: dict, seconds: float) -> str:
        """The epoch's training line: its loss means, logged when it ends."""
        return (f"epoch {epoch + 1}/{self.cfg['train']['epoch']} training (epoch means): {terms_text(mean)} "
                f"in {seconds:.1f}s")

    def save(self, epoch: int, pending: dict | None = None) -> None:
        """The run state after `epoch` epochs, with the selected epoch's weights."""
        nets, data, progress = self.nets, self.data, self.progress
        cuda = self.device.type == "cuda"
        model_file.write_run_state(self.files.run_state, RunState(
            netG=nets.netG.state_dict(), netD=nets.netD.state_dict(), optG=nets.optG.state_dict(),
            optD=nets.optD.state_dict(), epoch=epoch, best=progress.best, history=progress.history,
            selected=progress.selected, config=self.cfg, seed=self.seed, identity=data.identity,
            run_id=progress.run_id, feat_max=float(data.vmax), feat_min=float(data.vmin),
            rng_cpu=torch.get_rng_state(), rng_cuda=torch.cuda.get_rng_state(self.device) if cuda else None,
            pending=pending))

    def finish(self) -> None:
        """Rank 0 after the last epoch: the selected weights' decision threshold, then the model file written once
        (again by --resume when a run stopped before writing it)."""
        cfg, progress, data = self.cfg, self.progress, self.data
        best, sel = progress.best, progress.selected
        metric = metric_choice(cfg["detect"]["metric"], None, best["metric"])[0]
        self.nets.netG.load_state_dict(sel["netG"])  # training is over: G now holds the selected weights
        emb = sel["train_emb"].numpy()
        scores = training_scores(metric, self.nets.netG, EmbeddingDetectors(emb), emb, data.train_specs, cfg)
        percentile = cfg["detect"]["decision_percentile"]
        decision = fitted_rule(metric, scores, percentile)
        write_model(self.files.model, ModelFile(
            netG=sel["netG"], netD=sel["netD"], config=cfg, identity=data.identity, feat_max=float(data.vmax),
            feat_min=float(data.vmin), train_emb=emb, sample_rate=data.sample_rate, epoch=best["epoch"],
            metric=best["metric"], value=float(best["value"]), best_key=self.rule.best_key,
            thresholds={threshold_key(metric, percentile): decision}, history=progress.history, seed=self.seed,
            run_id=progress.run_id))
        self.logger.info(f"decision threshold of {metric}: {decision['threshold']:.6g} "
                         f"(gamma fit, {decision['percentile']:.0%} point; scores: {decision[BASIS_KEY]})")
        value = "" if math.isnan(best["value"]) else f", {self.rule.summary_key} {100 * best['value']:.2f}"
        self.logger.info(f"selected model: epoch {best['epoch']}, metric {best['metric']}{value} -> {self.files.model}")
        self.events.finish(self.step(len(progress.history)), cfg, best)

    def finished(self) -> bool:
        """Whether this run's model file is written after the epochs trained so far (not another run's, or earlier)."""
        if not self.files.model.exists():
            return False
        try:
            _, mf = model_file.read(self.files.model)
        except AeganError:
            return False
        return mf is not None and mf.run_id == self.progress.run_id and len(mf.history) == len(self.progress.history)


def train(spec: DatasetSpec, cfg: dict, mt: str, device: torch.device, seed: int, state: RunState | None = None
          ) -> TrainingRun:
    """Train one machine type, or continue the run in `state` with its settings (parts.run_settings)."""
    registry.of(spec, cfg)  # before any work: an unregistered dataset is one line
    device = distributed.init(device)  # joins the process group under torchrun
    files = ModelDir.of(cfg, mt)
    with training_lock(files) if distributed.rank() == 0 else contextlib.nullcontext():
        run = TrainingRun.set_up(spec, cfg, mt, device, seed, state)
        trained = run.progress.start < cfg["train"]["epoch"]
        if trained:
            run.train_epochs()
        if run.rank == 0 and not trained and run.finished():
            run.logger.info(f"nothing to do: {files.run_state} already holds {run.progress.start} of "
                            f"train.epoch={cfg['train']['epoch']} epochs, and {files.model} is its model")
        elif run.rank == 0:
            run.finish()
        run.nets.ddp = None  # the DDP wrappers go before their process group: distributed.finish says why
        distributed.finish()
    return run
