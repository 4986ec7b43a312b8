"""DCASE 2022 Task 2: its file names, sections and domains."""

import pytest

from aegan.core.errors import AeganError
from dcase2022.datasets import SPEC


@pytest.mark.parametrize("name, split, expect", [
    ("section_01_target_test_anomaly_0003_f-n_B.wav", "test", ("01", "target", 1, "f-n_B", "0003")),
    ("section_00_source_train_normal_0000_vel_6_loc_A.wav", "train", ("00", "source", 0, "vel_6_loc_A", "0000")),
    ("section_02_source_test_normal_0049_volt_1.0_wt_1.wav", "test", ("02", "source", 0, "volt_1.0_wt_1", "0049")),
    ("section_00_source_train_normal_0001_pat_00_panel_s1_v1pat_02_v2pat_00.wav", "train",
     ("00", "source", 0, "pat_00_panel_s1_v1pat_02_v2pat_00", "0001")),
    ("section_03_0007.wav", "test", ("03", None, None, "", "0007")),
    ("section_04_source_train_normal_0000.wav", "train", ("04", "source", 0, "", "0000")),
])
def test_file_names_parse(tmp_path, name, split, expect):
    c = SPEC.parse(tmp_path / name, split, "dev")
    assert (c.group, c.domain, c.label, c.attrs, c.number) == expect


@pytest.mark.parametrize("name, split, message", [
    ("normal_id_00_00000000.wav", "train", "does not follow DCASE 2022 naming"),
    ("section_00_source_test_normal_0000_a.wav", "train", "a test clip in the train/ folder"),
    ("section_00_source_train_anomaly_0000_a.wav", "train", "training clips must be normal"),
    ("section_03_0007.wav", "train", "does not follow"),
])
def test_bad_file_names_are_named(tmp_path, name, split, message):
    with pytest.raises(AeganError, match=message):
        SPEC.parse(tmp_path / name, split, "dev")
