"""Each command, stopped with SIGTERM (as scancel, kill or Ctrl-C stop it), exits 130 with one line about itself:
what it had done and what to do, and that line agrees with the files it leaves (training's: test_trainer.py; the
reproduce launcher's: test_reproduce.py)."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from aegan.core.metrics import metric_names
from conftest import HANG_GUARD, ROOT, one_line_error

pytestmark = pytest.mark.slow


def _stop_when(argv: list[str], ready: Callable[[bytes], bool]) -> tuple[int, str]:
    """Start a command, read its stdout as it streams until `ready(stdout so far)` (an event, not a number of
    seconds), SIGTERM it; (exit status, stderr)."""
    proc = subprocess.Popen([sys.executable, *argv], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out = bytearray()
    deadline = time.monotonic() + HANG_GUARD
    while not ready(bytes(out)):
        got, _, _ = select.select([proc.stdout], [], [], 0.05)
        chunk = os.read(proc.stdout.fileno(), 65536) if got else b""
        assert chunk or proc.poll() is None, f"ended before the event: {out[-2000:].decode(errors='replace')}"
        assert time.monotonic() < deadline
        out += chunk
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=HANG_GUARD)[1].decode(errors="replace")
    return proc.returncode, err


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())} if folder.is_dir() else {}


def test_test_py_says_whether_it_published(trained2022):
    out, sets, _ = trained2022
    r = subprocess.run([sys.executable, "dcase2022/test.py", "--mt", "fan", "-d", "--no-plots", *sets], cwd=ROOT,
                       capture_output=True, timeout=HANG_GUARD)
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
