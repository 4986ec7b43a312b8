"""DCASE 2026: two-channel clips (near and far microphone) on the synthetic twin, each feat.channel option through
train.py, test.py -d, loc.py and aegan.score; the evaluation submission files; the model's option travels with it."""

import csv
from typing import get_args

import numpy as np
import pytest
import soundfile as sf

from aegan import registry, score, synth
from aegan.commands import cli
from aegan.detector import Detector
from aegan.settings.layers import output_settings
from aegan.settings.schema import Feat
from aegan.store import checkpoint
from conftest import TINY, one_line_error, run_cli, write_wav
from firstshot.datasets import SPEC

OPTIONS = get_args(Feat.model_fields["channel"].annotation)
SMALL = {"seconds": 1.2, "n_train": 6, "n_train_target": 2, "n_test": 2}


@pytest.fixture(scope="module")
def data2026(tmp_path_factory):
    data = tmp_path_factory.mktemp("data2026")
    synth.make_firstshot(data, "fan", 2026, "dev", seed=1, **SMALL)
    synth.make_firstshot(data, "Polisher", 2026, "eval", seed=2, **SMALL)
    return data


def _sets(data, out, *extra):
    return [x for s in ["year=2026", f"dataset_dir={data}", *output_settings(out), *TINY, *extra]
            for x in ("--set", s)]


def _score(argv, capsys):
    return run_cli(lambda _spec, a: score.main(a), None, argv, capsys)


def test_the_synthetic_twin_has_two_channels_in_every_clip_near_louder_and_same_bytes_per_seed(data2026, tmp_path):
    clips = sorted(data2026.rglob("*.wav"))
    assert clips and all(sf.info(str(c)).channels == registry.dataset("dcase2026").channels == 2 for c in clips)
    y, _ = sf.read(clips[0])
    near, far = y[:, 0], y[:, 1]
    assert not np.array_equal(near, far) and np.corrcoef(near, far)[0, 1] < 0.9  # the far one: the room's noise
    again = tmp_path / "again"
    synth.make_firstshot(again, "fan", 2026, "dev", seed=1, **SMALL)
    for c in sorted((again / "dev_data").rglob("*.wav")):
        assert c.read_bytes() == (data2026 / c.relative_to(again)).read_bytes()


def test_each_channel_option_runs_end_to_end_and_travels_with_the_model(data2026, tmp_path, capsys):
    features = {}
    for option in OPTIONS:
        out = tmp_path / option
        sets = _sets(data2026, out, f"feat.channel={option}")
        code, stdout, err = run_cli(cli.train_main, SPEC, ["--mt", "fan", *sets], capsys)
        assert code == 0, err[-2000:]
        assert f"(feat.channel={option};" in stdout
        assert checkpoint.load(out / "model" / "fan.pth")["config"]["feat"]["channel"] == option
        features[option] = next(x for x in stdout.splitlines() if "feature max" in x).split("feature max")[1]
        # test.py and loc.py without the option: the model's own is used
        plain = _sets(data2026, out)
        code, stdout, err = run_cli(cli.test_main, SPEC, ["--mt", "fan", "-d", *plain], capsys)
        assert code == 0, err[-2000:]
        assert "hmean of all sections' AUC_source, AUC_target and pAUC" in stdout
        label = "mean of the channels" if option == "mean" else ("near - 1 x far channel (mel power)"
                                                                 if option == "subtract" else f"{option} channel")
        assert f"| fan ({label}) |" in (out / "result" / "summary.md").read_text()
        assert list(csv.DictReader((out / "result" / "summary.csv").open()))[0]["channel"] == label
        code, stdout, err = run_cli(cli.loc_main, SPEC, ["--mt", "fan", "--limit", "2", "--top", "1", *plain],
                                    capsys)
        assert code == 0, err[-2000:]
        clip = sorted((data2026 / "dev_data" / "fan" / "test").glob("*.wav"))[0]
        code, stdout, err = _score(["--model", str(out / "model" / "fan.pth"), str(clip)], capsys)
        assert code == 0 and f"clips read as feat.channel={option}" in stdout, err[-2000:]
        scored = list(csv.DictReader(stdout.splitlines()[-1:], fieldnames=["file", "metric", "score", "decision"]))
        assert scored[0]["file"] == str(clip) and np.isfinite(float(scored[0]["score"]))
    assert len(set(features.values())) == len(OPTIONS), features  # each option gives other features


@pytest.fixture(scope="module")
def near_model(data2026, tmp_path_factory):
    """The default option (the registry's for 2026) on an evaluation machine type, trained once."""
    out = tmp_path_factory.mktemp("near")
    code = 0
    try:
        cli.train_main(SPEC, ["--mt", "Polisher", *_sets(data2026, out)])
    except SystemExit as e:
        code = e.code
    assert code in (0, None)
    return out


def test_the_default_reads_the_near_channel_and_writes_the_submission_files(data2026, near_model, capsys):
    assert checkpoint.load(near_model / "model" / "Polisher.pth")["config"]["feat"]["channel"] == "near"
    code, stdout, err = run_cli(cli.test_main, SPEC, ["--mt", "Polisher", "--no-plots", *_sets(data2026, near_model),
                                                      "--ground-truth", str(data2026 / "ground_truth_data")], capsys)
    assert code == 0, err[-2000:]
    assert "the model reads channel 0 (the near microphone) (feat.channel=near" in stdout
    rows = (near_model / "detect" / "anomaly_score_Polisher_section_00_test.csv").read_text().splitlines()
    assert len(rows) == 4 * SMALL["n_test"] and rows[0].startswith("section_00_0001.wav,")
    assert (near_model / "detect" / "decision_result_Polisher_section_00_test.csv").is_file()
    assert "near channel" in (near_model / "result" / "summary_eval.md").read_text()


def test_a_model_asked_to_read_clips_another_way_is_one_line(data2026, near_model, capsys, tmp_path):
    sets = _sets(data2026, near_model)
    code, _, err = run_cli(cli.test_main, SPEC, ["--mt", "Polisher", "--no-plots", *sets, "--set",
                                                 "feat.channel=mean"], capsys)
    one_line_error(code, err, "feat.channel='mean' was set", "was trained with feat.channel='near'")
    model = str(near_model / "model" / "Polisher.pth")
    clip = sorted((data2026 / "eval_data" / "Polisher" / "test").glob("*.wav"))[0]
    code, _, err = _score(["--model", model, "--channel", "mean", str(clip)], capsys)
    one_line_error(code, err, "was trained with feat.channel=near", "not with channel mean")
    mono = write_wav(tmp_path / "mono.wav", 1.2)
    code, _, err = _score(["--model", model, str(mono)], capsys)
    assert code == 1 and f"{mono} has one channel, but feat.channel=near reads the near and far" in err


def test_the_api_reads_arrays_as_the_model_reads_files(data2026, near_model):
    det = Detector.load(near_model / "model" / "Polisher.pth")
    clip = sorted((data2026 / "eval_data" / "Polisher" / "test").glob("*.wav"))[0]
    y, sr = sf.read(clip, dtype="float32")  # (samples, 2)
    want = det.score(clip)[0].scores
    assert det.score_array(y, sr).scores == det.score_array(y.T, sr).scores == want
    # the near channel alone is not a two-channel clip: the Result's error, as score() gives it
    assert det.score_array(y[:, 0], sr).error.startswith("<array> has one channel, but feat.channel=near")
