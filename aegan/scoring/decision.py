"""Anomaly decisions for DCASE submissions: the baselines' gamma-fit threshold, and precision/recall/F1.

The original code has no threshold. The DCASE 2022 baselines fit one gamma distribution per machine type
to the training clips' anomaly scores and call a clip anomalous above its 90th percentile. Gamma needs
positive values, so scores are shifted first when the smallest training score is not positive
(shift = eps - min; the threshold is shifted back). For the critic metrics the training clips are also
the detectors' reference set, so their scores are in-sample (smaller than a new normal clip's would be).
"""

from __future__ import annotations

import numpy as np
import scipy.stats

from aegan.core.errors import AeganError
from aegan.data.clips import Clip
from aegan.scoring.evaluation import harmonic


def fit_threshold(train_scores: np.ndarray, percentile: float = 0.9) -> dict:
    """Fitted gamma parameters and the threshold, as plain floats (they go into the checkpoint)."""
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
    threshold = float(scipy.stats.gamma.ppf(percentile, shape, loc=loc, scale=scale)) - shift
    return {"shape": float(shape), "loc": float(loc), "scale": float(scale), "shift": shift,
            "percentile": percentile, "threshold": threshold}


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
    """Precision, recall, F1 per group and (when clips have domains) per domain, and their harmonic means.

    A domain's rows use that domain's clips of both labels, as the challenge evaluator does."""
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
