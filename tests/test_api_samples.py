"""The Python API reads samples as the command reads files: integer PCM arrays (as scipy.io.wavfile returns them)
scaled as soundfile scales them, so that the API and `python -m aegan.score` give the same scores for one recording
in every sample type; what cannot be samples is refused by name; a recording's problem is its Result's error in
score_array as in score() (README, "Scoring new recordings")."""

import csv
import sys
import warnings

import numpy as np
import pytest
import soundfile as sf
from scipy.io import wavfile

import progress
from aegan import synth
from aegan.detector import Detector
from conftest import ROOT

MODEL = ROOT / "tests" / "data" / "model_v2_fan.pth"  # a small real model (tests/test_model_compat.py)
# soundfile's subtypes and the array type scipy.io.wavfile reads each as
SUBTYPES = {"PCM_16": np.int16, "PCM_32": np.int32, "PCM_U8": np.uint8, "FLOAT": np.float32}


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    data = synth.make_2022(tmp_path_factory.mktemp("api"), "fan", seconds=1.2, n_train=1, n_train_target=1,
                           n_test=2, eval_sections=(), seed=11)
    return sorted((data / "dev_data" / "fan" / "test").glob("*anomaly*.wav"))[0]


@pytest.fixture(scope="module")
def det():
    return Detector.load(MODEL)


def test_the_command_and_the_api_score_every_sample_type_alike(recording, det, tmp_path):
    y, sr = sf.read(recording, dtype="float64")
    files = {}
    for subtype in SUBTYPES:
        files[subtype] = tmp_path / f"clip_{subtype}.wav"
        sf.write(files[subtype], y * 0.9, sr, subtype=subtype)
    r = progress.run([sys.executable, "-m", "aegan.score", "--model", str(MODEL), "--all-metrics",
                      *map(str, files.values())], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = {row["file"]: row for row in csv.DictReader(r.stdout[r.stdout.index("file,"):].splitlines())}
    levels = set()
    for subtype, path in files.items():
        with warnings.catch_warnings():  # scipy names the fact chunk of a float WAV it skips
            warnings.simplefilter("ignore", wavfile.WavFileWarning)
            rate, samples = wavfile.read(path)
        assert samples.dtype == SUBTYPES[subtype] and rate == sr
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # samples within [-1, 1]: no warning
            got = det.score_array(samples, rate, str(path))
        assert got.error is None, got.error
        row = rows[str(path)]
        assert {m: repr(v) for m, v in got.scores.items()} == {m: row[m] for m in got.scores}, subtype
        assert (repr(got.score), got.decision) == (row["score"], int(row["decision"]))
        levels.add(got.scores["G_x_2_sum"])
    assert len(levels) > 1  # the four encodings differ (8 bits quantize), each scored as its own file


def test_samples_that_cannot_be_a_recording_are_refused_by_type(det, recording):
    y, sr = sf.read(recording, dtype="float32")
    for bad in (y.astype(np.int64), y.astype(np.complex64), y > 0):
        r = det.score_array(bad, sr, "x")
        assert r.error.startswith(f"x has samples of type {bad.dtype}: ") and r.decision is None
    y[5] = np.nan
    assert det.score_array(y, sr, "x").error == "x holds NaN or infinite samples"


def test_float_samples_past_one_are_scored_and_named(det, recording):
    y, sr = sf.read(recording, dtype="int16")
    with pytest.warns(UserWarning, match=r"x: float samples reach \d{4,5}, outside \[-1, 1\].*divide int16"):
        r = det.score_array(y.astype(np.float32), sr, "x")
    assert r.error is None and r.scores != det.score_array(y, sr).scores


def test_a_recordings_problem_is_its_results_error_in_both_calls(det, recording, tmp_path):
    """One convention: score() and score_array() return a recording's problem in Result.error, never raise it."""
    y, _ = sf.read(recording, dtype="float32")
    other = tmp_path / "other_rate.wav"
    sf.write(other, y, 8000)
    from_file = det.score(other)[0]
    from_array = det.score_array(y, 8000, str(other))
    for r in (from_file, from_array):
        assert "has sample rate 8000 Hz; the model was trained on 16000 Hz" in r.error
        assert r.decision is None and np.isnan(r.score) and r.scores == {}
    assert "shorter than one segment" in det.score_array(y[:600], 16000).error
    assert "ambiguous" in det.score_array(np.zeros((4, 4)), 16000).error
    for rate in (0, 16000.5, "16000"):  # 0 divided by zero; a string or fraction was cut to an int in silence
        assert det.score_array(y, rate, "x").error == f"x: sample_rate {rate!r} is not a positive whole number of Hz"
    assert det.score_array(y, np.float64(16000)).scores == det.score_array(y, 16000).scores  # a whole float is one
