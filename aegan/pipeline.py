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
    train_clips: list[Clip]
    train_specs: torch.Tensor
    vmax: float
    vmin: float
    device: torch.device

    def scaled(self, raw: np.ndarray) -> torch.Tensor:
        return scaled_tensor(raw, self.vmax, self.vmin, self.device)


def load_trained(spec: DatasetSpec, cfg: dict, mt: str, device: torch.device) -> Trained:
    """The selected checkpoint, loaded strictly, and the training features scaled with its max/min (recomputed
    from the training clips for checkpoints of the original code, which do not store them)."""
    path, _ = model_paths(cfg, mt)
    state = checkpoint.load(path, device)
    first_norm = spec.first_norm(mt)
    netG, netD = build_nets(cfg["net"], first_norm)
    arch = checkpoint.describe_arch(cfg["net"], first_norm)
    checkpoint.load_weights(netG, state["netG"], path, "netG", arch)
    checkpoint.load_weights(netD, state["netD"], path, "netD", arch)
    saved = state.get("config")
    if saved:
        changed = [k for k in cfg["feat"] if k != "workers" and saved["feat"].get(k) != cfg["feat"][k]]
        if changed:
            raise AeganError(f"checkpoint {path} was trained with feat.{changed[0]}={saved['feat'][changed[0]]}, "
                             f"the config says {cfg['feat'][changed[0]]}")
    print(f"model: {path}" + (f" (epoch {state['epoch']}, selected metric {state.get('metric')})"
                              if "epoch" in state else " (original-format checkpoint)"))
    train_clips, raw = train_features(spec, cfg, mt)
    if "feat_max" in state:
        vmax, vmin = float(state["feat_max"]), float(state["feat_min"])
    else:
        vmax, vmin = minmax(raw)
        print(f"features: checkpoint holds no max/min; recomputed from {len(train_clips)} training clips "
              f"({cfg['train_set']}): max {vmax:.4f} min {vmin:.4f}")
    return Trained(netG.to(device), netD.to(device), state, train_clips, scaled_tensor(raw, vmax, vmin, device),
                   vmax, vmin, device)


def fit_decision(netG: nn.Module, netD: nn.Module, train_specs: torch.Tensor, spec: DatasetSpec, cfg: dict,
                 metric: str, device: torch.device) -> dict:
    """The gamma-fit threshold of `metric` on the training clips' own scores."""
    scores = score_clips(netG, netD, train_specs, train_specs, spec, cfg, device)[metric]
    return {"metric": metric, **fit_threshold(scores, cfg["detect"]["decision_percentile"])}


def decision_rule(model: Trained, spec: DatasetSpec, cfg: dict, metric: str, device: torch.device) -> dict:
    """The checkpoint's stored threshold when it is for `metric` and the configured percentile, else a new fit."""
    stored = model.state.get("decision")
    if stored and stored["metric"] == metric and stored["percentile"] == cfg["detect"]["decision_percentile"]:
        return stored
    print(f"decision: fitting the gamma threshold of {metric} on the {len(model.train_clips)} training clips")
    return fit_decision(model.netG, model.netD, model.train_specs, spec, cfg, metric, device)
