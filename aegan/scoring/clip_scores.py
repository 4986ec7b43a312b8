"""The scoring pass and the anomaly scores of a clip (higher = more anomalous; SPEC section 5; declared in
core/metrics.py): generator scores of G(x) against x, critic scores of the clip's mean embedding against the
training clips'. Every number
is computed as the original computes it, so near-ties between clips break the same way (tests/test_oracle.py)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from aegan.core.metrics import D_METRICS, G_DISTS, POOLS, metric_names
from aegan.core.progress import Bar
from aegan.data.clips import Clip
from aegan.data.segments import clip_segments
from aegan.method.device import autocast
from aegan.scoring.held_out import held_out_scores

NAN_SCORE = float(np.finfo(np.float32).max)


def segment_scores(x: torch.Tensor, xh: torch.Tensor, z: torch.Tensor, zh: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-segment distances (S,) of x vs G(x) and z vs Enc(G(x)), summed over all but the segment axis."""
    return {
        "x_2": (xh - x).pow(2).sum(dim=(1, 2, 3)), "x_1": (xh - x).abs().sum(dim=(1, 2, 3)),
        "z_2": (zh - z).pow(2).sum(dim=(1, 2, 3)), "z_1": (zh - z).abs().sum(dim=(1, 2, 3)),
        "z_cos": (1 - F.cosine_similarity(zh, z)).sum(dim=(1, 2)),
    }


@dataclass
class Scored:
    """Per metric an array over the clips, their mean critic embeddings (N, C) float32 and, when asked, each clip's
    G(x) of its segments (S, 1, M, F) for the localization maps."""

    scores: dict[str, np.ndarray]
    emb: np.ndarray | None
    recon: list[torch.Tensor] | None = None


@torch.inference_mode()
def score_clips(netG: nn.Module, netD: nn.Module | None, specs: torch.Tensor, cfg: dict, recon: bool = False,
                desc: str | None = "scoring") -> Scored:
    """THE scoring pass: each clip of `specs` (scaled, (N, M, T)) through G (and D) in one forward over all of its
    segments, as a convolution's last bit can depend on its batch; the critic scores: with_critic_scores."""
    netG.eval()
    if netD is not None:
        netD.eval()
    device, feat = next(netG.parameters()).device, cfg["feat"]
    rows, embs, recons = [], [], []
    for i in Bar(range(specs.shape[0]), desc or "", unit="clips", disable=desc is None):
        x = clip_segments(specs, i, feat["frame_num"], feat["graph_hop_f"], device)
        with autocast(device, cfg["detect"]["amp"]):
            xh, z = netG.forward_with_z(x)
            zh = netG.Encoder(xh)
            emb = netD.embed(x) if netD is not None else None
        seg = segment_scores(x.float(), xh.float(), z.float(), zh.float())
        rows.append({f"G_{dom}_{dist}_{p}": getattr(seg[f"{dom}_{dist}"], p)().item()
                     for dom, dist in G_DISTS for p in POOLS})
        if emb is not None:
            embs.append(emb.float().mean(dim=0).cpu().numpy())
        if recon:
            recons.append(xh.float())
    g_scores = {k: np.asarray([r[k] for r in rows], dtype=np.float64) for k in rows[0]} if rows else {}
    emb = np.stack(embs).astype(np.float32) if embs else None
    return Scored(with_critic_scores(g_scores, emb, None), emb, recons if recon else None)


def with_critic_scores(g_scores: dict[str, np.ndarray], emb: np.ndarray | None,
                       detectors: EmbeddingDetectors | None) -> dict[str, np.ndarray]:
    """The scoring pass's CPU half (it may run beside the next epoch): the critic scores joined to the generator
    scores, in table order, NaN and inf as the largest float32."""
    merged = dict(g_scores)
    if emb is not None and detectors is not None:
        ok = np.isfinite(emb).all(axis=1)  # sklearn refuses NaN; such a clip's critic scores are NaN, then max
        part = detectors.score(emb[ok]) if ok.any() else {m: np.zeros(0) for m in D_METRICS}
        for m in D_METRICS:
            merged[m] = np.full(len(emb), np.nan)
            merged[m][ok] = part[m]
    return {m: np.nan_to_num(merged[m], nan=NAN_SCORE, posinf=NAN_SCORE) for m in metric_names() if m in merged}


@torch.inference_mode()
def embed_clips(netD: nn.Module, specs: torch.Tensor, cfg: dict, desc: str = "critic embeddings") -> np.ndarray:
    """Mean critic embedding over each clip's segments, (N, C) float32: the training clips' reference set."""
    netD.eval()
    device, feat = next(netD.parameters()).device, cfg["feat"]
    out = []
    for i in Bar(range(specs.shape[0]), desc, unit="clips"):
        x = clip_segments(specs, i, feat["frame_num"], feat["graph_hop_f"], device)
        with autocast(device, cfg["detect"]["amp"]):
            emb = netD.embed(x)
        out.append(emb.float().mean(dim=0).cpu().numpy())
    return np.stack(out).astype(np.float32)


class EmbeddingDetectors:
    """D_maha, D_knn, D_lof, D_cos fitted on the training clips' float32 embeddings in the original's order (it fixes
    the rounding and which neighbour wins a tie). D_maha inverts the covariance as the original (np.linalg.inv) when
    there are more clips than dimensions; with fewer it is singular, the original's inverse is numerical noise, and a
    pseudo-inverse is used."""

    def __init__(self, train_emb: np.ndarray):
        from sklearn.metrics import DistanceMetric  # 0.8 s: every command imports this module, only scoring fits these
        from sklearn.neighbors import LocalOutlierFactor, NearestNeighbors

        train_emb = np.asarray(train_emb, dtype=np.float32)
        n, dim = train_emb.shape
        self.mean = np.mean(train_emb, axis=0)
        cov = np.cov(train_emb, rowvar=False)
        self.maha = DistanceMetric.get_metric("mahalanobis", VI=np.linalg.inv(cov) if n > dim else np.linalg.pinv(cov))
        self.knn = NearestNeighbors(n_neighbors=min(2, n), metric="cosine").fit(train_emb)
        self.lof = LocalOutlierFactor(n_neighbors=min(4, n - 1), contamination=1e-6, metric="cosine",
                                      novelty=True).fit(train_emb)
        self.mean_t = torch.from_numpy(self.mean)

    def one(self, metric: str, emb: np.ndarray) -> float:
        """One critic metric of one clip's embedding (1, C): the original's one-clip query."""
        return float(self.score(emb, (metric,))[metric][0])

    def score(self, emb: np.ndarray, metrics: tuple[str, ...] = D_METRICS) -> dict[str, np.ndarray]:
        """`metrics` of every clip. D_maha and D_cos compute each row on its own, so they run in one batch; D_knn and
        D_lof query one clip at a time, as a batch's sgemm rounds unlike one row's gemv (tests/test_scores.py)."""
        emb = np.asarray(emb, dtype=np.float32)
        out = {}
        if "D_maha" in metrics:
            out["D_maha"] = self.maha.pairwise([self.mean], emb)[0] if len(emb) else np.zeros(0)
        if "D_cos" in metrics:
            x = torch.from_numpy(emb)
            out["D_cos"] = 1 - torch.cosine_similarity(x, self.mean_t.repeat(x.shape[0], 1)).numpy()
        if "D_knn" in metrics:
            out["D_knn"] = [self.knn.kneighbors(e[None])[0].sum(-1)[0] for e in emb]
        if "D_lof" in metrics:
            out["D_lof"] = [-self.lof.score_samples(e[None])[0].sum(-1) for e in emb]
        return {m: np.asarray(out[m], dtype=np.float64) for m in D_METRICS if m in metrics}


def reference_order(clips: list[Clip]) -> list[int]:
    """Training clips in the original's order for the detectors: by section or ID, then source before target, in
    listing order within. Only DCASE 2020 deval differs from the listing (dev IDs, then eval IDs)."""
    return sorted(range(len(clips)), key=lambda i: (clips[i].group, clips[i].domain or ""))


def training_scores(metric: str, netG: nn.Module | None, detectors: EmbeddingDetectors, train_emb: np.ndarray,
                    train_specs: torch.Tensor | None, cfg: dict) -> np.ndarray:
    """One metric's scores of the training clips, for the decision threshold; only a generator metric runs G. A
    critic metric's are held out (held_out.py): each clip against the other training clips, as a new clip is."""
    if metric in D_METRICS:
        scores = held_out_scores(metric, detectors, train_emb)
        return np.nan_to_num(scores, nan=NAN_SCORE, posinf=NAN_SCORE)
    return score_clips(netG, None, train_specs, cfg, desc="training clips' scores").scores[metric]
