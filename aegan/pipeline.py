"""The steps that training and testing share: features for a clip set, scoring with all 19 metrics,
evaluating every metric, and picking one."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .dataset import Clip, DatasetSpec
from .errors import AeganError
from .features import load_or_extract, num_segments, scale
from .scores import EmbeddingDetectors, all_scores, embed_clips, generator_scores, metric_names


def workers(cfg: dict) -> int:
    return cfg["feat"]["workers"] or min(os.cpu_count() or 1, 8)


def features(spec: DatasetSpec, cfg: dict, mt: str, clips: list[Clip], name: str) -> np.ndarray:
    """Raw log-mel (N, n_mels, T) of `clips`, cached under <spec_dir>/<mt>/."""
    arr = load_or_extract([c.path for c in clips], cfg["feat"], Path(cfg["spec_dir"]) / mt, name, workers(cfg))
    feat = cfg["feat"]
    if num_segments(arr.shape[2], feat["frame_num"], feat["graph_hop_f"]) == 0:
        raise AeganError(f"clips of {mt} ({clips[0].path}) give {arr.shape[2]} frames, fewer than one segment "
                         f"of feat.frame_num={feat['frame_num']}")
    return arr


def train_features(spec: DatasetSpec, cfg: dict, mt: str) -> tuple[list[Clip], np.ndarray]:
    clips = spec.train_clips(cfg, mt)
    return clips, features(spec, cfg, mt, clips, f"train_{cfg['train_set']}")


def scaled_tensor(raw: np.ndarray, vmax: float, vmin: float, device: torch.device) -> torch.Tensor:
    """Scaled features as one contiguous tensor; on CUDA it lives on the device (no per-batch copies)."""
    return torch.from_numpy(scale(raw, vmax, vmin)).to(device)


def score_clips(netG: nn.Module, netD: nn.Module, train_specs: torch.Tensor, test_specs: torch.Tensor,
                spec: DatasetSpec, cfg: dict, device: torch.device) -> dict[str, np.ndarray]:
    """All 19 scores of every test clip; the critic detectors are fitted on the training clips."""
    feat, bs, amp = cfg["feat"], cfg["train"]["bs"], cfg["train"]["amp"]
    train_emb = embed_clips(netD, train_specs, feat["frame_num"], feat["graph_hop_f"], device, bs, amp)
    g_scores, test_emb = generator_scores(netG, netD, test_specs, feat["frame_num"], feat["graph_hop_f"], device,
                                          spec.pools, bs, amp)
    return all_scores(g_scores, test_emb, EmbeddingDetectors(train_emb), spec.pools)


def evaluate_all(spec: DatasetSpec, clips: list[Clip], scores: dict[str, np.ndarray], max_fpr: float
                 ) -> dict[str, tuple[list[dict], dict]]:
    return {name: spec.evaluate(clips, s, max_fpr) for name, s in scores.items()}


def best_metric(spec: DatasetSpec, results: dict[str, tuple[list[dict], dict]]) -> str:
    """The metric with the highest summary (hmean / average); ties keep table order."""
    values = {k: v[1][spec.summary_key] for k, v in results.items()}
    return max(values, key=lambda k: -np.inf if np.isnan(values[k]) else values[k])


def resolve_metric(spec: DatasetSpec, name: str) -> str:
    """A metric name of this dataset; `sum` and `mean` pooling are aliases (same ranking)."""
    names = metric_names(spec.pools)
    if name in names:
        return name
    for a, b in (("_sum", "_mean"), ("_mean", "_sum")):
        if name.endswith(a) and name[: -len(a)] + b in names:
            return name[: -len(a)] + b
    raise AeganError(f"detect.metric {name!r} is not one of the 19 metrics: {', '.join(names)}")
