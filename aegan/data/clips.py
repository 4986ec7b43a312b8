"""What a DCASE dataset says about its files, and the clip listing every dataset shares.

dcase2022/datasets.py and dcase2020/datasets.py subclass `DatasetSpec` with their file-name parsing, grouping
(section or machine ID) and ground-truth file names; everything else is shared. What is done with the clips
lives where it is used: the evaluation rule and the submission files' names in aegan/evaluation.py (a dataset
names its rule in aegan/registry.py), the localization figures' names in aegan/localization.py.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, replace
from pathlib import Path

from aegan.core.errors import AeganError, shown
from aegan.core.files import check_regular
from aegan.core.text import plural
from aegan.data.identity import Identity, identity_of


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
    """Base class; subclasses fill the class attributes, `parse` and `ground_truth_file`."""

    name: str  # "dcase2022"
    machines: tuple[str, ...]  # fixed lists; empty where the dataset folder says (machine_types)
    group_name: str  # what the file names group clips by: "section" / "id"
    root: Path  # the dataset folder (holds config.yaml)
    has_domains: bool = False  # clips carry source/target domains (DCASE 2022)

    def parse(self, path: Path, split: str, source: str) -> Clip:
        raise NotImplementedError

    def sort_key(self, path: Path):
        return path.name

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
        paths = sorted((p for p in entries if p.suffix.lower() == ".wav"), key=self.sort_key)
        for p in paths:  # a clip that cannot be read is named, never skipped: the model would learn from fewer
            check_regular(p)
        others = sorted(p.name for p in entries if p.suffix.lower() != ".wav")
        if others:
            names = ", ".join(map(shown, others[:3])) + (" ..." if len(others) > 3 else "")
            print(f"{folder}: ignored {plural(len(others), 'entry', 'entries')} not named .wav: {names}")
        if not paths:
            raise AeganError(f"folder {folder} holds no .wav clips")
        return [replace(self.parse(p, split, source), source=source) for p in paths]

    def train_parts(self, cfg: dict, mt: str) -> list[str]:
        """The parts whose training clips train_set selects; `auto` is the part that holds the machine type
        (the first-shot years: dev_data for a development machine type, eval_data for an evaluation one)."""
        if cfg["train_set"] == "auto":
            return ["dev"] if (Path(cfg["dataset_dir"]) / "dev_data" / mt / "train").is_dir() else ["eval"]
        return {"dev": ["dev"], "eval": ["eval"], "deval": ["dev", "eval"]}[cfg["train_set"]]

    def train_clips(self, cfg: dict, mt: str) -> list[Clip]:
        return [c for s in self.train_parts(cfg, mt) for c in self.list_clips(cfg["dataset_dir"], mt, s, "train")]

    def has_dev_test(self, cfg: dict, mt: str) -> bool:
        """Whether the machine type has a labelled development test set (first-shot evaluation types do not)."""
        return (Path(cfg["dataset_dir"]) / "dev_data" / mt / "test").is_dir()

    def test_clips(self, cfg: dict, mt: str, dev: bool, train_clips: list[Clip]) -> list[Clip]:
        """Sorted test clips; a section/ID without training clips of its part (dev/eval) is an error."""
        part = "dev" if dev else "eval"
        clips = self.list_clips(cfg["dataset_dir"], mt, part, "test")
        if part in self.train_parts(cfg, mt):
            trained = {c.group for c in train_clips if c.source == part}
            missing = sorted({c.group for c in clips} - trained)
            if missing:
                raise AeganError(f"{self.group_name} {missing[0]} has test clips in "
                                 f"{Path(cfg['dataset_dir']) / f'{part}_data' / mt / 'test'} but no training clip")
        return clips

    def machine_types(self, cfg: dict) -> tuple[str, ...]:
        return self.machines

    def dataset_id(self, cfg: dict) -> str:
        """The dataset a run is on: the folder's name, or a first-shot year's ("dcase2025")."""
        return f"dcase{cfg['year']}" if cfg.get("year") is not None else self.name

    def identity(self, cfg: dict, mt: str, train_clips: list[Clip]) -> Identity:
        """What a model of `mt` trained on `train_clips` is (data/identity.py): recorded in it, checked on read."""
        return identity_of(self.dataset_id(cfg), mt, self.train_parts(cfg, mt), train_clips, cfg["dataset_dir"])

    def check_machine(self, mt: str, cfg: dict) -> None:
        known = self.machine_types(cfg)
        if mt not in known:
            raise AeganError(f"--mt {mt!r} is not a {self.name} machine type; choose one of {', '.join(known)}")


def _read_truth(path: Path, allowed: set[str] | None, clips: list[Clip]) -> dict[str, str]:
    """{clip name: value} from a headerless `name,value` CSV; every clip needs a row (`allowed`: the values)."""
    if not path.is_file():
        raise AeganError(f"ground-truth file {path} is missing")
    names = {c.path.name for c in clips}
    out = {}
    with open(path, newline="") as f:
        for i, row in enumerate(csv.reader(f), 1):
            if not row or not "".join(row).strip():
                continue
            if len(row) < 2 or allowed is not None and row[1].strip() not in allowed:
                what = "|".join(sorted(allowed)) if allowed else "original name"
                raise AeganError(f"{path}, line {i}: expected 'file name,{what}', got {row!r}")
            if row[0] not in names:
                raise AeganError(f"{path}, line {i}: {row[0]} is not a test clip of this section/ID")
            out[row[0]] = row[1].strip()
    missing = sorted(names - set(out))
    if missing:
        raise AeganError(f"{path} has no row for {missing[0]}" + (f" and {len(missing) - 1} more" if len(missing) > 1
                                                                  else ""))
    return out


def _truth_of_group(spec: DatasetSpec, mt: str, members: list[Clip], truth_dir: Path, domain_dir: Path | None
                    ) -> list[Clip]:
    """The members labelled from ground_truth_data/ and (with domains) ground_truth_domain/. The first-shot
    years also release ground_truth_attributes/ (each renamed clip's original name): when present, its
    names must agree, and it stands in for a missing domain folder."""
    name = spec.ground_truth_file(mt, members[0].group)
    labels = _read_truth(truth_dir / name, {"0", "1"}, members)
    attributes = truth_dir.parent / "ground_truth_attributes" / name
    originals = {}
    if attributes.is_file():
        originals = {k: spec.parse(Path(v + ".wav"), "test", "eval") for k, v in
                     _read_truth(attributes, None, members).items()}
    domains = {}
    if spec.has_domains:
        if domain_dir and (domain_dir / name).is_file() or not originals:
            domains = {k: {"0": "source", "1": "target"}[v] for k, v in
                       _read_truth((domain_dir or truth_dir.parent / "ground_truth_domain") / name, {"0", "1"},
                                   members).items()}
        else:
            domains = {k: c.domain for k, c in originals.items()}
            print(f"ground truth: {name} has no domain file; the domains come from {attributes}")
    out = []
    for c in members:
        label, dom = int(labels[c.path.name]), domains.get(c.path.name, c.domain)
        orig = originals.get(c.path.name)
        if orig and (orig.label, orig.domain) != (label, dom):
            raise AeganError(f"{attributes}: {c.path.name} is a {orig.domain} clip with label {orig.label} there, "
                             f"but {dom} with label {label} in the data and domain files")
        out.append(replace(c, label=label, domain=dom, attrs=orig.attrs if orig else c.attrs))
    return out


def attach_ground_truth(spec: DatasetSpec, mt: str, clips: list[Clip], truth_dir: str | Path,
                        domain_dir: str | Path | None = None) -> list[Clip]:
    """Labels (and domains) of evaluation test clips from the officially released CSVs, in the evaluators'
    layout: ground_truth_data/, ground_truth_domain/ (default: beside it) and ground_truth_attributes/."""
    truth_dir = Path(truth_dir)
    if spec.has_domains and domain_dir is None:
        domain_dir = truth_dir.parent / "ground_truth_domain"
    out = []
    for g in sorted({c.group for c in clips}):
        out += _truth_of_group(spec, mt, [c for c in clips if c.group == g], truth_dir,
                               Path(domain_dir) if domain_dir else None)
    order = {c.path: i for i, c in enumerate(clips)}
    return sorted(out, key=lambda c: order[c.path])
