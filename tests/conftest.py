"""Shared fixtures: synthetic DCASE datasets written once per session, and a runner for the real scripts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from aegan import synth

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "real" / "dcase2020"
SMALL = ROOT / "demo" / "small.yaml"


@pytest.fixture(scope="session")
def synth2022(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dcase2022")
    for i, mt in enumerate(("fan", "ToyTrain")):
        synth.make_2022(root, mt, seconds=2.5, n_train=10, n_train_target=2, n_test=4, seed=1 + i)
    return root


@pytest.fixture(scope="session")
def synth2020(tmp_path_factory) -> Path:
    return synth.make_2020(tmp_path_factory.mktemp("dcase2020"), "valve", seconds=2.5, n_train=10, n_test=6, seed=4)


def run_script(script: str, *args: str, cwd: Path = ROOT, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, script, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def out_sets(tmp: Path, dataset_dir: Path) -> list[str]:
    """--set arguments that put every output of a run under `tmp`."""
    sets = [f"dataset_dir={dataset_dir}"]
    for key in ("model_dir", "spec_dir", "log_dir", "detect_dir", "result_dir"):
        sets.append(f"{key}={tmp / key}")
    return [a for s in sets for a in ("--set", s)]
