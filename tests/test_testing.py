"""test.py as a user runs it: the dev set's tables and files, the evaluation set with and without its released
ground truth, the settings taken from the checkpoint, and the permissions of what it writes."""

import csv
import os
import shutil
import sys

import pytest
import torch
from scipy.stats import hmean

import progress
from aegan.commands import cli
from aegan.core.metrics import metric_names, selecting_names
from aegan.store import checkpoint
from conftest import ROOT, one_line_error, out_sets, run_cli, run_script
from dcase2022.datasets import SPEC

pytestmark = pytest.mark.slow

# all_metrics.csv: fractions at full precision, and the header says so (the tables people read are in percent)
FRACTIONS = ["AUC_source_fraction", "AUC_target_fraction", "pAUC_fraction", "hmean_fraction"]

def test_dev_evaluation_tables_and_files(trained2022):
    out, sets, _ = trained2022
    r = run_script("test.py", "--mt", "fan", "-d", "-c", "0", *sets, cwd=ROOT / "dcase2022")  # from dcase2022/
    assert r.returncode == 0, r.stderr[-2000:]
    assert "best metric on this test set" in r.stdout
    assert "G_z_cos_min  (metric of the score files: detect.metric)" in r.stdout
    rows = list(csv.reader((out / "result" / "fan" / "all_metrics.csv").open()))
    assert rows[0] == ["metric", *FRACTIONS] and len(rows) == 1 + len(metric_names())
    best = max(float(r[4]) for r in rows[1:] if r[0] in selecting_names())  # what training chooses from
    assert best > 0.8, rows
    state = checkpoint.load(out / "model" / "fan.pth")
    assert best == state["best_hmean"]  # test.py reproduces training's evaluation, to the bit
    per = list(csv.reader((out / "result" / "fan" / "per_section.csv").open()))
    assert per[0] == ["metric", "section", *FRACTIONS[:3]] and len(per) == 1 + len(metric_names()) * 3
    clip_rows = list(csv.DictReader((out / "result" / "fan" / "clip_scores.csv").open()))
    assert len(clip_rows) == 48 and list(clip_rows[0])[:5] == ["file", "section", "domain", "label", "D_maha"]
    for sec in ("00", "01", "02"):
        lines = (out / "detect" / f"anomaly_score_fan_section_{sec}_test.csv").read_text().splitlines()
        assert len(lines) == 16 and lines[0].startswith("section_") and "," in lines[0]  # no header
        float(lines[0].split(",")[1])
        dec = (out / "detect" / f"decision_result_fan_section_{sec}_test.csv").read_text().splitlines()
        assert [x.split(",")[0] for x in dec] == [x.split(",")[0] for x in lines]
        assert {x.split(",")[1] for x in dec} <= {"0", "1"}
    assert "decisions (the threshold on G_z_cos_min, the metric of the score files)" in r.stdout
    dm = list(csv.reader((out / "result" / "fan" / "decision_metrics.csv").open()))
    assert dm[0] == ["section", "domain", "precision_fraction", "recall_fraction", "F1_fraction"]
    assert len(dm) == 1 + 6 + 1
    assert "fitted the gamma threshold" not in r.stdout  # the stored threshold is used
    # pictures of the configured metric, and the embedding map
    for name in ("scores_G_z_cos_min.png", "roc_G_z_cos_min.png", "embeddings_pca.png"):
        assert (out / "result" / "fan" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the summary across machine types: the official score from the configured metric's per-section values
    summary = list(csv.DictReader((out / "result" / "summary.csv").open()))
    assert [row["machine"] for row in summary] == ["fan", "official"]
    assert summary[0]["metric"] == "G_z_cos_min" and summary[0]["paper"] == "65.83"
    values = [float(x[k]) for x in csv.DictReader((out / "result" / "fan" / "per_section.csv").open())
              if x["metric"] == "G_z_cos_min" for k in ("AUC_source_fraction", "AUC_target_fraction", "pAUC_fraction")]
    assert summary[1]["hmean"] == f"{100 * hmean(values):.2f}"
    assert "**Official score**" in (out / "result" / "summary.md").read_text()
    # files get the permissions the umask gives (they are written through a 0600 temp file)
    mask = os.umask(0)
    os.umask(mask)
    for f in (out / "result" / "fan" / "all_metrics.csv", out / "model" / "fan.pth"):
        assert f.stat().st_mode & 0o777 == 0o666 & ~mask


def test_eval_set_scores_and_ground_truth(trained2022, synth2022, tmp_path):
    out, sets, _ = trained2022
    r = run_script("dcase2022/test.py", "--mt", "fan", "-c", "0", *sets)  # eval set: scores only
    assert r.returncode == 0, r.stderr[-2000:]
    for sec in ("03", "04", "05"):
        lines = (out / "detect" / f"anomaly_score_fan_section_{sec}_test.csv").read_text().splitlines()
        assert len(lines) == 16 and lines[0].startswith(f"section_{sec}_0000.wav,")
        assert (out / "detect" / f"decision_result_fan_section_{sec}_test.csv").exists()
    # without labels: the per-clip scores and the embedding map, no tables
    assert sorted(p.name for p in (out / "result" / "fan" / "eval").iterdir()) == ["clip_scores.csv",
                                                                                  "embeddings_pca.png"]
    r = run_script("dcase2022/test.py", "--mt", "fan", "-c", "0", *sets, "--ground-truth",
                   str(synth2022 / "ground_truth_data"))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "ground truth: labels of 48 evaluation test clips" in r.stdout
    assert "     03  " in r.stdout and "(metric of the score files: detect.metric)" in r.stdout
    rows = list(csv.reader((out / "result" / "fan" / "eval" / "all_metrics.csv").open()))
    assert rows[0] == ["metric", *FRACTIONS] and len(rows) == 1 + len(metric_names())
    assert max(float(r[4]) for r in rows[1:]) > 0.7
    assert (out / "result" / "summary_eval.csv").is_file() and (out / "result" / "fan" / "eval" / "run.json").is_file()


def test_settings_come_from_the_checkpoint_and_a_conflict_is_named(trained2022, synth2022, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(trained2022[0] / "model", out / "model")
    shutil.copytree(trained2022[0] / "spec", out / "spec")
    plain = ["--mt", "fan", "-d", *out_sets(out, synth2022), "--set", "feat.workers=1", "--no-plots"]  # no --config
    code, stdout, err = run_cli(cli.test_main, SPEC, plain, capsys)
    assert code == 0, err[-2000:]
    assert not list(out.rglob("*.png"))  # --no-plots
    assert "config: from the checkpoint: net.nz=64, net.ndf=16, net.ngf=16, net.isize=64, feat.fft_num=1024" in stdout
    # a setting that contradicts the checkpoint's is named with both values
    for setting, needles in (("net.normalize.g=bn", ["net.normalize.g='bn' was set", "'ln'"]),
                             ("net.nz=32", ["net.nz=32 was set", "net.nz=64"]),
                             ("feat.fft_num=2048", ["feat.fft_num=2048 was set", "feat.fft_num=1024"])):
        code, _, err = run_cli(cli.test_main, SPEC, [*plain, "--set", setting], capsys)
        one_line_error(code, err, *needles)
    # a checkpoint in the original's format holds no settings: a mismatch is named from the weights
    path = out / "model" / "fan.pth"
    state = checkpoint.load(path)
    torch.save({"netD": state["netD"], "netG": state["netG"], "best_hmean": 0.5}, path)
    small = ["--set", "feat.fft_num=1024", "--set", "feat.mel_bin=64", "--set", "feat.frame_num=64", "--set",
             "feat.graph_hop_f=2", "--set", "net.isize=64", "--set", "net.ndf=16", "--set", "net.ngf=16"]
    code, _, err = run_cli(cli.test_main, SPEC, [*plain, *small, "--set", "net.nz=64", "--set", "net.normalize.g=bn"],
                           capsys)
    one_line_error(code, err, "built with net.normalize.g='ln' (here 'bn')")
    code, _, err = run_cli(cli.test_main, SPEC, [*plain, *small, "--set", "net.nz=32"], capsys)
    one_line_error(code, err, "built with net.nz=64 (here 32)")  # a size at half or twice is named
    code, _, err = run_cli(cli.test_main, SPEC, [*plain, *small, "--set", "net.nz=48"], capsys)
    one_line_error(code, err, "layer Encoder.main.11 holds weight (64, 128, 4, 4) in the checkpoint, a Conv2d with "
                   "weight (48, 128, 4, 4) here")  # any other by its first differing layer
    path.write_bytes(path.read_bytes()[:5000])
    code, _, err = run_cli(cli.test_main, SPEC, plain, capsys)
    one_line_error(code, err, "truncated")


def test_a_rerun_replaces_the_whole_set_of_submission_files(trained2022, synth2022, tmp_path, capsys):
    """A section without test clips in the rerun: its score and decision files of the earlier run are removed, so
    detect/ holds exactly the rerun's set."""
    out = tmp_path / "run"
    for part in ("model", "spec"):
        shutil.copytree(trained2022[0] / part, out / part)
    data = tmp_path / "data"
    shutil.copytree(synth2022, data)
    args = ["--mt", "fan", "-d", "--no-plots", *out_sets(out, data), "--config", str(ROOT / "demo" / "small.yaml")]
    code, _, err = run_cli(cli.test_main, SPEC, args, capsys)
    assert code == 0, err[-2000:]
    names = sorted(p.name for p in (out / "detect").iterdir() if not p.name.startswith("."))
    assert len(names) == 6 and "anomaly_score_fan_section_02_test.csv" in names
    for clip in (data / "dev_data" / "fan" / "test").glob("section_02_*"):
        clip.unlink()
    code, _, err = run_cli(cli.test_main, SPEC, args, capsys)
    assert code == 0, err[-2000:]
    assert sorted(p.name for p in (out / "detect").iterdir() if not p.name.startswith(".")) == [
        n for n in names if "section_02" not in n]


def test_a_full_disk_during_test_py_is_one_line_and_publishes_no_partial_set(trained2022, synth2022, tmp_path):
    """RLIMIT_FSIZE makes a write past a size fail as a full disk does: one line naming the file, and the
    submission files are all or none."""
    out = tmp_path / "run"
    for part in ("model", "spec"):
        shutil.copytree(trained2022[0] / part, out / part)
    args = ["dcase2022/test.py", "--mt", "fan", "-d", "--no-plots", *out_sets(out, synth2022), "--config",
            str(ROOT / "demo" / "small.yaml")]
    code = ("import resource, runpy, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
            "resource.setrlimit(resource.RLIMIT_FSIZE, (300, 300)); sys.argv = sys.argv[1:]; "
            "runpy.run_path(sys.argv[0], run_name='__main__')")
    r = progress.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True)
    line = one_line_error(r.returncode, r.stderr, "could not write", "free some space")
    assert "Traceback" not in r.stderr and str(out) in line
    written = [p.name for p in (out / "detect").iterdir()] if (out / "detect").exists() else []
    assert written == [] or len([n for n in written if not n.startswith(".")]) == 6, written
    assert not [n for n in written if n.endswith(".tmp")]
