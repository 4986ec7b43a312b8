"""The feature cache `<spec_dir>/<mt>/<name>_<key>.npy`, keyed on the feature settings and each clip's name and
content (sha256: a clip replaced with the same size and mtime is noticed), with a `.json` record written after the
data (settings, clips, CRC-32) and checked on every read: a broken cache or one of other clips is rebuilt. Hashing a
clip costs 0.8% of its features (bench/clip_hash.py)."""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
import zlib
from pathlib import Path

import numpy as np
import soundfile as sf

from aegan.core.errors import AeganError
from aegan.core.files import atomic_path
from aegan.core.progress import Bar
from aegan.core.text import plural
from aegan.data.audio import channel_settings, extract
from aegan.data.clips import Clip, clip_digest
from aegan.data.segments import num_segments
from aegan.settings.checks import tagged
from aegan.settings.schema import FEATURES

FEAT_KEYS = tuple(name.removeprefix("feat.") for name in tagged(FEATURES))  # what the features depend on
CACHE_VERSION = 2


def clip_records(paths: list[Path]) -> list[list[str]]:
    """[file name, content digest] of each clip, in order: what a cache (or a model) was built from."""
    return [[Path(p).name, clip_digest(p)] for p in Bar(paths, "hashing clips", unit="clips", disable=len(paths) < 500)]


def load_or_extract(paths: list[Path], feat_cfg: dict, cache_dir: str | os.PathLike, name: str,
                    workers: int = 1) -> np.ndarray:
    """Features of `paths` from `<cache_dir>/<name>_<key>.npy`, extracting and caching them on a miss."""
    if not paths:
        raise AeganError(f"no clips to extract features from for {name}")
    records = clip_records(paths)
    settings = {k: {**channel_settings(feat_cfg), **feat_cfg}[k] for k in FEAT_KEYS}
    key = hashlib.sha256(json.dumps({"v": CACHE_VERSION, "feat": settings, "clips": records}).encode()).hexdigest()
    cache = Path(cache_dir) / f"{name}_{key[:16]}.npy"
    record = cache.with_suffix(".json")
    if cache.exists():
        arr = _read_cache(cache, record, records, settings)
        if arr is not None:
            print(f"features: {len(paths)} clips from cache {cache}")
            return arr
        print(f"features: cache {cache} is corrupt, incomplete or built for other clips; rebuilding it")
    arr = extract(paths, feat_cfg, workers, desc=f"features {name}")
    try:
        with atomic_path(cache) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, arr)
        meta = {"version": CACHE_VERSION, "feat": settings, "clips": records, "shape": list(arr.shape),
                "crc32": _file_crc32(cache)}
        with atomic_path(record) as tmp:
            tmp.write_text(json.dumps(meta))
    except (OSError, AeganError) as e:  # a full disk: the features are computed; only the cache is lost
        print(f"warning: could not write the feature cache {cache}: {getattr(e, 'strerror', None) or e}; continuing "
              "without it")
        return arr
    print(f"features: cached {len(paths)} clips to {cache}")
    return arr


def _read_cache(cache: Path, record: Path, records: list[list[str]], settings: dict) -> np.ndarray | None:
    """The cached features when the record says they are these clips' with these settings and intact; else None."""
    try:
        meta = json.loads(record.read_text())
        if (not isinstance(meta, dict) or meta.get("version") != CACHE_VERSION or meta.get("feat") != settings
                or meta.get("clips") != records or meta.get("crc32") != _file_crc32(cache)):
            return None
        arr = np.load(cache)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile):
        return None
    return arr if list(arr.shape) == meta.get("shape") and arr.ndim == 3 else None


def _file_crc32(path: Path) -> str:
    """CRC-32 of a file: catches truncation and corruption (not tampering) at ~4 GB/s, 2x sha1's speed."""
    crc = 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            crc = zlib.crc32(block, crc)
    return f"{crc:08x}"


def clip_features(cfg: dict, mt: str, clips: list[Clip], name: str) -> np.ndarray:
    """Raw log-mel (N, mel_bin, T) of `clips`, cached under <spec_dir>/<mt>/; at least one segment long."""
    feat = cfg["feat"]
    check_long_enough(mt, clips[0].path if clips else None, feat)  # before minutes of features, not after
    arr = load_or_extract([c.path for c in clips], feat, Path(cfg["spec_dir"]) / mt, name,
                          feat["workers"] or min(os.cpu_count() or 1, 8))
    if num_segments(arr.shape[2], feat["frame_num"], feat["graph_hop_f"]) == 0:
        raise too_short(clips[0].path, mt, arr.shape[2], feat)
    return arr


def check_long_enough(mt: str, path: Path | None, feat: dict) -> None:
    """A clip too short for one segment, told from its header (librosa's centred frames: 1 + samples // hop)."""
    try:
        frames = 1 + sf.info(str(path)).frames // feat["frame_hop"]
    except Exception:  # noqa: BLE001 - not readable audio: the extraction names it
        return
    if num_segments(frames, feat["frame_num"], feat["graph_hop_f"]) == 0:
        raise too_short(path, mt, frames, feat)


def too_short(path: Path, mt: str, frames: int, feat: dict) -> AeganError:
    """Clips that give fewer frames than a segment: the hop named when it alone is longer than a clip."""
    info = sf.info(str(path))
    hop, num = feat["frame_hop"], feat["frame_num"]
    if hop >= info.frames:
        return AeganError(f"feat.frame_hop={hop} samples is longer than the clips of {mt} ({info.frames} samples, "
                          f"{info.duration:.2f} s: {path}), which then give {plural(frames, 'frame')}, fewer than "
                          f"one segment of feat.frame_num={num}: lower feat.frame_hop (the paper's is 512)")
    return AeganError(f"clips of {mt} ({path}, {info.duration:.2f} s) give {frames} frames at feat.frame_hop={hop}, "
                      f"fewer than one segment of feat.frame_num={num}: a segment needs clips of at least "
                      f"{(num - 1) * hop} samples; lower feat.frame_hop or feat.frame_num, or use longer clips (the "
                      "demo's --config demo/small.yaml takes 64-frame segments: 2.1 s at 16 kHz is enough)")
