"""The on-disk feature cache: a second run reads the features instead of decoding audio again.

`<spec_dir>/<mt>/<name>_<key>.npy`, keyed on every feature setting and on each clip's path, size and mtime,
with a CRC-32 sidecar written after the data: a truncated, corrupted or half-written cache is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
import zlib
from pathlib import Path

import numpy as np

from ..errors import AeganError
from ..files import atomic_path
from .audio import extract
from .clips import Clip
from .segments import num_segments

FEAT_KEYS = ("fft_num", "frame_hop", "mel_bin")
CACHE_VERSION = 1


def cache_key(paths: list[Path], feat_cfg: dict) -> str:
    """Hash of every feature setting and of each clip's path, size and mtime: a change invalidates the cache."""
    clips = []
    for p in paths:
        st = os.stat(p)
        clips.append([str(Path(p).resolve()), st.st_size, st.st_mtime_ns])
    blob = json.dumps({"v": CACHE_VERSION, "feat": {k: feat_cfg[k] for k in FEAT_KEYS}, "clips": clips})
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


def load_or_extract(paths: list[Path], feat_cfg: dict, cache_dir: str | os.PathLike, name: str,
                    workers: int = 1) -> np.ndarray:
    """Features of `paths` from `<cache_dir>/<name>_<key>.npy`, extracting and caching them on a miss."""
    if not paths:
        raise AeganError(f"no clips to extract features from for {name}")
    cache = Path(cache_dir) / f"{name}_{cache_key(paths, feat_cfg)}.npy"
    digest = cache.with_suffix(".crc32")
    if cache.exists():
        try:
            # the checksum (written after the data) catches truncated or corrupted files, and a cache whose
            # writer died between the two renames
            if digest.exists() and digest.read_text().strip() == _file_crc32(cache):
                arr = np.load(cache)
                if arr.ndim == 3 and arr.shape[0] == len(paths) and arr.shape[1] == feat_cfg["mel_bin"]:
                    print(f"features: {len(paths)} clips from cache {cache}")
                    return arr
        except (ValueError, OSError, EOFError, zipfile.BadZipFile):
            pass
        print(f"features: cache {cache} is corrupt or incomplete; rebuilding it")
    arr = extract(paths, feat_cfg, workers, desc=f"features {name}")
    try:
        with atomic_path(cache) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, arr)
        with atomic_path(digest) as tmp:
            tmp.write_text(_file_crc32(cache))
    except OSError as e:  # a full disk: the features are computed, only the cache is lost (and no half file)
        print(f"warning: could not write the feature cache {cache}: {e.strerror or e}; continuing without it")
        return arr
    print(f"features: cached {len(paths)} clips to {cache}")
    return arr


def _file_crc32(path: Path) -> str:
    """CRC-32 of a file: catches truncation and corruption (not tampering) at ~4 GB/s, 2x sha1's speed."""
    crc = 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            crc = zlib.crc32(block, crc)
    return f"{crc:08x}"




def workers(cfg: dict) -> int:
    return cfg["feat"]["workers"] or min(os.cpu_count() or 1, 8)


def clip_features(cfg: dict, mt: str, clips: list[Clip], name: str) -> np.ndarray:
    """Raw log-mel (N, mel_bin, T) of `clips`, cached under <spec_dir>/<mt>/; at least one segment long."""
    arr = load_or_extract([c.path for c in clips], cfg["feat"], Path(cfg["spec_dir"]) / mt, name, workers(cfg))
    feat = cfg["feat"]
    if num_segments(arr.shape[2], feat["frame_num"], feat["graph_hop_f"]) == 0:
        raise AeganError(f"clips of {mt} ({clips[0].path}) give {arr.shape[2]} frames, fewer than one segment "
                         f"of feat.frame_num={feat['frame_num']}")
    return arr
