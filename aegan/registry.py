"""Every dataset and year this code runs, in one place. A first-shot year (DCASE 2027) is one `FirstShotYear` line in
REGISTRY (`firstshot/` serves every year, the paths name it through `{year}`); a dataset with other file names is a
dataset folder and one `Dataset` line naming its evaluation rule (docs/ARCHITECTURE.md, "What a change touches")."""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass, field
from pathlib import Path

from aegan.core.errors import AeganError
from aegan.scoring.evaluation import IDS, SECTIONS, Rule

ROOT = Path(__file__).resolve().parents[1]  # the repository: the dataset folders sit beside the package


@dataclass(frozen=True)
class Dataset:
    """A dataset: its folder (scripts, defaults, DatasetSpec), its evaluation rule and the synthetic layout."""

    name: str  # "dcase2022": the --dataset name and the default output folders' name
    folder: str  # the dataset folder: "dcase2022" beside the package, or an absolute path anywhere
    layout: str  # aegan.synth's generator: "2020" | "2022" | "firstshot"
    rule: Rule  # how its results are scored and its submission files named (aegan/scoring/evaluation.py)
    channels: int = field(default=1, kw_only=True)  # every clip's channels (feat.channels; DCASE 2026: near, far)
    channel: str = field(default="mean", kw_only=True)  # feat.channel's default here (the original's: the mean)

    @property
    def sets(self) -> list[str]:
        """--set items that select this dataset in its folder (none: the folder is the dataset)."""
        return []

    @property
    def root(self) -> Path:
        return ROOT / self.folder

    def spec(self):
        """The folder's DatasetSpec (datasets.py, SPEC): file names, grouping, listing."""
        parent = str(self.root.parent)  # the dataset folders are not part of the installed package
        if parent not in sys.path:
            sys.path.insert(0, parent)
        try:
            module = importlib.import_module(f"{self.root.name}.datasets")
        except ImportError as e:  # no datasets.py there, or the folder's name is taken by an installed package
            raise AeganError(f"dataset {self.name}: cannot import {self.root / 'datasets.py'} as "
                             f"{self.root.name}.datasets ({e}); check the folder, or give it a name of its own"
                             ) from None
        found = Path(module.__file__).resolve().parent
        if found != self.root.resolve():  # a folder named like another dataset's: Python would give that one
            raise AeganError(f"dataset {self.name}: its folder {self.root} has the name of the dataset folder {found}, "
                             "which is loaded instead; give the folder a name of its own")
        return module.SPEC


@dataclass(frozen=True)
class FirstShotYear(Dataset):
    """A year of the first-shot task (DCASE 2023 on): one section per machine type, the machine types from the
    dataset folder, the evaluation test clips renamed from `first_eval_number` on."""

    year: int = 0
    first_eval_number: int = 1  # section_00_0000.wav (2023) or section_00_0001.wav (2024 on)

    @property
    def sets(self) -> list[str]:
        return [f"year={self.year}"]


def _first_shot(year: int, first_eval_number: int = 1, channels: int = 1, channel: str = "mean") -> FirstShotYear:
    return FirstShotYear(f"dcase{year}", "firstshot", "firstshot", SECTIONS, year, first_eval_number,
                         channels=channels, channel=channel)


TWO_CHANNEL_DEFAULT = "near"  # bench/channels.py: docs/DCASE2026.md

REGISTRY: dict[str, Dataset] = {d.name: d for d in (
    Dataset("dcase2020", "dcase2020", "2020", IDS),
    Dataset("dcase2022", "dcase2022", "2022", SECTIONS),
    _first_shot(2023, first_eval_number=0),
    _first_shot(2024),
    _first_shot(2025),
    # every 2026 clip has a near (0) and a far (1) microphone; the default reads the near one (README, DCASE 2026)
    _first_shot(2026, channels=2, channel=TWO_CHANNEL_DEFAULT),
)}


def dataset(name: str) -> Dataset:
    if name not in REGISTRY:
        raise AeganError(f"unknown dataset {name!r}: one of {', '.join(REGISTRY)}")
    return REGISTRY[name]


def of(spec, cfg: dict) -> Dataset:
    """The entry of the dataset a run is on: its folder's, or the first-shot year's that cfg names. Its rule must
    group results as the dataset's files group clips (per_<group>.csv beside clip_scores.csv)."""
    entry = dataset(spec.dataset_id(cfg))
    if entry.rule.group != spec.group_name:
        raise AeganError(f"dataset {entry.name} groups its clips by {spec.group_name}, but its evaluation rule writes "
                         f"{entry.rule.group} rows: give it a Rule with group {spec.group_name!r} (aegan/registry.py)")
    return entry


def first_shot_year(year: object) -> FirstShotYear:
    """The registered first-shot year `year`, or one line listing them."""
    entry = REGISTRY.get(f"dcase{year}")
    if not isinstance(entry, FirstShotYear):
        years = ", ".join(str(d.year) for d in REGISTRY.values() if isinstance(d, FirstShotYear))
        raise AeganError(f"year must be one of {years}, got {year!r}")
    return entry


def channel_settings(entry: Dataset, cfg: dict, user: set[str]) -> str | None:
    """feat.channels and feat.channel set to the dataset's where no user layer set them (in place); for a dataset
    of several channels, the line that says how its clips are read."""
    feat = cfg["feat"]
    for key, value in (("channels", entry.channels), ("channel", entry.channel)):
        if f"feat.{key}" not in user:
            feat[key] = value
    if entry.channels == 1 and feat["channels"] == 1:
        return None
    how = {"mean": "their mean (the original's librosa.load(mono=True))", "near": "channel 0 (the near microphone)",
           "far": "channel 1 (the far microphone)",
           "subtract": f"the near channel less {feat['far_share']:g} x the far one in mel power"}[feat["channel"]]
    others = ", ".join(k for k in how if k != feat["channel"])
    return (f"config: {entry.name} clips have {feat['channels']} channels; the model reads {how} "
            f"(feat.channel={feat['channel']}; the others: {others})")
