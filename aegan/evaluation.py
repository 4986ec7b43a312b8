"""AUC / pAUC per section (DCASE 2022 domain rule) or per machine ID (DCASE 2020), and summaries."""

from __future__ import annotations

import sys

import numpy as np
from scipy.stats import hmean
from sklearn.metrics import roc_auc_score

from .data.clips import Clip, DatasetSpec

EPS = sys.float_info.epsilon
Results = dict[str, tuple[list[dict], dict]]  # metric -> (per section/ID rows, machine-type summary)


def _auc(labels: np.ndarray, scores: np.ndarray, max_fpr: float | None = None) -> float:
    if len(np.unique(labels)) < 2:
        return float("nan")  # one class only: AUC undefined; reported as nan, never as a number
    return float(roc_auc_score(labels, scores, max_fpr=max_fpr))


def harmonic(values) -> float:
    """Harmonic mean with values floored at machine epsilon, as the official evaluator does.
    Undefined (nan) values, from groups with one class only, are left out; all undefined gives nan."""
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    if values.size == 0:
        return float("nan")
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


def evaluate_all(spec: DatasetSpec, clips: list[Clip], scores: dict[str, np.ndarray], max_fpr: float) -> Results:
    """Every metric's per-group rows and summary, with the dataset's protocol (spec.evaluate)."""
    return {name: spec.evaluate(clips, s, max_fpr) for name, s in scores.items()}


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
