"""Decision threshold (the DCASE baselines' gamma rule) and precision / recall / F1 of the decisions."""

import numpy as np
import pytest
import scipy.stats

from aegan.data.clips import Clip
from aegan.scoring.evaluation import decide, decision_metrics, fit_threshold


def test_gamma_threshold_equals_the_baseline_rule():
    s = scipy.stats.gamma.rvs(2.0, loc=0, scale=1.5, size=300, random_state=0)
    fit = fit_threshold(s, 0.9)
    a, loc, scale = scipy.stats.gamma.fit(s)
    assert fit["shift"] == 0 and fit["shape"] == pytest.approx(a)
    assert fit["threshold"] == pytest.approx(scipy.stats.gamma.ppf(0.9, a, loc=loc, scale=scale))
    assert 0.8 < (s <= fit["threshold"]).mean() < 0.97


def test_non_positive_scores_are_shifted_and_shifted_back():
    s = scipy.stats.gamma.rvs(3.0, scale=1.0, size=300, random_state=1)
    base = fit_threshold(s, 0.9)
    moved = fit_threshold(s - 10.0, 0.9)  # every score negative
    assert moved["shift"] == pytest.approx(10 - s.min(), abs=1e-3)
    assert moved["threshold"] == pytest.approx(base["threshold"] - 10.0, abs=0.05)
    assert fit_threshold(np.full(5, 2.0))["threshold"] == 2.0  # constant scores: no fit, threshold at the value


def test_decisions_and_prf_hand_worked():
    clips = [Clip(None, "00", d, y) for d, y in
             [("source", 0), ("source", 0), ("source", 1), ("source", 1), ("target", 0), ("target", 1)]]
    scores = np.array([0.1, 0.9, 0.8, 0.2, 0.1, 0.7])
    d = decide(scores, 0.5)
    assert d.tolist() == [0, 1, 1, 0, 0, 1]
    rows, summary = decision_metrics(clips, d, "section")
    assert [(r["domain"]) for r in rows] == ["source", "target"]
    # source: tp 1, fp 1, fn 1 -> precision 0.5, recall 0.5, F1 0.5; target: all right -> 1, 1, 1
    assert (rows[0]["precision"], rows[0]["recall"], rows[0]["F1"]) == (0.5, 0.5, 0.5)
    assert (rows[1]["precision"], rows[1]["recall"], rows[1]["F1"]) == (1.0, 1.0, 1.0)
    assert summary["F1"] == pytest.approx(2 / (1 / 0.5 + 1 / 1.0))


def test_a_degenerate_gamma_fit_is_refitted_when_guarded():
    """#37: LOF-like scores (near 1, a long right tail) put the free-loc gamma MLE at shape < 1 with loc at the
    smallest score, whose 90% point lay beyond every score; guarded, loc is fixed at 0 and the point fits."""
    s = 1 + scipy.stats.gamma.rvs(0.6, scale=0.08, size=300, random_state=2)
    plain, guarded = fit_threshold(s, 0.9), fit_threshold(s, 0.9, guard=True)
    assert plain["shape"] < 1 and "loc_fixed" not in plain  # unguarded: the DCASE baselines' fit, unchanged
    assert guarded["loc_fixed"] and guarded["loc"] == 0
    assert abs((s > guarded["threshold"]).mean() - 0.1) < abs((s > plain["threshold"]).mean() - 0.1)
    assert 0.04 < (s > guarded["threshold"]).mean() < 0.2
    ok = scipy.stats.gamma.rvs(2.0, scale=1.5, size=300, random_state=0)  # a good fit is left as it is
    assert fit_threshold(ok, 0.9, guard=True) == fit_threshold(ok, 0.9)
