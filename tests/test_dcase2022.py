"""DCASE 2022 end to end: file names, and the real train.py / test.py run as a user would, on synthetic audio."""

import csv
import shutil
import struct

import numpy as np
import pytest
import soundfile as sf
import torch

from aegan import checkpoint, synth
from aegan.config import load_config
from aegan.errors import AeganError
from aegan.features import logmel
from aegan.localization import reconstruct
from aegan.pipeline import load_trained
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
    dev = SPEC.test_clips(cfg, "valve", True, train)
    assert len(dev) == 3 * 8 and sum(c.label for c in dev) == 12
    assert {(c.domain, c.label) for c in dev} == {("source", 0), ("source", 1), ("target", 0), ("target", 1)}
    ev = SPEC.test_clips(cfg, "valve", False, train)
    assert len(ev) == 24 and all(c.label is None for c in ev)
    truth = (a / "ground_truth_data" / "ground_truth_valve_section_03_test.csv").read_text().split()
    assert len(truth) == 8 and truth[0].startswith("section_03_0000.wav,")


def _sets(tmp_path, dataset):
    return ["--config", str(SMALL), *out_sets(tmp_path, dataset), "--set", "feat.workers=1"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, synth2022):
    """One real training run (train.py, 3 epochs, small config) shared by the tests below."""
    out = tmp_path_factory.mktemp("run2022")
    sets = _sets(out, synth2022)
    r = run_script("dcase2022/train.py", "--mt", "fan", "-c", "0", "--seed", "42", *sets, "--set", "train.epoch=3")
    assert r.returncode == 0, r.stderr[-2000:]
    return out, sets, r.stdout


@pytest.mark.slow
def test_training_writes_log_and_checkpoints(trained):
    out, _, stdout = trained
    assert "CUDA is not available" in stdout or "device: cuda" in stdout
    assert "LABELLED dev test set" in stdout
    log = (out / "log_dir" / "fan" / "train.log").read_text()
    assert "epoch 3/3" in log and "AUC_source" in log and "hmean" in log and "LABELLED" in log
    state = checkpoint.load(out / "model_dir" / "fan.pth")
    assert {"netD", "netG", "best_hmean", "feat_max", "feat_min", "config", "epoch", "metric"} <= set(state)
    assert state["config"]["net"]["isize"] == 64 and state["feat_max"] > state["feat_min"]
    assert state["decision"]["metric"] == "G_z_cos_min" and state["decision"]["percentile"] == 0.9
    last = checkpoint.load(out / "model_dir" / "fan_last.pth")
    assert last["epoch"] == 3 and "optD" in last and "optG" in last


@pytest.mark.slow
def test_dev_evaluation_tables_and_files(trained):
    out, sets, _ = trained
    r = run_script("test.py", "--mt", "fan", "-d", "-c", "0", *sets, cwd=ROOT / "dcase2022")  # from dcase2022/
    assert r.returncode == 0, r.stderr[-2000:]
    assert "best metric on this test set" in r.stdout and "G_z_cos_min  (configured metric)" in r.stdout
    rows = list(csv.reader((out / "result_dir" / "fan" / "all_metrics.csv").open()))
    assert rows[0] == ["metric", "AUC_source", "AUC_target", "pAUC", "hmean"] and len(rows) == 20
    best = max(float(r[4]) for r in rows[1:])
    assert best > 0.8, rows
    state = checkpoint.load(out / "model_dir" / "fan.pth")
    assert best == pytest.approx(state["best_hmean"], abs=1e-5)  # test.py reproduces training's evaluation
    per = list(csv.reader((out / "result_dir" / "fan" / "per_section.csv").open()))
    assert per[0] == ["metric", "section", "AUC_source", "AUC_target", "pAUC"] and len(per) == 1 + 19 * 3
    for sec in ("00", "01", "02"):
        lines = (out / "detect_dir" / f"anomaly_score_fan_section_{sec}_test.csv").read_text().splitlines()
        assert len(lines) == 16 and lines[0].startswith("section_") and "," in lines[0]  # no header
        float(lines[0].split(",")[1])
        dec = (out / "detect_dir" / f"decision_result_fan_section_{sec}_test.csv").read_text().splitlines()
        assert [x.split(",")[0] for x in dec] == [x.split(",")[0] for x in lines]
        assert {x.split(",")[1] for x in dec} <= {"0", "1"}
    assert "decisions (threshold on the configured metric)" in r.stdout
    dm = list(csv.reader((out / "result_dir" / "fan" / "decision_metrics.csv").open()))
    assert dm[0] == ["section", "domain", "precision", "recall", "F1"] and len(dm) == 1 + 6 + 1
    assert "fitting the gamma threshold" not in r.stdout  # the stored threshold is used


@pytest.mark.slow
def test_eval_set_scores_and_ground_truth(trained, synth2022, tmp_path):
    out, sets, _ = trained
    r = run_script("dcase2022/test.py", "--mt", "fan", "-c", "0", *sets)  # eval set: scores only
    assert r.returncode == 0, r.stderr[-2000:]
    for sec in ("03", "04", "05"):
        lines = (out / "detect_dir" / f"anomaly_score_fan_section_{sec}_test.csv").read_text().splitlines()
        assert len(lines) == 16 and lines[0].startswith(f"section_{sec}_0000.wav,")
        assert (out / "detect_dir" / f"decision_result_fan_section_{sec}_test.csv").exists()
    # without labels only the per-clip scores are written, no tables
    assert sorted(p.name for p in (out / "result_dir" / "fan" / "eval").iterdir()) == ["clip_scores.csv"]

    gt = synth2022 / "ground_truth_data"
    r = run_script("dcase2022/test.py", "--mt", "fan", "-c", "0", *sets, "--ground-truth", str(gt))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "ground truth: labels of 48 evaluation test clips" in r.stdout
    assert "     03  " in r.stdout and "(configured metric)" in r.stdout
    rows = list(csv.reader((out / "result_dir" / "fan" / "eval" / "all_metrics.csv").open()))
    assert rows[0] == ["metric", "AUC_source", "AUC_target", "pAUC", "hmean"] and len(rows) == 20
    assert max(float(r[4]) for r in rows[1:]) > 0.7

    bad = tmp_path / "gt" / "ground_truth_data"
    bad.mkdir(parents=True)
    for f in gt.iterdir():
        (bad / f.name).write_text(f.read_text())
    shutil.copytree(synth2022 / "ground_truth_domain", tmp_path / "gt" / "ground_truth_domain")
    f = bad / "ground_truth_fan_section_04_test.csv"
    f.write_text("\n".join(f.read_text().splitlines()[1:]) + "\n")
    r = run_script("dcase2022/test.py", "--mt", "fan", "-c", "0", *sets, "--ground-truth", str(bad))
    assert r.returncode == 1 and r.stderr.strip().splitlines()[-1].startswith(f"error: {f} has no row for")
    f.write_text("section_04_9999.wav,1\n")
    r = run_script("dcase2022/test.py", "--mt", "fan", "-c", "0", *sets, "--ground-truth", str(bad))
    assert r.returncode == 1 and "section_04_9999.wav is not a test clip" in r.stderr


@pytest.mark.slow
def test_localization_figures(trained):
    out, sets, _ = trained
    loc = out / "loc"
    (loc / "fan").mkdir(parents=True)
    (loc / "fan" / "stale.png").write_bytes(b"old")  # the original crashes on a non-empty folder
    r = run_script("dcase2022/loc.py", "--mt", "fan", "-c", "0", *sets, "--set", f"loc_dir={loc}", "--limit", "3")
    assert r.returncode == 0, r.stderr[-2000:]
    files = sorted(p.name for p in (loc / "fan").iterdir())
    assert files == ["sec00_source_true1_0000.png", "sec00_source_true1_0001.png", "sec00_source_true1_0002.png",
                     "summary_top3.png"]
    for name in files:
        data = (loc / "fan" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = struct.unpack(">II", data[16:24])
        if name.startswith("sec"):
            assert (width, height) == (640, 720)
    # without the training's --config: the network and feature settings come from the checkpoint
    r = run_script("dcase2022/loc.py", "--mt", "fan", *sets[2:], "--set", f"loc_dir={loc}", "--limit", "2",
                   "--map", "residual", "--top", "1")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "config: from the checkpoint: net.nz=64, net.ndf=16, net.ngf=16, net.isize=64, feat.fft_num=1024" in r.stdout
    assert sorted(p.name for p in (loc / "fan").iterdir()) == [
        "sec00_source_true1_0000.png", "sec00_source_true1_0001.png", "summary_top1.png"]


@pytest.mark.slow
def test_residual_map_peaks_at_injected_clicks(trained, tmp_path):
    out, sets, _ = trained
    resolved = load_config(SPEC.root, "fan", sets[1], sets[3::2])  # sets = [--config, F, --set, k=v, ...]
    model = load_trained(SPEC, resolved, "fan", torch.device("cpu"))
    cfg = model.cfg
    sr, seconds = 16000, 2.5
    rng = np.random.default_rng(0)
    y = synth.normal_sound(rng, sr, seconds, synth._base_f0("fan", "00"), 0.01)
    clicks = [0.6, 1.3, 2.0]
    for t in clicks:  # short decaying noise bursts: broadband, a few frames long
        i = int(t * sr)
        y[i:i + 400] += 0.8 * rng.normal(0, 1, 400) * np.exp(-np.arange(400) / 100)
    wav = tmp_path / "section_00_source_test_anomaly_0000_a.wav"
    sf.write(wav, np.clip(y, -1, 1), sr, subtype="PCM_16")  # normal parts keep the level the model knows
    spec, _ = logmel(wav, cfg["feat"]["fft_num"], cfg["feat"]["frame_hop"], cfg["feat"]["mel_bin"])
    x = model.scaled(spec[None])[0]
    _, resid = reconstruct(model.netG, x, cfg["feat"]["frame_num"], cfg["feat"]["graph_hop_f"], torch.device("cpu"))
    curve = resid.mean(0).numpy()
    frames = [int(t * sr / cfg["feat"]["frame_hop"]) for t in clicks]
    edge = 8  # the first and last frames are covered by one segment only: skip them for the argmax
    peak = edge + int(np.argmax(curve[edge:-edge]))
    assert min(abs(peak - f) for f in frames) <= 2, (peak, frames)
    for f in frames:
        assert curve[max(f - 2, 0):f + 3].max() > 1.3 * np.median(curve), (f, curve)


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
    (["--mt", "fan", "--set", "feat.mel_bin=64"], "feat.mel_bin"),
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


@pytest.mark.slow
def test_speed_options_run_on_cpu(tmp_path, synth2022):
    """bf16 autocast, channels_last and torch.compile go through the same code path as the default."""
    r = run_script("dcase2022/train.py", "--mt", "ToyTrain", *_sets(tmp_path, synth2022), "--set", "train.epoch=1",
                   "--set", "train.amp=bf16", "--set", "train.channels_last=true", "--set", "train.compile=true",
                   "--set", "net.nz=16", "--set", "net.ndf=8", "--set", "net.ngf=8")
    assert r.returncode == 0, r.stderr[-3000:]
    state = checkpoint.load(tmp_path / "model_dir" / "ToyTrain.pth")
    assert state["config"]["train"]["compile"] and all(torch.isfinite(v).all() for v in state["netG"].values()
                                                       if v.is_floating_point())
