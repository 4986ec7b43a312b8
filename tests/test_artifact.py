"""The trained model as one artifact (aegan/store/): never silently stale, mixed or overwritten. Each test
is one of the ways a model used to go wrong with exit 0 (issue 18), run as a user runs it."""

import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

import progress
from aegan.commands import cli
from aegan.core.files import HOST, write_text
from aegan.core.metrics import metric_names
from aegan.inference.model import prepare
from aegan.settings.layers import load_config
from aegan.store import checkpoint, model_file
from aegan.store.model_dir import ModelDir
from conftest import ROOT, SMALL, TRAINED_ARGS, one_line_error, out_sets, run_cli, small_sets
from dcase2022.datasets import SPEC

pytestmark = pytest.mark.slow
CPU = torch.device("cpu")


def _copy_run(trained2022, tmp_path):
    """The shared trained run's model and feature cache, in a folder of this test's own."""
    out = tmp_path / "run"
    for part in ("model", "spec"):
        shutil.copytree(trained2022[0] / part, out / part)
    return out


@pytest.mark.parametrize("change, named", [
    (["--set", "train.lrD=0.001"], "train.lrD 0.0002 -> 0.001"),
    (["--set", "feat.fft_num=2048"], "feat.fft_num 1024 -> 2048"),
    (["--set", "train.batch_size=16"], "train.batch_size 8 -> 16"),
    (["--seed", "7"], "--seed 42 -> 7"),
])
def test_resume_with_settings_that_change_the_numbers_is_refused(trained2022, synth2022, tmp_path, capsys, change,
                                                                  named):
    out = _copy_run(trained2022, tmp_path)
    before = (out / "model" / "fan_last.pth").read_bytes()
    args = [*TRAINED_ARGS, *small_sets(out, synth2022), "--resume", "--set", "train.epoch=4", *change]
    code, _, err = run_cli(cli.train_main, SPEC, args, capsys)
    one_line_error(code, err, "fan_last.pth is a run with other settings", named, "train anew without --resume")
    assert (out / "model" / "fan_last.pth").read_bytes() == before


def test_resume_on_other_training_clips_is_refused(trained2022, synth2022, tmp_path, capsys):
    """Another dataset_dir with the same layout: the clips' content differs, and the resume says which."""
    out = _copy_run(trained2022, tmp_path)
    data = tmp_path / "data"
    shutil.copytree(synth2022, data)
    clip = sorted((data / "eval_data" / "fan" / "train").glob("*.wav"))[0]
    y, sr = sf.read(clip)
    sf.write(clip, y * 0.5, sr, subtype="PCM_16")
    code, _, err = run_cli(cli.train_main, SPEC, [*TRAINED_ARGS, *small_sets(out, data), "--resume"], capsys)
    one_line_error(code, err, "was trained on other training clips", "1 changed", clip.name)


def test_resume_may_change_outputs_workers_and_epochs(trained2022, synth2022, tmp_path, capsys):
    """Settings that do not change the numbers may change: the run continues to epoch 4 and finishes."""
    out = _copy_run(trained2022, tmp_path)
    data = tmp_path / "moved"
    shutil.copytree(synth2022, data)  # the same clips elsewhere
    args = [*TRAINED_ARGS, *small_sets(out, data), "--resume", "--set", "train.epoch=4", "--set", "feat.workers=2",
            "--set", f"log_dir={tmp_path / 'other_log'}"]
    code, stdout, err = run_cli(cli.train_main, SPEC, args, capsys)
    assert code == 0, err[-2000:]
    assert "at epoch 4" in stdout and "epoch 4/4" in stdout
    model = model_file.read(out / "model" / "fan.pth")[1]
    assert [h["epoch"] for h in model.history] == [1, 2, 3, 4]


def test_a_run_stopped_after_its_last_epoch_finishes_on_resume(trained2022, synth2022, tmp_path, capsys):
    """The run state of the last epoch is written before the model file: a run stopped in between has no model
    file, or an older run's. --resume writes this run's, with its threshold; a second --resume does nothing."""
    out = _copy_run(trained2022, tmp_path)
    ref = model_file.read(trained2022[0] / "model" / "fan.pth")[1]
    (out / "model" / "fan.pth").unlink()
    args = [*TRAINED_ARGS, *small_sets(out, synth2022), "--resume"]
    code, stdout, err = run_cli(cli.train_main, SPEC, args, capsys)
    assert code == 0, err[-2000:]
    assert "nothing to do" not in stdout and "decision threshold of G_z_cos_min" in stdout
    again = model_file.read(out / "model" / "fan.pth")[1]
    assert again.thresholds == ref.thresholds and again.run_id == ref.run_id and again.epoch == ref.epoch
    assert all(torch.equal(again.netG[k], ref.netG[k]) for k in ref.netG)
    # an older run's model file in its place is not this run's: it is replaced
    other = model_file.ModelFile(**{**ref.__dict__, "run_id": "an-older-run", "thresholds": {}})
    model_file.write(out / "model" / "fan.pth", other)
    code, stdout, err = run_cli(cli.train_main, SPEC, args, capsys)
    assert code == 0 and model_file.read(out / "model" / "fan.pth")[1].run_id == ref.run_id, err[-2000:]
    code, stdout, err = run_cli(cli.train_main, SPEC, args, capsys)
    assert code == 0 and "nothing to do" in stdout, err[-2000:]


def test_one_training_run_per_model_and_a_killed_runs_lock_is_taken_over(trained2022, synth2022, tmp_path, capsys):
    out = tmp_path / "run"
    base = [sys.executable, "dcase2022/train.py", *TRAINED_ARGS, *small_sets(out, synth2022)]
    proc = subprocess.Popen(base, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lock = ModelDir(out / "model", "fan").lock
    progress.read_until(proc, lambda out: b"training clips" in out)  # the run has started training: it holds the lock
    assert lock.is_file()
    code, _, err = run_cli(cli.train_main, SPEC, [*TRAINED_ARGS, *small_sets(out, synth2022)], capsys)
    one_line_error(code, err, "model/fan is being trained by process", str(proc.pid), "fan.lock")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert lock.is_file()  # a killed run cannot remove it; its lock is gone with its process
    code, stdout, err = run_cli(cli.train_main, SPEC, [*TRAINED_ARGS, *small_sets(out, synth2022), "--set",
                                                       "train.epoch=1"], capsys)
    assert code == 0, err[-2000:]
    assert f"left by process {proc.pid}" in stdout and not lock.exists()


def test_a_model_of_another_machine_type_is_refused(trained2022, synth2022, tmp_path, capsys):
    out = _copy_run(trained2022, tmp_path)
    shutil.copy(out / "model" / "fan.pth", out / "model" / "ToyTrain.pth")
    code, _, err = run_cli(cli.test_main, SPEC, ["--mt", "ToyTrain", "-d", "--no-plots", *small_sets(out, synth2022)],
                           capsys)
    one_line_error(code, err, "ToyTrain.pth was trained on fan, not ToyTrain")
    assert not (out / "detect").exists() and not (out / "result").exists()


def test_a_dataset_that_changed_after_training_is_named(trained2022, synth2022, tmp_path, capsys):
    out = _copy_run(trained2022, tmp_path)
    data = tmp_path / "grown"
    shutil.copytree(synth2022, data)
    first = sorted((data / "dev_data" / "fan" / "train").glob("*.wav"))[0]
    shutil.copy(first, first.with_name("section_00_source_train_normal_9999_added.wav"))
    code, _, err = run_cli(cli.test_main, SPEC, ["--mt", "fan", "-d", "--no-plots", *small_sets(out, data)], capsys)
    one_line_error(code, err, "fan.pth was trained on other training clips", "1 added",
                   "section_00_source_train_normal_9999_added.wav")


def test_an_original_checkpoints_sidecar_follows_its_training_clips(trained2022, synth2022, tmp_path, capsys):
    """The sidecar is a cache of what was derived from the training clips: new clips, new derivation."""
    out = _copy_run(trained2022, tmp_path)
    ours = checkpoint.load(out / "model" / "fan.pth")
    torch.save({"netD": ours["netD"], "netG": ours["netG"], "best_hmean": np.float64(0.5)}, out / "model" / "fan.pth")
    data = tmp_path / "data"
    shutil.copytree(synth2022, data)
    resolved = load_config(SPEC.root, "fan", str(SMALL), [*out_sets(out, data)[1::2], "feat.workers=1"])
    first, _ = prepare(SPEC, resolved, "fan", CPU)
    assert "kept what scoring needs" in capsys.readouterr().out
    clip = sorted((data / "dev_data" / "fan" / "train").glob("*.wav"))[3]
    y, sr = sf.read(clip)
    sf.write(clip, np.roll(y, 4000), sr, subtype="PCM_16")
    second, _ = prepare(SPEC, resolved, "fan", CPU)
    printed = capsys.readouterr().out
    assert "derived from other training clips (1 changed" in printed and "kept what scoring needs" in printed
    assert not np.array_equal(first.train_emb, second.train_emb)


@pytest.mark.parametrize("entry, value, named", [
    ("thresholds", {"G_z_cos_min@0.9": {"metric": "G_z_cos_min", "threshold": float("nan"), "percentile": 0.9}},
     "thresholds['G_z_cos_min@0.9']"),
    ("thresholds", "x", "thresholds"),
    ("feat_max", float("inf"), "feat_max"),
    ("train_emb", torch.zeros(3, 4), "train_emb (one row per training clip)"),
    ("identity", {"mt": "fan"}, "identity"),
    ("config", "x", "config"),
    ("best_aver", 0.5, "best value"),  # a second selected value beside best_hmean: which one is meant?
])
def test_a_damaged_model_file_is_one_line(trained2022, synth2022, tmp_path, capsys, entry, value, named):
    out = _copy_run(trained2022, tmp_path)
    state = checkpoint.load(out / "model" / "fan.pth")
    state[entry] = value
    torch.save(state, out / "model" / "fan.pth")
    code, _, err = run_cli(cli.test_main, SPEC, ["--mt", "fan", "-d", "--no-plots", *small_sets(out, synth2022)],
                           capsys)
    one_line_error(code, err, "fan.pth is damaged or was not written by AEGAN-AD", f"entry {named} ")


def test_temp_files_of_a_killed_write_are_removed_by_the_next_write(tmp_path):
    """SIGKILL in the middle of an atomic write leaves its temp file; the next write there removes it, and
    leaves the temp file of a live writer alone."""
    code = ("import sys, time; from aegan.core.files import atomic_path\n"
            f"with atomic_path({str(tmp_path / 'fan.pth')!r}) as tmp:\n"
            "    tmp.write_bytes(b'half'); print(tmp, flush=True); time.sleep(3600)\n")
    killed = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    live = subprocess.Popen([sys.executable, "-c", code.replace("fan.pth", "other.pth")], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    left, writing = (progress.read_until(p, lambda out: b"\n" in out).decode().strip() for p in (killed, live))
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert os.path.exists(left) and f".{HOST}.{killed.pid}." in left
    write_text(tmp_path / "result.csv", "a\n")
    assert not os.path.exists(left) and os.path.exists(writing)
    live.kill()
    live.wait()
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["result.csv"]


@pytest.mark.parametrize("target", ["model", "input", "table.wav", "model link.csv", "input hard link.csv"])
def test_score_out_never_destroys_an_input(trained2022, synth2022, tmp_path, target):
    """A name that is not a table is refused by its suffix; a .csv name that is an input under another name (a
    symbolic or hard link) by what it is."""
    model = trained2022[0] / "model" / "fan.pth"
    clip = tmp_path / "clip.wav"
    shutil.copy(sorted((synth2022 / "dev_data" / "fan" / "test").glob("*.wav"))[0], clip)
    out = {"model": model, "input": clip, "table.wav": tmp_path / "table.wav", "model link.csv": tmp_path / "m.csv",
           "input hard link.csv": tmp_path / "c.csv"}[target]
    if target == "model link.csv":
        out.symlink_to(model)
    if target == "input hard link.csv":
        os.link(clip, out)
    before = {p: p.read_bytes() for p in (model, clip)}
    r = progress.run([sys.executable, "-m", "aegan.score", "--model", str(model), "--out", str(out), str(clip)],
                     cwd=ROOT, capture_output=True, text=True)
    one_line_error(r.returncode, r.stderr, "an input of this run" if "link" in target else "the rows are a CSV table")
    assert all(p.read_bytes() == b for p, b in before.items()) and not (tmp_path / "table.wav").exists()


def test_detect_metric_is_checked_before_any_work(synth2022, tmp_path, capsys):
    code, _, err = run_cli(cli.train_main, SPEC, ["--mt", "fan", *small_sets(tmp_path, synth2022), "--set",
                                                  "detect.metric=G_x_2_avg"], capsys)
    one_line_error(code, err, f"detect.metric 'G_x_2_avg' is not one of the {len(metric_names())} metrics")
    assert not any(tmp_path.iterdir())


def test_a_run_killed_before_its_model_file_finishes_on_resume(trained2022, synth2022, tmp_path, capsys):
    """SIGKILL at the moment the finished run is about to write its model file (after its last run state):
    no model file, no temp file left; --resume writes the model the uninterrupted run wrote."""
    out = tmp_path / "run"
    args = [*TRAINED_ARGS, *small_sets(out, synth2022)]
    code = ("import os, signal, sys; sys.argv = ['train.py', *sys.argv[1:]]\n"
            "from aegan.training import run as trainer\n"
            "def killed(*a, **k):\n    os.kill(os.getpid(), signal.SIGKILL)\n"
            "trainer.write_model = killed  # the kill lands exactly where the model file would be written\n"
            "from aegan.commands.cli import train_main\nfrom dcase2022.datasets import SPEC\ntrain_main(SPEC)\n")
    r = progress.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == -signal.SIGKILL, r.stderr[-2000:]
    assert (out / "model" / "fan_last.pth").is_file() and not (out / "model" / "fan.pth").exists()
    code, stdout, err = run_cli(cli.train_main, SPEC, [*args, "--resume"], capsys)
    assert code == 0, err[-2000:]
    ours, ref = (model_file.read(p / "model" / "fan.pth")[1] for p in (out, trained2022[0]))
    assert ours.thresholds == ref.thresholds and ours.epoch == ref.epoch and ours.history == ref.history
    assert all(torch.equal(ours.netG[k], ref.netG[k]) for k in ref.netG)
    assert not [p for p in (out / "model").iterdir() if p.name.startswith(".")]


def test_a_read_only_model_dir_is_one_line(synth2022, tmp_path, capsys):
    """As root, permissions do not stop a write: the folder is made immutable (chattr +i) instead."""
    out = tmp_path / "run"
    (out / "model").mkdir(parents=True)
    if subprocess.run(["chattr", "+i", str(out / "model")], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is refused on this filesystem: no read-only folder for root")
    try:
        code, _, err = run_cli(cli.train_main, SPEC, [*TRAINED_ARGS, *small_sets(out, synth2022)], capsys)
    finally:
        subprocess.run(["chattr", "-i", str(out / "model")], check=True)
    one_line_error(code, err, f"cannot write in model_dir {out / 'model'}", "model_dir")
    assert list((out / "model").iterdir()) == []
