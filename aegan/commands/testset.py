"""What test.py does: score a test set with every metric, evaluate them when labels are known, and write
the result tables, the per-clip scores and the challenge's score and decision files."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from aegan import registry
from aegan.commands.results import (
    channel_label,
    dataset_title,
    decision_table,
    score_files,
    table,
    write_clip_scores,
    write_decision_metrics,
    write_results,
)
from aegan.commands.summary import check_result_dir, record_run, write_summary
from aegan.core.files import replace_set
from aegan.core.metrics import metric_names
from aegan.core.text import plural
from aegan.data.cache import clip_features
from aegan.data.clips import Clip, DatasetSpec, attach_ground_truth
from aegan.inference.model import Model, Training, prepare, save_thresholds
from aegan.scoring.clip_scores import Scored, reference_order
from aegan.scoring.evaluation import Rule, decide, decision_metrics
from aegan.scoring.held_out import BASIS_KEY
from aegan.settings.layers import Resolved, record_settings


@dataclass(kw_only=True)
class TestRun:
    """What the steps of one test.py run share: the test set scored, its model, and where its results go."""

    spec: DatasetSpec
    rule: Rule
    mt: str
    model: Model
    training: Training
    clips: list[Clip]
    part: str  # "dev" or "eval"
    labelled: bool
    out: Path

    def write_decisions(self, scores: np.ndarray, metric: str) -> float:
        """Score and decision files published as one set (all or none), replacing the previous run's set for this
        machine type and test set; with labels, precision / recall / F1. Returns the decision threshold."""
        decision, fitted = self.model.threshold(metric, self.training.specs)
        if fitted:
            print(f"decision: fitted the gamma threshold of {metric} on {decision[BASIS_KEY]}; kept in "
                  f"{save_thresholds(self.model)}")
        decisions = decide(scores, decision["threshold"])
        detect_dir, group = Path(self.model.cfg["detect_dir"]), self.rule.group
        files = {**score_files(self.rule, self.mt, self.clips, scores, detect_dir),
                 **score_files(self.rule, self.mt, self.clips, decisions, detect_dir, "decision_result")}
        removed = replace_set(detect_dir / f".{self.mt}_{self.part}.written", files)
        if removed:
            print(f"removed the previous run's {plural(len(removed), 'file')} that this run does not write: "
                  + ", ".join(p.name for p in removed[:3]) + (" ..." if len(removed) > 3 else ""))
        n = len(files) // 2
        print(f"wrote {n} anomaly score and {n} decision files ({metric}, threshold {decision['threshold']:.6g}) "
              f"to {detect_dir}")
        if self.labelled:
            rows, summary = decision_metrics(self.clips, decisions, group)
            print(decision_table(group, rows, summary, metric))
            print(f"wrote {write_decision_metrics(group, rows, summary, self.out)}")
        return decision["threshold"]

    def draw(self, scored: Scored, metric: str, threshold: float, embedding: str) -> list[Path]:
        """Score distributions and ROC curves (with labels), the embedding map."""
        from aegan.commands import plots  # matplotlib: only when pictures are drawn

        model, group, out = self.model, self.spec.group_name, self.out
        scores = scored.scores[metric]  # the one metric's scores
        epoch = f", epoch {model.info['epoch']}" if model.info.get("epoch") else ""
        title = (f"{self.mt} ({dataset_title(self.spec.name, model.cfg)}, {self.part} test set), model "
                 f"{model.path.name}{epoch}")
        train_clips = [self.training.clips[i] for i in reference_order(self.training.clips)]  # model.train_emb's
        drawn = []
        if self.labelled:
            drawn.append(plots.save_png(plots.score_figure(group, self.clips, scores, metric, threshold, title),
                                        out / f"scores_{metric}.png"))
            drawn.append(plots.save_png(plots.roc_figure(group, self.clips, scores, metric, model.cfg["detect"]["p"],
                                                         title), out / f"roc_{metric}.png"))
        drawn.append(plots.save_png(plots.embedding_figure(model.train_emb, train_clips, scored.emb, self.clips, title,
                                                           embedding), out / f"embeddings_{embedding}.png"))
        return drawn


def run_test(spec: DatasetSpec, resolved: Resolved, args: argparse.Namespace, device: torch.device) -> None:
    """test.py with its arguments: the test set chosen, the released ground truth, the pictures."""
    # how results are scored and submission files named; looked up before any work (an unregistered dataset is
    # one line), from settings the model cannot change (it fixes only net, feat and train_set)
    entry = registry.of(spec, resolved.cfg)
    check_result_dir(entry.rule, entry.name, Path(resolved.cfg["result_dir"]))  # before writing anything
    model, training = prepare(spec, resolved, args.mt, device)
    cfg, mt = model.cfg, args.mt
    clips = spec.test_clips(cfg, mt, args.dev, training.clips)
    if args.ground_truth:
        clips = attach_ground_truth(spec, mt, clips, args.ground_truth, getattr(args, "ground_truth_domain", None))
        print(f"ground truth: labels of {len(clips)} evaluation test clips from {args.ground_truth}")
    run = TestRun(spec=spec, rule=entry.rule, mt=mt, model=model, training=training, clips=clips,
                  part="dev" if args.dev else "eval", labelled=args.dev or bool(args.ground_truth),
                  out=Path(cfg["result_dir"]) / mt / ("" if args.dev else "eval"))
    specs = model.scaled(clip_features(cfg, mt, clips, f"test_{run.part}"))
    print(f"scoring {plural(len(clips), f'{run.part} test clip')} with all {len(metric_names())} metrics")
    scored = model.score(specs)
    print(f"wrote {write_clip_scores(spec.group_name, clips, scored.scores, run.out)}")
    results = entry.rule.evaluate_all(clips, scored.scores, cfg["detect"]["p"]) if run.labelled else None
    # the best metric on a labelled dev test set may choose; released evaluation labels evaluate, never choose
    metric, chosen_by = model.metric_choice(entry.rule.best_metric(results) if results and args.dev else None)
    if results:  # the best metric's table and, when it is another, the table of the score files' metric
        top = entry.rule.best_metric(results)
        print(table(entry.rule, top, *results[top], "best metric on this test set"))
        if metric != top:
            print(table(entry.rule, metric, *results[metric], f"metric of the score files: {chosen_by}"))
        for f in write_results(entry.rule, results, run.out):
            print(f"wrote {f}")
    threshold = run.write_decisions(scored.scores[metric], metric)
    if results:
        record_run(run.out, mt, run.part, metric, chosen_by, results, entry.rule,
                   {"paper": cfg.get("paper_result"), "model": str(model.path), "epoch": model.info.get("epoch"),
                    "dataset": entry.name, "title": dataset_title(spec.name, cfg),
                    "channel": channel_label(cfg) or None})
        for f in write_summary(entry.rule, entry.name, Path(cfg["result_dir"]), run.part):
            print(f"wrote {f}")
    if not args.no_plots:
        for f in run.draw(scored, metric, threshold, args.embedding_map):
            print(f"wrote {f}")
    record_settings(cfg, mt, "test")  # what the files above were made with
