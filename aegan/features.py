"""Log-mel features, their on-disk cache, the [-1, 1] scaling and the 128 x 128 segments.

Data flows wav -> log-mel (N, mel_bin, T) -> scaled -> segments. Segments are never materialised for a
whole set: they are strided views of one contiguous tensor, gathered a batch at a time.
"""

from __future__ import annotations

import functools
import hashlib
import json
import multiprocessing
import os
import zipfile
import zlib
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf
import torch
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from .errors import AeganError
from .io import atomic_path

FEAT_KEYS = ("fft_num", "frame_hop", "mel_bin")
CACHE_VERSION = 1


def logmel(path: str | os.PathLike, fft_num: int = 2048, frame_hop: int = 512, mel_bin: int = 128
           ) -> tuple[np.ndarray, int]:
    """(log-mel in dB, shape (mel_bin, T), float32; sample rate). SPEC section 2, librosa defaults otherwise."""
    try:
        channels = sf.info(str(path)).channels
    except Exception as e:  # not a file soundfile can open: not audio, or truncated in its header
        raise AeganError(f"cannot read audio file {path}: {str(e).strip().splitlines()[0]}") from None
    if channels != 1:
        # librosa would silently average the channels; DCASE clips are mono, so this is the wrong file
        raise AeganError(f"audio file {path} has {channels} channels; DCASE clips are mono")
    try:
        y, sr = librosa.load(path, sr=None, mono=True)
    except Exception as e:  # soundfile raises many types for broken files
        raise AeganError(f"cannot read audio file {path}: {type(e).__name__}: {e}") from None
    if y.size == 0:
        raise AeganError(f"audio file {path} is empty")
    if not np.all(np.isfinite(y)):
        raise AeganError(f"audio file {path} contains NaN or infinite samples")
    if not np.any(y):
        # power_to_db floors at amin=1e-10 (-100 dB): finite, so the scaling stays finite, but the clip sets
        # the training minimum; say so rather than hide it
        print(f"warning: audio file {path} is pure silence (all samples zero); its features are -100 dB")
    # librosa.feature.melspectrogram's own three steps, with its mel filter bank built once per setting
    # instead of once per clip (a sixth of the time per clip; bit-identical, tests/test_features.py)
    power = np.abs(librosa.stft(y, n_fft=fft_num, hop_length=frame_hop)) ** 2.0
    mel = np.einsum("...ft,mf->...mt", power, mel_basis(int(sr), fft_num, mel_bin), optimize=True)
    return librosa.power_to_db(mel, ref=1.0).astype(np.float32), int(sr)


@functools.lru_cache(maxsize=16)
def mel_basis(sr: int, n_fft: int, n_mels: int) -> np.ndarray:
    """librosa's mel filter bank (librosa defaults: Slaney scale and norm, fmin 0, fmax sr/2), read-only."""
    basis = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels)
    basis.flags.writeable = False
    return basis


def _logmel_job(args: tuple) -> tuple[np.ndarray, int]:
    return logmel(*args)


def _single_threaded() -> None:
    """Worker init: one BLAS/OpenMP thread per worker process. Forked workers inherit the parent's thread
    pools, and N workers x N threads on N cores ran 3x slower than one process."""
    threadpool_limits(1)
    torch.set_num_threads(1)


def cache_key(paths: list[Path], feat_cfg: dict) -> str:
    """Hash of every feature setting and of each clip's path, size and mtime: a change invalidates the cache."""
    clips = []
    for p in paths:
        st = os.stat(p)
        clips.append([str(Path(p).resolve()), st.st_size, st.st_mtime_ns])
    blob = json.dumps({"v": CACHE_VERSION, "feat": {k: feat_cfg[k] for k in FEAT_KEYS}, "clips": clips})
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


def extract(paths: list[Path], feat_cfg: dict, workers: int = 1, desc: str = "features") -> np.ndarray:
    """Log-mel of every clip, stacked (N, mel_bin, T). All clips of a set must have one length and rate."""
    jobs = [(p, feat_cfg["fft_num"], feat_cfg["frame_hop"], feat_cfg["mel_bin"]) for p in paths]
    # one BLAS thread everywhere: the mel product's rounding depends on the thread count (1e-7 dB), and the
    # features (and the cache) must not depend on how many workers computed them
    with threadpool_limits(1):
        if workers > 1 and len(jobs) > 2 * workers:
            # the first clip here, before the fork: librosa's numba kernels compile once in the parent and
            # the workers inherit them (otherwise each worker spends seconds compiling its own)
            results = [_logmel_job(jobs[0])]
            chunk = max(1, min(16, (len(jobs) - 1) // (4 * workers)))
            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"),
                                     initializer=_single_threaded) as pool:
                results += tqdm(pool.map(_logmel_job, jobs[1:], chunksize=chunk), total=len(jobs), initial=1,
                                desc=desc)
        else:
            results = [_logmel_job(j) for j in tqdm(jobs, desc=desc)]
    first_shape, first_sr = results[0][0].shape, results[0][1]
    for p, (spec, sr) in zip(paths, results):
        if sr != first_sr:
            raise AeganError(f"{p} has sample rate {sr} Hz, but {paths[0]} has {first_sr} Hz: "
                             "all clips of a machine type must share one rate")
        if spec.shape != first_shape:
            raise AeganError(f"{p} gives {spec.shape[1]} frames, but {paths[0]} gives {first_shape[1]}: "
                             "all clips of a machine type must have the same length")
    return np.stack([r[0] for r in results])


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


def minmax(train_specs: np.ndarray) -> tuple[np.float32, np.float32]:
    """One global max and min over all training clips, as float32 scalars (the original's values)."""
    return np.float32(train_specs.max()), np.float32(train_specs.min())


def scale(specs: np.ndarray, vmax: float, vmin: float) -> np.ndarray:
    """Map [vmin, vmax] to [-1, 1] (test data uses the training max/min, so it may leave that range).

    Computed in float32 step by step as the original does ((max+min)/2 and (max-min)/2 rounded to float32
    first): a float64 midpoint would move some values by one float32 ulp."""
    vmax, vmin = np.float32(vmax), np.float32(vmin)
    if not vmax > vmin:
        raise AeganError(f"feature max ({vmax}) must exceed min ({vmin}): is all training audio silent?")
    mid, half = (vmax + vmin) / np.float32(2), (vmax - vmin) / np.float32(2)
    return (np.asarray(specs, dtype=np.float32) - mid) / half


def num_segments(frames: int, frame_num: int, hop: int) -> int:
    if frames < frame_num:
        return 0
    return (frames - frame_num) // hop + 1


def segment_view(specs: torch.Tensor, frame_num: int, hop: int) -> torch.Tensor:
    """(N, M, T) -> (N, S, M, frame_num): a strided view, no copy."""
    return specs.unfold(2, frame_num, hop).permute(0, 2, 1, 3)


class SegmentSampler:
    """Shuffled batches of training segments by index arithmetic on one contiguous tensor.

    Each epoch's permutation is drawn from the global torch generator exactly as the original's
    DataLoader(shuffle=True) draws it, so a run with the original's seed sees the original's batches; a
    resumed run restores the generator's state and sees the batches of an uninterrupted one. A batch is
    one index_select of B x mel_bin rows of frame_num values from an overlapping (start offset, frame)
    view of the flat tensor: no Python loop per segment, and 3x faster on the CPU than stacking strided
    segment views.
    """

    def __init__(self, specs: torch.Tensor, frame_num: int, hop: int, batch_size: int, rank: int = 0,
                 world: int = 1):
        specs = specs.contiguous()
        self.n_clips, self.n_mels, frames = specs.shape
        self.n_seg = num_segments(frames, frame_num, hop)
        if self.n_seg == 0:
            raise AeganError(f"clips have {frames} frames, fewer than one segment of {frame_num}")
        self.frame_num, self.hop, self.frames = frame_num, hop, frames
        flat = specs.reshape(-1)
        # row r = flat[r : r + frame_num]; segment (c, s), mel m is row c*M*T + m*T + s*hop
        self.rows = flat.as_strided((flat.numel() - frame_num + 1, frame_num), (1, 1))
        self.mel_offsets = torch.arange(self.n_mels, device=specs.device) * frames
        self.total = self.n_clips * self.n_seg
        self.batch_size = batch_size  # the global batch; with `world` ranks each yields its own slice of it
        self.rank, self.world = rank, world
        if batch_size % world:
            raise AeganError(f"the batch size ({batch_size}) must be divisible by the number of processes ({world})")
        if self.total < batch_size:
            raise AeganError(f"the batch size ({batch_size}) exceeds the {self.total} training segments: lower it")

    def __len__(self) -> int:
        return self.total // self.batch_size  # last incomplete batch dropped

    def permutation(self) -> torch.Tensor:
        """The epoch's order of segment numbers c * n_seg + s, drawn as torch's DataLoader draws it: the
        iterator's base seed, then the RandomSampler's seed, both from the global generator, then randperm
        with a generator of its own. Every rank draws the same (same seed, same draws)."""
        torch.empty((), dtype=torch.int64).random_()  # the DataLoader iterator's base seed (unused here)
        seed = int(torch.empty((), dtype=torch.int64).random_().item())
        return torch.randperm(self.total, generator=torch.Generator().manual_seed(seed))

    def epoch(self):
        perm = self.permutation()
        starts = ((perm // self.n_seg) * (self.n_mels * self.frames) + (perm % self.n_seg) * self.hop)
        starts = starts.to(self.rows.device)
        local = self.batch_size // self.world
        for b in range(len(self)):
            # every rank draws the same permutation; rank r takes the r-th slice of each global batch
            start = b * self.batch_size + self.rank * local
            offsets = (starts[start:start + local, None] + self.mel_offsets).reshape(-1)
            yield self.rows.index_select(0, offsets).view(local, 1, self.n_mels, self.frame_num)


def skip_loader_draw() -> None:
    """The draw that creating any DataLoader iterator makes (its base seed). The original iterates its dev
    test DataLoader after every epoch, which moves the next epoch's permutation; so do we."""
    torch.empty((), dtype=torch.int64).random_()
