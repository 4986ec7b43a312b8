"""The model test.py and loc.py score with: the selected model of a machine type, with its own network, feature and
training-clip settings, checked against the data at hand (machine type, dataset, training clips). For an original
checkpoint, what it lacks is derived from the training clips once and kept in its sidecar."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from aegan.core.files import sha256
from aegan.data.cache import clip_features
from aegan.data.clips import Clip, DatasetSpec
from aegan.data.identity import Identity, check_identity
from aegan.data.scaling import minmax, scaled_tensor
from aegan.inference.model import Model, derived, from_checkpoint, from_file, from_sidecar, nets
from aegan.method.device import apply_precision, model_precision
from aegan.scoring.scores import embed_clips, reference_order
from aegan.settings.layers import Resolved, get
from aegan.store import model_file, sidecar
from aegan.store.model_dir import ModelDir


@dataclass(kw_only=True)
class Training:
    """The model's training clips, listed once, and their scaled features, extracted (or read from the cache) only
    when `specs()` is first called."""

    clips: list[Clip]
    specs: Callable[[], torch.Tensor]


def prepare(spec: DatasetSpec, resolved: Resolved, mt: str, device: torch.device) -> tuple[Model, Training]:
    """The selected model of `mt` and its training clips."""
    path = ModelDir.of(resolved.cfg, mt).model
    state, mf = model_file.read(path, device)
    digest, cfg = sha256(path), resolved.cfg
    if mf is not None:
        cfg, changed = from_checkpoint(resolved, mf.config, path)
        if changed:
            print(f"config: from the checkpoint: {', '.join(f'{k}={get(cfg, k)!r}' for k in changed)}")
    apply_precision(model_precision(mf.config if mf else None, cfg, resolved.explicit), device)
    train_clips = spec.train_clips(cfg, mt)
    expected = spec.identity(cfg, mt, train_clips)
    if mf is not None:
        check_identity(path, mf.identity, expected)
        model = from_file(mf, cfg, state, path, device, digest)
        print(f"model: {path} (epoch {mf.epoch}, selected metric {mf.metric})")
    else:
        print(f"model: {path} (original-format checkpoint)")
        side = sidecar.read(path, digest, expected, cfg)
        model = (from_sidecar(state, side, cfg, path, device, digest) if side is not None and side.train_emb is not None
                 else _derive(cfg, mt, state, path, device, digest, train_clips, expected))

    @functools.cache
    def specs() -> torch.Tensor:
        return model.scaled(clip_features(cfg, mt, train_clips, f"train_{cfg['train_set']}"))

    return model, Training(clips=train_clips, specs=specs)


def _derive(cfg: dict, mt: str, state: dict, path: Path, device: torch.device, digest: str,
            train_clips: list[Clip], expected: Identity) -> Model:
    """What an original checkpoint lacks, from its training clips: the scaling and the critic's reference set."""
    raw = clip_features(cfg, mt, train_clips, f"train_{cfg['train_set']}")
    vmax, vmin = minmax(raw)
    print(f"features: the checkpoint holds no max/min; computed from {len(train_clips)} training clips "
          f"({cfg['train_set']}): max {vmax:.4f} min {vmin:.4f}")
    netG, netD = nets(state, cfg["net"], path, device)
    feat = cfg["feat"]
    emb = embed_clips(netD, scaled_tensor(raw, vmax, vmin, device), feat["frame_num"], feat["graph_hop_f"], device,
                      cfg["detect"]["amp"], "training clips' critic embeddings")[reference_order(train_clips)]
    model = Model(netG=netG, netD=netD, cfg=cfg, vmax=vmax, vmin=vmin, train_emb=np.asarray(emb), path=path,
                  device=device, digest=digest, sample_rate=sf.info(str(train_clips[0].path)).samplerate,
                  info={"dataset": expected.dataset, "mt": mt}, identity=expected)
    print(f"model: kept what scoring needs in {sidecar.write(path, derived(model, {}))}")
    return model
