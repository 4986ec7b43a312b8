"""Out-of-sample critic scores of the training clips, for the decision threshold. The critic detectors' reference set
IS the training clips, so scoring a training clip against it is in-sample (each clip is its own nearest neighbour;
a threshold fitted on such scores flags nearly every normal test clip). Each training clip is scored here as a new
clip would be, against the other training clips:

- D_knn: exact leave-one-out, the k nearest OTHER clips (sklearn's kneighbors() without X excludes the clip itself).
- D_lof: exact leave-one-out from each clip's k+1 nearest other clips: the LOF query of a clip against the others,
  the others' neighbourhoods and densities recomputed without it. (sklearn's `negative_outlier_factor_` leaves the
  clip out of its own neighbours but keeps it in theirs: 5-12% off on a small set.)
- D_maha: exact leave-one-out, in closed form (the mean and covariance without the clip, by Sherman-Morrison); with
  too few clips for an invertible covariance, one pseudo-inverse refit per clip, as the detector fits one.
- D_cos: exact leave-one-out, the cosine distance to the mean of the other clips.

AUCs never use these: they decide only the thresholds. Generator metrics keep the training clips' own scores."""

from __future__ import annotations

import numpy as np

from aegan.scoring.evaluation import fit_threshold

# what a threshold's record says it was fitted on: a critic rule without it predates held-out scores
BASIS_KEY = "fitted_on"
HELD_OUT = {
    "D_knn": "leave-one-out: the k nearest other training clips",
    "D_lof": "leave-one-out: the LOF of each training clip among the other training clips",
    "D_maha": "leave-one-out: the mean and covariance of the other training clips",
    "D_cos": "leave-one-out: the mean of the other training clips",
}
OWN = "the training clips' own scores"


def basis(metric: str) -> str:
    """What `metric`'s threshold is fitted on (recorded with the rule)."""
    return HELD_OUT.get(metric, OWN)


def fitted_rule(metric: str, train_scores: np.ndarray, percentile: float) -> dict:
    """The decision rule of `metric` (evaluation.fit_threshold) with what its scores were; a critic metric's fit is
    guarded against the degenerate gamma (generator metrics' rules are as before)."""
    guard = metric in HELD_OUT
    return {"metric": metric, **fit_threshold(train_scores, percentile, guard), BASIS_KEY: basis(metric)}


def is_current(rule: dict) -> bool:
    """A stored rule fitted as this code fits it (a critic metric's from before held-out scores is not)."""
    return rule.get(BASIS_KEY, OWN) == basis(rule.get("metric", ""))


def held_out_scores(metric: str, detectors, train_emb: np.ndarray) -> np.ndarray:
    """`metric` (a critic metric) of each training clip against the other training clips, float64 (N,)."""
    emb = np.asarray(train_emb, dtype=np.float64)
    n = len(emb)
    if metric == "D_knn":
        k = min(detectors.knn.n_neighbors, n - 1)
        return detectors.knn.kneighbors(n_neighbors=k)[0].sum(axis=1).astype(np.float64)
    if metric == "D_lof":
        return _lof_loo(detectors.lof, n)
    if metric == "D_cos":
        others = emb.sum(axis=0)[None] - emb  # n-1 times the mean of the others: its direction is all cosine needs
        cos = (emb * others).sum(axis=1) / np.maximum(np.linalg.norm(emb, axis=1) * np.linalg.norm(others, axis=1),
                                                      1e-12)
        return 1.0 - cos
    if metric == "D_maha":
        return _maha_loo(emb)
    raise ValueError(f"{metric} is not a critic metric")


def _lof_loo(lof, n: int) -> np.ndarray:
    """sklearn's novelty LOF (score_samples, negated) of each training clip against a fit on the other clips: its
    reach distances and lrd (with sklearn's 1e-10) from the k+1 nearest others of every clip, without refitting."""
    k = lof.n_neighbors_
    if n - 2 < k:  # a fit without the clip would use fewer neighbours: the training set's own LOF
        return -np.asarray(lof.negative_outlier_factor_, dtype=np.float64)
    dist, idx = lof.kneighbors(n_neighbors=k + 1)  # without X: each clip's nearest OTHER clips
    dist = dist.astype(np.float64)

    def without(p: int, i: int) -> tuple[np.ndarray, np.ndarray]:  # p's k nearest, clip i left out
        keep = idx[p] != i
        return idx[p][keep][:k], dist[p][keep][:k]

    def lrd(p: int, i: int) -> float:
        nb, d = without(p, i)
        kdist = np.array([without(o, i)[1][-1] for o in nb])
        return 1.0 / (np.mean(np.maximum(d, kdist)) + 1e-10)

    # clip i's own lrd is lrd(i, i): kneighbors without X never lists a clip among its own neighbours
    return np.array([np.mean([lrd(o, i) for o in idx[i][:k]]) / lrd(i, i) for i in range(n)])


def _maha_loo(emb: np.ndarray) -> np.ndarray:
    """Mahalanobis distance of each clip from the mean, with the covariance of the others."""
    n, dim = emb.shape
    u = emb - emb.mean(axis=0)
    if n - 1 > dim:
        # scatter C; without clip i: mean moves by -u/(n-1), C_-i = C - n/(n-1) u u^T, cov_-i = C_-i / (n-2);
        # Sherman-Morrison gives u^T C_-i^-1 u = a / (1 - n a/(n-1)) with a = u^T C^-1 u
        a = np.einsum("ij,ij->i", u @ np.linalg.inv(u.T @ u), u)
        rest = np.maximum(1.0 - n * a / (n - 1), 1e-12)
        return np.sqrt((n / (n - 1)) ** 2 * (n - 2) * a / rest)
    out = np.empty(n)
    for i in range(n):  # fewer clips than dimensions: the detector's pseudo-inverse, refitted without clip i
        rest = np.delete(emb, i, axis=0)
        d = emb[i] - rest.mean(axis=0)
        vi = np.linalg.pinv(np.cov(rest, rowvar=False)) if len(rest) > 1 else np.zeros((dim, dim))
        out[i] = np.sqrt(max(float(d @ vi @ d), 0.0))
    return out
