"""DCASE 2023-2026 Task 2 (first-shot): the DCASE 2022 file names and evaluation rule with one section per
machine type, machine types read from the dataset folder (the evaluation ones are new every year), and
no machine-specific setting."""

from __future__ import annotations

from pathlib import Path

from aegan.core.errors import AeganError
from aegan.registry import first_shot_year
from dcase2022.datasets import DCASE2022


class FirstShot(DCASE2022):
    name = "firstshot"
    machines = ()
    root = Path(__file__).resolve().parent

    def machine_types(self, cfg: dict) -> tuple[str, ...]:
        first_shot_year(cfg["year"])  # a registered year (aegan/registry.py), or one line listing them
        root = Path(cfg["dataset_dir"])
        if not root.is_dir():
            raise AeganError(f"dataset_dir {root} does not exist (set it with --set dataset_dir=PATH)")
        found = {p.name for part in ("dev_data", "eval_data") if (root / part).is_dir()
                 for p in (root / part).iterdir() if p.is_dir()}
        return tuple(sorted(found, key=str.lower))


SPEC = FirstShot()
