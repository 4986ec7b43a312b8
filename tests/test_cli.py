"""The command line as users meet it: every failure is one line on stderr that names the file or setting
at fault (the full traceback only with --debug), with a non-zero exit status and nothing half-written."""

import numpy as np
import pytest
import soundfile as sf
import yaml

from aegan import synth
from aegan.commands import cli
from conftest import SMALL, TINY, one_line_error, out_sets, run_cli, run_script
from dcase2022.datasets import SPEC

TRAIN = "dev_data/ToyTrain/train"


@pytest.fixture
def small_data(tmp_path):
    """A fresh, small DCASE 2022 dataset a test may break."""
    return synth.make_2022(tmp_path / "data", "ToyTrain", seconds=2.5, n_train=4, n_train_target=1, n_test=2,
                           seed=3)


def _first(d, pattern):
    return sorted((d / TRAIN).glob(pattern))[0]


@pytest.mark.parametrize("breakage, needles", [
    (lambda d: (d / TRAIN / "section_00_source_train_normal_0100_x.wav").write_bytes(b"RIFF not audio"),
     ["cannot read audio file", "section_00_source_train_normal_0100_x.wav"]),
    (lambda d: (d / TRAIN / "section_00_source_train_normal_0101_x.wav").write_bytes(
        _first(d, "section_00_source_train_normal_0000_*.wav").read_bytes()[:30000]),
     ["section_00_source_train_normal_0101_x.wav", "frames", "same length"]),  # truncated: a short clip
    (lambda d: sf.write(d / TRAIN / "section_00_source_train_normal_0103_x.wav", np.zeros(40000) + 0.1, 22050),
     ["sample rate 22050"]),
    (lambda d: sf.write(d / TRAIN / "section_00_source_train_normal_0104_x.wav", np.full(80000, 0.1), 16000),
     ["section_00_source_train_normal_0104_x.wav", "same length"]),
    (lambda d: sf.write(d / TRAIN / "section_00_source_train_normal_0105_x.wav", np.full(1000, np.nan), 16000,
                        subtype="FLOAT"), ["0105_x.wav", "not finite"]),
    (lambda d: [p.unlink() for p in (d / TRAIN).glob("section_02_*")], ["section 02 has test clips", "no training"]),
    (lambda d: (d / TRAIN / "normal_0001.wav").write_bytes(b"x"), ["normal_0001.wav", "DCASE 2022 naming"]),
])
def test_bad_dataset_is_one_line(tmp_path, small_data, capsys, breakage, needles):
    breakage(small_data)
    code, _, err = run_cli(cli.train_main, SPEC, ["--mt", "ToyTrain", "--config", str(SMALL), *out_sets(tmp_path,
                                                                                                  small_data)], capsys)
    one_line_error(code, err, *needles)
    assert not (tmp_path / "model").exists() and not (tmp_path / "log").exists()  # nothing half-done


def test_clip_shorter_than_one_segment(tmp_path, capsys):
    data = synth.make_2022(tmp_path / "d", "ToyTrain", seconds=1.0, n_train=2, n_train_target=1, n_test=1)
    code, _, err = run_cli(cli.train_main, SPEC, ["--mt", "ToyTrain", "--config", str(SMALL),
                                                  *out_sets(tmp_path, data)], capsys)
    one_line_error(code, err, "fewer than one segment", "demo/small.yaml")
    # #37: told from the clips' headers before any feature work, not after the features were cached
    assert not list(tmp_path.rglob("*.npy")), list(tmp_path.rglob("*.npy"))


@pytest.mark.parametrize("args, message", [
    (["--mt", "pump"], "not a dcase2022 machine type"),
    (["--mt", "fan", "--set", "train.epoc=3"], "unknown key train.epoc"),
    (["--mt", "fan", "--set", "feat.mel_bin=96"], "feat.mel_bin (96) must equal net.isize"),
    (["--mt", "fan", "--set", "dataset_dir=/nonexistent/x"], "dataset_dir /nonexistent/x does not exist"),
    (["--mt", "fan", "--config", "/nonexistent.yaml"], "config file not found"),
    (["--mt", "fan", "-c", "x"], "argument -c/--card_id: invalid int value"),
    (["--mt", "fan", "--resume"], "no resumable checkpoint"),
])
def test_bad_settings_one_line_and_nonzero(tmp_path, synth2022, capsys, args, message):
    code, _, err = run_cli(cli.train_main, SPEC, [*out_sets(tmp_path, synth2022), "--config", str(SMALL), *args],
                           capsys)
    one_line_error(code, err, message)
    assert not list(tmp_path.rglob("*.log")) and not list(tmp_path.rglob("*.pth"))


def test_test_without_checkpoint_is_one_line(tmp_path, synth2022, capsys):
    code, _, err = run_cli(cli.test_main, SPEC, ["--mt", "fan", "-d", *out_sets(tmp_path, synth2022)], capsys)
    one_line_error(code, err, "checkpoint not found")
    assert not list(tmp_path.rglob("*.csv"))


def test_debug_flag_shows_the_traceback(tmp_path):
    r = run_script("dcase2022/train.py", "--mt", "ToyTrain", "--set", f"dataset_dir={tmp_path}", "--debug")
    assert r.returncode == 1 and "Traceback" in r.stderr and r.stderr.strip().splitlines()[-1].startswith("error:")


def test_a_run_prints_its_config_files_in_one_line_and_records_every_setting_beside_its_log(
        tmp_path, small_data, capsys):
    args = ["--mt", "ToyTrain", *out_sets(tmp_path, small_data), *[x for s in TINY for x in ("--set", s)]]
    code, stdout, err = run_cli(cli.train_main, SPEC, ["--print-config", *args], capsys)
    assert code == 0, err
    printed = yaml.safe_load(stdout.split("\n", 1)[1])  # the line of merged config files, then the settings
    assert printed["feat"]["fft_num"] == 1024 and printed["train"]["epoch"] == 1
    assert not (tmp_path / "model").exists() and not (tmp_path / "log").exists()  # --print-config runs nothing
    code, stdout, err = run_cli(cli.train_main, SPEC, args, capsys)
    assert code == 0, err[-2000:]
    path = tmp_path / "log" / "ToyTrain" / "train.settings.yaml"
    assert f"settings: {path} (--print-config prints them)" in stdout
    assert yaml.safe_load(path.read_text()) == printed  # what --print-config showed is what ran
    assert stdout.splitlines()[0].startswith("config: ") and "fft_num:" not in stdout  # not the whole tree
