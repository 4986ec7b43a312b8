"""What a file is, from its first bytes, so that one given where another kind is expected is named for what it is
(a model given as a config); PyTorch files are one kind here, the readers in aegan/store/ tell them apart."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

TORCH = "a PyTorch file"  # a zip archive, as torch.save writes


def sniff(path: str | os.PathLike) -> str | None:
    """A few words naming what the file is ("a WAV recording"), TORCH, or None: unreadable or of no known kind."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return None
    binary = {b"PK\x03\x04": TORCH, b"\x93NUMPY": "a NumPy array (a feature cache, spec_dir/<mt>/*.npy)",
              b"\x89PNG": "a PNG picture", b"RIFF": "a WAV recording" if head[8:12] == b"WAVE" else "a RIFF file",
              b"fLaC": "a FLAC recording", b"ID3": "an MP3 recording"}
    for magic, kind in binary.items():
        if head.startswith(magic):
            return kind
    if path.name.startswith("events.out.tfevents"):
        return "a TensorBoard events file"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return _text_kind(path, text)


def _text_kind(path: Path, text: str) -> str | None:
    if re.match(r"process \d+ on \S+ since ", text):
        return "the lock of a training run (model_dir/<mt>.lock)"
    stripped = text.lstrip()
    if stripped.startswith("{"):
        return _json_kind(path)
    first = stripped.split("\n", 1)[0]
    if re.match(r"(metric|file|machine|section|id|unit),", first):
        return f"a CSV table of results ({path.name})"
    if re.match(r"[^,\s]+\.wav,[-+0-9.eE]+$", first):
        return "a submission file (headerless file name,value rows)"
    if re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", first):
        return "a log file"
    if re.search(r"^(feat|net|train|detect)\s*:", text, re.M):  # a top-level section of the settings (not parsed:
        return "a settings file (YAML)"                         # a config file may be an alias bomb)
    return None


def _json_kind(path: Path) -> str | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    keys = set(data)
    if {"crc32", "clips", "shape"} <= keys:
        return "the record of a feature cache (spec_dir/<mt>/*.json)"
    if {"epoch", "epochs", "first", "seconds"} <= keys:
        return "the epochs file of a training run (log_dir/<mt>/progress.json)"
    if {"machine", "part", "metric", "rows"} <= keys:
        return "the record of a test.py run (result_dir/<mt>/run.json)"
    if data and all(isinstance(v, dict) and "id" in v for v in data.values()):
        return "the Slurm job record of aegan.reproduce (slurm/jobs.json)"
    return "a JSON file"
