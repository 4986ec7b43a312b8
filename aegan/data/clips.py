"""What a DCASE dataset folder must say about itself, and the clip listing they share.

dcase2022/datasets.py and dcase2020/datasets.py subclass `DatasetSpec` with their file-name parsing,
grouping (section or machine ID), evaluation protocol and output names; everything else is shared.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..errors import AeganError


@dataclass(frozen=True)
class Clip:
    path: Path
    group: str  # section "01" (DCASE 2022) or machine ID "02" (DCASE 2020)
    domain: str | None  # "source" / "target" (DCASE 2022 with labels), else None
    label: int | None  # 1 anomaly, 0 normal, None when unknown (eval test)
    attrs: str = ""  # the rest of the file name, kept but unused
    source: str = ""  # "dev" or "eval": the part of the dataset it came from
    number: str = ""  # the clip's own number in its file name ("0003")


class DatasetSpec:
    """Base class; subclasses fill the class attributes and the parse/evaluate methods."""

    name: str  # "dcase2022"
    machines: tuple[str, ...]
    group_name: str  # "section" / "id"
    best_key: str  # the original's checkpoint key: "best_hmean" / "best_aver"
    summary_key: str  # the number a model is selected on: "hmean" / "average"
    summary_label: str  # how the console names the summary value
    summary_columns: tuple[str, ...]  # header of all_metrics.csv after "metric"
    row_columns: tuple[str, ...]  # per-group measures
    root: Path  # the dataset folder (holds config.yaml)
    has_domains: bool = False  # clips carry source/target domains (DCASE 2022)
    default_dev: bool = False  # what test.py scores without -d/-e: the eval test set (2022) or dev (2020)

    def parse(self, path: Path, split: str, source: str) -> Clip:
        raise NotImplementedError

    def first_norm(self, mt: str) -> bool:
        return True

    def evaluate(self, clips: list[Clip], scores: np.ndarray, max_fpr: float) -> tuple[list[dict], dict]:
        raise NotImplementedError

    def official(self, rows_by_machine: list[list[dict]]) -> dict[str, float]:
        """The challenge's score of a system from every machine type's per-group rows ("official" and parts)."""
        raise NotImplementedError

    def score_file(self, mt: str, group: str) -> str:
        raise NotImplementedError

    def sort_key(self, path: Path):
        return path.name

    def loc_name(self, clip: Clip) -> str:
        """File name of a clip's localization figure: group, domain, true label, the clip's own number."""
        raise NotImplementedError

    def ground_truth_file(self, mt: str, group: str) -> str:
        """Name of the official ground-truth CSV of one section/ID of the evaluation test set."""
        raise NotImplementedError

    # shared ------------------------------------------------------------------------------------
    def list_clips(self, dataset_dir: str | Path, mt: str, source: str, split: str) -> list[Clip]:
        """Sorted clips of <dataset_dir>/<source>_data/<mt>/<split>/ (non-.wav files are skipped)."""
        folder = Path(dataset_dir) / f"{source}_data" / mt / split
        if not Path(dataset_dir).is_dir():
            raise AeganError(f"dataset_dir {dataset_dir} does not exist (set it with --set dataset_dir=PATH)")
        if not folder.is_dir():
            raise AeganError(f"folder {folder} does not exist: expected <dataset_dir>/{source}_data/{mt}/{split}/")
        entries = list(folder.iterdir())
        paths = sorted((p for p in entries if p.suffix.lower() == ".wav" and p.is_file()), key=self.sort_key)
        if len(entries) > len(paths):
            print(f"{folder}: ignored {len(entries) - len(paths)} entries that are not .wav files")
        if not paths:
            raise AeganError(f"folder {folder} holds no .wav clips")
        return [replace(self.parse(p, split, source), source=source) for p in paths]

    def train_clips(self, cfg: dict, mt: str) -> list[Clip]:
        sources = {"dev": ["dev"], "eval": ["eval"], "deval": ["dev", "eval"]}[cfg["train_set"]]
        return [c for s in sources for c in self.list_clips(cfg["dataset_dir"], mt, s, "train")]

    def test_clips(self, cfg: dict, mt: str, dev: bool, train_clips: list[Clip]) -> list[Clip]:
        """Sorted test clips; a section/ID without training clips of its part (dev/eval) is an error."""
        part = "dev" if dev else "eval"
        clips = self.list_clips(cfg["dataset_dir"], mt, part, "test")
        if cfg["train_set"] in (part, "deval"):
            trained = {c.group for c in train_clips if c.source == part}
            missing = sorted({c.group for c in clips} - trained)
            if missing:
                raise AeganError(f"{self.group_name} {missing[0]} has test clips in "
                                 f"{Path(cfg['dataset_dir']) / f'{part}_data' / mt / 'test'} but no training clip")
        return clips

    def check_machine(self, mt: str) -> None:
        if mt not in self.machines:
            raise AeganError(f"--mt {mt!r} is not a {self.name} machine type; choose one of {', '.join(self.machines)}")


def _read_truth(path: Path, allowed: set[str], clips: list[Clip]) -> dict[str, str]:
    if not path.is_file():
        raise AeganError(f"ground-truth file {path} is missing")
    names = {c.path.name for c in clips}
    out = {}
    with open(path, newline="") as f:
        for i, row in enumerate(csv.reader(f), 1):
            if not row or not "".join(row).strip():
                continue
            if len(row) < 2 or row[1].strip() not in allowed:
                raise AeganError(f"{path}, line {i}: expected 'file name,{'|'.join(sorted(allowed))}', got {row!r}")
            if row[0] not in names:
                raise AeganError(f"{path}, line {i}: {row[0]} is not a test clip of this section/ID")
            out[row[0]] = row[1].strip()
    missing = sorted(names - set(out))
    if missing:
        raise AeganError(f"{path} has no row for {missing[0]}" + (f" and {len(missing) - 1} more" if len(missing) > 1
                                                                  else ""))
    return out


def attach_ground_truth(spec: DatasetSpec, mt: str, clips: list[Clip], truth_dir: str | Path,
                        domain_dir: str | Path | None = None) -> list[Clip]:
    """Labels (and DCASE 2022 domains) of evaluation test clips from the officially released CSVs."""
    truth_dir = Path(truth_dir)
    if spec.has_domains and domain_dir is None:
        domain_dir = truth_dir.parent / "ground_truth_domain"
    out = []
    for g in sorted({c.group for c in clips}):
        members = [c for c in clips if c.group == g]
        name = spec.ground_truth_file(mt, g)
        labels = _read_truth(truth_dir / name, {"0", "1"}, members)
        domains = _read_truth(Path(domain_dir) / name, {"0", "1"}, members) if spec.has_domains else {}
        for c in members:
            dom = {"0": "source", "1": "target"}[domains[c.path.name]] if spec.has_domains else c.domain
            out.append(replace(c, label=int(labels[c.path.name]), domain=dom))
    order = {c.path: i for i, c in enumerate(clips)}
    return sorted(out, key=lambda c: order[c.path])
