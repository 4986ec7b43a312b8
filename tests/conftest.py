"""Shared fixtures: synthetic DCASE datasets and one trained model, written once per session; runners for the
real scripts (as subprocesses, as a user runs them) and for their entry points in this process (quicker,
for the error paths)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import progress
from aegan import synth
from aegan.settings.layers import output_settings

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "real" / "dcase2020"
SMALL = ROOT / "demo" / "small.yaml"
# --set items for the smallest runs of the real scripts: 32 mels and frames, narrow networks, one epoch
TINY = ["feat.fft_num=1024", "feat.mel_bin=32", "feat.frame_num=32", "net.isize=32", "net.nz=16", "net.ndf=8",
        "net.ngf=8", "train.epoch=1", "train.batch_size=16", "feat.workers=1"]
# A shell runs a background command (`pytest ... &` in a script) with Ctrl-C ignored, and every child it starts
# inherits that: the scripts would then outlive the SIGINT the interruption tests send, and exit 0. Python catches
# it here instead, and a caught signal is reset to its default in a child, where Python makes it Ctrl-C again.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
# No wall-clock limit on any child process (the session fixtures' training runs included): every subprocess of the
# tests runs under tests/progress.py, which kills only a child that sits still (no output, no CPU time) for minutes.
needs_real = pytest.mark.skipif(not REAL.is_dir(), reason="../shared/real/ (real DCASE 2020 clips) is absent")


@pytest.fixture(scope="session")
def synth2022(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dcase2022")
    for i, mt in enumerate(("fan", "ToyTrain")):
        synth.make_2022(root, mt, seconds=2.5, n_train=10, n_train_target=2, n_test=4, seed=1 + i)
    return root


@pytest.fixture(scope="session")
def synth2020(tmp_path_factory) -> Path:
    return synth.make_2020(tmp_path_factory.mktemp("dcase2020"), "valve", seconds=2.5, n_train=10, n_test=6, seed=4)


def run_script(script: str, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return progress.run([sys.executable, script, *args], cwd=cwd, env=env, capture_output=True, text=True)


def out_sets(tmp: Path, dataset_dir: Path) -> list[str]:
    """--set arguments that read `dataset_dir` and put every output of a run under `tmp`."""
    return [x for s in [f"dataset_dir={dataset_dir}", *output_settings(tmp)] for x in ("--set", s)]


def small_sets(tmp: Path, dataset_dir: Path) -> list[str]:
    """The demo's small configuration, one feature worker, outputs under `tmp`."""
    return ["--config", str(SMALL), *out_sets(tmp, dataset_dir), "--set", "feat.workers=1"]


def run_cli(main, spec, argv: list[str], capsys) -> tuple[int, str, str]:
    """A script's entry point (train_main, test_main, loc_main) in this process: (exit status, stdout, stderr)."""
    capsys.readouterr()
    try:
        main(spec, argv)
        code = 0
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code: int, err: str, *needles: str) -> str:
    """The run failed with exactly one line on stderr (progress bars aside), naming every needle."""
    assert isinstance(code, int) and code != 0, code  # sys.exit() without a status (None) is a success
    lines = [x for x in err.splitlines() if x.strip() and "%|" not in x]
    assert len(lines) == 1 and lines[0].startswith("error: "), err[-3000:]
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


TRAINED_ARGS = ["--mt", "fan", "--seed", "42", "--set", "train.epoch=3", "--set", "train.batch_size=8"]


@pytest.fixture(scope="session")
def trained2022(tmp_path_factory, synth2022) -> tuple[Path, list[str], str]:
    """One real training run (train.py, fan: dev and eval training clips, 3 epochs, small config, batch 8)
    shared by the tests of the trainer, test.py, loc.py and the model: (output folder, the run's --config and
    --set arguments, stdout)."""
    out = tmp_path_factory.mktemp("trained2022")
    sets = small_sets(out, synth2022)
    r = run_script("dcase2022/train.py", *TRAINED_ARGS, *sets)
    assert r.returncode == 0, r.stderr[-2000:]
    return out, sets, r.stdout


def write_wav(path: Path, seconds: float = 1.0, sr: int = 16000, seed: int = 0, channels: int = 1) -> Path:
    """A clip of white noise (16-bit PCM)."""
    rng = np.random.default_rng(seed)
    y = rng.normal(0, 0.1, (int(sr * seconds), channels) if channels > 1 else int(sr * seconds))
    sf.write(path, y, sr, subtype="PCM_16")
    return path


def _tmpfs(path: Path, options: str, what: str):
    """`path` as a tmpfs mounted with `options` for one test (as root: file modes do not stop root's writes; a full
    or read-only mount does, for real); the test is skipped where mounting is not allowed."""
    path.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True).returncode:
        pytest.skip(f"mounting {what} needs root (CI runs as root)")
    yield path
    subprocess.run(["umount", str(path)], check=True)


@pytest.fixture
def full_disk(tmp_path):
    """A folder on a 4 KiB tmpfs: a full disk."""
    yield from _tmpfs(tmp_path / "full", "size=4k", "a tmpfs")


@pytest.fixture
def read_only(tmp_path):
    """A folder on a read-only tmpfs."""
    yield from _tmpfs(tmp_path / "ro", "ro,size=64k", "a read-only tmpfs")
