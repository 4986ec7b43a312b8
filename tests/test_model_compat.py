"""A model file of format 2 written by an earlier version of this code (commit 5fb8118, before the redesign: a
DCASE 2022 fan model, `train.py --seed 3` on `synth.make_2022(..., seconds=1.2, n_train=4, n_train_target=1,
n_test=2, eval_sections=(), seed=7)` with the tests' TINY settings and two epochs) loads and scores the same
synthetic clips to the bit, with the same threshold and decisions."""

import json
from pathlib import Path

from aegan import synth
from aegan.core.metrics import original_names
from aegan.detector import Detector
from conftest import ROOT

DATA = ROOT / "tests" / "data"


def test_a_model_file_of_an_earlier_version_scores_to_the_bit(tmp_path):
    expected = json.loads((DATA / "model_v2_fan_scores.json").read_text())
    data = synth.make_2022(tmp_path, "fan", seconds=1.2, n_train=4, n_train_target=1, n_test=2, eval_sections=(),
                           seed=7)
    det = Detector.load(DATA / "model_v2_fan.pth")
    assert (det.metric, det.threshold) == (expected["metric"], expected["threshold"])
    clips = sorted((data / "dev_data" / "fan" / "test").glob("*.wav"))
    results = det.score(clips)
    assert [Path(r.file).name for r in results] == list(expected["clips"])
    for r in results:
        want = expected["clips"][Path(r.file).name]
        assert list(want["scores"]) == original_names()  # the fixture holds the original's metrics; others are new
        scores = {k: repr(v) for k, v in r.scores.items() if k in want["scores"]}
        assert scores == want["scores"] and r.decision == want["decision"]
