"""The steps that training and testing share: features for a clip set, scoring with all 19 metrics,
evaluating every metric, and picking one."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import checkpoint
from .config import Resolved, from_checkpoint
from .dataset import Clip, DatasetSpec
from .decision import fit_threshold
from .errors import AeganError
from .features import load_or_extract, minmax, num_segments, scale
from .nets import build_nets
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


def reference_order(clips: list[Clip]) -> list[int]:
    """Training clips in the original's order for the critic detectors: by section or ID, then source before
    target, in listing order within. Only DCASE 2020 deval differs from the listing (dev IDs, then eval IDs)."""
    return sorted(range(len(clips)), key=lambda i: (clips[i].group, clips[i].domain or ""))


def score_clips(netG: nn.Module, netD: nn.Module, train_specs: torch.Tensor, train_clips: list[Clip],
                test_specs: torch.Tensor, cfg: dict, device: torch.device) -> dict[str, np.ndarray]:
    """All 19 scores of every test clip; the critic detectors are fitted on the training clips."""
    feat, amp = cfg["feat"], cfg["train"]["amp"]
    train_emb = embed_clips(netD, train_specs, feat["frame_num"], feat["graph_hop_f"], device, amp)
    detectors = EmbeddingDetectors(train_emb[reference_order(train_clips)])
    g_scores, test_emb = generator_scores(netG, netD, test_specs, feat["frame_num"], feat["graph_hop_f"], device, amp)
    return all_scores(g_scores, test_emb, detectors)


def evaluate_all(spec: DatasetSpec, clips: list[Clip], scores: dict[str, np.ndarray], max_fpr: float
                 ) -> dict[str, tuple[list[dict], dict]]:
    return {name: spec.evaluate(clips, s, max_fpr) for name, s in scores.items()}


def best_metric(spec: DatasetSpec, results: dict[str, tuple[list[dict], dict]]) -> str:
    """The metric with the highest summary (hmean / average); ties keep table order."""
    values = {k: v[1][spec.summary_key] for k, v in results.items()}
    return max(values, key=lambda k: -np.inf if np.isnan(values[k]) else values[k])


def resolve_metric(spec: DatasetSpec, name: str) -> str:
    """One of the 19 metric names; `_mean` is accepted for `_sum` (the paper's DCASE 2020 names: the mean
    over a clip's segments ranks clips like the sum, which the original computes)."""
    names = metric_names()
    if name in names:
        return name
    for a, b in (("_sum", "_mean"), ("_mean", "_sum")):
        if name.endswith(a) and name[: -len(a)] + b in names:
            return name[: -len(a)] + b
    raise AeganError(f"detect.metric {name!r} is not one of the 19 metrics: {', '.join(names)}")


def model_paths(cfg: dict, mt: str) -> tuple[Path, Path]:
    """(selected model, resumable last epoch) checkpoint paths."""
    d = Path(cfg["model_dir"])
    return d / f"{mt}.pth", d / f"{mt}_last.pth"


@dataclass
class Trained:
    """A loaded model with what scoring needs: the training clips' scaled features and the scaling."""

    netG: nn.Module
    netD: nn.Module
    state: dict
    cfg: dict  # the run's config with the checkpoint's network, feature and training-clip settings
    train_clips: list[Clip]
    train_specs: torch.Tensor
    vmax: float
    vmin: float
    device: torch.device

    def scaled(self, raw: np.ndarray) -> torch.Tensor:
        return scaled_tensor(raw, self.vmax, self.vmin, self.device)


def load_trained(spec: DatasetSpec, resolved: Resolved, mt: str, device: torch.device) -> Trained:
    """The selected checkpoint, loaded strictly, with the settings it was trained with, and the training
    features scaled with its max/min (recomputed from the training clips for checkpoints of the original
    code, which store neither)."""
    path, _ = model_paths(resolved.cfg, mt)
    state = checkpoint.load(path, device)
    cfg = resolved.cfg
    if state.get("config"):
        cfg, changed = from_checkpoint(resolved, state["config"], path)
        if changed:
            print(f"config: from the checkpoint: {', '.join(f'{k}={_get(cfg, k)!r}' for k in changed)}")
    first_norm = spec.first_norm(mt)
    netG, netD = build_nets(cfg["net"], first_norm)
    arch = checkpoint.describe_arch(cfg["net"], first_norm)
    checkpoint.load_weights(netG, state["netG"], path, "netG", arch)
    checkpoint.load_weights(netD, state["netD"], path, "netD", arch)
    print(f"model: {path}" + (f" (epoch {state['epoch']}, selected metric {state.get('metric')})"
                              if "epoch" in state else " (original-format checkpoint)"))
    train_clips, raw = train_features(spec, cfg, mt)
    if "feat_max" in state:
        vmax, vmin = np.float32(state["feat_max"]), np.float32(state["feat_min"])
    else:
        vmax, vmin = minmax(raw)
        print(f"features: checkpoint holds no max/min; recomputed from {len(train_clips)} training clips "
              f"({cfg['train_set']}): max {vmax:.4f} min {vmin:.4f}")
    return Trained(netG.to(device), netD.to(device), state, cfg, train_clips,
                   scaled_tensor(raw, vmax, vmin, device), vmax, vmin, device)


def _get(cfg: dict, name: str):
    for part in name.split("."):
        cfg = cfg[part]
    return cfg


def fit_decision(netG: nn.Module, netD: nn.Module, train_specs: torch.Tensor, train_clips: list[Clip], cfg: dict,
                 metric: str, device: torch.device) -> dict:
    """The gamma-fit threshold of `metric` on the training clips' own scores."""
    scores = score_clips(netG, netD, train_specs, train_clips, train_specs, cfg, device)[metric]
    return {"metric": metric, **fit_threshold(scores, cfg["detect"]["decision_percentile"])}


def decision_rule(model: Trained, spec: DatasetSpec, cfg: dict, metric: str, device: torch.device) -> dict:
    """The checkpoint's stored threshold when it is for `metric` and the configured percentile, else a new fit."""
    stored = model.state.get("decision")
    if stored and stored["metric"] == metric and stored["percentile"] == cfg["detect"]["decision_percentile"]:
        return stored
    print(f"decision: fitting the gamma threshold of {metric} on the {len(model.train_clips)} training clips")
    return fit_decision(model.netG, model.netD, model.train_specs, model.train_clips, cfg, metric, device)
