"""DCASE 2022 Task 2 files: their names, sections and source/target domains (evaluated by aegan.evaluation.SECTIONS)."""

from __future__ import annotations

import re
from pathlib import Path

from aegan.core.errors import AeganError, shown
from aegan.data.clips import Clip, DatasetSpec

# section_01_target_test_anomaly_0003_f-n_B.wav (attributes optional, values may hold "." or "_")
LABELLED = re.compile(r"^section_(\d{2})_(source|target)_(train|test)_(normal|anomaly)_(\d{4})(?:_(.*))?\.wav$")
# eval test: section_03_0000.wav
UNLABELLED = re.compile(r"^section_(\d{2})_(\d{4})\.wav$")


class DCASE2022(DatasetSpec):
    name = "dcase2022"
    machines = ("bearing", "fan", "gearbox", "slider", "ToyCar", "ToyTrain", "valve")
    group_name = "section"
    has_domains = True
    root = Path(__file__).resolve().parent

    def parse(self, path: Path, split: str, source: str) -> Clip:
        m = LABELLED.match(path.name)
        if m:
            section, domain, fsplit, label, number, attrs = m.groups()
            if fsplit != split:
                raise AeganError(f"{shown(path)}: a {fsplit} clip in the {split}/ folder")
            if split == "train" and label != "normal":
                raise AeganError(f"{shown(path)}: training clips must be normal")
            return Clip(path, section, domain, int(label == "anomaly"), attrs or "", number=number)
        m = UNLABELLED.match(path.name)
        if m and split == "test":
            return Clip(path, m.group(1), None, None, number=m.group(2))
        raise AeganError(f"{shown(path)}: file name does not follow DCASE 2022 naming "
                         "(section_<SS>_<source|target>_<train|test>_<normal|anomaly>_<NNNN>_<attributes>.wav)")

    def ground_truth_file(self, mt: str, group: str) -> str:
        return f"ground_truth_{mt}_section_{group}_test.csv"


SPEC = DCASE2022()
