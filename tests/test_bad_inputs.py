"""The bad inputs handled, in one list: each is a real run of a command's entry point in this process (train.py's
or aegan.score's), and each must end in one line on stderr that names the file, setting or variable at fault.

A row: (name, how to make it: a function (tmp_path, monkeypatch) -> the command's arguments, the fragments the
line must hold). The scoring rows need a trained model and run with the slow tests."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from aegan import score as score_cli
from aegan.commands import cli
from conftest import TINY, one_line_error, out_sets, run_cli
from dcase2022.datasets import SPEC

BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n" for p, c in zip("abcdefgh", "bcdefghi"))


def _file(name: str, data: bytes | str):
    """--config with a file of these bytes."""
    def make(tmp: Path, mp) -> list[str]:
        path = tmp / name
        path.write_bytes(data if isinstance(data, bytes) else data.encode())
        return ["--config", str(path)]
    return make


def _sets(*items: str):
    return lambda tmp, mp: [x for s in items for x in ("--set", s)]


def _env(**env: str):
    def make(tmp: Path, mp) -> list[str]:
        for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
            mp.delenv(k, raising=False)
        for k, v in env.items():
            mp.setenv(k, v)
        return []
    return make


# what the user gives -> the line that names it; train.py runs with TINY settings on the session's synthetic data
TRAIN_CASES = [
    ("config not UTF-8", _file("latin1.yaml", "feat: {fft_num: 1024}  # r\xe9glage\n".encode("latin-1")),
     ["latin1.yaml", "is not UTF-8 text"]),
    ("YAML alias bomb (billion laughs)", _file("bomb.yaml", BOMB), ["bomb.yaml", "expands to more than 100000"]),
    ("alias bomb as a setting's value", _file("bomb2.yaml", BOMB + "feat: {fft_num: *i}\n"),
     ["bomb2.yaml", "expands to more than"]),
    ("a section given twice", _file("twice.yaml", "train:\n  epoch: 3\nfeat: {workers: 1}\ntrain:\n  lrD: 0.001\n"),
     ["twice.yaml", "key train is given twice (lines 1 and 4)"]),  # PyYAML: 60 epochs, the first section dropped
    ("a base-60 batch size", _file("b60.yaml", "train: {batch_size: 1:04}\n"),
     ["b60.yaml", "train.batch_size must be of type int", "'1:04'"]),  # PyYAML: 64
    ("an empty model_dir", _sets("model_dir="), ["--set model_dir=: model_dir is empty"]),
    ("NaN learning rate", _sets("train.lrD=nan"), ["train.lrD must be a finite number, got nan"]),
    ("infinite lambda_gp", _sets("train.wgan.lambda_gp=.inf"), ["train.wgan.lambda_gp must be a finite number"]),
    ("negative lambda_gp", _sets("train.wgan.lambda_gp=-1"), ["train.wgan.lambda_gp must be in [0, inf)", "-1"]),
    ("negative feat_match_eff", _sets("train.wgan.feat_match_eff=-0.1"), ["train.wgan.feat_match_eff must be in"]),
    ("NaN feature-matching weight", _sets("train.wgan.match_item={mu: .nan}"),
     ["train.wgan.match_item.mu must be a finite number"]),
    ("negative feature-matching weight", _sets("train.wgan.match_item={mu: -1}"),
     ["train.wgan.match_item.mu must be >= 0"]),
    ("NaN beta1", _sets("train.beta1=nan"), ["train.beta1 must be a finite number"]),
    ("beta1 of 1", _sets("train.beta1=1"), ["train.beta1 must be in [0, 1)"]),
    ("NaN pAUC max FPR", _sets("detect.p=nan"), ["detect.p must be a finite number"]),
    ("negative learning rate", _sets("train.lrG=-0.001"), ["train.lrG must be positive"]),
    ("negative feature workers", _sets("feat.workers=-2"), ["feat.workers must be in [0, inf)"]),
    ("negative --seed", lambda tmp, mp: ["--seed", "-1"], ["--seed", "[0, 2**32)"]),
    ("fft_num too small for mel_bin", _sets("feat.fft_num=64"),
     ["feat.fft_num=64 is too small for feat.mel_bin=32 at 16000 Hz", "the smallest power of two that works is 128"]),
    ("RANK not a number", _env(WORLD_SIZE="2", RANK="x"), ["environment variable RANK='x' must be a whole number"]),
    ("WORLD_SIZE not a number", _env(WORLD_SIZE="abc"), ["environment variable WORLD_SIZE='abc'"]),
    ("WORLD_SIZE without RANK", _env(WORLD_SIZE="2"), ["WORLD_SIZE=2 is set but RANK is not"]),
    ("WORLD_SIZE without MASTER_ADDR", _env(WORLD_SIZE="2", RANK="0"), ["WORLD_SIZE=2 is set but MASTER_ADDR"]),
    ("batch not divisible by WORLD_SIZE", _env(WORLD_SIZE="3", RANK="0"),
     ["train.batch_size=16 is not divisible by the 3 processes", "multiple of 3"]),
]


@pytest.mark.parametrize("name, make, needles", TRAIN_CASES, ids=[c[0] for c in TRAIN_CASES])
def test_train_bad_input_is_one_line(name, make, needles, tmp_path, synth2022, monkeypatch, capsys):
    extra = make(tmp_path, monkeypatch)
    sets = [x for s in TINY for x in ("--set", s)]
    code, _, err = run_cli(cli.train_main, SPEC, ["--mt", "fan", *sets, *out_sets(tmp_path / "out", synth2022),
                                                  *extra], capsys)
    one_line_error(code, err, *needles)
    assert not (tmp_path / "out" / "model").exists()  # refused before any output


def _long_wav(tmp: Path) -> Path:
    """A 30-minute recording (58 MB of 16-bit samples), written in blocks."""
    path = tmp / "long.wav"
    with sf.SoundFile(path, "w", 16000, 1, "PCM_16") as f:
        for _ in range(30):
            f.write(np.zeros(16000 * 60, dtype=np.int16))
    return path


def _fifo(tmp: Path) -> Path:
    os.mkfifo(tmp / "pipe.wav")  # opening it to read would wait forever for a writer
    return tmp / "pipe.wav"


SCORE_CASES = [
    ("30-minute recording", _long_wav, ["long.wav is 1800 s long, more than the limit of 600 s", "--max-seconds"]),
    ("FIFO named like a WAV", _fifo, ["pipe.wav is not a regular file"]),
    ("missing file", lambda tmp: tmp / "absent.wav", ["audio file not found", "absent.wav"]),
]


@pytest.mark.slow
@pytest.mark.parametrize("name, make, needle", SCORE_CASES, ids=[c[0] for c in SCORE_CASES])
def test_score_bad_recording_is_one_line_and_the_others_are_scored(name, make, needle, tmp_path, trained2022,
                                                                   synth2022, capsys):
    good = sorted((synth2022 / "dev_data" / "fan" / "test").glob("*.wav"))[0]
    bad = make(tmp_path)
    code, out, err = run_cli(lambda _, argv: score_cli.main(argv), None,
                             ["--model", str(trained2022[0] / "model" / "fan.pth"), str(bad), str(good)], capsys)
    assert "%|" not in err  # a progress bar only on a terminal: none here
    lines = [x for x in err.splitlines() if x.strip()]
    assert code == 1 and len(lines) == 2 and lines[1] == "error: 1 of 2 files could not be scored", err
    one_line_error(code, lines[0], *needle)
    assert f"\n{good},G_z_cos_min," in out  # the good clip is scored


def test_an_output_folder_on_a_read_only_disk_is_one_line(tmp_path, synth2022, read_only, capsys):
    """train.py's log folder (made before any write of ours) on a read-only mount: one line naming it, with what
    to do, never an 'unexpected OSError'."""
    sets = [x for s in [*TINY, f"log_dir={read_only / 'log'}"] for x in ("--set", s)]
    code, _, err = run_cli(cli.train_main, SPEC, ["--mt", "fan", *out_sets(tmp_path / "out", synth2022), *sets],
                           capsys)
    line = one_line_error(code, err, f"{read_only / 'log'}", "Read-only file system (", "choose a folder you can write")
    assert "unexpected" not in line and not (tmp_path / "out" / "model").exists()
