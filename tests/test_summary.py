"""The summary across machine types: each labelled test.py run records its machine type; the table and the
dataset's official score come from all records (DCASE 2022: harmonic mean of every machine type's sections'
AUC_source, AUC_target and pAUC; DCASE 2020: AUC and pAUC averaged)."""

import csv

import numpy as np
import pytest
from scipy.stats import hmean

from aegan.summary import record_run, write_summary
from dcase2020.datasets import SPEC as SPEC20
from dcase2022.datasets import SPEC as SPEC22


def _results(key, rows, summary):
    return {"G_x_2_sum": (rows, summary), "D_lof": (rows, {**summary, key: summary[key] / 2})}


def test_dcase2022_official_score_is_the_harmonic_mean_of_everything(tmp_path):
    a = [{"section": "00", "AUC_source": 0.9, "AUC_target": 0.6, "pAUC": 0.55}]
    b = [{"section": "00", "AUC_source": 0.7, "AUC_target": 0.8, "pAUC": 0.5},
         {"section": "01", "AUC_source": 0.65, "AUC_target": 0.75, "pAUC": 0.52}]
    for mt, rows in (("fan", a), ("valve", b)):
        summ = {"hmean": hmean([r[k] for r in rows for k in ("AUC_source", "AUC_target", "pAUC")])}
        record_run(tmp_path / mt, mt, "dev", "G_x_2_sum", True, _results("hmean", rows, summ), "hmean",
                   {"paper": 65.83 if mt == "fan" else None})
    csv_path, md = write_summary(SPEC22, tmp_path, "dev")
    rows = list(csv.DictReader(csv_path.open()))
    assert [r["machine"] for r in rows] == ["fan", "valve", "official"] and rows[0]["best_metric"] == "G_x_2_sum"
    everything = [r[k] for r in a + b for k in ("AUC_source", "AUC_target", "pAUC")]
    assert float(rows[2]["hmean"]) == pytest.approx(hmean(everything), rel=1e-12)
    assert "| fan | G_x_2_sum | " in md.read_text() and "| 65.83 |" in md.read_text()


def test_dcase2020_official_score_averages_auc_and_pauc(tmp_path):
    a = [{"id": "00", "AUC": 0.9, "pAUC": 0.7}, {"id": "02", "AUC": 0.8, "pAUC": float("nan")}]
    b = [{"id": "01", "AUC": 0.6, "pAUC": 0.5}]
    for mt, rows in (("fan", a), ("pump", b)):
        record_run(tmp_path / mt, mt, "dev", "G_x_2_sum", False, _results("average", rows, {"average": 0.7}),
                   "average", {})
    rows = list(csv.DictReader(write_summary(SPEC20, tmp_path, "dev")[0].open()))
    auc, pauc = np.mean([0.85, 0.6]), np.mean([0.7, 0.5])  # an undefined (nan) ID value is left out
    assert float(rows[-1]["average"]) == pytest.approx((auc + pauc) / 2, rel=1e-12)
