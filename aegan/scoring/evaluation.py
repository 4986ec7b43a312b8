"""The evaluation rules: AUC / pAUC per section (DCASE 2022 domain rule) or per machine ID (DCASE 2020), their
summaries, the challenge's system score, and the submission files' names its evaluator reads.

A dataset names its rule in aegan/registry.py; the commands pass the `Rule` to what reports, selects or
summarizes, not the dataset's DatasetSpec."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from aegan.core.errors import AeganError
from aegan.data.clips import Clip

EPS = sys.float_info.epsilon
Results = dict[str, tuple[list[dict], dict]]  # metric -> (per section/ID rows, machine-type summary)


def _auc(labels: np.ndarray, scores: np.ndarray, max_fpr: float | None = None) -> float:
    if len(np.unique(labels)) < 2:
        return float("nan")  # one class only: AUC undefined; reported as nan, never as a number
    from sklearn.metrics import roc_auc_score  # here, not at the top: the registry imports the rules (0.7 s)

    return float(roc_auc_score(labels, scores, max_fpr=max_fpr))


def harmonic(values) -> float:
    """Harmonic mean with values floored at machine epsilon, as the official evaluator does.
    Undefined (nan) values, from groups with one class only, are left out; all undefined gives nan."""
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    if values.size == 0:
        return float("nan")
    from scipy.stats import hmean

    return float(hmean(np.maximum(values, EPS)))


def _mean(values) -> float:
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else float("nan")


def evaluate_sections(scores: np.ndarray, labels: np.ndarray, domains: np.ndarray, groups: np.ndarray,
                      max_fpr: float = 0.1) -> tuple[list[dict], dict]:
    """DCASE 2022. AUC_source: normal source clips vs ALL anomalies of the section (both domains);
    AUC_target likewise; pAUC over all clips of the section. Returns per-section rows and the hmeans."""
    rows = []
    for g in sorted(set(groups.tolist())):
        m = groups == g
        s, y, d = scores[m], labels[m], domains[m]
        src = (y == 1) | (d == "source")
        tgt = (y == 1) | (d == "target")
        rows.append({"section": g, "AUC_source": _auc(y[src], s[src]), "AUC_target": _auc(y[tgt], s[tgt]),
                     "pAUC": _auc(y, s, max_fpr)})
    summary = {k: harmonic([r[k] for r in rows]) for k in ("AUC_source", "AUC_target", "pAUC")}
    summary["hmean"] = harmonic([r[k] for r in rows for k in ("AUC_source", "AUC_target", "pAUC")])
    return rows, summary


def evaluate_ids(scores: np.ndarray, labels: np.ndarray, groups: np.ndarray, max_fpr: float = 0.1
                 ) -> tuple[list[dict], dict]:
    """DCASE 2020. AUC and pAUC per machine ID, arithmetic means over IDs (those with both classes), average."""
    rows = []
    for g in sorted(set(groups.tolist())):
        m = groups == g
        rows.append({"id": g, "AUC": _auc(labels[m], scores[m]), "pAUC": _auc(labels[m], scores[m], max_fpr)})
    auc = _mean([r["AUC"] for r in rows])
    pauc = _mean([r["pAUC"] for r in rows])
    return rows, {"AUC": auc, "pAUC": pauc, "average": (auc + pauc) / 2}


def best_metric(results: Results, summary_key: str) -> str:
    """The metric with the highest summary (hmean / average); ties go to the first in table order, as in the
    original (np.where(... == max)[0][0]); nan never wins."""
    values = {k: v[1][summary_key] for k, v in results.items()}
    return max(values, key=lambda k: -np.inf if np.isnan(values[k]) else values[k])


def official_sections(rows_by_machine: list[list[dict]]) -> dict[str, float]:
    """DCASE 2022-2024 system score: the harmonic mean over all machine types and sections of AUC_source,
    AUC_target and pAUC together (floored at machine epsilon), and the harmonic means of each."""
    rows = [r for rows in rows_by_machine for r in rows]
    out = {k: harmonic([r[k] for r in rows]) for k in ("AUC_source", "AUC_target", "pAUC")}
    out["official"] = harmonic([r[k] for r in rows for k in ("AUC_source", "AUC_target", "pAUC")])
    return out


def official_ids(rows_by_machine: list[list[dict]]) -> dict[str, float]:
    """DCASE 2020: AUC and pAUC averaged over machine IDs, then over machine types, and their mean."""
    auc = _mean([_mean([r["AUC"] for r in rows]) for rows in rows_by_machine])
    pauc = _mean([_mean([r["pAUC"] for r in rows]) for rows in rows_by_machine])
    return {"AUC": auc, "pAUC": pauc, "official": (auc + pauc) / 2}


@dataclass(frozen=True)
class Rule:
    """How a dataset's test results are scored and named: per-group rows, the machine type's summary, the system
    score over machine types, and the challenge's file names."""

    group: str  # the rows' group column: "section" / "id"
    row_columns: tuple[str, ...]  # per-group measures
    summary_columns: tuple[str, ...]  # all_metrics.csv's header after "metric"
    summary_key: str  # the number a model and a metric are selected on: "hmean" / "average"
    summary_label: str  # how the console names it
    best_key: str  # the original's checkpoint key for it: "best_hmean" / "best_aver"
    domains: bool  # rows need each clip's source/target domain
    score_file: str  # the submission file of one group, as the evaluator names it ({kind}, {mt}, {group})
    per_group: Callable  # (scores, labels, domains or None, groups, max_fpr) -> (rows, summary)
    system: Callable  # (rows of every machine type) -> {"official": ..., and its parts}

    def __post_init__(self) -> None:
        if "{kind}" not in self.score_file:  # else the decision files would replace the score files of a group
            raise ValueError(f"Rule.score_file {self.score_file!r} must name {{kind}} (anomaly_score, decision_result)")

    @property
    def aggregate(self) -> str:
        """How the table's summary row combines groups."""
        return "hmean" if self.summary_key == "hmean" else "mean"

    def evaluate(self, clips: list[Clip], scores: np.ndarray, max_fpr: float) -> tuple[list[dict], dict]:
        """One metric's per-group rows and summary; unlabelled clips (the eval test set) are an error."""
        if any(c.label is None or self.domains and c.domain is None for c in clips):
            raise AeganError("the test clips carry no labels/domains: evaluation needs the dev test set (-d)"
                             if self.domains else "the test clips carry no labels: evaluation needs the dev test set")
        domains = np.array([c.domain for c in clips]) if self.domains else None
        return self.per_group(scores, np.array([c.label for c in clips]), domains,
                              np.array([c.group for c in clips]), max_fpr)

    def evaluate_all(self, clips: list[Clip], scores: dict[str, np.ndarray], max_fpr: float) -> Results:
        """Every metric's per-group rows and summary."""
        return {name: self.evaluate(clips, s, max_fpr) for name, s in scores.items()}

    def best_metric(self, results: Results) -> str:
        return best_metric(results, self.summary_key)

    def official(self, rows_by_machine: list[list[dict]]) -> dict[str, float]:
        """The challenge's score of a system from every machine type's per-group rows ("official" and parts)."""
        return self.system(rows_by_machine)

    def score_name(self, mt: str, group: str, kind: str = "anomaly_score") -> str:
        """anomaly_score_... or decision_result_... file name of one group."""
        return self.score_file.format(kind=kind, mt=mt, group=group)


def _per_id(scores: np.ndarray, labels: np.ndarray, _domains: None, groups: np.ndarray, max_fpr: float
            ) -> tuple[list[dict], dict]:
    """evaluate_ids under the Rule's signature (machine IDs carry no domains)."""
    return evaluate_ids(scores, labels, groups, max_fpr)


SECTIONS = Rule("section", ("AUC_source", "AUC_target", "pAUC"), ("AUC_source", "AUC_target", "pAUC", "hmean"),
                "hmean", "hmean of all sections' AUC_source, AUC_target and pAUC", "best_hmean", True,
                "{kind}_{mt}_section_{group}_test.csv", evaluate_sections, official_sections)
IDS = Rule("id", ("AUC", "pAUC"), ("AUC", "pAUC", "average"), "average",
           "average of the mean AUC and the mean pAUC over IDs", "best_aver", False,
           "{kind}_{mt}_id_{group}.csv", _per_id, official_ids)
