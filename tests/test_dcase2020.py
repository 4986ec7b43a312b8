"""DCASE 2020 Task 2 on the shared core: file names, the paper settings, the real scripts end to end on synthetic
audio, and on the real DCASE 2020 clips of ../shared/real/."""

import csv

import pytest

from aegan.core.errors import AeganError
from aegan.core.metrics import metric_names, selecting_names
from aegan.data.audio import logmel
from aegan.data.segments import num_segments
from aegan.settings.layers import load_config
from aegan.store import checkpoint
from conftest import REAL, ROOT, needs_real, run_script, small_sets
from dcase2020.datasets import SPEC

D20 = ROOT / "dcase2020"


@pytest.mark.parametrize("name, split, expect", [
    ("normal_id_00_00000000.wav", "train", ("00", 0)),
    ("anomaly_id_02_00000012.wav", "test", ("02", 1)),
    ("normal_id_06_00000123.wav", "test", ("06", 0)),
    ("id_05_00000000.wav", "test", ("05", None)),
])
def test_file_names_parse(tmp_path, name, split, expect):
    c = SPEC.parse(tmp_path / name, split, "dev")
    assert (c.group, c.label) == expect and c.domain is None and c.number == name[-12:-4]


@pytest.mark.parametrize("name, split, message", [
    ("anomaly_id_00_00000000.wav", "train", "training clips must be normal"),
    ("id_05_00000000.wav", "train", "does not follow DCASE 2020 naming"),
    ("normal_id_0_00000000.wav", "test", "does not follow"),
    ("section_00_source_test_normal_0000_a.wav", "test", "does not follow"),
])
def test_bad_file_names_are_named(tmp_path, name, split, message):
    with pytest.raises(AeganError, match=message):
        SPEC.parse(tmp_path / name, split, "dev")


@pytest.mark.parametrize("mt, train_set, g_norm, fme, match, metric", [
    ("fan", "dev", "ln", 1.0, {"mu": 1}, "D_lof"),  # dev: the original's fan_cfg.yaml (an older table said deval)
    ("pump", "deval", "ln", 1.0, {"mu": 1, "sigma": 1}, "D_lof"),
    ("slider", "deval", "bn", 1.0, {"mu": 1}, "G_x_2_sum"),  # the paper writes G_x_2_mean: same ranking
    ("ToyCar", "deval", "ln", 1.0, {"mu": 1, "sigma": 1}, "D_knn"),
    ("ToyConveyor", "deval", "ln", 0.05, {"mu": 1}, "G_z_2_min"),
    ("valve", "deval", "bn", 0.05, {"mu": 1}, "G_z_cos_sum"),
])
def test_pretrain_settings_match_the_paper_table(mt, train_set, g_norm, fme, match, metric):
    cfg = load_config(D20, mt).cfg
    assert cfg["train_set"] == train_set and cfg["train"]["epoch"] == 50
    assert cfg["net"]["normalize"]["g"] == g_norm and cfg["net"]["first_norm"]
    assert cfg["train"]["wgan"]["feat_match_eff"] == fme and cfg["train"]["wgan"]["match_item"] == match
    assert cfg["detect"]["metric"] == metric


def test_defaults():
    cfg = load_config(D20, "fan", None, ["train_set=dev"]).cfg
    assert cfg["train"]["wgan"]["feat_match_eff"] == 1.0 and cfg["train"]["epoch"] == 50
    assert cfg["result_dir"].endswith("result/dcase2020") and cfg["model_dir"].endswith("model/dcase2020")


@pytest.mark.slow
def test_train_then_test_end_to_end(tmp_path, synth2020):
    sets = small_sets(tmp_path, synth2020)
    r = run_script("train.py", "--mt", "valve", "-c", "0", "--seed", "42", *sets, "--set", "train.epoch=3", cwd=D20)
    assert r.returncode == 0, r.stderr[-2000:]
    state = checkpoint.load(tmp_path / "model" / "valve.pth")
    assert "best_aver" in state and state["config"]["net"]["normalize"]["g"] == "bn"

    r = run_script("dcase2020/test.py", "--mt", "valve", "-c", "0", *sets)  # no -d: dev evaluation for 2020
    assert r.returncode == 0, r.stderr[-2000:]
    assert "G_z_cos_sum  (metric of the score files: detect.metric)" in r.stdout
    rows = list(csv.reader((tmp_path / "result" / "valve" / "all_metrics.csv").open()))
    assert rows[0] == ["metric", "AUC_fraction", "pAUC_fraction", "average_fraction"]
    assert len(rows) == 1 + len(metric_names())
    assert [r[0] for r in rows[1:6]] == ["D_maha", "D_knn", "D_lof", "D_cos", "G_x_2_sum"]
    best = max(float(r[3]) for r in rows[1:] if r[0] in selecting_names())  # what training chooses from
    assert best > 0.8 and best == pytest.approx(state["best_aver"], abs=1e-5)
    per = list(csv.reader((tmp_path / "result" / "valve" / "per_id.csv").open()))
    assert per[0] == ["metric", "id", "AUC_fraction", "pAUC_fraction"] and {r[1] for r in per[1:]} == {"00", "02", "04"}
    assert (tmp_path / "result" / "valve" / "roc_G_z_cos_sum.png").is_file()
    summary = list(csv.DictReader((tmp_path / "result" / "summary.csv").open()))
    assert [x["machine"] for x in summary] == ["valve", "official"] and summary[0]["paper"] == "77.60"
    for mid in ("00", "02", "04"):
        lines = (tmp_path / "detect" / f"anomaly_score_valve_id_{mid}.csv").read_text().splitlines()
        assert len(lines) == 12 and lines[0].split(",")[0].endswith(".wav")

    r = run_script("dcase2020/test.py", "--mt", "valve", "-d", "-c", "0", *sets, "--no-plots")
    assert r.returncode == 0 and "(metric of the score files: detect.metric)" in r.stdout
    dec = (tmp_path / "detect" / "decision_result_valve_id_00.csv").read_text().splitlines()
    assert len(dec) == 12 and {x.split(",")[1] for x in dec} <= {"0", "1"}
    dm = list(csv.reader((tmp_path / "result" / "valve" / "decision_metrics.csv").open()))
    assert dm[0] == ["id", "domain", "precision_fraction", "recall_fraction", "F1_fraction"]
    assert [r[0] for r in dm[1:]] == ["00", "02", "04", "hmean"]
    r = run_script("dcase2020/test.py", "--mt", "valve", "-e", "-c", "0", *sets, "--no-plots")
    assert r.returncode == 0, r.stderr[-2000:]
    lines = (tmp_path / "detect" / "anomaly_score_valve_id_01.csv").read_text().splitlines()
    assert len(lines) == 12 and lines[0].startswith("id_01_00000000.wav,")
    assert (tmp_path / "detect" / "decision_result_valve_id_05.csv").exists()

    r = run_script("dcase2020/test.py", "--mt", "valve", *sets, "--ground-truth", str(synth2020 / "ground_truth_data"),
                   "--no-plots")
    assert r.returncode == 0, r.stderr[-2000:]
    rows = list(csv.reader((tmp_path / "result" / "valve" / "eval" / "all_metrics.csv").open()))
    assert rows[0] == ["metric", "AUC_fraction", "pAUC_fraction", "average_fraction"]
    assert len(rows) == 1 + len(metric_names())
    assert "      05  " in r.stdout

    r = run_script("dcase2020/loc.py", "--mt", "valve", *sets, "--limit", "2")
    assert r.returncode == 0, r.stderr[-2000:]
    names = sorted(p.name for p in (tmp_path / "loc" / "valve").iterdir())
    assert names == ["id00_true1_00000006.png", "id00_true1_00000007.png", "summary_top2.png"]


@needs_real
def test_real_clip_names_ids_and_durations():
    for mt in SPEC.machines:
        for label in ("normal", "anomaly"):
            for wav in sorted((REAL / mt / label).glob("*.wav")):
                c = SPEC.parse(wav, "test", "dev")
                assert c.label == (label == "anomaly") and c.group == wav.name.split("_")[2]
    spec, sr = logmel(sorted((REAL / "ToyCar" / "normal").glob("*.wav"))[0])
    assert sr == 16000 and spec.shape == (128, 344) and num_segments(spec.shape[1], 128, 1) == 217
    spec, _ = logmel(sorted((REAL / "valve" / "anomaly").glob("*.wav"))[0])
    assert spec.shape == (128, 313) and num_segments(spec.shape[1], 128, 1) == 186
