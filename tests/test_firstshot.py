"""DCASE 2023-2026 (first-shot) on the same core: one section per machine type, machine types read from the
dataset folder (an evaluation type the code has never seen, in two channels for 2026), dev test evaluation,
the evaluation set with the evaluators' three ground-truth folders, and the year's official score."""

import csv
import json
import sys

import numpy as np
import pytest
import soundfile as sf
from scipy.stats import hmean

import progress
from aegan import registry, synth
from aegan.commands import cli
from aegan.scoring.evaluation import SECTIONS
from aegan.settings.layers import load_config, output_settings
from aegan.store import checkpoint
from conftest import ROOT, TINY, one_line_error, run_cli
from firstshot.datasets import SPEC


def _sets(year, data, out):
    return [x for s in [f"year={year}", f"dataset_dir={data}", *output_settings(out), *TINY] for x in ("--set", s)]


@pytest.mark.parametrize("year", [2023, 2024, 2025, 2026])
def test_a_year_trains_and_tests_end_to_end(tmp_path, capsys, year):
    data, out = tmp_path / "data", tmp_path / "out"
    synth.make_firstshot(data, "fan", year, "dev", seconds=1.2, n_train=6, n_train_target=2, n_test=2, seed=1)
    synth.make_firstshot(data, "Polisher", year, "eval", seconds=1.2, n_train=6, n_train_target=2, n_test=2, seed=2)
    sets = _sets(year, data, out)
    # a development machine type: dev training clips, evaluation and selection on the labelled dev test set
    code, stdout, err = run_cli(cli.train_main, SPEC, ["--mt", "fan", *sets], capsys)
    assert code == 0, err[-2000:]
    assert "8 training clips (dev)" in stdout and checkpoint.load(out / "model" / "fan.pth")["config"]["year"] == year
    code, stdout, err = run_cli(cli.test_main, SPEC, ["--mt", "fan", "-d", "--no-plots", *sets], capsys)
    assert code == 0, err[-2000:]
    assert (out / "detect" / "anomaly_score_fan_section_00_test.csv").is_file()
    assert (out / "detect" / "decision_result_fan_section_00_test.csv").is_file()
    # an evaluation machine type the code has never seen: eval_data training clips, no labelled dev test set
    code, stdout, err = run_cli(cli.train_main, SPEC, ["--mt", "Polisher", *sets], capsys)
    assert code == 0, err[-2000:]
    assert "8 training clips (eval)" in stdout and "no labelled dev test set" in stdout
    assert checkpoint.load(out / "model" / "Polisher.pth")["metric"] == "D_lof"
    # #37: training named the choice "(detect.metric)" where test.py and the summary said "default"
    assert "its scores use D_lof (default)" in stdout
    # #37: -d on an evaluation machine type named a missing folder without saying why it is missing
    code, _, err = run_cli(cli.test_main, SPEC, ["--mt", "Polisher", "-d", "--no-plots", *sets], capsys)
    one_line_error(code, err, "Polisher has no development test set", "evaluation machine type", "with -e")
    code, stdout, err = run_cli(cli.test_main, SPEC, ["--mt", "Polisher", "--no-plots", *sets, "--ground-truth",
                                                      str(data / "ground_truth_data")], capsys)
    assert code == 0, err[-2000:]
    first = registry.first_shot_year(year).first_eval_number
    scores = (out / "detect" / "anomaly_score_Polisher_section_00_test.csv").read_text().splitlines()
    assert scores[0].startswith(f"section_00_{first:04d}.wav,") and len(scores) == 8
    run = json.loads((out / "result" / "Polisher" / "eval" / "run.json").read_text())
    assert run["metric"] == "D_lof" and run["chosen_by"] == "default" and {r["section"] for r in run["rows"]} == {"00"}
    md = (out / "result" / "summary_eval.md").read_text()  # #37: it said the eval set's metric came from dev labels
    machine = "Polisher (near channel)" if year == 2026 else "Polisher"  # two-channel clips: their channel option
    assert f"| {machine} | D_lof (default) |" in md and "dev test set" not in md and "ground truth never chooses" in md
    # the year's official score over its machine types
    rows = list(csv.DictReader((out / "result" / "summary_eval.csv").open()))
    assert [r["machine"] for r in rows] == ["Polisher", "official"]
    values = [r[k] for r in run["rows"] for k in ("AUC_source", "AUC_target", "pAUC")]  # one type: its sections
    assert rows[1]["hmean"] == f"{100 * hmean(np.maximum(values, np.finfo(float).eps)):.2f}"


def test_machine_types_come_from_the_dataset_folder(tmp_path, capsys):
    data = synth.make_firstshot(tmp_path, "Polisher", 2025, "eval", seconds=1.2, n_train=2, n_train_target=1,
                                n_test=1)
    synth.make_firstshot(tmp_path, "ToyCar", 2025, "dev", seconds=1.2, n_train=2, n_train_target=1, n_test=1)
    cfg = load_config(SPEC.root, "x", None, ["year=2025", f"dataset_dir={data}"]).cfg
    assert SPEC.machine_types(cfg) == ("Polisher", "ToyCar") and cfg["model_dir"].endswith("model/dcase2025")
    assert SPEC.train_parts(cfg, "Polisher") == ["eval"] and SPEC.train_parts(cfg, "ToyCar") == ["dev"]
    code, _, err = run_cli(cli.train_main, SPEC, ["--mt", "Grinder", "--set", "year=2025", "--set",
                                                  f"dataset_dir={data}"], capsys)
    one_line_error(code, err, "'Grinder' is not a firstshot machine type", "Polisher, ToyCar")
    code, _, err = run_cli(cli.train_main, SPEC, ["--mt", "ToyCar", "--set", "year=2021", "--set",
                                                  f"dataset_dir={data}"], capsys)
    one_line_error(code, err, "year must be one of 2023, 2024, 2025, 2026")


def test_no_machine_specific_settings():
    """First-shot tasks forbid tuning per machine type: every name resolves to the same settings."""
    a = load_config(SPEC.root, "fan").cfg
    assert a == load_config(SPEC.root, "ToyCar").cfg == load_config(SPEC.root, "Polisher").cfg
    assert a["net"]["first_norm"]  # the paper's exception for DCASE 2022 bearing, fan, ToyCar is tuning
    assert a["train"]["epoch"] == 60 and a["train"]["wgan"]["feat_match_eff"] == 0.1 and a["detect"]["metric"] is None


@pytest.mark.slow
def test_reproduce_runs_a_whole_year_through_the_scripts(tmp_path):
    """2026: a development type and a new evaluation type in two channels, through firstshot/train.py and
    test.py (as subprocesses) by python -m aegan.reproduce."""
    data = tmp_path / "data"
    synth.make_firstshot(data, "ToyDrone", 2026, "eval", seconds=1.2, n_train=6, n_train_target=2, n_test=2)
    synth.make_firstshot(data, "fan", 2026, "dev", seconds=1.2, n_train=6, n_train_target=2, n_test=2, seed=3)
    r = progress.run([sys.executable, "-m", "aegan.reproduce", "--dataset", "dcase2026", "--out",
                      str(tmp_path / "rep"), *[x for s in [f"dataset_dir={data}", *TINY] for x in ("--set", s)]],
                     cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "ToyDrone seed 0: done" in r.stdout and "fan seed 0: done" in r.stdout
    rows = {row["machine"]: row for row in csv.DictReader((tmp_path / "rep" / "summary.csv").open())}
    assert set(rows) == {"ToyDrone", "fan"}
    for mt, part in (("ToyDrone", "eval"), ("fan", "")):  # each job's own best of 19, from its test.py record
        record = json.loads((tmp_path / "rep" / mt / "seed0" / "result" / mt / part / "run.json").read_text())
        assert rows[mt]["best_mean"] == f"{100 * record['best_value']:.2f}", mt
    log = (tmp_path / "rep" / "ToyDrone" / "seed0" / "run.log").read_text()
    assert "ground truth: labels of 8 evaluation test clips" in log


def test_a_new_year_is_one_registry_entry(tmp_path, capsys, monkeypatch):
    """DCASE 2027 (fictitious: evaluation clips renamed from 0005, three channels) registered as its one line in
    aegan/registry.py would be: synth lays it out, train.py and test.py run it end to end, paths name it."""
    year = registry.FirstShotYear("dcase2027", "firstshot", "firstshot", SECTIONS, 2027, first_eval_number=5,
                                  channels=3)
    monkeypatch.setitem(registry.REGISTRY, year.name, year)
    data, out = tmp_path / "data", tmp_path / "out"
    synth.make_firstshot(data, "Drill", 2027, "eval", seconds=1.2, n_train=6, n_train_target=2, n_test=2, seed=3)
    assert sf.info(str(data / "eval_data" / "Drill" / "test" / "section_00_0005.wav")).channels == 3
    sets = _sets(2027, data, out)
    code, stdout, err = run_cli(cli.train_main, SPEC, ["--mt", "Drill", *sets], capsys)
    assert code == 0, err[-2000:]
    assert checkpoint.load(out / "model" / "Drill.pth")["identity"]["dataset"] == "dcase2027"
    code, stdout, err = run_cli(cli.test_main, SPEC, ["--mt", "Drill", "--no-plots", *sets, "--ground-truth",
                                                      str(data / "ground_truth_data")], capsys)
    assert code == 0, err[-2000:]
    assert (out / "detect" / "anomaly_score_Drill_section_00_test.csv").read_text().startswith("section_00_0005.wav,")
    cfg = load_config(SPEC.root, "Drill", None, ["year=2027"]).cfg
    assert cfg["dataset_dir"].endswith("data/dcase2027") and cfg["model_dir"].endswith("model/dcase2027")
    monkeypatch.delitem(registry.REGISTRY, year.name)
    code, _, err = run_cli(cli.train_main, SPEC, ["--mt", "Drill", *sets], capsys)
    one_line_error(code, err, "year must be one of 2023, 2024, 2025, 2026, got 2027")
