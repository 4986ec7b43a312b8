"""A training run seen in TensorBoard (training/events.py): every tag, read back with TensorBoard's own reader, at
the right steps and with the values of the history in the model file; a run killed and resumed shows each step
once; a full disk or a file in the way is one line; the training-curves figure (the real tensorboard server on a
table's jobs: test_reproduce.py)."""

from __future__ import annotations

import math
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.custom_scalar import layout_pb2

import progress
from aegan.core.metrics import metric_names
from aegan.method.steps import TERMS
from aegan.store import checkpoint
from aegan.training.epoch import LOG_EVERY
from aegan.training.events import EPOCHS
from conftest import ROOT, TRAINED_ARGS, run_script, small_sets

pytestmark = pytest.mark.slow
LOSSES = [t.name for t in TERMS]
QUANTITIES = ("AUC_source", "AUC_target", "pAUC", "hmean")


def _events(root: Path, per_epoch: bool = False) -> EventAccumulator:
    """The run's batch-axis events, or (`per_epoch`) its epoch-axis ones, TensorBoard's run `<run>/epochs`."""
    (run,) = (root / "fan").iterdir()  # one run folder per training run: seed and run id in its name
    ea = EventAccumulator(str(run / EPOCHS if per_epoch else run), size_guidance={"scalars": 0, "tensors": 0})
    ea.Reload()
    return ea


def _steps(ea: EventAccumulator, tag: str) -> list[int]:
    return [e.step for e in ea.Scalars(tag)]


def test_every_tag_at_its_steps_with_the_histories_values(trained2022):
    out, _, _ = trained2022
    state = checkpoint.load(out / "model" / "fan.pth")
    history, seed, run_id = state["history"], state["seed"], state["run_id"]
    assert [p.name for p in (out / "tb" / "fan").iterdir()] == [f"seed{seed}-{run_id[:8]}"]
    ea, ep = _events(out / "tb"), _events(out / "tb", per_epoch=True)
    iters = _steps(ea, "loss/lossD")[-1] // 3  # global iterations per epoch: the last interval ends epoch 3
    for term in LOSSES:  # each logging interval's mean, at its last iteration
        per_epoch = [min(i + LOG_EVERY, iters) for i in range(0, iters, LOG_EVERY)]
        assert _steps(ea, f"loss/{term}") == [e * iters + s for e in range(3) for s in per_epoch], term
        assert [e.value for e in ep.Scalars(f"epoch/{term}")] == [np.float32(h[term]) for h in history], term
    # the per-epoch charts on the epoch axis (#37: they sat at steps 15, 30, ... of the batch axis)
    for tag in ("epoch/lossD", "epoch/seconds", "epoch/segments_per_second", "lr/D", "lr/G"):
        assert _steps(ep, tag) == [1, 2, 3], tag
        assert tag not in ea.Tags()["scalars"], tag
    assert [e.value for e in ep.Scalars("lr/G")] == [np.float32(2e-4)] * 3
    for q in QUANTITIES:
        for m in metric_names():
            got = [(e.step, e.value) for e in ep.Scalars(f"{q}/{m}")]
            assert [s for s, _ in got] == [1, 2, 3], (q, m)
            if q == "hmean":
                assert [v for _, v in got] == [np.float32(100 * h["values"][m]) for h in history], m
    assert [int(e.value) for e in ep.Scalars("selection/epoch")][-1] == state["epoch"]
    assert ea.Scalars("hparam/selected")[-1].value == np.float32(100 * state["best_hmean"])
    (layout,) = ep.Tensors("custom_scalars__config__")  # one chart per quantity, all metrics in it
    charts = layout_pb2.Layout.FromString(layout.tensor_proto.string_val[0]).category[0].chart
    assert [(c.title, list(c.multiline.tag)) for c in charts] == [(q, [f"^{q}/"]) for q in QUANTITIES]
    assert "_hparams_/experiment" in ea.PluginTagToContent("hparams")


def _start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_a_killed_run_is_readable_and_its_resumed_run_shows_each_step_once(tmp_path, synth2022, trained2022):
    base = ["dcase2022/train.py", *TRAINED_ARGS, *small_sets(tmp_path, synth2022)]
    proc = _start(base)
    last = tmp_path / "model" / "fan_last.pth"
    watch = progress.Watch(proc.pid, what="train.py")
    while not (last.exists() and checkpoint.load(last)["epoch"] == 2):  # two epochs done, the third under way
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        watch.check()
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    ep = _events(tmp_path / "tb", per_epoch=True)  # readable after a SIGKILL: what was flushed at each epoch's end
    assert len(_steps(ep, "epoch/lossD")) >= 2
    r = run_script(*base, "--resume")
    assert r.returncode == 0, r.stderr[-2000:]
    history = checkpoint.load(tmp_path / "model" / "fan.pth")["history"]
    for per_epoch, tags in ((False, ("loss/recon",)),
                            (True, ("epoch/lossD", "hmean/D_lof", "epoch/segments_per_second"))):
        ea, ref = _events(tmp_path / "tb", per_epoch), _events(trained2022[0] / "tb", per_epoch)
        for tag in tags:
            assert _steps(ea, tag) == _steps(ref, tag), tag  # each step once, none missing
    assert [e.value for e in ea.Scalars("epoch/lossD")] == [np.float32(h["lossD"]) for h in history]


def test_events_on_a_full_disk_stop_the_run_in_one_line_and_resume_elsewhere(tmp_path, synth2022, full_disk):
    base = ["dcase2022/train.py", *TRAINED_ARGS, *small_sets(tmp_path, synth2022), "--set", "train.epoch=2"]
    r = run_script(*base, "--set", f"tb_dir={full_disk}")
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(lines) == 1, r.stderr[-3000:]  # not the writer thread's traceback as well
    assert lines[0].startswith(f"error: could not write the TensorBoard events in {full_disk}/fan/seed42-")
    assert "No space left on device" in lines[0] and "train.tensorboard=false" in lines[0]
    assert not (tmp_path / "model" / "fan.pth").exists()
    r = run_script(*base, "--resume", "--set", f"tb_dir={tmp_path / 'tb2'}")
    assert r.returncode == 0, r.stderr[-2000:]
    start = int(re.search(r"resuming from .* at epoch (\d)", r.stdout + r.stderr).group(1))
    steps = _steps(_events(tmp_path / "tb2", per_epoch=True), "epoch/lossD")  # from where it resumed, each once
    assert steps == list(range(start, 3)), (start, steps)


def test_a_file_where_the_events_go_is_one_line(tmp_path, synth2022):
    (tmp_path / "taken").write_text("not a folder")
    r = run_script("dcase2022/train.py", *TRAINED_ARGS, *small_sets(tmp_path, synth2022), "--set",
                   f"tb_dir={tmp_path / 'taken'}")
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr[-3000:]
    assert r.stderr.startswith(f"error: could not write the TensorBoard events in {tmp_path / 'taken'}/fan/seed42-")
    assert "(set tb_dir to a folder you can write" in r.stderr  # no advice to free space that is not short


def test_a_read_only_events_folder_is_one_line_that_does_not_blame_the_space(tmp_path, synth2022, read_only):
    r = run_script("dcase2022/train.py", *TRAINED_ARGS, *small_sets(tmp_path, synth2022), "--set",
                   f"tb_dir={read_only}")
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr[-3000:]
    assert "Read-only file system (set tb_dir to a folder you can write" in r.stderr and "space" not in r.stderr
    assert not (tmp_path / "model" / "fan.pth").exists()


def test_the_training_curves_figure_says_what_it_draws(trained2022):
    out, _, stdout = trained2022
    path = out / "result" / "fan" / "training_curves.png"
    assert f"wrote {path}" in stdout
    state = checkpoint.load(out / "model" / "fan.pth")
    with Image.open(path) as im:
        text, size = dict(im.text), im.size
        pixels = np.asarray(im.convert("L"))
    assert text["Title"] == (f"fan (DCASE 2022), seed 42: training selected: epoch {state['epoch']}, "
                             f"{state['metric']}, hmean {100 * state['best_hmean']:.2f}")
    assert text["Description"] == ("loss terms and the Wasserstein estimate (wdist) | hmean per epoch")
    assert size == (720, 765) and pixels.std() > 10 and not math.isnan(pixels.mean())  # drawn, not blank


def test_per_epoch_charts_are_on_an_epoch_axis_and_a_resume_purges_each_axis(tmp_path):
    """#37: epoch means, hmeans and the selection sat on the batch axis (steps 15, 30, ...). Now in the run's
    epochs/ folder at step = epoch; the losses stay on the batch axis. A run resumed after epoch 1 purges what the
    stopped one logged later, on each axis."""
    from aegan.scoring.evaluation import SECTIONS
    from aegan.training.events import Events

    results = {m: ([], {q: 0.5 for q in QUANTITIES}) for m in metric_names()}
    first = Events(tmp_path / "run", SECTIONS, None, 15)
    for epoch in (1, 2):
        first.losses(epoch * 15, {"lossD": float(epoch)})
        first.epoch(epoch, {"lossD": float(epoch)}, 1.0, 100, (2e-4, 2e-4))
        first.evaluation(epoch, results, {"epoch": epoch, "value": 0.5, "metric": "D_lof"}, True)
    first.flush()
    resumed = Events(tmp_path / "run", SECTIONS, 1, 15)  # epoch 2 is trained again
    resumed.losses(30, {"lossD": 5.0})
    resumed.epoch(2, {"lossD": 5.0}, 1.0, 100, (2e-4, 2e-4))
    resumed.flush()
    batch = EventAccumulator(str(tmp_path / "run"), size_guidance={"scalars": 0})
    epochs = EventAccumulator(str(tmp_path / "run" / EPOCHS), size_guidance={"scalars": 0})
    batch.Reload()
    epochs.Reload()
    assert [(e.step, e.value) for e in epochs.Scalars("epoch/lossD")] == [(1, 1.0), (2, 5.0)]
    assert [(e.step, e.value) for e in batch.Scalars("loss/lossD")] == [(15, 1.0), (30, 5.0)]
    assert _steps(epochs, "hmean/D_lof") == [1] and _steps(epochs, "selection/epoch") == [1]
    assert "epoch/lossD" not in batch.Tags()["scalars"]
