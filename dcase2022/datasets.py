"""DCASE 2022 Task 2: file names, sections and domains, the per-section evaluation with the domain rule."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from aegan.data.clips import Clip, DatasetSpec
from aegan.errors import AeganError, shown
from aegan.evaluation import evaluate_sections, official_sections

# section_01_target_test_anomaly_0003_f-n_B.wav (attributes optional, values may hold "." or "_")
LABELLED = re.compile(r"^section_(\d{2})_(source|target)_(train|test)_(normal|anomaly)_(\d{4})(?:_(.*))?\.wav$")
# eval test: section_03_0000.wav
UNLABELLED = re.compile(r"^section_(\d{2})_(\d{4})\.wav$")


class DCASE2022(DatasetSpec):
    name = "dcase2022"
    machines = ("bearing", "fan", "gearbox", "slider", "ToyCar", "ToyTrain", "valve")
    group_name = "section"
    best_key = "best_hmean"
    summary_key = "hmean"
    summary_label = "hmean of all sections' AUC_source, AUC_target and pAUC"
    summary_columns = ("AUC_source", "AUC_target", "pAUC", "hmean")
    row_columns = ("AUC_source", "AUC_target", "pAUC")
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

    def evaluate(self, clips: list[Clip], scores: np.ndarray, max_fpr: float) -> tuple[list[dict], dict]:
        if any(c.label is None or c.domain is None for c in clips):
            raise AeganError("the test clips carry no labels/domains: evaluation needs the dev test set (-d)")
        labels = np.array([c.label for c in clips])
        domains = np.array([c.domain for c in clips])
        groups = np.array([c.group for c in clips])
        return evaluate_sections(scores, labels, domains, groups, max_fpr)

    def official(self, rows_by_machine: list[list[dict]]) -> dict[str, float]:
        return official_sections(rows_by_machine)

    def loc_name(self, clip: Clip) -> str:
        return f"sec{clip.group}_{clip.domain}_true{clip.label}_{clip.number}.png"

    def ground_truth_file(self, mt: str, group: str) -> str:
        return f"ground_truth_{mt}_section_{group}_test.csv"

    def score_file(self, mt: str, group: str) -> str:
        return f"anomaly_score_{mt}_section_{group}_test.csv"


SPEC = DCASE2022()
