"""wav -> log-mel (SPEC section 2): librosa's melspectrogram and power_to_db, one clip or many in parallel."""

from __future__ import annotations

import functools
import itertools
import multiprocessing
import os
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf
import torch
from threadpoolctl import ThreadpoolController, threadpool_limits
from tqdm import tqdm

from aegan.core.errors import AeganError, shown
from aegan.core.files import check_regular
from aegan.core.kinds import sniff
from aegan.core.progress import Bar

# The BLAS thread count a process gets before anything limits it (OPENBLAS_NUM_THREADS, else the CPUs it may
# use), read at import. The original's librosa computes its mel product (an sgemm) with this many threads, and
# the product's last bits depend on the count (1, 2, 3, 4, 8 and 16 threads: six different results), so every
# mel product here runs with it too, in one process or in workers.
_BLAS = ThreadpoolController()
BLAS_THREADS = max((c.num_threads for c in _BLAS.select(user_api="blas").lib_controllers), default=1)


def read_audio(path: str | os.PathLike, max_seconds: float | None = None, channels: int = 1, channel: str = "mean"
               ) -> tuple[np.ndarray, int]:
    """(waveform, sample rate) as the model reads it (feat.channels, feat.channel: `pick`); a file too long for
    `max_seconds` or with another channel count is refused from its header, before its samples are read."""
    check_regular(path)
    try:
        info = sf.info(str(path))
    except Exception as e:  # not a file soundfile can open: not audio, or truncated in its header
        kind = sniff(path)
        if kind is not None and "recording" not in kind and "RIFF" not in kind:  # a broken WAV stays a WAV
            raise AeganError(f"{shown(path)} is {kind}, not audio: give a WAV recording") from None
        raise AeganError(f"cannot read audio file {shown(path)}: {str(e).strip().splitlines()[0]}") from None
    if max_seconds is not None and info.duration > max_seconds:
        raise AeganError(f"audio file {shown(path)} is {info.duration:.0f} s long, more than the limit of "
                         f"{max_seconds:g} s: cut it into clips (or raise --max-seconds)")
    check_channels(f"audio file {shown(path)}", info.channels, channels, channel)
    try:  # mono=True for the mean: the original's own call, so the mono years' features stay bit-equal
        y, sr = librosa.load(path, sr=None, mono=channel == "mean")
    except Exception as e:  # soundfile raises many types for broken files
        raise AeganError(f"cannot read audio file {shown(path)}: {type(e).__name__}: {e}") from None
    if y.size == 0:
        raise AeganError(f"audio file {shown(path)} is empty")
    y = pick(y, channel)
    if not np.any(y):
        # power_to_db floors at amin=1e-10 (-100 dB): finite, so the scaling stays finite, but the clip sets
        # the training minimum; say so rather than hide it
        tqdm.write(f"warning: audio file {shown(path)} {silence(path, channel)}; its features are -100 dB")
    return y, int(sr)


CHANNEL_NAMES = ("near", "far")  # DCASE 2026: channel 0 the microphone near the machine, channel 1 the far one


def check_channels(name: str, found: int, channels: int, channel: str) -> None:
    """One line when a clip's channel count is not the dataset's (feat.channels), or too few for feat.channel."""
    need = 1 if channel == "mean" else 2
    if found != channels or found < need:
        count = "one channel" if found == 1 else f"{found} channels"
        if found < need:
            hint = (f"feat.channel={channel} reads the near and far channels of two-channel clips (DCASE 2026): "
                    "give the two-channel recording, or use feat.channel=mean on a one-channel dataset")
        elif channels == 1:
            hint = ("this dataset's clips have one (feat.channels=1), and a recording of more is not averaged "
                    "in silence: give the one-channel recording (DCASE 2026's two-channel clips: year=2026)")
        else:
            hint = f"the dataset's clips have {channels} (feat.channels={channels}): give one of them"
        raise AeganError(f"{name} has {count}, but {hint}")


def pick(y: np.ndarray, channel: str) -> np.ndarray:
    """What feat.channel takes of a (channels, samples) waveform: near (0) or far (1), both for subtract (2,
    samples); the mean is librosa.load(mono=True)'s own (given already mono)."""
    if channel == "mean":
        return y if y.ndim == 1 else librosa.to_mono(y)
    if channel == "subtract":
        return y[:2]
    return y[CHANNEL_NAMES.index(channel)]


def silence(path: str | os.PathLike, channel: str) -> str:
    """What an all-zero input is: silence, or channels that cancel in their mean (opposite phase)."""
    if channel == "mean" and sf.info(str(path)).channels > 1:
        y, _ = librosa.load(path, sr=None, mono=False)
        if np.any(y):
            return ("has channels that cancel in their mean (opposite phase: the mean of its channels is zero); "
                    "feat.channel=near or far reads one channel")
    which = {"mean": "", "subtract": " (both channels)"}.get(channel, f" (its {channel} channel)")
    return f"is pure silence{which} (all samples zero)"


def subtract_far(mel: np.ndarray, far_share: float) -> np.ndarray:
    """feat.channel=subtract: spectral subtraction in the mel-power domain, near - far_share x far, floored at
    SUBTRACT_FLOOR of the near power (no negative power; docs/DCASE2026.md measures it)."""
    near, far = mel[..., 0, :, :], mel[..., 1, :, :]
    return np.maximum(near - far_share * far, SUBTRACT_FLOOR * near)


SUBTRACT_FLOOR = 0.1  # -10 dB: a bin the far channel explains entirely keeps a tenth of its near power


def logmel_of(y: np.ndarray, sr: int, fft_num: int = 2048, frame_hop: int = 512, mel_bin: int = 128,
              far_share: float = 1.0) -> np.ndarray:
    """Log-mel in dB (mel_bin, T) float32: librosa's melspectrogram with its filter bank built once per setting
    (librosa rebuilds it per call), then power_to_db(ref=1). Bit-identical to the original's librosa calls on
    any CPU in the same environment (tests/test_audio.py, tests/test_oracle.py): the same operations on the same
    shapes, dtypes and layouts, and the mel product with the BLAS thread count librosa gets there (BLAS_THREADS).
    The bits themselves depend on the CPU's BLAS kernel and that count, for the original as here (docs/FAITHFUL.md)."""
    with warnings.catch_warnings():  # "n_fft is too large" for a clip shorter than n_fft: such a clip gives fewer
        warnings.filterwarnings("ignore", "n_fft=", UserWarning)  # frames than a segment, said in one line later
        power = np.abs(librosa.stft(y, n_fft=fft_num, hop_length=frame_hop)) ** 2.0
    with _BLAS.limit(limits=BLAS_THREADS, user_api="blas"):
        mel = np.einsum("...ft,mf->...mt", power, mel_basis(int(sr), fft_num, mel_bin), optimize=True)
    if y.ndim == 2:  # feat.channel=subtract: near and far mel powers through subtract_far
        mel = subtract_far(mel, far_share)
    return librosa.power_to_db(mel, ref=1.0).astype(np.float32)


def logmel(path: str | os.PathLike, fft_num: int = 2048, frame_hop: int = 512, mel_bin: int = 128,
           channels: int = 1, channel: str = "mean", far_share: float = 1.0) -> tuple[np.ndarray, int]:
    """(log-mel in dB, shape (mel_bin, T), float32; sample rate) of one file."""
    y, sr = read_audio(path, None, channels, channel)
    return logmel_of(y, sr, fft_num, frame_hop, mel_bin, far_share), sr


def _filters(sr: int, fft_num: int, mel_bin: int) -> np.ndarray:
    with warnings.catch_warnings():  # librosa's "Empty filters detected": checked, and said in one line, below
        warnings.simplefilter("ignore", UserWarning)
        return librosa.filters.mel(sr=sr, n_fft=fft_num, n_mels=mel_bin)


@functools.lru_cache(maxsize=16)
def mel_basis(sr: int, fft_num: int, mel_bin: int) -> np.ndarray:
    """librosa's mel filter bank, read-only; a band no FFT bin falls in (constant in every clip) is refused."""
    basis = _filters(sr, fft_num, mel_bin)
    empty = int((basis.max(axis=1) == 0).sum())
    if empty:
        works = next((2 ** k for k in range(4, 21) if not (_filters(sr, 2 ** k, mel_bin).max(axis=1) == 0).any()),
                     None)
        hint = f"the smallest power of two that works is {works}" if works else "lower feat.mel_bin"
        raise AeganError(f"feat.fft_num={fft_num} is too small for feat.mel_bin={mel_bin} at {sr} Hz: {empty} of "
                         f"{mel_bin} mel bands get no FFT bin and would be constant; raise feat.fft_num ({hint})")
    basis.flags.writeable = False
    return basis


def channel_settings(feat_cfg: dict) -> dict:
    """feat.channels, channel and far_share of a feature section (one written before they existed: the mean of one)."""
    return {"channels": feat_cfg.get("channels", 1), "channel": feat_cfg.get("channel", "mean"),
            "far_share": feat_cfg.get("far_share", 1.0)}


def _single_threaded() -> None:
    """Worker init: forked workers inherit the parent's thread pools (N x N threads on N cores ran 3x slower);
    only the mel product runs with BLAS_THREADS, as the original's does."""
    threadpool_limits(1)
    torch.set_num_threads(1)


def extract(paths: list[Path], feat_cfg: dict, workers: int = 1, desc: str = "features") -> np.ndarray:
    """Log-mel of every clip, stacked (N, mel_bin, T). All clips of a set must have one length and rate."""
    job = functools.partial(logmel, fft_num=feat_cfg["fft_num"], frame_hop=feat_cfg["frame_hop"],
                            mel_bin=feat_cfg["mel_bin"], **channel_settings(feat_cfg))
    # features do not depend on how many workers computed them: each mel product uses BLAS_THREADS (logmel_of)
    if workers > 1 and len(paths) > 2 * workers:
        # the first clip here, before the fork: librosa's numba kernels compile once in the parent and
        # the workers inherit them (otherwise each worker spends seconds compiling its own)
        first = [job(paths[0])]
        chunk = max(1, min(16, (len(paths) - 1) // (4 * workers)))
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"),
                                 initializer=_single_threaded) as pool:
            rest = pool.map(job, paths[1:], chunksize=chunk)
            results = list(Bar(itertools.chain(first, rest), desc, len(paths), "clips"))
    else:
        results = [job(p) for p in Bar(paths, desc, unit="clips")]
    first_shape, first_sr = results[0][0].shape, results[0][1]
    for p, (spec, sr) in zip(paths, results):
        if sr != first_sr:
            raise AeganError(f"{shown(p)} has sample rate {sr} Hz, but {shown(paths[0])} has {first_sr} Hz: "
                             "all clips of a machine type must share one rate")
        if spec.shape != first_shape:
            raise AeganError(f"{shown(p)} gives {spec.shape[1]} frames, but {shown(paths[0])} gives {first_shape[1]}: "
                             "all clips of a machine type must have the same length")
    return np.stack([r[0] for r in results])
