"""What a model is trained on: the dataset (and year), the machine type, the training parts and the training clips,
each by name and a digest of its content. Recorded when training starts, checked on every read against the data a
command is about to use: a model is never silently used for another machine type, dataset or set of clips. The
digests are the ones the feature cache is keyed on."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from aegan.core.errors import AeganError, shown
from aegan.core.files import sha256

# (path, inode, size, mtime, ctime) -> content digest, within one process: a run that keys its caches and its
# model's fingerprint on the same clips reads each clip once. ctime cannot be set back by a user, so a file
# replaced in place is hashed again.
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


def identity_of(dataset: str, mt: str, parts: list[str], clips: list, dataset_dir: str | Path) -> Identity:
    """The identity of a model trained on `clips` (data.clips.Clip) of `dataset_dir`."""
    root = Path(dataset_dir)
    rows = []
    for c in clips:
        try:
            name = c.path.relative_to(root).as_posix()
        except ValueError:
            name = c.path.name
        rows.append((name, clip_digest(c.path)))
    return Identity(dataset, mt, "+".join(parts), tuple(rows))


def identity_from(raw: object) -> Identity | None:
    """The Identity a file stores (Identity.as_dict), or None when it is malformed (its reader names the file)."""
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
    added = [n for n in now if n not in before]
    removed = [n for n in before if n not in now]
    changed = [n for n in now if n in before and before[n] != now[n]]
    parts = []
    for words, names in (("added", added), ("removed", removed), ("changed", changed)):
        if names:
            parts.append(f"{len(names)} {words}, e.g. {shown(names[0])}")
    return "; ".join(parts) or "the same clips in another order"
