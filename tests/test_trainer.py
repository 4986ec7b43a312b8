"""The training loop run as a user runs train.py: what it logs and writes, resuming after an interruption to
the same weights as an uninterrupted run, stopping on a non-finite loss, and the speed options."""

import re
import shutil
import signal
import subprocess
import sys

import pytest
import torch
import yaml

import progress
from aegan.commands import cli
from aegan.core.progress import Bar
from aegan.store import checkpoint
from aegan.training.epoch import _read
from conftest import ROOT, TINY, TRAINED_ARGS, one_line_error, out_sets, run_cli, run_script, small_sets
from dcase2022.datasets import SPEC

SELECTION = ("epoch", "metric", "best_hmean", "thresholds", "feat_max", "feat_min", "sample_rate")

pytestmark = pytest.mark.slow


def test_training_writes_log_and_checkpoints(trained2022):
    out, _, stdout = trained2022
    assert ("device: cuda" if torch.cuda.is_available() else "device: CUDA is not available") in stdout
    assert "LABELLED dev test set" in stdout
    log = (out / "log" / "fan" / "train.log").read_text()
    assert "epoch 3/3" in log and "AUC_source" in log and "hmean" in log and "LABELLED" in log
    state = checkpoint.load(out / "model" / "fan.pth")
    assert {"netD", "netG", "best_hmean", "feat_max", "feat_min", "config", "epoch", "metric", "train_emb",
            "history", "identity", "thresholds", "format", "version"} <= set(state)
    assert state["config"]["net"]["first_norm"] is False  # fan: saved, not guessed from the weights
    assert state["config"]["net"]["isize"] == 64 and state["feat_max"] > state["feat_min"]
    assert state["train_emb"].shape == (72, 128) and state["identity"]["dataset"] == "dcase2022"
    assert state["identity"]["mt"] == "fan" and len(state["identity"]["clips"]) == 72
    assert list(state["thresholds"]) == ["G_z_cos_min@0.9"]
    assert state["thresholds"]["G_z_cos_min@0.9"]["percentile"] == 0.9
    last = checkpoint.load(out / "model" / "fan_last.pth")
    assert last["epoch"] == 3 and "optD" in last and "optG" in last
    assert [h["epoch"] for h in state["history"]] == [1, 2, 3]
    assert [h["epoch"] for h in last["history"]] == [1, 2] and last["pending"]["epoch"] == 2  # epoch 3, settling
    assert {"lossD", "gp", "lossG", "recon", "feat_match", "metric", "value"} <= set(state["history"][0])


def test_an_epochs_training_line_comes_when_it_ends_and_its_evaluation_line_when_ready(trained2022):
    """#37: the line of epoch 1 came after epoch 2's progress had begun (its evaluation runs beside epoch 2)."""
    lines = trained2022[2].splitlines()

    def at(prefix: str) -> int:
        return next(i for i, line in enumerate(lines) if prefix in line)

    for k in (1, 2, 3):
        assert re.search(rf"epoch {k}/3 training \(epoch means\): lossD -?\d+\.\d+ lossG", lines[at(f"epoch {k}/3 tr")])
        assert re.search(rf"epoch {k}/3 evaluation on the labelled dev test set, \w+ \(the best metric\): AUC_source "
                         r"\d+\.\d\d", lines[at(f"epoch {k}/3 ev")])
    for k in (1, 2):  # epoch k's training line before epoch k+1's progress starts, its evaluation line after
        assert at(f"epoch {k}/3 training") < at(f"epoch {k + 1}/3: 0/") < at(f"epoch {k}/3 evaluation")


def test_the_progress_bars_values_are_the_epochs_running_means(tmp_path):
    """#37: the bar showed the last batch's losses, unlabelled, unlike the epoch means printed after it."""
    bar, sums, seen = Bar([], "epoch 1/1", total=0, disable=True), {}, {}
    t = torch.tensor
    _read([(0, {"lossD": t(1.0), "lossG": t(3.0)}), (1, {"lossD": t(2.0)})], sums, seen, "e", tmp_path, bar,
          lambda i, m: None)
    assert bar.values == "running mean lossD=1.500, running mean lossG=3.000"
    _read([(2, {"lossD": t(6.0), "lossG": t(5.0)})], sums, seen, "e", tmp_path, bar, lambda i, m: None)
    assert bar.values == "running mean lossD=3.000, running mean lossG=4.000"  # (1+2+6)/3, (3+5)/2


def _start_until(args: list[str], shown: bytes) -> tuple[subprocess.Popen, bytearray]:
    """Start train.py and read its stdout as it streams until the run shows `shown` (a progress line's label, off
    a terminal): an event, not a number of seconds, so a busy machine only makes the wait longer."""
    proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return proc, progress.read_until(proc, lambda out: shown in out)


def _finish(proc: subprocess.Popen, out: bytearray) -> str:
    """Its stderr, once it has ended."""
    return progress.communicate(proc)[1].decode(errors="replace")


def test_interrupted_training_resumes_to_the_same_weights(tmp_path, synth2022, trained2022):
    """SIGTERM once epoch 2's progress bar is up: exit 130, the epoch-1 checkpoint intact; --resume then ends
    with the weights, history and selection of the uninterrupted run, to the last bit."""
    base = ["dcase2022/train.py", *TRAINED_ARGS, *small_sets(tmp_path, synth2022)]
    proc, err = _start_until(base, b"epoch 2/3:")  # the bar appears after epoch 1's checkpoints are written
    proc.send_signal(signal.SIGTERM)
    err = _finish(proc, err)
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted" in err and "Traceback" not in err
    assert checkpoint.load(tmp_path / "model" / "fan_last.pth")["epoch"] == 1
    assert not [p for p in (tmp_path / "model").iterdir() if p.suffix == ".tmp" or p.name.startswith(".")]
    r = run_script(*base, "--resume")
    assert r.returncode == 0 and "resuming from" in r.stdout and "at epoch 2" in r.stdout, r.stderr[-2000:]
    assert "epoch 3/3" in r.stdout
    # epoch 1's evaluation was still running beside epoch 2 when the run stopped: the resumed run settles it
    # from the run state, so the log holds every epoch's line once, none trained twice
    log = (tmp_path / "log" / "fan" / "train.log").read_text()
    assert [log.count(f"epoch {k}/3 training (epoch means)") for k in (1, 2, 3)] == [1, 1, 1], log
    assert [log.count(f"epoch {k}/3 evaluation on the labelled") for k in (1, 2, 3)] == [1, 1, 1], log
    for name in ("fan_last.pth", "fan.pth"):
        ours, ref = checkpoint.load(tmp_path / "model" / name), checkpoint.load(trained2022[0] / "model" / name)
        for net in ("netG", "netD"):
            assert all(torch.equal(ours[net][k], ref[net][k]) for k in ref[net]), (name, net)
        assert ours["history"] == ref["history"]
        if name == "fan_last.pth":
            assert ours["best"] == ref["best"]
        else:  # the model file: the same selection, threshold, scaling and critic reference set
            assert [ours[k] for k in SELECTION] == [ref[k] for k in SELECTION]
            assert torch.equal(ours["train_emb"], ref["train_emb"])


def test_sigint_ends_like_sigterm(tmp_path, synth2022):
    """Ctrl-C inside epoch 2 (its bar is up): exit 130, one line, epoch 1's checkpoint kept."""
    base = ["dcase2022/train.py", *TRAINED_ARGS, *small_sets(tmp_path, synth2022)]
    proc, err = _start_until(base, b"epoch 2/3:")
    proc.send_signal(signal.SIGINT)
    err = _finish(proc, err)
    assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err, err[-2000:]
    assert checkpoint.load(tmp_path / "model" / "fan_last.pth")["epoch"] == 1  # as SIGTERM: epoch 2 not written


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, synth2022, trained2022, capsys):
    out = tmp_path / "run"
    shutil.copytree(trained2022[0] / "model", out / "model")
    last = out / "model" / "fan_last.pth"
    before = last.read_bytes()
    # a penalty weight beyond float32 range makes the critic loss infinite at the first batch; a fresh run in
    # another model_dir has no run state yet and says so
    code, _, err = run_cli(cli.train_main, SPEC, [*TRAINED_ARGS, *small_sets(tmp_path / "fresh", synth2022), "--set",
                                                  "train.wgan.lambda_gp=1e39"], capsys)
    one_line_error(code, err, "loss is not finite", "no run state was written yet")
    assert last.read_bytes() == before


def test_speed_options_run_on_cpu(tmp_path, synth2022):
    """bf16 autocast, channels_last and torch.compile go through the same code path as the default; with
    train.tensorboard=false no event is written."""
    # the tiny networks: torch.compile's time on the CPU grows with the layers it compiles
    sets = [*TINY, "train.amp=bf16", "train.channels_last=true", "train.compile=true", "detect.amp=bf16",
            "train.tensorboard=false"]
    r = run_script("dcase2022/train.py", "--mt", "ToyTrain", *out_sets(tmp_path, synth2022),
                   *[x for s in sets for x in ("--set", s)])
    assert r.returncode == 0, r.stderr[-3000:]
    state = checkpoint.load(tmp_path / "model" / "ToyTrain.pth")
    assert state["config"]["train"]["compile"] and state["config"]["train"]["amp"] == "bf16"
    assert all(torch.isfinite(v).all() for v in state["netG"].values() if v.is_floating_point())
    assert not (tmp_path / "tb").exists() and not (tmp_path / "log" / "ToyTrain" / "tb").exists()  # no events


def test_evaluation_beside_the_next_epoch_gives_the_same_run(tmp_path, synth2022, capsys):
    """train.eval_overlap (the default) queries an epoch's critic detectors while the next epoch trains: the
    weights, history, selection and model file equal those of the run that waits for them, to the bit."""
    states = {}
    for overlap in ("true", "false"):
        out = tmp_path / overlap
        args = ["--mt", "ToyTrain", *small_sets(out, synth2022), "--set", "train.epoch=3", "--set",
                "train.batch_size=16", "--set", "net.nz=16", "--set", "net.ndf=8", "--set", "net.ngf=8", "--set",
                f"train.eval_overlap={overlap}"]
        code, stdout, err = run_cli(cli.train_main, SPEC, args, capsys)
        assert code == 0, err[-2000:]
        states[overlap] = (checkpoint.load(out / "model" / "ToyTrain.pth"),
                           checkpoint.load(out / "model" / "ToyTrain_last.pth"))
    (model_a, last_a), (model_b, last_b) = states["true"], states["false"]
    assert last_a["pending"] is not None and last_b["pending"] is None  # the overlapped run's last epoch settled late
    for a, b in ((model_a, model_b), (last_a, last_b)):
        for net in ("netG", "netD"):
            assert all(torch.equal(a[net][k], b[net][k]) for k in a[net])
        assert a["epoch"] == b["epoch"]
    assert model_a["history"] == model_b["history"] and len(model_a["history"]) == 3
    assert last_a["history"] == last_b["history"][:2]  # the third is in last_a["pending"], settled on resume
    assert model_a["thresholds"] == model_b["thresholds"] and model_a["metric"] == model_b["metric"]
    assert torch.equal(model_a["train_emb"], model_b["train_emb"])


def test_resume_takes_the_runs_own_settings_and_names_a_changed_one_before_any_feature_work(
        tmp_path, synth2022, trained2022, capsys):
    """The run trained with --config demo/small.yaml and --set train.batch_size=8: --resume needs neither again
    (it extracted features at the default size before, then stopped on a segment longer than the clips). A
    setting given again with another value is named with both values before any feature is extracted."""
    shutil.copytree(trained2022[0] / "model", tmp_path / "model")
    sets = out_sets(tmp_path, synth2022)
    code, _, err = run_cli(cli.train_main, SPEC, ["--mt", "fan", "--resume", *sets, "--set", "train.lrD=0.001"],
                           capsys)
    one_line_error(code, err, "train.lrD 0.0002 -> 0.001", "--resume")
    assert not (tmp_path / "spec").exists()  # no feature work before the refusal
    code, stdout, err = run_cli(cli.train_main, SPEC, ["--mt", "fan", "--resume", *sets, "--set", "train.epoch=4"],
                                capsys)
    assert code == 0, err[-2000:]
    assert "resume: the settings of the run in" in stdout and "at epoch 4" in stdout
    state = checkpoint.load(tmp_path / "model" / "fan.pth")
    assert state["config"]["feat"]["mel_bin"] == 64 and state["config"]["train"]["batch_size"] == 8
    assert state["seed"] == 42 and [h["epoch"] for h in state["history"]] == [1, 2, 3, 4]
    settings = yaml.safe_load((tmp_path / "log" / "fan" / "train.settings.yaml").read_text())
    assert settings["feat"]["mel_bin"] == 64 and settings["train"]["epoch"] == 4
