"""Synthetic data in the official layouts and names: deterministic, with the evaluation sets' ground truth."""

from aegan import synth
from dcase2020.datasets import SPEC as SPEC20
from dcase2022.datasets import SPEC as SPEC22


def test_2022_layout_is_official_and_deterministic(tmp_path):
    a = synth.make_2022(tmp_path / "a", "valve", seconds=1.0, n_train=3, n_train_target=1, n_test=2, seed=5)
    b = synth.make_2022(tmp_path / "b", "valve", seconds=1.0, n_train=3, n_train_target=1, n_test=2, seed=5)
    files = sorted(p.relative_to(a) for p in a.rglob("*.wav"))
    assert files == sorted(p.relative_to(b) for p in b.rglob("*.wav"))
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    cfg = {"dataset_dir": str(a), "train_set": "deval"}
    train = SPEC22.train_clips(cfg, "valve")
    assert len(train) == 2 * 3 * 4 and {c.group for c in train} == {"00", "01", "02", "03", "04", "05"}
    assert {c.attrs for c in train if c.group == "02"} == {"v1pat_00_v2pat_01", "v1pat_02"}  # the valve quirk
    dev = SPEC22.test_clips(cfg, "valve", True, train)
    assert len(dev) == 3 * 8 and sum(c.label for c in dev) == 12
    assert {(c.domain, c.label) for c in dev} == {("source", 0), ("source", 1), ("target", 0), ("target", 1)}
    ev = SPEC22.test_clips(cfg, "valve", False, train)
    assert len(ev) == 24 and all(c.label is None for c in ev)
    truth = (a / "ground_truth_data" / "ground_truth_valve_section_03_test.csv").read_text().split()
    assert len(truth) == 8 and truth[0].startswith("section_03_0000.wav,")


def test_2020_layout_has_ids_and_eval_truth(tmp_path):
    d = synth.make_2020(tmp_path, "pump", seconds=0.5, n_train=2, n_test=1, seed=1)
    cfg = {"dataset_dir": str(d), "train_set": "deval"}
    train = SPEC20.train_clips(cfg, "pump")
    assert [c.group for c in train] == ["00"] * 2 + ["02"] * 2 + ["04"] * 2 + ["01"] * 2 + ["03"] * 2 + ["05"] * 2
    ev = SPEC20.test_clips(cfg, "pump", False, train)
    assert {c.group for c in ev} == {"01", "03", "05"} and (d / "ground_truth_data" / "ground_truth_pump_id_01_test.csv"
                                                            ).read_text().startswith("id_01_00000000.wav,")
