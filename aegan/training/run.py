"""A training run of one machine type, as one object whose methods are its phases, in the order `train` calls them:
set up (data, networks, progress, or the run --resume continues), the epochs (each: train, then the evaluation on
the dev test set and the model selection, then the run state saved), and finish (the decision threshold and the
model file, written once). Under torchrun each process trains on its shard of every global batch through DDP;
rank 0 alone evaluates, logs and writes files while the others wait at a barrier."""

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
from aegan.core.metrics import choose_metric, resolve_metric
from aegan.core.progress import epochs_file, write_epochs
from aegan.data.clips import DatasetSpec
from aegan.data.identity import Identity, check_identity
from aegan.data.segments import SegmentSampler, skip_loader_draw
from aegan.method.device import seed_everything
from aegan.scoring.decision import fit_threshold
from aegan.scoring.evaluation import Results, Rule
from aegan.scoring.scores import EmbeddingDetectors, training_scores
from aegan.settings.layers import batch_size, record_settings
from aegan.store import model_file, run_state
from aegan.store.lock import training_lock
from aegan.store.model_dir import ModelDir
from aegan.store.model_file import ModelFile, threshold_key
from aegan.store.model_file import write as write_model  # a name of this module: tests stop a run right there
from aegan.store.run_state import RunState
from aegan.training import distributed
from aegan.training.epoch import train_epoch
from aegan.training.events import Events, folder
from aegan.training.overlap import Overlap, train_embeddings
from aegan.training.parts import Data, Nets, Progress, build, get_logger, load_data
from aegan.training.resume import restore

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

    def segments(self) -> int:
        """Training segments per epoch (all ranks)."""
        return len(self.sampler) * batch_size(self.cfg)

    def lrs(self) -> tuple[float, float]:
        return self.nets.optD.param_groups[0]["lr"], self.nets.optG.param_groups[0]["lr"]

    @classmethod
    def set_up(cls, spec: DatasetSpec, rule: Rule, cfg: dict, mt: str, device: torch.device, seed: int,
               state: RunState | None, rank: int, world: int) -> TrainingRun:
        """Data, networks and progress of a new run, or of the run whose state --resume read."""
        main, files = rank == 0, ModelDir.of(cfg, mt)
        seed_everything(seed)  # the same seed on every rank: same permutations and interpolation weights

        def same_clips(identity: Identity) -> None:  # before any feature work: other training clips are one line
            if state is not None:
                check_identity(files.run_state, state.identity, identity, "the run in")

        data = load_data(spec, cfg, mt, device, main, world, same_clips)
        logger = get_logger(Path(cfg["log_dir"]) / mt, mt, main)
        if main:
            record_settings(cfg, mt, "train")  # beside the log, once the data is there
        if world > 1:
            logger.info(f"distributed: {world} processes ({'nccl' if device.type == 'cuda' else 'gloo'}), global "
                        f"batch {batch_size(cfg)} = {world} x {batch_size(cfg) // world}")
        logger.info(f"{mt}: {len(data.train_clips)} training clips ({'+'.join(spec.train_parts(cfg, mt))}), "
                    f"{len(data.test_clips)} dev test clips, feature max {data.vmax:.4f} min {data.vmin:.4f}")
        nets = build(cfg, device)
        progress = Progress()
        if state is not None:
            progress = restore(nets, state, files.run_state, device, cfg, data.identity)
            logger.info(f"resuming from {files.run_state} at epoch {progress.start + 1}")
        sampler = SegmentSampler(data.train_specs, cfg["feat"]["frame_num"], cfg["feat"]["graph_hop_f"],
                                 batch_size(cfg), rank, world)
        logged = folder(cfg, mt, seed, progress.run_id) if main and cfg["train"]["tensorboard"] else None
        # a resumed run hides what the stopped one logged after the last completed epoch (its run state)
        events = Events(logged, rule, progress.start * len(sampler) + 1 if state is not None else None)
        run = cls(rule=rule, cfg=cfg, mt=mt, seed=seed, device=device, rank=rank, world=world, files=files,
                  data=data, nets=nets, progress=progress, logger=logger,
                  evaluation=Overlap(rule, cfg, data, device, None), sampler=sampler, events=events)
        if progress.pending and main:  # the last epoch's evaluation was still running when the run stopped
            run.evaluation.resume(progress.pending, nets.snapshot())  # the nets hold its weights
            # its events, unless the stopped run logged them in the moment between settling it and its next state
            run.settle(log=not events.logged(run.step(progress.start)))
        progress.pending = None
        return run

    def train_epochs(self) -> None:
        """The epochs from where the run stands to train.epoch."""
        cfg, data, nets, tcfg = self.cfg, self.data, self.nets, self.cfg["train"]
        if self.world > 1:  # after loading: DDP broadcasts rank 0's weights, which are the same here
            ddpG, ddpD = distributed.wrap(nets.netG, self.device), distributed.wrap(nets.netD, self.device)
            nets.netG, nets.netD, nets.gen, nets.ddp = ddpG.module, ddpD.module, ddpG.module, (ddpG, ddpD)
        sampler = self.sampler
        if data.test_clips:
            self.logger.info(SELECT_NOTE[tcfg["select"]].format(key=self.rule.summary_key,
                                                                metric=cfg["detect"]["metric"]))
        else:
            self.logger.info(f"{self.mt} has no labelled dev test set (an evaluation machine type): no evaluation "
                             "during training, the last epoch is kept, and its scores use "
                             f"{choose_metric(cfg['detect']['metric'])} (detect.metric)")
        epochs, start = epochs_file(cfg["log_dir"], self.mt), time.time()
        with ThreadPoolExecutor(1, thread_name_prefix="evaluation") as self.evaluation.pool:
            for epoch in range(self.progress.start, tcfg["epoch"]):
                t0, first = time.time(), self.step(epoch)
                mean = train_epoch(nets, sampler, tcfg, self.device, f"epoch {epoch + 1}/{tcfg['epoch']}",
                                   self.files.run_state, lambda i, m, at=first: self.events.losses(at + i + 1, m))
                skip_loader_draw()  # the original's per-epoch dev test DataLoader: one draw on every rank
                if self.rank == 0:
                    self.end_epoch(epoch, mean, time.time() - t0)
                    write_epochs(epochs, epoch + 1, tcfg["epoch"], self.progress.start + 1, time.time() - start)
                distributed.barrier(self.world)
            self.settle()

    def end_epoch(self, epoch: int, mean: dict, seconds: float) -> None:
        """Rank 0 after an epoch: settle the previous epoch's evaluation, start this one's, save the run state."""
        self.events.epoch(self.step(epoch + 1), mean, seconds, self.segments(), self.lrs())
        if not self.data.test_clips:
            return self.end_unlabelled_epoch(epoch, mean, seconds)
        self.settle()
        self.evaluation.start(epoch, mean, seconds, self.nets)
        if not self.cfg["train"]["eval_overlap"]:
            self.settle()
        pending = self.evaluation.pending
        self.save(epoch + 1, pending.state() if pending else None)

    def settle(self, log: bool = True) -> None:
        """The pending epoch's results (ready by now when they were computed beside a whole epoch), selected and
        logged as the synchronous evaluation would have (`log`: in TensorBoard too)."""
        taken = self.evaluation.take()
        if taken is None:
            return
        p, results = taken
        rule, progress = self.rule, self.progress
        shown, value, improved = self.select(results)
        top = rule.best_metric(results)
        progress.history.append({"epoch": p.epoch + 1, **p.mean, "best_metric": top, "metric": shown,
                                 "value": value, "best_value": float(results[top][1][rule.summary_key]),
                                 "values": {m: float(s[rule.summary_key]) for m, (_, s) in results.items()}})
        if improved:
            progress.best = {"value": value, "epoch": p.epoch + 1, "metric": shown}
            progress.keep(p.weights, p.train_emb)
        if log:
            self.events.evaluation(self.step(p.epoch + 1), results, progress.best, improved)
        summ = results[shown][1]
        self.logger.info(f"{self.epoch_line(p.epoch, p.mean, p.seconds)} | {shown}: "
                         + " ".join(f"{c} {100 * summ[c]:.2f}" for c in rule.summary_columns)
                         + (" *selected" if improved else ""))

    def select(self, results: Results) -> tuple[str, float, bool]:
        """(metric shown, its value, whether this epoch becomes the selected model) under train.select."""
        how = self.cfg["train"]["select"]
        shown = resolve_metric(self.cfg["detect"]["metric"]) if how == "metric" else self.rule.best_metric(results)
        value = float(results[shown][1][self.rule.summary_key])
        # nan (no group with both classes) never beats a number, but the first epoch is always kept
        improved = how == "last" or self.progress.best["epoch"] == 0 or value > self.progress.best["value"]
        return shown, value, improved

    def end_unlabelled_epoch(self, epoch: int, mean: dict, seconds: float) -> None:
        """Without a labelled dev test set the last epoch is the model; its training embeddings are kept."""
        train_emb = train_embeddings(self.cfg, self.nets, self.data, self.device, "training embeddings")
        self.progress.history.append({"epoch": epoch + 1, **mean})
        self.progress.best = {"value": math.nan, "epoch": epoch + 1,
                              "metric": choose_metric(self.cfg["detect"]["metric"])}
        self.progress.keep(self.nets.snapshot(), train_emb)
        self.save(epoch + 1)
        self.logger.info(f"{self.epoch_line(epoch, mean, seconds)} *selected")

    def epoch_line(self, epoch: int, mean: dict, seconds: float) -> str:
        return (f"epoch {epoch + 1}/{self.cfg['train']['epoch']} lossD {mean['lossD']:.4f} "
                f"lossG {mean.get('lossG', math.nan):.4f} recon {mean.get('recon', math.nan):.5f} {seconds:.1f}s")

    def save(self, epoch: int, pending: dict | None = None) -> None:
        """The run state after `epoch` epochs, with the selected epoch's weights."""
        nets, data, progress = self.nets, self.data, self.progress
        cuda = self.device.type == "cuda"
        run_state.write(self.files.run_state, RunState(
            netG=nets.netG.state_dict(), netD=nets.netD.state_dict(), optG=nets.optG.state_dict(),
            optD=nets.optD.state_dict(), epoch=epoch, best=progress.best, history=progress.history,
            selected=progress.selected, config=self.cfg, seed=self.seed, identity=data.identity,
            run_id=progress.run_id, feat_max=float(data.vmax), feat_min=float(data.vmin),
            rng_cpu=torch.get_rng_state(), rng_cuda=torch.cuda.get_rng_state(self.device) if cuda else None,
            pending=pending))

    def finish(self) -> None:
        """Rank 0 after the last epoch: the decision threshold of the metric test.py will write, fitted with the
        selected weights, and the model file written once with everything scoring needs. Run again by --resume
        when a run stopped after its last epoch but before its model file was written."""
        cfg, progress, data = self.cfg, self.progress, self.data
        best, sel = progress.best, progress.selected
        metric = choose_metric(cfg["detect"]["metric"], None, best["metric"])
        self.nets.netG.load_state_dict(sel["netG"])  # training is over: G now holds the selected weights
        emb = sel["train_emb"].numpy()
        scores = training_scores(metric, self.nets.netG, EmbeddingDetectors(emb), emb, data.train_specs,
                                 cfg["feat"], self.device, cfg["detect"]["amp"])
        percentile = cfg["detect"]["decision_percentile"]
        decision = {"metric": metric, **fit_threshold(scores, percentile)}
        write_model(self.files.model, ModelFile(
            netG=sel["netG"], netD=sel["netD"], config=cfg, identity=data.identity, feat_max=float(data.vmax),
            feat_min=float(data.vmin), train_emb=emb, sample_rate=data.sample_rate, epoch=best["epoch"],
            metric=best["metric"], value=float(best["value"]), best_key=self.rule.best_key,
            thresholds={threshold_key(metric, percentile): decision}, history=progress.history, seed=self.seed,
            run_id=progress.run_id))
        self.logger.info(f"decision threshold of {metric}: {decision['threshold']:.6g} "
                         f"(gamma fit, {decision['percentile']:.0%} of the training clips' scores)")
        value = "" if math.isnan(best["value"]) else f", {self.rule.summary_key} {100 * best['value']:.2f}"
        self.logger.info(f"selected model: epoch {best['epoch']}, metric {best['metric']}{value} -> {self.files.model}")
        self.events.finish(self.step(len(progress.history)), cfg, best)

    def finished(self) -> bool:
        """Whether this run's model file is written, after the epochs trained so far (a model file of another run,
        or of this run before it was extended, does not count)."""
        if not self.files.model.exists():
            return False
        try:
            _, mf = model_file.read(self.files.model)
        except AeganError:
            return False
        return mf is not None and mf.run_id == self.progress.run_id and len(mf.history) == len(self.progress.history)


def train(spec: DatasetSpec, cfg: dict, mt: str, device: torch.device, seed: int, state: RunState | None = None
          ) -> TrainingRun:
    """Train one machine type (continue the run whose run state is `state`, with its settings: resume.run_settings);
    returns the run (its progress: the selected model, the history)."""
    rule = registry.of(spec, cfg).rule  # before any work: an unregistered dataset is one line
    device, rank, world = distributed.init(device)
    files = ModelDir.of(cfg, mt)
    with training_lock(files) if rank == 0 else contextlib.nullcontext():
        run = TrainingRun.set_up(spec, rule, cfg, mt, device, seed, state, rank, world)
        trained = run.progress.start < cfg["train"]["epoch"]
        if trained:
            run.train_epochs()
        if rank == 0 and not trained and run.finished():
            run.logger.info(f"nothing to do: {files.run_state} already holds {run.progress.start} of "
                            f"train.epoch={cfg['train']['epoch']} epochs, and {files.model} is its model")
        elif rank == 0:
            run.finish()
        distributed.finish(world)
    return run
