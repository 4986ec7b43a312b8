"""What test.py does: score a test set with all 19 metrics, evaluate them when labels are known, and write
the result tables, the per-clip scores and the challenge's score and decision files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from aegan import registry
from aegan.commands.results import (
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
from aegan.core.text import plural
from aegan.data.cache import clip_features
from aegan.data.clips import Clip, DatasetSpec, attach_ground_truth
from aegan.inference.model import Model, save_thresholds
from aegan.inference.prepare import Training, prepare
from aegan.scoring.decision import decide, decision_metrics
from aegan.scoring.evaluation import Results, Rule
from aegan.scoring.scores import Scored, reference_order
from aegan.settings.layers import record_settings


@dataclass(kw_only=True)
class TestSet:
    clips: list[Clip]
    part: str  # "dev" or "eval"
    labelled: bool


def test_set(spec: DatasetSpec, cfg: dict, mt: str, dev: bool, truth: str | None, domain_truth: str | None,
             train_clips: list[Clip]) -> TestSet:
    """The dev or eval test clips, with the released ground truth attached to the eval ones when given."""
    clips = spec.test_clips(cfg, mt, dev, train_clips)
    if truth:
        clips = attach_ground_truth(spec, mt, clips, truth, domain_truth)
        print(f"ground truth: labels of {len(clips)} evaluation test clips from {truth}")
    return TestSet(clips=clips, part="dev" if dev else "eval", labelled=dev or bool(truth))


def report_results(rule: Rule, results: Results, metric: str, chosen_by: str, out: Path) -> None:
    """Print the best metric's table and, when it is another, the table of `metric` (the score files'); write the
    result files."""
    top = rule.best_metric(results)
    print(table(rule, top, *results[top], "best metric on this test set"))
    if metric != top:
        print(table(rule, metric, *results[metric], f"metric of the score files: {chosen_by}"))
    for f in write_results(rule, results, out):
        print(f"wrote {f}")


def write_decisions(rule: Rule, mt: str, model: Model, tests: TestSet, scores: np.ndarray, metric: str,
                    train_specs, detect_dir: Path, out: Path) -> float:
    """Score and decision files in the challenge's format, published as one set (all or none), replacing the
    previous run's set for this machine type and test set; with labels, precision / recall / F1. Returns the
    decision threshold."""
    decision, fitted = model.threshold(metric, train_specs)
    if fitted:
        print(f"decision: fitted the gamma threshold of {metric} on the training clips; kept in "
              f"{save_thresholds(model)}")
    decisions = decide(scores, decision["threshold"])
    files = {**score_files(rule, mt, tests.clips, scores, detect_dir),
             **score_files(rule, mt, tests.clips, decisions, detect_dir, "decision_result")}
    removed = replace_set(detect_dir / f".{mt}_{tests.part}.written", files)
    if removed:
        print(f"removed the previous run's {plural(len(removed), 'file')} that this run does not write: "
              + ", ".join(p.name for p in removed[:3]) + (" ..." if len(removed) > 3 else ""))
    n = len(files) // 2
    print(f"wrote {n} anomaly score and {n} decision files ({metric}, threshold {decision['threshold']:.6g}) "
          f"to {detect_dir}")
    if tests.labelled:
        rows, summary = decision_metrics(tests.clips, decisions, rule.group)
        print(decision_table(rule.group, rows, summary, metric))
        print(f"wrote {write_decision_metrics(rule.group, rows, summary, out)}")
    return decision["threshold"]


def draw(spec: DatasetSpec, mt: str, model: Model, training: Training, tests: TestSet, scored: Scored, metric: str,
         threshold: float, out: Path, embedding: str) -> list[Path]:
    """The pictures of this run: score distributions and ROC curves (with labels), the embedding map."""
    from aegan.commands import plots  # matplotlib: only when pictures are drawn

    cfg = model.cfg
    epoch = f", epoch {model.info['epoch']}" if model.info.get("epoch") else ""
    title = f"{mt} ({dataset_title(spec.name, cfg)}, {tests.part} test set), model {model.path.name}{epoch}"
    train_clips = [training.clips[i] for i in reference_order(training.clips)]  # the order of model.train_emb
    drawn, group, scores = [], spec.group_name, scored.scores
    if tests.labelled:
        drawn.append(plots.score_distributions(out / f"scores_{metric}.png", group, tests.clips, scores[metric], metric,
                                               threshold, title))
        drawn.append(plots.roc_curves(out / f"roc_{metric}.png", group, tests.clips, scores[metric], metric,
                                      cfg["detect"]["p"], title))
    drawn.append(plots.embedding_map(out / f"embeddings_{embedding}.png", model.train_emb, train_clips, scored.emb,
                                     tests.clips, title, embedding))
    return drawn


def run_test(spec: DatasetSpec, resolved, mt: str, device: torch.device, dev: bool, truth: str | None = None,
             domain_truth: str | None = None, pictures: bool = True, embedding: str = "pca") -> dict[str, np.ndarray]:
    """test.py: returns the 19 scores of every test clip."""
    # how results are scored and submission files named; looked up before any work (an unregistered dataset is
    # one line), from settings the model cannot change (it fixes only model.MODEL_KEYS)
    entry = registry.of(spec, resolved.cfg)
    rule = entry.rule
    check_result_dir(rule, entry.name, Path(resolved.cfg["result_dir"]))  # before writing anything
    model, training = prepare(spec, resolved, mt, device)
    cfg = model.cfg
    tests = test_set(spec, cfg, mt, dev, truth, domain_truth, training.clips)
    specs = model.scaled(clip_features(cfg, mt, tests.clips, f"test_{tests.part}"))
    print(f"scoring {plural(len(tests.clips), f'{tests.part} test clip')} with all 19 metrics")
    scored = model.score(specs)
    scores = scored.scores
    out = Path(cfg["result_dir"]) / mt / ("" if dev else "eval")
    print(f"wrote {write_clip_scores(spec.group_name, tests.clips, scores, out)}")
    results = rule.evaluate_all(tests.clips, scores, cfg["detect"]["p"]) if tests.labelled else None
    # the best metric on a labelled dev test set may choose; released evaluation labels evaluate, never choose
    metric, chosen_by = model.metric_choice(rule.best_metric(results) if results and tests.part == "dev" else None)
    if results:
        report_results(rule, results, metric, chosen_by, out)
    threshold = write_decisions(rule, mt, model, tests, scores[metric], metric, training.specs,
                                Path(cfg["detect_dir"]), out)
    if results:
        record_run(out, mt, tests.part, metric, chosen_by, results, rule,
                   {"paper": cfg.get("paper_result"), "model": str(model.path), "epoch": model.info.get("epoch"),
                    "dataset": entry.name, "title": dataset_title(spec.name, cfg)})
        for f in write_summary(rule, entry.name, Path(cfg["result_dir"]), tests.part):
            print(f"wrote {f}")
    if pictures:
        for f in draw(spec, mt, model, training, tests, scored, metric, threshold, out, embedding):
            print(f"wrote {f}")
    record_settings(cfg, mt, "test")  # what the files above were made with
    return scores
