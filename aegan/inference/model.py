"""A trained model ready to score clips: the two networks and what scoring needs besides them.

Scoring needs the settings the model was trained with, the feature max/min of its training clips, its
critic's embeddings of those clips (the reference set of the four critic metrics) and, for decisions, fitted
thresholds. Our model files hold all of that (aegan/artifact.py). A checkpoint of the original code holds
only the weights: what it lacks is derived once from the training clips and kept in its sidecar (a cache,
re-derived when the checkpoint, the training clips or the feature settings change). Thresholds fitted at
test time for another metric are kept in the sidecar too.
"""

from __future__ import annotations

import copy
import functools
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from aegan.core.errors import AeganError, shown
from aegan.core.files import sha256
from aegan.core.metrics import metric_choice
from aegan.data.cache import clip_features
from aegan.data.clips import DatasetSpec
from aegan.data.scaling import minmax, scaled_tensor
from aegan.method.device import apply_precision, model_precision
from aegan.method.nets import Discriminator, Generator, build_nets
from aegan.scoring.decision import fit_threshold
from aegan.scoring.scores import EmbeddingDetectors, Scored, embed_clips, reference_order, score_clips, training_scores
from aegan.settings.layers import Resolved, get, leaves
from aegan.store import artifact, checkpoint
from aegan.store.artifact import Identity, Sidecar, threshold_key

# Settings a model fixes: the network and the features it was trained on, and its training clips.
MODEL_KEYS = ("net", "feat", "train_set")


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
    digest: str = ""  # sha256 of the checkpoint file: its sidecar's key
    sample_rate: int = 16000  # of its training clips (every DCASE dataset is 16 kHz)
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

    def threshold(self, metric: str, train_specs) -> tuple[dict, bool]:
        """(threshold of `metric` at detect.decision_percentile, whether it was fitted now). `train_specs` gives
        the scaled training features, needed only to fit a generator metric's threshold."""
        percentile = self.cfg["detect"]["decision_percentile"]
        key = threshold_key(metric, percentile)
        if key in self.thresholds:
            return self.thresholds[key], False
        scores = training_scores(metric, self.netG, self.detectors, self.train_emb, train_specs, self.cfg["feat"],
                                 self.device, self.cfg["detect"]["amp"])
        self.thresholds[key] = {"metric": metric, **fit_threshold(scores, percentile)}
        return self.thresholds[key], True


def training_choice(mf: artifact.ModelFile) -> str:
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
    path = checkpoint.model_paths(resolved.cfg, mt)[0]
    if not path.exists():  # --print-config before training: the settings from the files and flags
        return resolved.cfg
    _, mf = artifact.read(path)
    return resolved.cfg if mf is None else from_checkpoint(resolved, mf.config, path)[0]


def _nets(state: dict, net_cfg: dict, path: Path, device: torch.device):
    netG, netD = build_nets(net_cfg)
    checkpoint.load_weights(netG, state["netG"], path, "netG", net_cfg)
    checkpoint.load_weights(netD, state["netD"], path, "netD", net_cfg)
    return netG.to(device).eval(), netD.to(device).eval()


def _from_file(mf: artifact.ModelFile, cfg: dict, state: dict, path: Path, device: torch.device, digest: str
               ) -> Model:
    netG, netD = _nets(state, cfg["net"], path, device)
    info = {"epoch": mf.epoch, "metric": mf.metric, "chosen_by": training_choice(mf), "dataset": mf.identity.dataset,
            "mt": mf.identity.mt}
    side = artifact.read_sidecar(path, digest)  # thresholds fitted later for other metrics, if any
    thresholds = {**(side.thresholds if side else {}), **mf.thresholds}
    return Model(netG, netD, cfg, np.float32(mf.feat_max), np.float32(mf.feat_min), mf.train_emb, path, device,
                 digest, mf.sample_rate, info, thresholds, mf.identity, set(mf.thresholds))


def _from_sidecar(state: dict, side: Sidecar, cfg: dict, path: Path, device: torch.device, digest: str) -> Model:
    netG, netD = _nets(state, cfg["net"], path, device)
    ident = side.identity
    info = {"dataset": ident.dataset, "mt": ident.mt} if ident else {}
    return Model(netG, netD, cfg, np.float32(side.feat_max), np.float32(side.feat_min), side.train_emb, path, device,
                 digest, int(side.sample_rate), info, dict(side.thresholds), ident)


def load(path: str | Path, device: torch.device) -> Model:
    """A model that stands alone (scoring new recordings): ours, or the original's with its sidecar."""
    path = Path(path)
    state, mf = artifact.read(path, device)
    digest = sha256(path)
    if mf is not None:
        cfg = copy.deepcopy(mf.config)
        apply_precision(model_precision(mf.config, cfg), device)
        return _from_file(mf, cfg, state, path, device, digest)
    side = artifact.read_sidecar(path, digest)
    if side is None or side.train_emb is None or side.config is None:
        raise AeganError(f"checkpoint {shown(path)} is in the original's format and has no sidecar "
                         f"{artifact.sidecar_path(path).name}: score it once with its dataset's test.py, which "
                         "derives what scoring needs from the training clips and keeps it there")
    apply_precision(model_precision(None, side.config), device)
    return _from_sidecar(state, side, copy.deepcopy(side.config), path, device, digest)


def save_thresholds(model: Model) -> Path:
    """Keep thresholds fitted at test time in the sidecar (the model file is written by training alone)."""
    extra = {k: v for k, v in model.thresholds.items() if k not in model.stored}
    if model.stored or model.info.get("epoch") is not None:  # ours: the sidecar holds only these thresholds
        side = Sidecar(model.digest, None, {}, thresholds=extra)
    else:
        side = _derived(model, extra)
    return artifact.write_sidecar(model.path, side)


def _derived(model: Model, thresholds: dict) -> Sidecar:
    return Sidecar(model.digest, model.identity, artifact.derived_settings(model.cfg), model.cfg,
                   float(model.vmax), float(model.vmin), model.train_emb, model.sample_rate, thresholds)


def prepare(spec: DatasetSpec, resolved: Resolved, mt: str, device: torch.device) -> tuple[Model, callable]:
    """The selected model of `mt` for test.py / loc.py, checked against the data at hand (machine type,
    dataset, training clips); for an original checkpoint, what it lacks is derived from the training clips once
    and kept in the sidecar. Returns it and a function giving the scaled training features (extracted or read
    from the cache only when called)."""
    path, _ = checkpoint.model_paths(resolved.cfg, mt)
    state, mf = artifact.read(path, device)
    digest = sha256(path)
    cfg = resolved.cfg
    if mf is not None:
        cfg, changed = from_checkpoint(resolved, mf.config, path)
        if changed:
            print(f"config: from the checkpoint: {', '.join(f'{k}={get(cfg, k)!r}' for k in changed)}")
    apply_precision(model_precision(mf.config if mf else None, cfg, resolved.explicit), device)
    train_clips = spec.train_clips(cfg, mt)
    expected = spec.identity(cfg, mt, train_clips)

    @functools.cache
    def train_specs() -> torch.Tensor:
        return model.scaled(clip_features(cfg, mt, train_clips, f"train_{cfg['train_set']}"))

    if mf is not None:
        artifact.check_identity(path, mf.identity, expected)
        model = _from_file(mf, cfg, state, path, device, digest)
        print(f"model: {path} (epoch {mf.epoch}, selected metric {mf.metric})")
        return model, train_specs
    print(f"model: {path} (original-format checkpoint)")
    side = artifact.read_sidecar(path, digest, expected, cfg)
    if side is not None and side.train_emb is not None:
        model = _from_sidecar(state, side, cfg, path, device, digest)
    else:
        model = _derive(cfg, mt, state, path, device, digest, train_clips, expected)
    return model, train_specs


def _derive(cfg: dict, mt: str, state: dict, path: Path, device: torch.device, digest: str,
            train_clips: list, expected: Identity) -> Model:
    """What an original checkpoint lacks, from its training clips: the scaling and the critic's reference set."""
    raw = clip_features(cfg, mt, train_clips, f"train_{cfg['train_set']}")
    vmax, vmin = minmax(raw)
    print(f"features: the checkpoint holds no max/min; computed from {len(train_clips)} training clips "
          f"({cfg['train_set']}): max {vmax:.4f} min {vmin:.4f}")
    netG, netD = _nets(state, cfg["net"], path, device)
    feat = cfg["feat"]
    emb = embed_clips(netD, scaled_tensor(raw, vmax, vmin, device), feat["frame_num"], feat["graph_hop_f"], device,
                      cfg["detect"]["amp"], "training clips' critic embeddings")[reference_order(train_clips)]
    model = Model(netG, netD, cfg, vmax, vmin, emb, path, device, digest, sf.info(str(train_clips[0].path)).samplerate,
                  {"dataset": expected.dataset, "mt": mt}, {}, expected)
    print(f"model: kept what scoring needs in {artifact.write_sidecar(path, _derived(model, {}))}")
    return model
