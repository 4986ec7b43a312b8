"""The files of one machine type in model_dir, by name, in one place (nothing else spells them):

- `<mt>.pth`, the model (model_file.py): written once, when its training run finishes;
- `<mt>_last.pth`, the run state (run_state.py): rewritten after every epoch, for --resume;
- `<mt>.scoring.pt`, the sidecar (sidecar.py): what scoring needs of a checkpoint that lacks it (the original's);
- `<mt>.lock`, the lock (lock.py): held while a train.py of `<mt>` runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


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
