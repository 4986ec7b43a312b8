"""The evaluation rules (a dataset names its own in aegan/registry.py): AUC / pAUC per section (DCASE 2022) or
machine ID (DCASE 2020), their summaries, the system score, the submission files' names; decisions and their F1."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from aegan.core.errors import AeganError
from aegan.core.metrics import selecting_names
from aegan.data.clips import Clip

EPS = sys.float_info.epsilon
Results = dict[str, tuple[list[dict], dict]]  # metric -> (per section/ID rows, machine-type summary)


def _auc(labels: np.ndarray, scores: np.ndarray, max_fpr: float | None = None) -> float:
    if len(np.unique(labels)) < 2:
        return float("nan")  # one class only: AUC undefined; reported as nan, never as a number
    from sklearn.metrics import roc_auc_score  # here, not at the top: the registry imports the rules (0.7 s)

    return float(roc_auc_score(labels, scores, max_fpr=max_fpr))


def harmonic(values) -> float:
    """Harmonic mean of values floored at machine epsilon, as the official evaluator does; nan values are left out."""
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


def _hmeans(rows: list[dict], total: str) -> dict[str, float]:
    """The harmonic means of AUC_source, AUC_target and pAUC over `rows`, and of all three together (`total`)."""
    out = {k: harmonic([r[k] for r in rows]) for k in ("AUC_source", "AUC_target", "pAUC")}
    out[total] = harmonic([r[k] for r in rows for k in ("AUC_source", "AUC_target", "pAUC")])
    return out


def evaluate_sections(scores: np.ndarray, labels: np.ndarray, domains: np.ndarray, groups: np.ndarray,
                      max_fpr: float = 0.1) -> tuple[list[dict], dict]:
    """DCASE 2022: AUC_source of normal source clips vs ALL anomalies of the section, AUC_target likewise, pAUC."""
    rows = []
    for g in sorted(set(groups.tolist())):
        m = groups == g
        s, y, d = scores[m], labels[m], domains[m]
        src = (y == 1) | (d == "source")
        tgt = (y == 1) | (d == "target")
        rows.append({"section": g, "AUC_source": _auc(y[src], s[src]), "AUC_target": _auc(y[tgt], s[tgt]),
                     "pAUC": _auc(y, s, max_fpr)})
    return rows, _hmeans(rows, "hmean")


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
    """The metric with the highest summary among those declared to select (core/metrics.py); ties go to the first in
    table order, as in the original; nan never wins."""
    selecting = set(selecting_names())
    values = {k: v[1][summary_key] for k, v in results.items() if k in selecting}
    return max(values, key=lambda k: -np.inf if np.isnan(values[k]) else values[k])


def official_sections(rows_by_machine: list[list[dict]]) -> dict[str, float]:
    """DCASE 2022-2024 system score: the harmonic means over all machine types' sections."""
    return _hmeans([r for rows in rows_by_machine for r in rows], "official")


def official_ids(rows_by_machine: list[list[dict]]) -> dict[str, float]:
    """DCASE 2020: AUC and pAUC averaged over machine IDs, then over machine types, and their mean."""
    auc = _mean([_mean([r["AUC"] for r in rows]) for rows in rows_by_machine])
    pauc = _mean([_mean([r["pAUC"] for r in rows]) for rows in rows_by_machine])
    return {"AUC": auc, "pAUC": pauc, "official": (auc + pauc) / 2}


@dataclass(frozen=True, kw_only=True)
class Rule:
    """How a dataset's test results are scored and named, per group, per machine type and per system."""

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
        return {name: self.evaluate(clips, s, max_fpr) for name, s in scores.items()}

    def best_metric(self, results: Results) -> str:
        return best_metric(results, self.summary_key)

    def score_name(self, mt: str, group: str, kind: str = "anomaly_score") -> str:
        """anomaly_score_... or decision_result_... file name of one group."""
        return self.score_file.format(kind=kind, mt=mt, group=group)


SECTIONS = Rule(group="section", row_columns=("AUC_source", "AUC_target", "pAUC"),
                summary_columns=("AUC_source", "AUC_target", "pAUC", "hmean"), summary_key="hmean",
                summary_label="hmean of all sections' AUC_source, AUC_target and pAUC", best_key="best_hmean",
                domains=True, score_file="{kind}_{mt}_section_{group}_test.csv", per_group=evaluate_sections,
                system=official_sections)
IDS = Rule(group="id", row_columns=("AUC", "pAUC"), summary_columns=("AUC", "pAUC", "average"), summary_key="average",
           summary_label="average of the mean AUC and the mean pAUC over IDs", best_key="best_aver", domains=False,
           score_file="{kind}_{mt}_id_{group}.csv", per_group=lambda s, y, _domains, g, p: evaluate_ids(s, y, g, p),
           system=official_ids)


def fit_threshold(train_scores: np.ndarray, percentile: float = 0.9, guard: bool = False) -> dict:
    """The DCASE baselines' threshold (the original has none): a percentile of a gamma fitted to the training clips'
    scores, shifted when not positive (a critic metric's are held out: scoring/held_out.py). `guard`: a fit at the
    likelihood's unbounded corner (shape < 1 with loc at the smallest score: LOF's scores near 1 land there, and
    its 90% point lies far beyond every score) is refitted with loc fixed at 0, `loc_fixed` recorded."""
    import scipy.stats

    s = np.asarray(train_scores, dtype=np.float64)
    s = s[np.isfinite(s)]
    if s.size < 2:
        raise AeganError("cannot fit a decision threshold: fewer than two finite training scores")
    shift = 0.0
    if s.min() <= 0:
        shift = float(np.finfo(np.float32).eps * max(1.0, np.abs(s).max()) - s.min())
    if np.ptp(s) == 0:  # a constant score: gamma.fit is undefined; everything above it is anomalous
        return {"shape": float("nan"), "loc": float("nan"), "scale": float("nan"), "shift": shift,
                "percentile": percentile, "threshold": float(s[0])}
    shape, loc, scale = scipy.stats.gamma.fit(s + shift)
    degenerate = guard and shape < 1 and loc >= s.min() + shift - 1e-3 * np.ptp(s)
    if degenerate:
        shape, loc, scale = scipy.stats.gamma.fit(s + shift, floc=0)
    threshold = float(scipy.stats.gamma.ppf(percentile, shape, loc=loc, scale=scale)) - shift
    return {"shape": float(shape), "loc": float(loc), "scale": float(scale), "shift": shift,
            "percentile": percentile, "threshold": threshold, **({"loc_fixed": True} if degenerate else {})}


def decide(scores: np.ndarray, threshold: float) -> np.ndarray:
    return (np.asarray(scores) > threshold).astype(int)


def _prf(y: np.ndarray, d: np.ndarray) -> tuple[float, float, float]:
    tp = int(((y == 1) & (d == 1)).sum())
    fp = int(((y == 0) & (d == 1)).sum())
    fn = int(((y == 1) & (d == 0)).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else float("nan")
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1 if not np.isnan(recall) else float("nan")


def decision_metrics(clips: list[Clip], decisions: np.ndarray, group_name: str) -> tuple[list[dict], dict]:
    """Precision, recall, F1 per group (and domain: its clips of both labels, as the evaluator does), hmeans."""
    labels = np.array([c.label for c in clips])
    groups = np.array([c.group for c in clips])
    domains = np.array([c.domain or "all" for c in clips])
    rows = []
    for g in sorted(set(groups.tolist())):
        for dom in sorted(set(domains[groups == g].tolist()), key=lambda d: (d != "source", d)):
            m = (groups == g) & (domains == dom)
            p, r, f = _prf(labels[m], decisions[m])
            rows.append({group_name: g, "domain": dom, "precision": p, "recall": r, "F1": f})
    summary = {k: harmonic([row[k] for row in rows]) for k in ("precision", "recall", "F1")}
    return rows, summary
