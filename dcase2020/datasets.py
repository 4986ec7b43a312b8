"""DCASE 2020 Task 2 files: their names and machine IDs (evaluated by aegan.evaluation.IDS)."""

from __future__ import annotations

import re
from pathlib import Path

from aegan.core.errors import AeganError, shown
from aegan.data.clips import Clip, DatasetSpec

# train: normal_id_00_00000000.wav; dev test: anomaly_id_02_00000012.wav; eval test: id_05_00000000.wav
LABELLED = re.compile(r"^(normal|anomaly)_id_(\d{2})_(\d{8})\.wav$")
UNLABELLED = re.compile(r"^id_(\d{2})_(\d{8})\.wav$")


class DCASE2020(DatasetSpec):
    name = "dcase2020"
    machines = ("fan", "pump", "slider", "valve", "ToyCar", "ToyConveyor")
    group_name = "id"
    root = Path(__file__).resolve().parent

    def parse(self, path: Path, split: str, source: str) -> Clip:
        m = LABELLED.match(path.name)
        if m:
            label, mid, number = m.groups()
            if split == "train" and label != "normal":
                raise AeganError(f"{shown(path)}: training clips must be normal")
            return Clip(path, mid, None, int(label == "anomaly"), number=number)
        m = UNLABELLED.match(path.name)
        if m and split == "test":
            return Clip(path, m.group(1), None, None, number=m.group(2))
        raise AeganError(f"{shown(path)}: file name does not follow DCASE 2020 naming "
                         "(normal_id_<II>_<NNNNNNNN>.wav, anomaly_id_<II>_<NNNNNNNN>.wav, id_<II>_<NNNNNNNN>.wav)")

    def ground_truth_file(self, mt: str, group: str) -> str:
        return f"ground_truth_{mt}_id_{group}_test.csv"


SPEC = DCASE2020()
