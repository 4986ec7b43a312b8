"""Whole tables: every machine type x seed through the real train.py and test.py, resumable, summarised next to
the paper's numbers (read from pretrain/<dataset>/<mt>.yaml)."""

import csv
import subprocess
import sys

import pytest

from aegan import synth
from aegan.reproduce import paper
from conftest import HANG_GUARD, ROOT, TINY


def test_paper_numbers_have_one_home():
    assert paper("dcase2022", "fan") == ("G_z_cos_min", 65.83)
    assert paper("dcase2020", "slider") == ("G_x_2_sum", 86.50)  # the paper writes G_x_2_mean
    assert paper("dcase2022", "ToyTrain") == (None, None)


@pytest.mark.slow
def test_reproduce_runner_summary_for_two_machine_types(tmp_path):
    data = tmp_path / "data"
    for i, mt in enumerate(("fan", "ToyTrain")):
        synth.make_2022(data, mt, seconds=1.2, n_train=4, n_train_target=1, n_test=2, eval_sections=(), seed=i)
    out = tmp_path / "rep"
    args = [sys.executable, "-m", "aegan.reproduce", "--dataset", "dcase2022", "--mt", "fan,ToyTrain", "--seeds", "1",
            "--out", str(out), *[x for s in [f"dataset_dir={data}", "train_set=dev", *TINY] for x in ("--set", s)]]
    r = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=HANG_GUARD)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count(": ok") == 2
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert [x["machine"] for x in rows] == ["fan", "ToyTrain"] and all(x["seeds"] == "1" for x in rows)
    assert rows[0]["paper"] == "65.83" and rows[0]["paper_metric"] == "G_z_cos_min" and rows[1]["paper"] == ""
    assert 0 <= float(rows[1]["best_mean"]) <= 100 and float(rows[0]["metric_std"]) >= 0
    md = (out / "summary.md").read_text()
    assert "| fan | 1 | G_z_cos_min | 65.83 |" in md
    r = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=HANG_GUARD)  # resumable: nothing to redo
    assert r.returncode == 0 and r.stdout.count("done before") == 2
