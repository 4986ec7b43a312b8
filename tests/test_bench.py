"""The benchmark still runs (a smoke run at small sizes); its numbers are reported, never asserted."""

import json
import sys

import pytest

import progress
from conftest import ROOT
from oracle import needs_original


@pytest.mark.slow
def test_bench_quick_runs_and_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    r = progress.run([sys.executable, "bench/run.py", "--quick", "--device", "cpu", "--out", str(out)], cwd=ROOT,
                     capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(out.read_text())
    assert {"features", "data", "train", "score", "memory", "real_size_epoch_estimate"} <= set(res)
    assert res["train"]["gflop_per_iteration"] > 0 and res["score"]["bf16_max_rel_score_diff"] < 0.05
    assert 0 < res["real_size_epoch_estimate"]["evaluation_share"] < 1
    assert "training iteration fp32" in r.stdout


@pytest.mark.slow
@needs_original
def test_versus_original_quick_runs_and_writes_ratios(tmp_path):
    out = tmp_path / "vs.json"
    r = progress.run([sys.executable, "bench/versus_original.py", "--quick", "--out", str(out)], cwd=ROOT,
                     capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    res = json.loads(out.read_text())
    assert set(res["ratios"]) == {"train_epoch", "test_first", "test_later", "test_later_no_plots", "loc"}
    # each ratio is ours / original of the best-of times the JSON records (the smoke run's numbers, not a bound)
    best = res["seconds_best_of"]
    assert best == {k: min(v) for k, v in res["all_runs"].items()}
    pairs = {"train_epoch": ("train_ours", "train_original"), "test_first": ("test_ours_first", "test_original"),
             "test_later": ("test_ours_later", "test_original"),
             "test_later_no_plots": ("test_ours_later_no_plots", "test_original"), "loc": ("loc_ours", "loc_original")}
    assert res["ratios"] == {k: best[ours] / best[theirs] for k, (ours, theirs) in pairs.items()}


@pytest.mark.slow
@needs_original
def test_gpu_bench_runs_at_a_tiny_size_on_the_cpu(tmp_path):
    """bench/gpu.py, the prepared GPU command, end to end on the CPU: ours (two variants; bf16 is slow on a CPU
    without AMX) and the original's train.py (its CPU copy), a table and the JSON."""
    out = tmp_path / "gpu.json"
    r = progress.run([sys.executable, "bench/gpu.py", "--tiny", "--device", "cpu", "--iters", "2", "--variants",
                      "fp32 exact,original (TF32 convs)", "--out", str(out)], cwd=ROOT, capture_output=True,
                     text=True)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    res = json.loads(out.read_text())
    assert res["device"] == "cpu" and set(res["ours"]) == {"fp32 exact", "original (TF32 convs)"}
    for v in res["ours"].values():
        assert v["segments_per_s"] > 0 and v["evaluation_s"] > 0 and 0 < v["evaluation_share_estimate"] < 1
        assert v["real_epoch_estimate_s"]["total"] > v["real_epoch_estimate_s"]["train"]
    assert set(res["original"]["run_seconds"]) == {"features", "1", "3"} and "CPU copy" in res["original"]["code"]
    assert "an ESTIMATE" in r.stdout and "fp32 exact" in r.stdout


@pytest.mark.slow
def test_tensorboard_cost_quick_runs_and_writes_shares(tmp_path):
    out = tmp_path / "tb.json"
    r = progress.run([sys.executable, "bench/tensorboard_cost.py", "--quick", "--out", str(out)], cwd=ROOT,
                     capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    res = json.loads(out.read_text())
    sizes = [v for k, v in res.items() if k != "machine"]
    assert len(sizes) == 2
    for size in sizes:  # both runs went through every call of the event writer, timed
        w = size["with_events"]
        assert set(w["seconds_per_call"]) == set(size["without_events"]["seconds_per_call"]) == {
            "losses", "epoch", "evaluation"}
        assert w["share"] == w["inside_events_s"] / w["epoch_s"]
    x = sizes[1]["real_epoch_extrapolation"]
    assert x["share"] == x["events_s"] / x["epoch_s"] and "of events in" in r.stdout
