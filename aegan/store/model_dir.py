"""The names of a machine type's files in model_dir (nothing else spells them): `<mt>.pth` the model and `<mt>_last.pth`
the run state (model_file.py), `<mt>.scoring.pt` the sidecar (sidecar.py), and `<mt>.lock`, held here while its
train.py runs (flock: the kernel releases it however the process ends; the file names its holder)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from aegan.core.errors import AeganError, shown


@dataclass(frozen=True)
class ModelDir:
    folder: Path
    mt: str

    @classmethod
    def of(cls, cfg: dict, mt: str) -> ModelDir:
        """The files of `mt` under the run's model_dir setting."""
        return cls(Path(cfg["model_dir"]), mt)

    @property
    def model(self) -> Path:
        return self.folder / f"{self.mt}.pth"

    @property
    def run_state(self) -> Path:
        return self.folder / f"{self.mt}_last.pth"

    @property
    def lock(self) -> Path:
        return self.folder / f"{self.mt}.lock"


def sidecar_of(model: Path) -> Path:
    """The sidecar beside a model file, wherever that file is (aegan.score takes any path): <stem>.scoring.pt."""
    return model.with_name(f"{model.stem}.scoring.pt")


def model_of(sidecar_or_state: Path) -> Path:
    """The model file a sidecar or a run state belongs to, for a message that says what to give instead."""
    name = sidecar_or_state.name
    for suffix in (".scoring.pt", "_last.pth"):
        if name.endswith(suffix):
            return sidecar_or_state.with_name(name.removesuffix(suffix) + ".pth")
    return sidecar_or_state


@contextlib.contextmanager
def training_lock(files: ModelDir) -> Iterator[Path]:
    """Held for a whole training run of `files.mt`: a killed run's lock is taken over, the file removed at the end.
    (filelock neither names its holder nor removes its file when released.)"""
    path = files.lock
    created = not path.parent.exists()
    while True:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise AeganError(f"cannot write in model_dir {shown(path.parent)}: {e.strerror or e} (make it writable, "
                             "or set model_dir to a folder you can write)") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 512).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise AeganError(f"{shown(files.folder / files.mt)} is being trained by {holder} (lock {shown(path)}): "
                             "wait for that run to end, or give this one another model_dir") from None
        try:  # the file may have been removed by its previous holder between our open and lock: retry
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    left = os.read(fd, 512).decode(errors="replace").strip()
    if left:
        print(f"model: took over the lock {shown(path)} left by {left}, which is no longer running")
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"process {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}"
              .encode(), 0)
    try:
        yield path
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(fd)
        if created:  # a run that failed before writing anything leaves no empty model_dir behind
            with contextlib.suppress(OSError):
                path.parent.rmdir()
