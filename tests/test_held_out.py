"""Critic metrics' decision thresholds come from held-out training scores (scoring/held_out.py): each training clip
scored as a new clip would be, against the other training clips, so the threshold flags about 1 - percentile of
normal clips. The AUC scores of test clips are untouched."""

import numpy as np
import pytest

from aegan.core.metrics import D_METRICS
from aegan.scoring.clip_scores import EmbeddingDetectors, training_scores
from aegan.scoring.evaluation import decide
from aegan.scoring.held_out import BASIS_KEY, basis, fitted_rule, is_current


def _refit_per_clip(metric: str, emb: np.ndarray) -> np.ndarray:
    """The definition: a detector fitted without clip i scores clip i."""
    return np.array([EmbeddingDetectors(np.delete(emb, i, axis=0)).one(metric, emb[i:i + 1]) for i in range(len(emb))])


@pytest.mark.parametrize("n", [40, 7])  # 40 clips > 8 dimensions: an inverse; 7: the pseudo-inverse branch
@pytest.mark.parametrize("metric", D_METRICS)
def test_a_critic_metrics_training_scores_are_each_clip_against_the_others(metric, n):
    emb = (np.random.default_rng(n).normal(size=(n, 8)) + 1).astype(np.float32)
    got = training_scores(metric, None, EmbeddingDetectors(emb), emb, None, {})
    np.testing.assert_allclose(got, _refit_per_clip(metric, emb), rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("metric", D_METRICS)
def test_the_threshold_flags_about_one_minus_the_percentile_of_normal_clips(metric):
    rng = np.random.default_rng(0)
    train, normal = rng.normal(size=(300, 8)).astype(np.float32), rng.normal(size=(2000, 8)).astype(np.float32)
    det = EmbeddingDetectors(train)
    rule = fitted_rule(metric, training_scores(metric, None, det, train, None, {}), 0.9)
    flagged = decide(det.score(normal, (metric,))[metric], rule["threshold"]).mean()
    # in-sample scores (each clip its own neighbour) put D_knn's threshold below every new clip: 100% flagged
    assert 0.04 < flagged < 0.2, flagged
    assert rule[BASIS_KEY] == basis(metric) and is_current(rule)


def test_a_rule_from_before_held_out_scores_is_recognized():
    old = {"metric": "D_knn", "threshold": 0.1, "percentile": 0.9}  # as an earlier version kept it
    assert not is_current(old) and is_current({**old, "metric": "G_x_2_sum"})  # a generator's is unchanged
