"""What a dataset says about its files (each dataset's datasets.py subclasses `DatasetSpec` with its file-name
parsing, grouping and ground-truth file names), the clip listing and ground truth every dataset shares, and what a
model is trained on (its `Identity`: recorded when training starts, checked on every read)."""

from __future__ import annotations

import csv
import hashlib
import os
from dataclasses import dataclass, replace
from pathlib import Path

from aegan.core.errors import AeganError, shown
from aegan.core.files import check_regular, sha256
from aegan.core.text import plural


@dataclass(frozen=True)
class Clip:
    path: Path
    group: str  # section "01" (DCASE 2022) or machine ID "02" (DCASE 2020)
    domain: str | None  # "source" / "target" (DCASE 2022 with labels), else None
    label: int | None  # 1 anomaly, 0 normal, None when unknown (eval test)
    attrs: str = ""  # the rest of the file name, kept but unused
    source: str = ""  # "dev" or "eval": the part of the dataset it came from
    number: str = ""  # the clip's own number in its file name ("0003")


# (path, inode, size, mtime, ctime) -> content digest: a run reads each clip once; ctime cannot be set back, so a
# file replaced in place is hashed again.
_DIGESTS: dict[tuple, str] = {}


def clip_digest(path: str | os.PathLike) -> str:
    """sha256 of a clip's bytes (the first 16 hex digits): what its features are computed from."""
    st = os.stat(path)
    memo = (str(Path(path).resolve()), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    if memo not in _DIGESTS:
        _DIGESTS[memo] = sha256(path)[:16]
    return _DIGESTS[memo]


@dataclass(frozen=True)
class Identity:
    """What a model was trained on."""

    dataset: str  # "dcase2022", or the first-shot year's "dcase2025"
    mt: str
    parts: str  # the training parts, "dev" / "eval" / "dev+eval"
    clips: tuple[tuple[str, str], ...]  # (clip path below dataset_dir, content digest), in listing order

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(repr(self.clips).encode()).hexdigest()[:16]

    def as_dict(self) -> dict:
        return {"dataset": self.dataset, "mt": self.mt, "parts": self.parts, "clips": [list(c) for c in self.clips],
                "fingerprint": self.fingerprint}


def identity_from(raw: object) -> Identity | None:
    """The Identity a file stores (Identity.as_dict), or None when malformed (its reader names the file)."""
    if not (isinstance(raw, dict) and all(isinstance(raw.get(k), str) for k in ("dataset", "mt", "parts"))
            and isinstance(raw.get("clips"), list)
            and all(isinstance(c, (list, tuple)) and len(c) == 2 and all(isinstance(x, str) for x in c)
                    for c in raw["clips"])):
        return None
    return Identity(raw["dataset"], raw["mt"], raw["parts"], tuple(tuple(c) for c in raw["clips"]))


def check_identity(path: Path, stored: Identity, expected: Identity, what: str = "model") -> None:
    """One line naming what differs between the data a model was trained on and the data at hand."""
    where = shown(path)
    if stored.mt != expected.mt:
        raise AeganError(f"{what} {where} was trained on {stored.mt}, not {expected.mt}: train {expected.mt} "
                         f"(or point model_dir at its model)")
    if stored.dataset != expected.dataset:
        raise AeganError(f"{what} {where} was trained on {stored.dataset}, not {expected.dataset}: use that "
                         f"dataset's scripts, or train on {expected.dataset}")
    if stored.parts != expected.parts:
        raise AeganError(f"{what} {where} was trained on the {stored.parts} training clips, but train_set gives "
                         f"{expected.parts} now: set train_set back, or train again")
    if stored.clips != expected.clips:
        raise AeganError(f"{what} {where} was trained on other training clips than dataset_dir holds now "
                         f"({clip_difference(stored.clips, expected.clips)}): point dataset_dir at the data it "
                         "was trained on, or train again")


def clip_difference(old: tuple, new: tuple) -> str:
    before, now = dict(old), dict(new)
    kinds = (("added", [n for n in now if n not in before]), ("removed", [n for n in before if n not in now]),
             ("changed", [n for n in now if n in before and before[n] != now[n]]))
    found = [f"{len(names)} {words}, e.g. {shown(names[0])}" for words, names in kinds if names]
    return "; ".join(found) or "the same clips in another order"


class DatasetSpec:
    """Base class; subclasses fill the class attributes, `parse` and `ground_truth_file`."""

    name: str  # "dcase2022"
    machines: tuple[str, ...]  # fixed lists; empty where the dataset folder says (machine_types)
    group_name: str  # what the file names group clips by: "section" / "id"
    root: Path  # the dataset folder (holds config.yaml)
    has_domains: bool = False  # clips carry source/target domains (DCASE 2022)

    def parse(self, path: Path, split: str, source: str) -> Clip:
        raise NotImplementedError

    def ground_truth_file(self, mt: str, group: str) -> str:
        """Name of the official ground-truth CSV of one section/ID of the evaluation test set."""
        raise NotImplementedError

    def list_clips(self, dataset_dir: str | Path, mt: str, source: str, split: str) -> list[Clip]:
        """Sorted clips of <dataset_dir>/<source>_data/<mt>/<split>/ (non-.wav files are skipped)."""
        folder = Path(dataset_dir) / f"{source}_data" / mt / split
        if not Path(dataset_dir).is_dir():
            raise AeganError(f"dataset_dir {dataset_dir} does not exist (set it with --set dataset_dir=PATH)")
        if not folder.is_dir():
            raise AeganError(f"folder {folder} does not exist: expected <dataset_dir>/{source}_data/{mt}/{split}/")
        entries = list(folder.iterdir())
        paths = sorted((p for p in entries if p.suffix.lower() == ".wav"), key=lambda p: p.name)
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
        """The parts whose training clips train_set selects; `auto`: the part that holds the machine type."""
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
        if dev and not self.has_dev_test(cfg, mt) and (Path(cfg["dataset_dir"]) / "eval_data" / mt).is_dir():
            raise AeganError(f"{mt} has no development test set (no folder "
                             f"{Path(cfg['dataset_dir']) / 'dev_data' / mt / 'test'}): it is an evaluation machine "
                             "type, under eval_data/ only; score its evaluation test set with -e (with --ground-truth "
                             "when its labels are released)")
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
        """What a model of `mt` trained on `train_clips` is: recorded in it, checked on read."""
        rows = []
        for c in train_clips:
            try:
                name = c.path.relative_to(Path(cfg["dataset_dir"])).as_posix()
            except ValueError:
                name = c.path.name
            rows.append((name, clip_digest(c.path)))
        return Identity(self.dataset_id(cfg), mt, "+".join(self.train_parts(cfg, mt)), tuple(rows))

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


def _truth_of_group(spec: DatasetSpec, mt: str, members: list[Clip], truth_dir: Path, domain_dir: Path
                    ) -> list[Clip]:
    """The members labelled from ground_truth_data/ and (with domains) ground_truth_domain/; the first-shot years'
    ground_truth_attributes/ (original names), when present, must agree and stands in for a missing domain file."""
    name = spec.ground_truth_file(mt, members[0].group)
    labels = _read_truth(truth_dir / name, {"0", "1"}, members)
    attributes = truth_dir.parent / "ground_truth_attributes" / name
    originals = {}
    if attributes.is_file():
        originals = {k: spec.parse(Path(v + ".wav"), "test", "eval") for k, v in
                     _read_truth(attributes, None, members).items()}
    domains = {}
    if spec.has_domains:
        if (domain_dir / name).is_file() or not originals:
            domains = {k: {"0": "source", "1": "target"}[v] for k, v in
                       _read_truth(domain_dir / name, {"0", "1"}, members).items()}
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
    """Labels (and domains) of evaluation test clips from the released CSVs, in the evaluators' layout:
    ground_truth_data/, ground_truth_domain/ (default: beside it) and ground_truth_attributes/."""
    truth_dir = Path(truth_dir)
    domain_dir = Path(domain_dir) if domain_dir else truth_dir.parent / "ground_truth_domain"
    out = []
    for g in sorted({c.group for c in clips}):
        out += _truth_of_group(spec, mt, [c for c in clips if c.group == g], truth_dir, domain_dir)
    order = {c.path: i for i, c in enumerate(clips)}
    return sorted(out, key=lambda c: order[c.path])
