"""DCASE 2022 end to end: file names, and the real train.py / test.py run as a user would, on synthetic audio."""

import csv

import numpy as np
import pytest
import torch

from aegan import checkpoint, synth
from aegan.errors import AeganError
from conftest import ROOT, SMALL, out_sets, run_script
from dcase2022.datasets import SPEC


@pytest.mark.parametrize("name, split, expect", [
    ("section_01_target_test_anomaly_0003_f-n_B.wav", "test", ("01", "target", 1, "f-n_B")),
    ("section_00_source_train_normal_0000_vel_6_loc_A.wav", "train", ("00", "source", 0, "vel_6_loc_A")),
    ("section_02_source_test_normal_0049_volt_1.0_wt_1.wav", "test", ("02", "source", 0, "volt_1.0_wt_1")),
    ("section_00_source_train_normal_0001_pat_00_panel_s1_v1pat_02_v2pat_00.wav", "train",
     ("00", "source", 0, "pat_00_panel_s1_v1pat_02_v2pat_00")),
    ("section_03_0007.wav", "test", ("03", None, None, "")),
    ("section_04_source_train_normal_0000.wav", "train", ("04", "source", 0, "")),
])
def test_file_names_parse(tmp_path, name, split, expect):
    c = SPEC.parse(tmp_path / name, split, "dev")
    assert (c.group, c.domain, c.label, c.attrs) == expect


@pytest.mark.parametrize("name, split, message", [
    ("normal_id_00_00000000.wav", "train", "does not follow DCASE 2022 naming"),
    ("section_00_source_test_normal_0000_a.wav", "train", "a test clip in the train/ folder"),
    ("section_00_source_train_anomaly_0000_a.wav", "train", "training clips must be normal"),
    ("section_03_0007.wav", "train", "does not follow"),
])
def test_bad_file_names_are_named(tmp_path, name, split, message):
    with pytest.raises(AeganError, match=message):
        SPEC.parse(tmp_path / name, split, "dev")


def test_synth_layout_is_official_and_deterministic(tmp_path):
    a = synth.make_2022(tmp_path / "a", "valve", seconds=1.0, n_train=3, n_train_target=1, n_test=2, seed=5)
    b = synth.make_2022(tmp_path / "b", "valve", seconds=1.0, n_train=3, n_train_target=1, n_test=2, seed=5)
    files = sorted(p.relative_to(a) for p in a.rglob("*.wav"))
    assert files == sorted(p.relative_to(b) for p in b.rglob("*.wav"))
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    cfg = {"dataset_dir": str(a), "train_set": "deval"}
    train = SPEC.train_clips(cfg, "valve")
    assert len(train) == 2 * 3 * 4 and {c.group for c in train} == {"00", "01", "02", "03", "04", "05"}
    dev = SPEC.test_clips(cfg, "valve", dev=True)
    assert len(dev) == 3 * 8 and sum(c.label for c in dev) == 12
    assert {(c.domain, c.label) for c in dev} == {("source", 0), ("source", 1), ("target", 0), ("target", 1)}
    ev = SPEC.test_clips(cfg, "valve", dev=False)
    assert len(ev) == 24 and all(c.label is None for c in ev)
    truth = (a / "ground_truth_data" / "ground_truth_valve_section_03_test.csv").read_text().split()
    assert len(truth) == 8 and truth[0].startswith("section_03_0000.wav,")


def _sets(tmp_path, dataset):
    return ["--config", str(SMALL), *out_sets(tmp_path, dataset), "--set", "feat.workers=1"]


@pytest.mark.slow
def test_train_then_test_end_to_end(tmp_path, synth2022):
    sets = _sets(tmp_path, synth2022)
    r = run_script("dcase2022/train.py", "--mt", "fan", "-c", "0", "--seed", "42", *sets, "--set", "train.epoch=3")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "CUDA is not available" in r.stdout or "device: cuda" in r.stdout
    assert "LABELLED dev test set" in r.stdout
    log = (tmp_path / "log_dir" / "fan" / "train.log").read_text()
    assert log.count("epoch ") >= 3 and "epoch 3/3" in log and "hmean" in log

    state = checkpoint.load(tmp_path / "model_dir" / "fan.pth")
    assert {"netD", "netG", "best_hmean", "feat_max", "feat_min", "config", "epoch", "metric"} <= set(state)
    assert state["config"]["net"]["isize"] == 64 and state["feat_max"] > state["feat_min"]
    last = checkpoint.load(tmp_path / "model_dir" / "fan_last.pth")
    assert last["epoch"] == 3 and "optD" in last and "optG" in last

    r = run_script("test.py", "--mt", "fan", "-d", "-c", "0", *sets, cwd=ROOT / "dcase2022")  # from dcase2022/
    assert r.returncode == 0, r.stderr[-2000:]
    assert "best metric on this test set" in r.stdout and "G_z_cos_min  (configured metric)" in r.stdout
    rows = list(csv.reader((tmp_path / "result_dir" / "fan" / "all_metrics.csv").open()))
    assert rows[0] == ["metric", "AUC_source", "AUC_target", "pAUC", "hmean"] and len(rows) == 20
    best = max(float(r[4]) for r in rows[1:])
    assert best > 0.8, rows
    assert best == pytest.approx(state["best_hmean"], abs=1e-5)  # test.py reproduces training's evaluation
    per = list(csv.reader((tmp_path / "result_dir" / "fan" / "per_section.csv").open()))
    assert per[0] == ["metric", "section", "AUC_source", "AUC_target", "pAUC"] and len(per) == 1 + 19 * 3
    for sec in ("00", "01", "02"):
        f = tmp_path / "detect_dir" / f"anomaly_score_fan_section_{sec}_test.csv"
        lines = f.read_text().splitlines()
        assert len(lines) == 16 and lines[0].startswith("section_") and "," in lines[0]  # no header
        float(lines[0].split(",")[1])

    r = run_script("dcase2022/test.py", "--mt", "fan", "-c", "0", *sets)  # eval set: scores only
    assert r.returncode == 0, r.stderr[-2000:]
    for sec in ("03", "04", "05"):
        lines = (tmp_path / "detect_dir" / f"anomaly_score_fan_section_{sec}_test.csv").read_text().splitlines()
        assert len(lines) == 16 and lines[0].startswith(f"section_{sec}_0000.wav,")


@pytest.mark.slow
def test_resume_continues_at_next_epoch_and_equals_uninterrupted(tmp_path, synth2022):
    a, b = tmp_path / "a", tmp_path / "b"
    args = ["--mt", "ToyTrain", "--seed", "3"]
    r = run_script("dcase2022/train.py", *args, *_sets(a, synth2022), "--set", "train.epoch=2")
    assert r.returncode == 0, r.stderr[-2000:]
    r = run_script("dcase2022/train.py", *args, *_sets(a, synth2022), "--set", "train.epoch=3", "--resume")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "resuming from" in r.stdout and "at epoch 3" in r.stdout
    assert "epoch 1/3" not in r.stdout and "epoch 3/3" in r.stdout
    r = run_script("dcase2022/train.py", *args, *_sets(b, synth2022), "--set", "train.epoch=3")
    assert r.returncode == 0, r.stderr[-2000:]
    sa = checkpoint.load(a / "model_dir" / "ToyTrain_last.pth")
    sb = checkpoint.load(b / "model_dir" / "ToyTrain_last.pth")
    for net in ("netG", "netD"):
        for k in sb[net]:
            torch.testing.assert_close(sa[net][k], sb[net][k], rtol=1e-5, atol=1e-6)
    assert sa["best"] == pytest.approx(sb["best"]) if isinstance(sa["best"], float) else sa["best"] == sb["best"]


@pytest.mark.parametrize("args, message", [
    (["--mt", "pump"], "not a dcase2022 machine type"),
    (["--mt", "fan", "--set", "train.epoc=3"], "unknown key train.epoc"),
    (["--mt", "fan", "--set", "feat.n_mels=64"], "feat.n_mels"),
    (["--mt", "fan", "--set", "dataset_dir=/nonexistent/x"], "dataset_dir /nonexistent/x does not exist"),
    (["--mt", "fan", "--config", "/nonexistent.yaml"], "config file not found"),
    (["--mt", "fan", "-c", "x"], "argument -c/--card_id: invalid int value"),
    (["--mt", "fan", "--resume", "--set", "model_dir=/tmp/aegan-no-such-dir"], None),
])
def test_bad_settings_one_line_and_nonzero(tmp_path, synth2022, args, message):
    if message is None:  # --resume without a checkpoint
        args = [*args, "--set", f"dataset_dir={synth2022}", "--set", f"spec_dir={tmp_path}",
                "--config", str(SMALL), "--set", f"log_dir={tmp_path}", "--set", "feat.workers=1"]
        message = "no resumable checkpoint"
    r = run_script("dcase2022/train.py", *args)
    assert r.returncode != 0
    lines = [x for x in r.stderr.splitlines() if x.strip() and "%|" not in x]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], r.stderr
    assert "Traceback" not in r.stderr


def test_test_without_checkpoint_is_one_line(tmp_path, synth2022):
    r = run_script("dcase2022/test.py", "--mt", "fan", "-d", *_sets(tmp_path, synth2022))
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1].startswith("error: checkpoint not found")
    assert not np.any([p.suffix == ".csv" for p in tmp_path.rglob("*")])
