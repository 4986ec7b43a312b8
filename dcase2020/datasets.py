"""DCASE 2020 Task 2: file names, grouping by machine ID, per-ID AUC / pAUC and their average."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from aegan.data.clips import Clip, DatasetSpec
from aegan.errors import AeganError, shown
from aegan.evaluation import evaluate_ids, official_ids

# train: normal_id_00_00000000.wav; dev test: anomaly_id_02_00000012.wav; eval test: id_05_00000000.wav
LABELLED = re.compile(r"^(normal|anomaly)_id_(\d{2})_(\d{8})\.wav$")
UNLABELLED = re.compile(r"^id_(\d{2})_(\d{8})\.wav$")


class DCASE2020(DatasetSpec):
    name = "dcase2020"
    machines = ("fan", "pump", "slider", "valve", "ToyCar", "ToyConveyor")
    group_name = "id"
    best_key = "best_aver"
    summary_key = "average"
    summary_label = "average of the mean AUC and the mean pAUC over IDs"
    summary_columns = ("AUC", "pAUC", "average")
    row_columns = ("AUC", "pAUC")
    default_dev = True  # test.py evaluates the dev test set unless -e is given
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

    def evaluate(self, clips: list[Clip], scores: np.ndarray, max_fpr: float) -> tuple[list[dict], dict]:
        if any(c.label is None for c in clips):
            raise AeganError("the test clips carry no labels: evaluation needs the dev test set")
        return evaluate_ids(scores, np.array([c.label for c in clips]), np.array([c.group for c in clips]), max_fpr)

    def official(self, rows_by_machine: list[list[dict]]) -> dict[str, float]:
        return official_ids(rows_by_machine)

    def loc_name(self, clip: Clip) -> str:
        return f"id{clip.group}_true{clip.label}_{clip.number}.png"

    def ground_truth_file(self, mt: str, group: str) -> str:
        return f"ground_truth_{mt}_id_{group}_test.csv"

    def score_file(self, mt: str, group: str) -> str:
        return f"anomaly_score_{mt}_id_{group}.csv"


SPEC = DCASE2020()
