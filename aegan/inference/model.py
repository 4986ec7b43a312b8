"""A trained model ready to score clips, and the one test.py and loc.py score with. An original checkpoint holds
only the weights: the scaling and the critic's reference set are derived once from its training clips and kept in its
sidecar (store/sidecar.py), with thresholds fitted at test time."""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from aegan.core.errors import AeganError, shown
from aegan.core.files import sha256
from aegan.core.metrics import D_METRICS, metric_choice
from aegan.data.cache import clip_features
from aegan.data.clips import Clip, DatasetSpec, Identity, check_identity
from aegan.data.segments import minmax, scaled_tensor
from aegan.method.device import apply_precision, model_precision, sized_by
from aegan.method.nets import Discriminator, Generator, build_nets
from aegan.scoring import clip_scores
from aegan.scoring.clip_scores import EmbeddingDetectors, Scored, score_clips, training_scores, with_critic_scores
from aegan.scoring.held_out import basis, fitted_rule, is_current
from aegan.settings.layers import Resolved, get, leaves, node_of
from aegan.store import checkpoint, model_file, sidecar
from aegan.store.model_dir import ModelDir, sidecar_of
from aegan.store.model_file import ModelFile, threshold_key
from aegan.store.sidecar import Sidecar


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
        """The one scoring pass of `specs` (scaled, (N, mel_bin, T)): every metric's scores, embeddings,
        reconstructions."""
        scored = score_clips(self.netG, self.netD, specs, self.cfg, recon, desc)
        return replace(scored, scores=with_critic_scores(scored.scores, scored.emb, self.detectors))

    def metric(self) -> str:
        """The metric whose scores are written (metric_choice: the one rule)."""
        return self.metric_choice()[0]

    def metric_choice(self, best_here: str | None = None) -> tuple[str, str]:
        """(the metric whose scores are written, how it was chosen)."""
        return metric_choice(self.cfg["detect"]["metric"], best_here, self.info.get("metric"),
                             self.info.get("chosen_by", "selected in training"))

    def threshold(self, metric: str, train_specs=None) -> tuple[dict, bool]:
        """(the rule of `metric` at detect.decision_percentile, whether it was fitted now); fitting a generator
        metric's calls `train_specs()` for the scaled training features."""
        percentile = self.cfg["detect"]["decision_percentile"]
        key = threshold_key(metric, percentile)
        if key in self.thresholds and is_current(self.thresholds[key]):
            return self.thresholds[key], False
        if key in self.thresholds:  # kept before critic thresholds were held out: refitted, and kept in the sidecar
            print(f"decision: the {metric} threshold kept with {self.path.name} "
                  f"({self.thresholds[key]['threshold']:.6g}) was fitted on in-sample training scores (an earlier "
                  f"version); refitted on held-out ones ({basis(metric)})")
            self.stored.discard(key)
        specs = None if metric in D_METRICS else train_specs()
        scores = training_scores(metric, self.netG, self.detectors, self.train_emb, specs, self.cfg)
        self.thresholds[key] = fitted_rule(metric, scores, percentile)
        return self.thresholds[key], True


def training_choice(mf: ModelFile) -> str:
    """How training chose the model's metric, read from its stored settings (the summaries say it)."""
    configured = (mf.config.get("detect") or {}).get("metric")
    if math.isnan(mf.value) or (mf.config.get("train") or {}).get("select") == "metric":
        return "detect.metric in training" if configured else "default"
    return "selected in training"


def from_checkpoint(resolved: Resolved, saved: dict, path: object) -> tuple[dict, list[str]]:
    """(the run's config with the net, feat and train_set settings a model was trained with, the keys changed);
    one the user set (--config, --set) to another value is an error: the weights only fit their own settings."""
    cfg = copy.deepcopy(resolved.cfg)
    changed = []
    for name, value in leaves({k: saved[k] for k in ("net", "feat", "train_set") if k in saved}):
        try:
            node, leaf = node_of(cfg, name)
        except (KeyError, TypeError):  # a section this version lacks, or a setting where it has a section
            continue
        if name == "feat.workers" or not isinstance(node, dict) or leaf not in node or node[leaf] == value:
            continue
        if name in resolved.explicit:
            raise AeganError(f"{name}={node[leaf]!r} was set, but checkpoint {shown(path)} was trained with "
                             f"{name}={value!r}: leave {name} out (the checkpoint's is used), or train a model with "
                             "it")
        node[leaf] = value
        changed.append(name)
    return cfg, changed


def model_settings(resolved: Resolved, mt: str) -> dict:
    """The settings test.py and loc.py run with: the run's, with the model's own (from_checkpoint)."""
    path = ModelDir.of(resolved.cfg, mt).model
    if not path.exists():  # --print-config before training: the settings from the files and flags
        return resolved.cfg
    _, mf = model_file.read(path)
    return resolved.cfg if mf is None else from_checkpoint(resolved, mf.config, path)[0]


def nets(state: dict, net_cfg: dict, path: Path, device: torch.device) -> tuple[Generator, Discriminator]:
    """G and D with a checkpoint's weights, for scoring."""
    with sized_by({"net": net_cfg}, f"the networks of {shown(path)} on {device}"):
        netG, netD = build_nets(net_cfg)
        checkpoint.load_weights(netG, state["netG"], path, "netG", net_cfg)
        checkpoint.load_weights(netD, state["netD"], path, "netD", net_cfg)
        return netG.to(device).eval(), netD.to(device).eval()


def built(state: dict, src: ModelFile | Sidecar, cfg: dict, path: Path, device: torch.device) -> Model:
    """Our model file, with thresholds fitted later from its sidecar; or an original checkpoint with what its sidecar
    derived (read for this file: its key is the file's digest)."""
    netG, netD = nets(state, cfg["net"], path, device)
    if isinstance(src, Sidecar):
        side, digest, stored = src, src.checkpoint_sha256, {}
        info = {"dataset": src.identity.dataset, "mt": src.identity.mt} if src.identity else {}
    else:
        digest, stored = sha256(path), src.thresholds
        side = sidecar.read(path, digest)
        info = {"epoch": src.epoch, "metric": src.metric, "chosen_by": training_choice(src),
                "dataset": src.identity.dataset, "mt": src.identity.mt}
    kept = side.thresholds if side else {}
    # the model file's rule, unless it is stale and the sidecar holds its refit
    own = {k: v for k, v in stored.items() if is_current(v) or not is_current(kept.get(k, v))}
    return Model(netG=netG, netD=netD, cfg=cfg, vmax=np.float32(src.feat_max), vmin=np.float32(src.feat_min),
                 train_emb=src.train_emb, path=path, device=device, digest=digest, sample_rate=int(src.sample_rate),
                 info=info, thresholds={**kept, **own}, identity=src.identity, stored=set(own))


def load(path: str | Path, device: torch.device) -> Model:
    """A model that stands alone (scoring new recordings): ours, or the original's with its sidecar."""
    path = Path(path)
    state, mf = model_file.read(path, device)
    if mf is not None:
        cfg = copy.deepcopy(mf.config)
        apply_precision(model_precision(mf.config, cfg), device)
        return built(state, mf, cfg, path, device)
    side = sidecar.read(path, sha256(path))
    if side is None or side.train_emb is None or side.config is None:
        raise AeganError(f"checkpoint {shown(path)} is in the original's format and has no sidecar "
                         f"{sidecar_of(path).name}: score it once with its dataset's test.py, which "
                         "derives what scoring needs from the training clips and keeps it there")
    apply_precision(model_precision(None, side.config), device)
    return built(state, side, copy.deepcopy(side.config), path, device)


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


@dataclass(kw_only=True)
class Training:
    """The model's training clips, listed once; `specs()` extracts their scaled features when first called."""

    clips: list[Clip]
    specs: Callable[[], torch.Tensor]


def prepare(spec: DatasetSpec, resolved: Resolved, mt: str, device: torch.device) -> tuple[Model, Training]:
    """The selected model of `mt` with its own settings, checked against the data at hand, and its training clips."""
    path = ModelDir.of(resolved.cfg, mt).model
    state, mf = model_file.read(path, device)
    cfg = resolved.cfg
    if mf is not None:
        cfg, changed = from_checkpoint(resolved, mf.config, path)
        if changed:
            print(f"config: from the checkpoint: {', '.join(f'{k}={get(cfg, k)!r}' for k in changed)}")
    apply_precision(model_precision(mf.config if mf else None, cfg, resolved.explicit), device)
    train_clips = spec.train_clips(cfg, mt)
    expected = spec.identity(cfg, mt, train_clips)
    if mf is not None:
        check_identity(path, mf.identity, expected)
        model = built(state, mf, cfg, path, device)
        print(f"model: {path} (epoch {mf.epoch}, selected metric {mf.metric})")
    else:
        model = _original(cfg, state, path, device, train_clips, expected)

    @functools.cache
    def specs() -> torch.Tensor:
        return model.scaled(clip_features(cfg, mt, train_clips, f"train_{cfg['train_set']}"))

    return model, Training(clips=train_clips, specs=specs)


def _original(cfg: dict, state: dict, path: Path, device: torch.device, train_clips: list[Clip],
              expected: Identity) -> Model:
    """An original checkpoint with its sidecar; what it lacks derived from the training clips when that is stale."""
    digest = sha256(path)
    print(f"model: {path} (original-format checkpoint)")
    side = sidecar.read(path, digest, expected, cfg)
    if side is not None and side.train_emb is not None:
        return built(state, side, cfg, path, device)
    raw = clip_features(cfg, expected.mt, train_clips, f"train_{cfg['train_set']}")
    vmax, vmin = minmax(raw)
    print(f"features: the checkpoint holds no max/min; computed from {len(train_clips)} training clips "
          f"({cfg['train_set']}): max {vmax:.4f} min {vmin:.4f}")
    netG, netD = nets(state, cfg["net"], path, device)
    emb = clip_scores.embed_clips(netD, scaled_tensor(raw, vmax, vmin, device), cfg,
                                  "training clips' critic embeddings")[clip_scores.reference_order(train_clips)]
    model = Model(netG=netG, netD=netD, cfg=cfg, vmax=vmax, vmin=vmin, train_emb=np.asarray(emb), path=path,
                  device=device, digest=digest, sample_rate=sf.info(str(train_clips[0].path)).samplerate,
                  info={"dataset": expected.dataset, "mt": expected.mt}, identity=expected)
    print(f"model: kept what scoring needs in {sidecar.write(path, derived(model, {}))}")
    return model
