"""Score new recordings with a trained model: the Python API behind `python -m aegan.score`. A clip the model's
features would not fit (sample rate, length, not a regular file) is refused in one line."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from aegan.core.errors import AeganError, shown
from aegan.core.metrics import D_METRICS, resolve_metric
from aegan.core.progress import Bar, on_terminal
from aegan.data.audio import channel_settings, check_channels, logmel_of, pick, read_audio
from aegan.data.segments import num_segments
from aegan.inference.model import Model, load
from aegan.scoring.evaluation import decide
from aegan.store.model_file import threshold_key

MAX_SECONDS = 600.0  # longest recording scored: all its segments go through the networks at once


@dataclass
class Result:
    file: str
    score: float = float("nan")  # of the detector's metric
    decision: int | None = None  # 1 anomalous, 0 normal (None when the file failed)
    scores: dict[str, float] = field(default_factory=dict)  # all 19
    error: str | None = None  # why the file could not be scored


class Detector:
    """A trained model with one metric and its decision threshold."""

    def __init__(self, model: Model, metric: str | None = None, max_seconds: float = MAX_SECONDS,
                 channel: str | None = None):
        self.model = model
        self.channels = channel_settings(model.cfg["feat"])  # the clips are read as the model's were
        if channel is not None and channel != self.channels["channel"]:
            raise AeganError(f"model {shown(model.path)} was trained with feat.channel={self.channels['channel']} "
                             f"and scores clips read that way, not with channel {channel}: leave the channel out, "
                             f"or score with a model trained with feat.channel={channel}")
        if not max_seconds > 0:
            raise AeganError(f"max_seconds must be a positive number of seconds, got {max_seconds}")
        self.max_seconds = float(max_seconds)
        self.metric = resolve_metric(metric, "metric") if metric else model.metric()
        # a critic metric's threshold can be fitted from the stored embeddings; a generator's needs the training clips
        key = threshold_key(self.metric, model.cfg["detect"]["decision_percentile"])
        if key not in model.thresholds and self.metric not in D_METRICS:
            raise AeganError(f"model {shown(model.path)} holds no decision threshold for {self.metric}: run its "
                             f"dataset's test.py once with --set detect.metric={self.metric} (it fits and keeps one)")
        self.threshold = float(model.threshold(self.metric, None)[0]["threshold"])

    @classmethod
    def load(cls, path: str | os.PathLike, metric: str | None = None, device: torch.device | None = None,
             max_seconds: float = MAX_SECONDS, channel: str | None = None) -> Detector:
        return cls(load(path, device or torch.device("cpu")), metric, max_seconds, channel)

    def score_array(self, waveform: np.ndarray, sample_rate: int, name: str = "<array>") -> Result:
        """A waveform (samples,), or (samples, channels) / (channels, samples): its channels read as the model's
        training clips were (feat.channels, feat.channel). Integer samples are scaled as the audio libraries read
        them (float_samples). A problem of the recording is its Result's error, as in score()."""
        try:
            if (isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, float, np.number))
                    or not (sample_rate > 0 and float(sample_rate).is_integer())):
                raise AeganError(f"{name}: sample_rate {sample_rate!r} is not a positive whole number of Hz")
            y = channels_first(float_samples(waveform, name), name)
            check_channels(name, 1 if y.ndim == 1 else y.shape[0], self.channels["channels"], self.channels["channel"])
            return self._score_waveform(pick(y, self.channels["channel"]), int(sample_rate), name)
        except AeganError as e:
            return Result(name, error=str(e))

    def _score_waveform(self, y: np.ndarray, sr: int, name: str) -> Result:
        feat, n = self.model.cfg["feat"], y.shape[-1]
        if n > self.max_seconds * sr:
            raise AeganError(f"{name} is {n / sr:.0f} s long, more than the limit of {self.max_seconds:g} s: "
                             "cut it into clips (or raise max_seconds)")
        if sr != self.model.sample_rate:
            raise AeganError(f"{name} has sample rate {sr} Hz; the model was trained on {self.model.sample_rate} Hz "
                             "clips (resample it first)")
        frames = 1 + n // feat["frame_hop"]  # librosa's centred frames: checked before any feature work
        if num_segments(frames, feat["frame_num"], feat["graph_hop_f"]) == 0:
            raise AeganError(f"{name} is {n / sr:.2f} s long, shorter than one segment of "
                             f"{feat['frame_num']} frames")
        spec = logmel_of(y, sr, feat["fft_num"], feat["frame_hop"], feat["mel_bin"],  # as the feature cache has it
                         self.channels["far_share"])
        scores = self.model.score(self.model.scaled(spec[None]), desc=None).scores
        value = float(scores[self.metric][0])
        return Result(name, value, int(decide(np.array([value]), self.threshold)[0]),
                      {m: float(v[0]) for m, v in scores.items()})

    def score(self, paths: str | os.PathLike | Iterable[str | os.PathLike], progress: bool | None = None
              ) -> list[Result]:
        """One Result per file (folders: their .wav files), in order; one that fails gets its error."""
        return list(self.scores(paths, progress))

    def scores(self, paths: str | os.PathLike | Iterable[str | os.PathLike], progress: bool | None = None
               ) -> Iterator[Result]:
        """score's Results one at a time, as each file is scored."""
        files = expand([paths] if isinstance(paths, (str, os.PathLike)) else paths)
        shown = on_terminal() if progress is None else progress
        for p in Bar(files, "scoring files", unit="files", disable=not shown):
            try:
                y, sr = read_audio(p, self.max_seconds, self.channels["channels"], self.channels["channel"])
                yield self._score_waveform(y, sr, str(p))
            except AeganError as e:
                yield Result(str(p), error=str(e))


# integer sample types as soundfile (libsndfile) and librosa read the same WAV as floats: (x - offset) / scale
INTEGER_SAMPLES = {np.dtype(np.int16): (0, 2 ** 15), np.dtype(np.int32): (0, 2 ** 31),
                   np.dtype(np.uint8): (128, 2 ** 7), np.dtype(np.int8): (0, 2 ** 7)}


def float_samples(waveform: np.ndarray, name: str) -> np.ndarray:
    """float32 samples as scoring a WAV file reads them: integer PCM (as scipy.io.wavfile returns it) scaled to
    [-1, 1] the way soundfile does, to the bit; other types refused by name. Floats are taken as they are, with a
    warning past [-1, 1]: a float WAV may hold such peaks (the command scores them as read), but an array of
    integer values cast to float would otherwise score as a recording 30,000 times louder, with no error."""
    y = np.asarray(waveform)
    if y.dtype in INTEGER_SAMPLES:
        offset, scale = INTEGER_SAMPLES[y.dtype]
        return (y.astype(np.float32) - np.float32(offset)) / np.float32(scale)
    if y.dtype.kind != "f":
        raise AeganError(f"{name} has samples of type {y.dtype}: give float samples in [-1, 1], or the int16, "
                         "int32 or uint8 samples of a PCM WAV (as scipy.io.wavfile reads them)")
    y = y.astype(np.float32)
    if not np.isfinite(y).all():
        raise AeganError(f"{name} holds NaN or infinite samples")
    peak = float(np.abs(y).max(initial=0.0))
    if peak > 1:
        warnings.warn(f"{name}: float samples reach {peak:.6g}, outside [-1, 1]; scored at that level (integer "
                      "samples converted to float without scaling? divide int16 values by 32768)", stacklevel=3)
    return y


def channels_first(y: np.ndarray, name: str) -> np.ndarray:
    """(samples,), or (channels, samples) of (samples, channels) / (channels, samples), as the loader reads them."""
    if y.ndim == 2:
        if y.shape[0] == y.shape[1]:
            raise AeganError(f"{name} has shape {y.shape}: which axis holds the channels is ambiguous; give "
                             "(samples,) or (samples, channels)")
        return y if y.shape[0] < y.shape[1] else y.T
    if y.ndim != 1:
        raise AeganError(f"{name} has shape {y.shape}: give a waveform of shape (samples,) or (samples, channels)")
    return y


def expand(inputs: Iterable[str | os.PathLike], ignored: list[Path] | None = None) -> list[Path]:
    """WAV files and folders (their .wav files, recursively, sorted) as one list; other files go to `ignored`.
    A FIFO, device or dangling link named .wav is listed too, so that scoring refuses it by name."""
    files = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            entries = sorted(p for p in path.rglob("*") if not p.is_dir())
            found = [p for p in entries if p.suffix.lower() == ".wav"]
            if not found:
                raise AeganError(f"folder {shown(path)} holds no .wav files")
            files += found
            if ignored is not None:
                ignored += [p for p in entries if p.suffix.lower() != ".wav"]
        else:
            files.append(path)
    return files
