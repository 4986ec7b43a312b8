"""Each command, stopped with SIGTERM (as scancel, kill or Ctrl-C stop it), exits 130 with one line about itself:
what it had done and what to do, and that line agrees with the files it leaves (training's: test_trainer.py; the
reproduce launcher's: test_reproduce.py)."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import progress
from aegan.commands.exits import guarded
from aegan.core.metrics import metric_names
from conftest import ROOT, TINY, one_line_error, out_sets

pytestmark = pytest.mark.slow


def _stop_when(argv: list[str], ready: Callable[[bytes], bool]) -> tuple[int, str]:
    """Start a command, read its stdout as it streams until `ready(stdout so far)` (an event, not a number of
    seconds), SIGTERM it; (exit status, stderr)."""
    proc = subprocess.Popen([sys.executable, *argv], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    progress.read_until(proc, ready)
    proc.send_signal(signal.SIGTERM)
    err = progress.communicate(proc)[1].decode(errors="replace")
    return proc.returncode, err


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())} if folder.is_dir() else {}


def test_test_py_says_whether_it_published(trained2022):
    out, sets, _ = trained2022
    r = progress.run([sys.executable, "dcase2022/test.py", "--mt", "fan", "-d", "--no-plots", *sets], cwd=ROOT,
                     capture_output=True)
    assert r.returncode == 0, r.stderr[-2000:]
    before = _files(out / "detect")
    code, err = _stop_when(["dcase2022/test.py", "--mt", "fan", "-d", "--no-plots", *sets, "--set",
                            "detect.metric=D_lof"], lambda o: f"with all {len(metric_names())} metrics".encode() in o)
    line = one_line_error(code, err, "interrupted")
    assert code == 130 and "train.py" not in line and "--resume" not in line
    after = _files(out / "detect")
    if "nothing was published" in line:  # then the previous run's files, to the byte
        assert after == before
    else:  # all of this run's, none of the previous run's G_z_cos_min scores
        assert "after publishing this run's" in line and after != before


def test_loc_py_says_how_many_figures_it_wrote(trained2022, tmp_path):
    out, sets, _ = trained2022
    loc = tmp_path / "loc" / "fan"  # not the shared run's loc_dir, which other tests read
    code, err = _stop_when(["dcase2022/loc.py", "--mt", "fan", *sets, "--set", f"loc_dir={tmp_path / 'loc'}"],
                           lambda o: loc.is_dir() and any(p.name.startswith("sec") for p in loc.iterdir()))
    drawn = [p for p in loc.iterdir() if p.suffix == ".png"]
    one_line_error(code, err, f"interrupted; {len(drawn)} figure", f"written to {loc}", "rerun loc.py")
    assert code == 130 and not (loc / "summary_top4.png").exists()


def test_the_score_command_says_how_many_files_it_scored(trained2022, synth2022, tmp_path):
    clips = sorted((synth2022 / "dev_data" / "fan" / "test").glob("*.wav"))
    table = tmp_path / "scores.csv"
    code, err = _stop_when(["-m", "aegan.score", "--model", str(trained2022[0] / "model" / "fan.pth"), "--out",
                            str(table), *map(str, clips)], lambda o: b"scoring " in o)
    line = one_line_error(code, err, "interrupted after scoring", f"of {len(clips)} files; nothing was written to "
                          f"{table}")
    assert code == 130 and not table.exists() and int(line.split("scoring ")[1].split()[0]) <= len(clips)


def test_train_py_stopped_before_its_first_epoch_promises_no_checkpoint(synth2022, tmp_path):
    """Stopped once it has read its settings (then it extracts features and trains the first epoch), train.py said
    the checkpoints of the last completed epoch were intact (--resume continues from them); there were none, and
    --resume said so."""
    sets = [x for s in TINY for x in ("--set", s)]
    code, err = _stop_when(["dcase2022/train.py", "--mt", "fan", *sets, *out_sets(tmp_path, synth2022)],
                           lambda o: b"config: " in o)
    line = one_line_error(code, err, "nothing was trained", "run train.py again")
    assert code == 130 and "--resume" not in line and "intact" not in line
    assert not (tmp_path / "model" / "fan_last.pth").exists()


def test_train_py_stopped_while_reading_its_settings_says_so(tmp_path):
    """A --config that is a pipe nobody writes yet: SIGTERM while train.py waits to read it."""
    fifo = tmp_path / "settings.yaml"
    os.mkfifo(fifo)
    proc = subprocess.Popen([sys.executable, "dcase2022/train.py", "--mt", "fan", "--config", str(fifo)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    opened = []

    def writer_opens() -> bool:  # the event: train.py has opened the pipe to read it (then a writer can open it)
        assert proc.poll() is None
        try:
            opened.append(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            return True
        except OSError:
            return False

    progress.wait_for(writer_opens, proc.pid, what="train.py to open its settings pipe")
    writer = opened[0]
    try:
        proc.send_signal(signal.SIGTERM)
        _, err = progress.communicate(proc)
    finally:
        os.close(writer)
    one_line_error(proc.returncode, err.decode(), "interrupted while reading the settings; nothing was trained")


def test_an_error_raised_while_an_interruption_unwinds_is_the_interruption(capsys):
    """loc.py stopped inside matplotlib's savefig ended "unexpected ValueError: Invalid affine transformation matrix":
    the library's cleanup failed on state the signal cut short, and its error replaced the KeyboardInterrupt."""
    def command(_args):
        try:
            raise KeyboardInterrupt
        finally:
            raise ValueError("Invalid affine transformation matrix")

    with pytest.raises(SystemExit) as e:
        guarded(command, argparse.Namespace(), lambda: "interrupted; 3 figures written")
    assert e.value.code == 130 and capsys.readouterr().err == "error: interrupted; 3 figures written\n"
    with pytest.raises(SystemExit) as e:  # an error of its own is still that error
        guarded(lambda _args: int("x"), argparse.Namespace(), lambda: "interrupted")
    assert e.value.code == 1 and "unexpected ValueError" in capsys.readouterr().err
