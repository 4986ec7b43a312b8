"""SPEC section 6: per-section AUC with the domain rule (DCASE 2022), per-ID AUC/pAUC (DCASE 2020)."""

import numpy as np
import pytest
from scipy.stats import hmean
from sklearn.metrics import roc_auc_score

from aegan.scoring.evaluation import evaluate_ids, evaluate_sections, harmonic


def test_domain_rule_hand_worked():
    # one section: source normals 0.1, 0.2; target normals 0.6, 0.7; anomalies: source 0.5, target 0.3
    scores = np.array([0.1, 0.2, 0.6, 0.7, 0.5, 0.3])
    labels = np.array([0, 0, 0, 0, 1, 1])
    domains = np.array(["source", "source", "target", "target", "source", "target"])
    groups = np.array(["00"] * 6)
    rows, summ = evaluate_sections(scores, labels, domains, groups)
    # AUC_source: normals {0.1, 0.2} vs ALL anomalies {0.5, 0.3}: every pair ordered -> 1.0
    assert rows[0]["AUC_source"] == 1.0
    # AUC_target: normals {0.6, 0.7} vs {0.5, 0.3}: no pair ordered -> 0.0
    # (a per-domain rule gives the same two numbers here; the next test tells the rules apart)
    assert rows[0]["AUC_target"] == 0.0
    assert rows[0]["pAUC"] == pytest.approx(roc_auc_score(labels, scores, max_fpr=0.1))
    assert summ["AUC_target"] == np.finfo(float).eps  # floored before the harmonic mean


def test_domain_rule_uses_anomalies_of_both_domains():
    # source normals 0.4, 0.6; target normals 0.0, 0.1; source anomaly 0.5, target anomaly 0.9
    scores = np.array([0.4, 0.6, 0.0, 0.1, 0.5, 0.9])
    labels = np.array([0, 0, 0, 0, 1, 1])
    domains = np.array(["source", "source", "target", "target", "source", "target"])
    rows, _ = evaluate_sections(scores, labels, domains, np.array(["01"] * 6))
    # pairs (normal, anomaly) ordered: 0.4<0.5 y, 0.4<0.9 y, 0.6<0.5 n, 0.6<0.9 y -> 3/4
    assert rows[0]["AUC_source"] == 0.75  # only-source-anomalies would give 0.5
    assert rows[0]["AUC_target"] == 1.0


def test_summary_is_harmonic_over_sections_and_all_values():
    rng = np.random.default_rng(0)
    n = 40
    scores = rng.random(3 * n)
    labels = np.tile(np.repeat([0, 1], n // 2), 3)
    domains = np.tile(np.array(["source", "target"] * (n // 2)), 3)
    groups = np.repeat(["00", "01", "02"], n)
    scores = scores + labels * 0.3
    rows, summ = evaluate_sections(scores, labels, domains, groups)
    assert [r["section"] for r in rows] == ["00", "01", "02"]
    for k in ("AUC_source", "AUC_target", "pAUC"):
        assert summ[k] == pytest.approx(hmean([r[k] for r in rows]))
    allv = [r[k] for r in rows for k in ("AUC_source", "AUC_target", "pAUC")]
    assert summ["hmean"] == pytest.approx(hmean(allv))


def test_dcase2020_per_id_means_and_average():
    scores = np.array([0.1, 0.2, 0.9, 0.3, 0.8, 0.4, 0.5, 0.6])
    labels = np.array([0, 0, 1, 1, 0, 0, 1, 1])
    ids = np.array(["00"] * 4 + ["02"] * 4)
    rows, summ = evaluate_ids(scores, labels, ids)
    assert [r["id"] for r in rows] == ["00", "02"]
    assert rows[0]["AUC"] == 1.0  # {0.1, 0.2} < {0.9, 0.3}
    assert rows[1]["AUC"] == 0.5  # {0.8, 0.4} vs {0.5, 0.6}: 2 of 4 pairs
    assert summ["AUC"] == 0.75
    p = [roc_auc_score(labels[:4], scores[:4], max_fpr=0.1), roc_auc_score(labels[4:], scores[4:], max_fpr=0.1)]
    assert summ["pAUC"] == pytest.approx(np.mean(p))
    assert summ["average"] == pytest.approx((0.75 + np.mean(p)) / 2)


def test_single_class_group_is_nan_not_a_number_and_left_out():
    rows, summ = evaluate_ids(np.array([0.1, 0.2]), np.array([0, 0]), np.array(["00", "00"]))
    assert np.isnan(rows[0]["AUC"]) and np.isnan(summ["average"])
    rows, summ = evaluate_ids(np.array([0.1, 0.2, 0.1, 0.9]), np.array([0, 0, 0, 1]), np.array(["00"] * 2 + ["02"] * 2))
    assert np.isnan(rows[0]["AUC"]) and rows[1]["AUC"] == 1.0 and summ["AUC"] == 1.0
    assert harmonic([0.5, float("nan"), 0.5]) == pytest.approx(0.5)
    assert np.isnan(harmonic([float("nan")]))


def test_best_metric_ties_go_to_the_first_in_table_order():
    """The original picks np.where(values == max)[0][0]: critic metrics come first in its table."""
    from aegan.scoring.evaluation import best_metric

    results = {"D_maha": ([], {"hmean": 0.9}), "D_knn": ([], {"hmean": 1.0}), "G_x_2_sum": ([], {"hmean": 1.0}),
               "G_x_2_min": ([], {"hmean": float("nan")})}
    assert best_metric(results, "hmean") == "D_knn"
