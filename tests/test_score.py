"""Scoring new recordings: `python -m aegan.score` and the Detector API give each clip the score test.py
gives it, a decision from the model's threshold, and name every file that cannot be scored."""

import csv
import shutil
import subprocess
import sys
import warnings

import numpy as np
import pytest
import soundfile as sf
import torch

import progress
from aegan.core.errors import AeganError
from aegan.core.metrics import metric_names
from aegan.detector import Detector
from aegan.store import checkpoint
from conftest import ROOT, one_line_error, write_wav

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def clips(synth2022):
    return sorted((synth2022 / "dev_data" / "fan" / "test").glob("*.wav"))[:6]


def test_detector_scores_a_clip_as_test_py_does(trained2022, clips, synth2022):
    out, sets, _ = trained2022
    det = Detector.load(out / "model" / "fan.pth")
    stored = checkpoint.load(out / "model" / "fan.pth")["thresholds"]["G_z_cos_min@0.9"]
    assert det.metric == "G_z_cos_min" and det.threshold == stored["threshold"]
    results = det.score(clips)
    assert [r.file for r in results] == [str(c) for c in clips] and all(r.error is None for r in results)
    # the same numbers test.py writes for these clips (scored there in one run over the whole test set)
    progress.run([sys.executable, "dcase2022/test.py", "--mt", "fan", "-d", *sets, "--no-plots"], cwd=ROOT,
                 check=True, capture_output=True)
    table = {r["file"]: r for r in csv.DictReader((out / "result" / "fan" / "clip_scores.csv").open())}
    for r in results:
        name = r.file.rsplit("/", 1)[1]
        assert r.score == float(table[name]["G_z_cos_min"])
        assert all(r.scores[m] == float(table[name][m]) for m in r.scores)
        assert r.decision == int(r.score > det.threshold)
    y, sr = sf.read(clips[0], dtype="float32")
    from_array = det.score_array(y, sr)
    assert from_array.scores == results[0].scores  # librosa's loader gives the same samples
    assert Detector.load(out / "model" / "fan.pth", "D_lof").metric == "D_lof"  # a critic metric: fitted on demand
    with pytest.raises(AeganError, match="holds no decision threshold for G_x_2_sum"):
        Detector.load(out / "model" / "fan.pth", "G_x_2_sum")


def test_score_command_writes_rows_and_names_the_files_it_cannot_score(trained2022, clips, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for c in clips[:2]:
        shutil.copy(c, folder / c.name)
    broken = folder / "broken.wav"
    broken.write_bytes(b"RIFF not audio")
    other_rate = write_wav(tmp_path / "rate.wav", 2.5, sr=22050)
    stereo = write_wav(tmp_path / "stereo.wav", 2.5, channels=2)
    out_csv = tmp_path / "scores.csv"
    r = progress.run([sys.executable, "-m", "aegan.score", "--model", str(trained2022[0] / "model" / "fan.pth"),
                      "--all-metrics", "--out", str(out_csv), str(folder), str(other_rate), str(stereo),
                      str(clips[3])], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 1, r.stderr[-2000:]
    errors = [x for x in r.stderr.splitlines() if x.startswith("error:")]
    assert len(errors) == 4 and "broken.wav" in errors[0] and "cannot read audio file" in errors[0]
    assert "rate.wav has sample rate 22050 Hz; the model was trained on 16000 Hz clips" in errors[1]
    # a two-channel recording to a one-channel model: named, not averaged in silence
    assert f"{stereo} has 2 channels, but this dataset's clips have one (feat.channels=1)" in errors[2]
    assert errors[3] == "error: 3 of 6 files could not be scored" and "Traceback" not in r.stderr
    rows = list(csv.DictReader(out_csv.open()))
    assert [row["file"].rsplit("/", 1)[1] for row in rows] == [clips[0].name, clips[1].name, clips[3].name]
    assert list(rows[0])[:4] == ["file", "metric", "score", "decision"] and len(rows[0]) == 4 + len(metric_names())
    assert all(row["decision"] in ("0", "1") and row["score"] == row["G_z_cos_min"] for row in rows)
    assert all(np.isfinite(float(row["score"])) and row["metric"] == "G_z_cos_min" for row in rows)
    assert r.stdout.count("\n") >= 5 and f"wrote {out_csv}" in r.stdout


def test_an_original_checkpoint_without_sidecar_is_one_line(trained2022, tmp_path):
    state = checkpoint.load(trained2022[0] / "model" / "fan.pth")
    torch.save({"netD": state["netD"], "netG": state["netG"], "best_hmean": 0.5}, tmp_path / "fan.pth")
    r = progress.run([sys.executable, "-m", "aegan.score", "--model", str(tmp_path / "fan.pth"), str(tmp_path)],
                     cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 1 and r.stderr.strip().startswith("error: checkpoint") and "no sidecar" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_detector_api_takes_a_path_a_folder_and_an_array(trained2022, clips, tmp_path):
    det = Detector.load(trained2022[0] / "model" / "fan.pth")
    one = det.score(str(clips[0]))  # a string is one file, not one file per character
    assert [r.file for r in one] == [str(clips[0])] and one[0].error is None
    assert [r.file for r in det.score(clips[0])] == [str(clips[0])]  # a Path too
    folder = tmp_path / "in" / "sub"
    folder.mkdir(parents=True)
    for c in clips[:2]:
        shutil.copy(c, folder / c.name)
    assert [r.file for r in det.score(tmp_path / "in")] == [str(folder / c.name) for c in clips[:2]]
    y, sr = sf.read(clips[0], dtype="float32")
    assert det.score_array(y, sr).scores == det.score_array(y.astype(np.float64), sr).scores == one[0].scores
    # a one-channel model: a pair is its Result's error, not averaged
    assert det.score_array(np.stack([y, y]), sr).error.startswith("<array> has 2 channels, but this dataset's "
                                                                   "clips have one (feat")
    assert "ambiguous" in det.score_array(np.zeros((4, 4)), sr).error
    assert "more than the limit of 1 s" in Detector.load(trained2022[0] / "model" / "fan.pth",
                                                         max_seconds=1).score_array(y, sr).error


def test_score_command_output_holds_no_progress_bar(trained2022, clips):
    """stdout and stderr into one stream, as a console shows them: the header, then one CSV row per clip."""
    r = progress.run([sys.executable, "-m", "aegan.score", "--model", str(trained2022[0] / "model" / "fan.pth"),
                      *map(str, clips)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert r.returncode == 0, r.stdout[-2000:]
    lines = r.stdout.splitlines()
    head = lines.index("file,metric,score,decision")
    assert [x.split(" ")[0] for x in lines[:head]] == ["device:", "model:"], r.stdout
    assert [x.split(",")[0] for x in lines[head + 1:]] == [str(c) for c in clips] and "%|" not in r.stdout


def test_flags_are_named_as_typed_and_counts_read_right(trained2022, clips):
    model = str(trained2022[0] / "model" / "fan.pth")
    r = progress.run([sys.executable, "-m", "aegan.score", "--model", model, "--metric", "Bogus", str(clips[0])],
                     cwd=ROOT, capture_output=True, text=True)
    line = one_line_error(r.returncode, r.stderr, f"--metric 'Bogus' is not one of the {len(metric_names())} metrics")
    assert "detect.metric" not in line
    r = progress.run([sys.executable, "-m", "aegan.score", "--model", model, str(clips[0])], cwd=ROOT,
                     capture_output=True, text=True)
    assert r.returncode == 0 and "scoring 1 file\n" in r.stdout, r.stderr[-2000:]
    with pytest.raises(AeganError, match="metric 'Bogus' is not one"):
        Detector.load(model, "Bogus")


def test_a_too_short_waveform_is_our_one_error_with_no_warning_before_it(trained2022):
    """librosa warns "n_fft=1024 is too large for input signal" on a short signal; the length is checked first."""
    det = Detector.load(trained2022[0] / "model" / "fan.pth")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning would fail the call before our error
        r = det.score_array(np.full(600, 0.1, dtype=np.float32), 16000)
    assert "shorter than one segment" in r.error


def test_a_closed_stdout_keeps_the_out_file_and_says_so(trained2022, clips, tmp_path):
    """`aegan.score ... --out s.csv | head -2`: stdout closed by its reader once it has the first line; the run
    ended "error: Broken pipe" and the --out file was never written."""
    table = tmp_path / "s.csv"
    proc = subprocess.Popen([sys.executable, "-m", "aegan.score", "--model", str(trained2022[0] / "model" / "fan.pth"),
                             "--out", str(table), *map(str, clips)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    while not proc.stdout.readline().startswith(b"model: "):  # the line before scoring: then the reader goes away
        assert proc.poll() is None
    proc.stdout.close()
    proc.stdout = None  # nothing more to read from it
    err = progress.communicate(proc)[1].decode()
    one_line_error(proc.returncode, err, "stdout was closed before the rows were printed in full",
                   f"every row is in {table}")
    rows = list(csv.DictReader(table.open()))
    assert [r["file"] for r in rows] == [str(c) for c in clips]
