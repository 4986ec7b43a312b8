"""A trained model ready to score clips: the two networks and what scoring needs besides them.

Scoring needs the settings the model was trained with, the feature max/min of its training clips, its
critic's embeddings of those clips (the reference set of the four critic metrics) and, for decisions, fitted
thresholds. Our model files hold all of that (store/model_file.py). A checkpoint of the original code holds
only the weights: what it lacks is derived once from the training clips (prepare.py) and kept in its sidecar (a
cache, re-derived when the checkpoint, the training clips or the feature settings change). Thresholds fitted at
test time for another metric are kept in the sidecar too.
"""

from __future__ import annotations

import copy
import functools
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from aegan.core.errors import AeganError, shown
from aegan.core.files import sha256
from aegan.core.metrics import D_METRICS, metric_choice
from aegan.data.identity import Identity
from aegan.data.scaling import scaled_tensor
from aegan.method.device import apply_precision, model_precision
from aegan.method.nets import Discriminator, Generator, build_nets
from aegan.scoring.decision import fit_threshold
from aegan.scoring.scores import EmbeddingDetectors, Scored, score_clips, training_scores
from aegan.settings.layers import Resolved, leaves
from aegan.store import checkpoint, model_file, sidecar
from aegan.store.model_dir import ModelDir, sidecar_of
from aegan.store.model_file import ModelFile, threshold_key
from aegan.store.sidecar import Sidecar

# Settings a model fixes: the network and the features it was trained on, and its training clips.
MODEL_KEYS = ("net", "feat", "train_set")


@dataclass(kw_only=True)
class Model:
    netG: Generator
    netD: Discriminator
    cfg: dict  # the settings it was trained with (net, feat, train_set), the run's for the rest
    vmax: np.float32
    vmin: np.float32
    train_emb: np.ndarray  # (training clips, C) float32 in the original's reference order
    path: Path
    device: torch.device
    digest: str = ""  # sha256 of the checkpoint file: its sidecar's key
    sample_rate: int  # of its training clips
    info: dict = field(default_factory=dict)  # epoch and metric selected in training, dataset, machine type
    thresholds: dict[str, dict] = field(default_factory=dict)  # "<metric>@<percentile>" -> fitted rule
    identity: Identity | None = None
    stored: set[str] = field(default_factory=set)  # threshold keys the model file itself holds

    def scaled(self, raw: np.ndarray) -> torch.Tensor:
        return scaled_tensor(raw, self.vmax, self.vmin, self.device)

    @functools.cached_property
    def detectors(self) -> EmbeddingDetectors:
        return EmbeddingDetectors(self.train_emb)

    def score(self, specs: torch.Tensor, recon: bool = False, desc: str | None = "scoring") -> Scored:
        """All 19 scores of every clip of `specs` (scaled, (N, mel_bin, T)), the clips' critic embeddings and,
        when asked, their reconstructions: the one scoring pass (scores.score_clips)."""
        return score_clips(self.netG, self.netD, self.detectors, specs, self.cfg["feat"], self.device,
                           self.cfg["detect"]["amp"], recon, desc)

    def metric(self, best_here: str | None = None) -> str:
        """The metric whose scores are written (scores.metric_choice: the one rule)."""
        return self.metric_choice(best_here)[0]

    def metric_choice(self, best_here: str | None = None) -> tuple[str, str]:
        """(the metric whose scores are written, how it was chosen: scores.CHOSEN_BY)."""
        return metric_choice(self.cfg["detect"]["metric"], best_here, self.info.get("metric"),
                             self.info.get("chosen_by", "selected in training"))

    def threshold(self, metric: str, train_specs=None) -> tuple[dict, bool]:
        """(threshold of `metric` at detect.decision_percentile, whether it was fitted now). `train_specs()` gives
        the scaled training features, needed (and called) only to fit a generator metric's threshold."""
        percentile = self.cfg["detect"]["decision_percentile"]
        key = threshold_key(metric, percentile)
        if key in self.thresholds:
            return self.thresholds[key], False
        specs = None if metric in D_METRICS else train_specs()
        scores = training_scores(metric, self.netG, self.detectors, self.train_emb, specs, self.cfg["feat"],
                                 self.device, self.cfg["detect"]["amp"])
        self.thresholds[key] = {"metric": metric, **fit_threshold(scores, percentile)}
        return self.thresholds[key], True


def training_choice(mf: ModelFile) -> str:
    """How training chose the model's metric, read from its stored settings: the best on the labelled dev test set
    (train.select best or last), training's detect.metric (train.select metric, or no labelled dev test set to
    choose on), or, with neither, the default."""
    configured = (mf.config.get("detect") or {}).get("metric")
    if math.isnan(mf.value) or (mf.config.get("train") or {}).get("select") == "metric":
        return "detect.metric in training" if configured else "default"
    return "selected in training"


def from_checkpoint(resolved: Resolved, saved: dict, path: object) -> tuple[dict, list[str]]:
    """The run's config with the network, feature and training-clip settings a model was trained with
    (MODEL_KEYS); returns it and the keys that changed. A key the user set explicitly (--config, --set) to
    another value is an error naming both values: the weights only make sense with their own settings."""
    cfg = copy.deepcopy(resolved.cfg)
    changed = []
    for name, value in leaves({k: saved[k] for k in MODEL_KEYS if k in saved}):
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


def model_settings(resolved: Resolved, mt: str) -> dict:
    """The settings test.py and loc.py run with: the run's, with the model's own network, feature and training-clip
    settings (from_checkpoint; an original checkpoint stores none)."""
    path = ModelDir.of(resolved.cfg, mt).model
    if not path.exists():  # --print-config before training: the settings from the files and flags
        return resolved.cfg
    _, mf = model_file.read(path)
    return resolved.cfg if mf is None else from_checkpoint(resolved, mf.config, path)[0]


def nets(state: dict, net_cfg: dict, path: Path, device: torch.device) -> tuple[Generator, Discriminator]:
    """G and D with a checkpoint's weights, for scoring."""
    netG, netD = build_nets(net_cfg)
    checkpoint.load_weights(netG, state["netG"], path, "netG", net_cfg)
    checkpoint.load_weights(netD, state["netD"], path, "netD", net_cfg)
    return netG.to(device).eval(), netD.to(device).eval()


def from_file(mf: ModelFile, cfg: dict, state: dict, path: Path, device: torch.device, digest: str) -> Model:
    """One of our model files, with thresholds fitted later for other metrics from its sidecar."""
    netG, netD = nets(state, cfg["net"], path, device)
    info = {"epoch": mf.epoch, "metric": mf.metric, "chosen_by": training_choice(mf), "dataset": mf.identity.dataset,
            "mt": mf.identity.mt}
    side = sidecar.read(path, digest)
    return Model(netG=netG, netD=netD, cfg=cfg, vmax=np.float32(mf.feat_max), vmin=np.float32(mf.feat_min),
                 train_emb=mf.train_emb, path=path, device=device, digest=digest, sample_rate=mf.sample_rate,
                 info=info, thresholds={**(side.thresholds if side else {}), **mf.thresholds}, identity=mf.identity,
                 stored=set(mf.thresholds))


def from_sidecar(state: dict, side: Sidecar, cfg: dict, path: Path, device: torch.device, digest: str) -> Model:
    """An original checkpoint with what its sidecar derived."""
    netG, netD = nets(state, cfg["net"], path, device)
    ident = side.identity
    return Model(netG=netG, netD=netD, cfg=cfg, vmax=np.float32(side.feat_max), vmin=np.float32(side.feat_min),
                 train_emb=side.train_emb, path=path, device=device, digest=digest,
                 sample_rate=int(side.sample_rate), info={"dataset": ident.dataset, "mt": ident.mt} if ident else {},
                 thresholds=dict(side.thresholds), identity=ident)


def load(path: str | Path, device: torch.device) -> Model:
    """A model that stands alone (scoring new recordings): ours, or the original's with its sidecar."""
    path = Path(path)
    state, mf = model_file.read(path, device)
    digest = sha256(path)
    if mf is not None:
        cfg = copy.deepcopy(mf.config)
        apply_precision(model_precision(mf.config, cfg), device)
        return from_file(mf, cfg, state, path, device, digest)
    side = sidecar.read(path, digest)
    if side is None or side.train_emb is None or side.config is None:
        raise AeganError(f"checkpoint {shown(path)} is in the original's format and has no sidecar "
                         f"{sidecar_of(path).name}: score it once with its dataset's test.py, which "
                         "derives what scoring needs from the training clips and keeps it there")
    apply_precision(model_precision(None, side.config), device)
    return from_sidecar(state, side, copy.deepcopy(side.config), path, device, digest)


def save_thresholds(model: Model) -> Path:
    """Keep thresholds fitted at test time in the sidecar (the model file is written by training alone)."""
    extra = {k: v for k, v in model.thresholds.items() if k not in model.stored}
    if model.stored or model.info.get("epoch") is not None:  # ours: the sidecar holds only these thresholds
        side = Sidecar(checkpoint_sha256=model.digest, identity=None, settings={}, thresholds=extra)
    else:
        side = derived(model, extra)
    return sidecar.write(model.path, side)


def derived(model: Model, thresholds: dict) -> Sidecar:
    """What an original checkpoint's sidecar keeps of its model."""
    return Sidecar(checkpoint_sha256=model.digest, identity=model.identity,
                   settings=sidecar.derived_settings(model.cfg), config=model.cfg, feat_max=float(model.vmax),
                   feat_min=float(model.vmin), train_emb=model.train_emb, sample_rate=model.sample_rate,
                   thresholds=thresholds)
