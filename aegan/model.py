"""A trained model ready to score clips: the two networks and what scoring needs besides them.

Scoring needs the settings the model was trained with, the feature max/min of its training clips, its
critic's embeddings of those clips (the reference set of the four critic metrics: 512 numbers per clip)
and, for decisions, fitted thresholds. Our checkpoints hold all of that. A checkpoint of the original
code holds only the weights: what it lacks is derived once from the training clips and kept in a sidecar
`<checkpoint stem>.scoring.pt` next to it, keyed on the checkpoint's content (a replaced checkpoint is
noticed) and on the settings used. Thresholds fitted later are kept in the sidecar too.
"""

from __future__ import annotations

import copy
import functools
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from . import checkpoint
from .config import OPEN_MAPPINGS, Resolved, get
from .data.cache import clip_features
from .data.clips import DatasetSpec
from .data.scaling import minmax, scaled_tensor
from .decision import fit_threshold
from .device import apply_precision, model_precision
from .errors import AeganError, shown
from .nets import Discriminator, Generator, build_nets
from .scores import EmbeddingDetectors, embed_clips, reference_order, score_clips, training_scores

# Settings a checkpoint fixes: the network and the features it was trained on, and its training clips
# (the critic metrics' reference set).
MODEL_KEYS = ("net", "feat", "train_set")
SIDECAR_VERSION = 1
# the settings a derived part depends on: the features and the training clips
SIDECAR_KEYS = ("feat.fft_num", "feat.frame_hop", "feat.mel_bin", "feat.frame_num", "feat.graph_hop_f", "train_set")


@dataclass
class Model:
    netG: Generator
    netD: Discriminator
    cfg: dict  # the settings it was trained with (net, feat, train_set), the run's for the rest
    vmax: np.float32
    vmin: np.float32
    train_emb: np.ndarray  # (training clips, C) float32 in the original's reference order
    path: Path
    device: torch.device
    digest: str = ""  # sha256 of the checkpoint file: the sidecar's key
    sample_rate: int = 16000  # of its training clips (every DCASE dataset is 16 kHz)
    info: dict = field(default_factory=dict)  # epoch, selected metric, dataset, machine type when known
    decisions: dict[str, dict] = field(default_factory=dict)  # "<metric>@<percentile>" -> fitted threshold

    def scaled(self, raw: np.ndarray) -> torch.Tensor:
        return scaled_tensor(raw, self.vmax, self.vmin, self.device)

    @functools.cached_property
    def detectors(self) -> EmbeddingDetectors:
        return EmbeddingDetectors(self.train_emb)

    def score(self, specs: torch.Tensor) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """All 19 scores of every clip of `specs` (scaled, (N, mel_bin, T)), and the clips' critic embeddings."""
        return score_clips(self.netG, self.netD, self.detectors, specs, self.cfg["feat"], self.device,
                           self.cfg["detect"]["amp"])

    def metric(self) -> str | None:
        """The metric whose scores are written: detect.metric, else the one selected in training."""
        return self.cfg["detect"]["metric"] or self.info.get("metric")

    def decision(self, metric: str, train_specs) -> tuple[dict, bool]:
        """(threshold of `metric` at detect.decision_percentile, whether it was fitted now). `train_specs` gives
        the scaled training features, needed only to fit a generator metric's threshold."""
        percentile = self.cfg["detect"]["decision_percentile"]
        key = f"{metric}@{percentile}"
        if key in self.decisions:
            return self.decisions[key], False
        scores = training_scores(metric, self.netG, self.detectors, self.train_emb, train_specs, self.cfg["feat"],
                                 self.device, self.cfg["detect"]["amp"])
        self.decisions[key] = {"metric": metric, **fit_threshold(scores, percentile)}
        return self.decisions[key], True


def _leaves(tree: dict, prefix: str = ""):
    for k, v in tree.items():
        if isinstance(v, dict) and f"{prefix}{k}" not in OPEN_MAPPINGS:
            yield from _leaves(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


def from_checkpoint(resolved: Resolved, saved: dict, path: object) -> tuple[dict, list[str]]:
    """The run's config with the network, feature and training-clip settings a checkpoint was trained with
    (MODEL_KEYS); returns it and the keys that changed. A key the user set explicitly (--config, --set) to
    another value is an error naming both values: the weights only make sense with their own settings."""
    cfg = copy.deepcopy(resolved.cfg)
    changed = []
    for name, value in _leaves({k: saved[k] for k in MODEL_KEYS if k in saved}):
        *parents, leaf = name.split(".")
        node = cfg
        for part in parents:
            node = node.get(part, {}) if isinstance(node, dict) else {}
        if name == "feat.workers" or not isinstance(node, dict) or leaf not in node or node[leaf] == value:
            continue
        if name in resolved.explicit:
            raise AeganError(f"{name}={node[leaf]!r} was set, but checkpoint {shown(path)} was trained with "
                             f"{name}={value!r}")
        node[leaf] = value
        changed.append(name)
    return cfg, changed


def first_norm_of(state_dict: dict) -> bool:
    """Whether the encoder has a norm after its first conv: its Sequential index 1 then holds weights."""
    return "Encoder.main.1.weight" in state_dict


def _nets(state: dict, net_cfg: dict, first_norm: bool, path: Path, device: torch.device):
    netG, netD = build_nets(net_cfg, first_norm)
    arch = checkpoint.describe_arch(net_cfg, first_norm)
    checkpoint.load_weights(netG, state["netG"], path, "netG", arch)
    checkpoint.load_weights(netD, state["netD"], path, "netD", arch)
    return netG.to(device).eval(), netD.to(device).eval()


def sidecar_path(path: Path) -> Path:
    return path.with_name(f"{path.stem}.scoring.pt")


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            h.update(block)
    return h.hexdigest()


def _settings(cfg: dict) -> dict:
    return {k: get(cfg, k) for k in SIDECAR_KEYS}


def read_sidecar(path: Path, digest: str, cfg: dict | None = None) -> dict:
    """The sidecar's parts when it belongs to this checkpoint (and, given `cfg`, to these settings), else {}."""
    side = sidecar_path(path)
    if not side.exists():
        return {}
    try:
        data = torch.load(side, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - a broken sidecar is only a cache: derive again
        print(f"model: sidecar {side} is unreadable; deriving it again")
        return {}
    if data.get("version") != SIDECAR_VERSION or data.get("checkpoint_sha256") != digest:
        print(f"model: sidecar {side} belongs to another checkpoint file; deriving it again")
        return {}
    if cfg is not None and data.get("settings") != _settings(cfg):
        print(f"model: sidecar {side} was derived with other settings; deriving it again")
        return {}
    return data


def write_sidecar(model: Model) -> Path:
    side = sidecar_path(model.path)
    checkpoint.save(side, {
        "version": SIDECAR_VERSION, "checkpoint_sha256": model.digest, "settings": _settings(model.cfg),
        "config": model.cfg, "feat_max": float(model.vmax), "feat_min": float(model.vmin),
        "train_emb": torch.from_numpy(model.train_emb), "decisions": model.decisions, "info": model.info,
        "sample_rate": model.sample_rate})
    return side


def load(path: str | Path, device: torch.device, resolved: Resolved | None = None) -> tuple[Model, dict]:
    """The model in `path` with what its checkpoint and a valid sidecar hold, and the checkpoint's state.
    Without `resolved` (scoring new recordings) the model must stand alone: a checkpoint of ours, or one of
    the original's with its sidecar. With it (test.py, loc.py), parts neither holds are left empty for
    prepare() to derive (train_emb of size 0, vmax nan)."""
    path = Path(path)
    state = checkpoint.load(path, device)
    digest = _digest(path)
    if resolved is not None:
        cfg = resolved.cfg
        if state.get("config"):
            cfg, changed = from_checkpoint(resolved, state["config"], path)
            if changed:
                print(f"config: from the checkpoint: {', '.join(f'{k}={get(cfg, k)!r}' for k in changed)}")
    else:
        cfg = copy.deepcopy(state.get("config") or read_sidecar(path, digest).get("config"))
        if not cfg:
            raise AeganError(f"checkpoint {shown(path)} is in the original's format and has no sidecar "
                             f"{sidecar_path(path).name}: score it once with its dataset's test.py, which "
                             "derives what scoring needs from the training clips and keeps it there")
    cfg.setdefault("detect", {}).setdefault("amp", "fp32")
    apply_precision(model_precision(state.get("config"), cfg, resolved.explicit if resolved else set()), device)
    side = read_sidecar(path, digest, cfg)
    netG, netD = _nets(state, cfg["net"], first_norm_of(state["netG"]), path, device)
    emb = state.get("train_emb", side.get("train_emb"))
    vmax = state.get("feat_max", side.get("feat_max", np.nan))
    vmin = state.get("feat_min", side.get("feat_min", np.nan))
    info = {k: state[k] for k in ("epoch", "metric", "dataset", "mt") if k in state} or dict(side.get("info", {}))
    rate = int(state.get("sample_rate", side.get("sample_rate", 16000)))
    decisions = dict(side.get("decisions", {}))
    if state.get("decision"):
        d = state["decision"]
        decisions.setdefault(f"{d['metric']}@{d['percentile']}", d)
    emb = np.zeros((0, 0), np.float32) if emb is None else np.asarray(emb, dtype=np.float32)
    return Model(netG, netD, cfg, np.float32(vmax), np.float32(vmin), emb, path, device, digest, rate, info,
                 decisions), state


def prepare(spec: DatasetSpec, resolved: Resolved, mt: str, device: torch.device) -> tuple[Model, callable]:
    """The selected model of `mt` for test.py / loc.py, complete: what the checkpoint lacks is derived from the
    training clips once and kept in the sidecar. Returns it and a function giving the scaled training
    features (extracted or read from the cache only when called)."""
    path, _ = checkpoint.model_paths(resolved.cfg, mt)
    model, state = load(path, device, resolved)
    print(f"model: {path}" + (f" (epoch {state['epoch']}, selected metric {state.get('metric')})"
                              if "epoch" in state else " (original-format checkpoint)"))
    cfg = model.cfg

    @functools.cache
    def train_raw() -> tuple[list, np.ndarray]:
        clips = spec.train_clips(cfg, mt)
        return clips, clip_features(cfg, mt, clips, f"train_{cfg['train_set']}")

    @functools.cache
    def train_specs() -> torch.Tensor:
        return model.scaled(train_raw()[1])

    if np.isnan(model.vmax) or model.train_emb.size == 0:
        clips, raw = train_raw()
        if np.isnan(model.vmax):
            model.vmax, model.vmin = minmax(raw)
            print(f"features: the checkpoint holds no max/min; computed from {len(clips)} training clips "
                  f"({cfg['train_set']}): max {model.vmax:.4f} min {model.vmin:.4f}")
        feat = cfg["feat"]
        emb = embed_clips(model.netD, train_specs(), feat["frame_num"], feat["graph_hop_f"], device,
                          cfg["detect"]["amp"], "training clips' critic embeddings")
        model.train_emb = emb[reference_order(clips)]
        model.info = model.info or {"dataset": spec.name, "mt": mt}
        model.sample_rate = sf.info(str(clips[0].path)).samplerate
        print(f"model: kept what scoring needs in {write_sidecar(model)}")
    return model, train_specs
