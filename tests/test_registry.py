"""A new dataset is a folder and one registry line: a fictitious DCASE 2099 with its own file names and its own
evaluation rule (mean AUC per unit), kept outside the repository, trains, tests and localizes through the
shared code without a change to it."""

import csv
import re
import sys
import textwrap

import numpy as np
import pytest

from aegan import registry, synth
from aegan.commands import cli
from aegan.core.metrics import metric_names
from aegan.scoring.evaluation import IDS, Rule, _auc
from aegan.store import checkpoint
from conftest import ROOT, TINY, one_line_error, out_sets, run_cli

pytestmark = pytest.mark.slow

DATASETS_PY = '''
"""DCASE 2099 (fictitious): u<UU>_<normal|anomaly>_<NNNN>.wav, eval test u<UU>_<NNNN>.wav, grouped by unit."""
import re
from pathlib import Path

from aegan.data.clips import Clip, DatasetSpec
from aegan.core.errors import AeganError

LABELLED = re.compile(r"^u(\\d{2})_(normal|anomaly)_(\\d{4})\\.wav$")


class DCASE2099(DatasetSpec):
    name = "dcase2099"
    machines = ("pump",)
    group_name = "unit"
    root = Path(__file__).resolve().parent

    def parse(self, path: Path, split: str, source: str) -> Clip:
        m = LABELLED.match(path.name)
        if not m:
            raise AeganError(f"{path}: not a DCASE 2099 name")
        return Clip(path, m.group(1), None, int(m.group(2) == "anomaly"), number=m.group(3))

    def ground_truth_file(self, mt: str, group: str) -> str:
        return f"truth_{mt}_u{group}.csv"


SPEC = DCASE2099()
'''


def per_unit(scores, labels, _domains, groups, max_fpr):
    """The new rule's rows: AUC per unit; its summary: their mean."""
    rows = [{"unit": g, "AUC": _auc(labels[groups == g], scores[groups == g])} for g in sorted(set(groups.tolist()))]
    return rows, {"AUC": float(np.mean([r["AUC"] for r in rows]))}


def system(rows_by_machine):
    return {"official": float(np.mean([r["AUC"] for rows in rows_by_machine for r in rows]))}


UNITS = Rule(group="unit", row_columns=("AUC",), summary_columns=("AUC",), summary_key="AUC",
             summary_label="mean AUC over units", best_key="best_auc", domains=False,
             score_file="{kind}_{mt}_unit{group}.csv", per_group=per_unit, system=system)


@pytest.fixture(autouse=True)
def _fresh_imports(monkeypatch):
    """Each test's dcase2099/ is a new folder: forget the last one's module and sys.path entry afterwards."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield
    for name in ("dcase2099.datasets", "dcase2099"):
        sys.modules.pop(name, None)


def _dataset(tmp_path):
    """The folder (datasets.py and a defaults.yaml of differences) and DCASE 2020 clips renamed to its names."""
    folder = tmp_path / "dcase2099"
    folder.mkdir()
    (folder / "datasets.py").write_text(textwrap.dedent(DATASETS_PY))
    (folder / "defaults.yaml").write_text(f"_extends: {ROOT / 'dcase2020' / 'defaults.yaml'}\n")
    data = synth.make_2020(tmp_path / "data", "pump", seconds=1.2, n_train=6, n_test=3, dev_ids=("00", "02"),
                           eval_ids=("01",), seed=5)
    for p in (data / "dev_data").rglob("*.wav"):
        label, unit, number = re.match(r"(normal|anomaly)_id_(\d{2})_(\d{8})", p.stem).groups()
        p.rename(p.with_name(f"u{unit}_{label}_{number[-4:]}.wav"))
    return folder, data


def test_a_new_dataset_is_a_folder_and_one_registry_entry(tmp_path, capsys, monkeypatch):
    folder, data = _dataset(tmp_path)
    monkeypatch.setitem(registry.REGISTRY, "dcase2099", registry.Dataset("dcase2099", str(folder), "2020", UNITS))
    spec = registry.dataset("dcase2099").spec()
    out = tmp_path / "out"
    sets = [*out_sets(out, data), *(x for s in TINY for x in ("--set", s))]
    code, stdout, err = run_cli(cli.train_main, spec, ["--mt", "pump", *sets], capsys)
    assert code == 0, err[-2000:]
    line = r"evaluation on the labelled dev test set, \w+ \(the best metric\): AUC \d+\.\d\d \*selected"
    assert "mean AUC over units" not in stdout and re.search(line, stdout), stdout
    state = checkpoint.load(out / "model" / "pump.pth")
    assert isinstance(state["best_auc"], float) and state["identity"]["dataset"] == "dcase2099"

    code, stdout, err = run_cli(cli.test_main, spec, ["--mt", "pump", "-d", "--no-plots", *sets], capsys)
    assert code == 0, err[-2000:]
    assert "mean AUC over units: " in stdout
    result = out / "result" / "pump"
    assert next(csv.reader((result / "all_metrics.csv").open())) == ["metric", "AUC_fraction"]
    rows = list(csv.DictReader((result / "per_unit.csv").open()))
    assert {r["unit"] for r in rows} == {"00", "02"} and len(rows) == 2 * len(metric_names())
    assert sorted(p.name for p in (out / "detect").glob("*.csv")) == [
        "anomaly_score_pump_unit00.csv", "anomaly_score_pump_unit02.csv",
        "decision_result_pump_unit00.csv", "decision_result_pump_unit02.csv"]
    summary = list(csv.DictReader((out / "result" / "summary.csv").open()))
    run = [r for r in summary if r["machine"] == "pump"][0]
    assert summary[-1]["AUC"] == run["AUC"]  # one machine type

    code, stdout, err = run_cli(cli.loc_main, spec, ["--mt", "pump", "--limit", "2", *sets], capsys)
    assert code == 0, err[-2000:]
    assert sorted(p.name for p in (out / "loc" / "pump").glob("unit*.png")) == [
        "unit00_true1_0003.png", "unit00_true1_0004.png"]  # the first two clips: u00_anomaly_0003, 0004


def test_a_rule_must_keep_score_and_decision_files_apart():
    """A submission name without {kind} would give a group's decision file the score file's name."""
    with pytest.raises(ValueError, match="must name {kind}"):
        Rule(group="unit", row_columns=("AUC",), summary_columns=("AUC",), summary_key="AUC", summary_label="",
             best_key="best_auc", domains=False, score_file="scores_{mt}_{group}.csv", per_group=per_unit,
             system=system)


def test_an_unregistered_dataset_is_one_line_before_any_work(tmp_path, capsys):
    folder, data = _dataset(tmp_path)
    spec = registry.Dataset("dcase2099", str(folder), "2020", UNITS).spec()
    sets = [*out_sets(tmp_path / "out", data), *(x for s in TINY for x in ("--set", s))]
    for main, args in ((cli.train_main, []), (cli.test_main, ["-d"])):
        code, _, err = run_cli(main, spec, ["--mt", "pump", *args, *sets], capsys)
        one_line_error(code, err, "unknown dataset 'dcase2099'")
    assert not (tmp_path / "out").exists()  # no feature cache, log or model folder was made first


def test_a_rule_that_groups_otherwise_than_the_files_is_refused(tmp_path, capsys, monkeypatch):
    """DCASE 2099 groups by unit; the 2020 rule would write per_id.csv rows beside a clip_scores.csv of units."""
    folder, data = _dataset(tmp_path)
    monkeypatch.setitem(registry.REGISTRY, "dcase2099", registry.Dataset("dcase2099", str(folder), "2020", IDS))
    code, _, err = run_cli(cli.train_main, registry.dataset("dcase2099").spec(),
                           ["--mt", "pump", *out_sets(tmp_path / "out", data)], capsys)
    one_line_error(code, err, "dataset dcase2099 groups its clips by unit, but its evaluation rule writes id rows")


def test_a_folder_that_cannot_be_imported_is_one_line(tmp_path):
    """No datasets.py, or a folder named like an installed package (yaml) that has no datasets module."""
    for name in ("dcase2098", "yaml"):
        (tmp_path / name).mkdir()
        with pytest.raises(registry.AeganError, match=f"dataset x: cannot import {tmp_path / name / 'datasets.py'}"):
            registry.Dataset("x", str(tmp_path / name), "2020", UNITS).spec()


def test_test_main_names_its_default_set():
    with pytest.raises(ValueError, match="'dev' or 'eval', not 'Dev'"):
        cli.test_main(registry.dataset("dcase2020").spec(), ["--mt", "fan"], default="Dev")


def test_a_folder_named_like_another_dataset_is_refused(tmp_path):
    """Python imports a module once by name: a second dcase2020/ elsewhere would silently get the repository's."""
    clash = tmp_path / "dcase2020"
    clash.mkdir()
    (clash / "datasets.py").write_text(textwrap.dedent(DATASETS_PY))
    registry.dataset("dcase2020").spec()  # the repository's, imported first
    with pytest.raises(registry.AeganError, match=f"its folder {clash} has the name of the dataset folder "
                       f"{ROOT / 'dcase2020'}, which is loaded instead"):
        registry.Dataset("dcase2099", str(clash), "2020", UNITS).spec()
