"""The 19 anomaly scores of a clip (higher = more anomalous). SPEC section 5.

15 generator scores compare X^ = G(X) with X (input space) and Enc(X^) with Enc(X) (latent space)
per segment, pooled over the clip's segments; 4 critic scores are outlier scores of the clip's mean
critic embedding against the training clips' embeddings.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.neighbors import LocalOutlierFactor, NearestNeighbors
from torch import nn

from .features import segment_view

G_DISTS = (("x", "2"), ("x", "1"), ("z", "2"), ("z", "1"), ("z", "cos"))
D_METRICS = ("D_maha", "D_knn", "D_lof", "D_cos")
NAN_SCORE = float(np.finfo(np.float32).max)


def metric_names(pools: tuple[str, ...] = ("sum", "min", "max")) -> list[str]:
    """The 19 metric names in table order; `pools` is (sum|mean, min, max)."""
    return [f"G_{dom}_{dist}_{pool}" for dom, dist in G_DISTS for pool in pools] + list(D_METRICS)


def segment_scores(x: torch.Tensor, xh: torch.Tensor, z: torch.Tensor, zh: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-segment distances, each (S,): x (S,1,H,W) vs x^, z (S,nz,1,1) vs Enc(x^)."""
    dx, dz = (xh - x).flatten(1), (zh - z).flatten(1)
    z, zh = z.flatten(1), zh.flatten(1)
    return {
        "x_2": dx.pow(2).sum(1), "x_1": dx.abs().sum(1),
        "z_2": dz.pow(2).sum(1), "z_1": dz.abs().sum(1),
        "z_cos": 1 - torch.nn.functional.cosine_similarity(z, zh, dim=1),
    }


def pool(seg: torch.Tensor, how: str) -> torch.Tensor:
    """(clips, S) -> (clips,). `mean` ranks clips like `sum` when all clips have S segments."""
    if how == "sum":
        return seg.sum(1)
    if how == "mean":
        return seg.mean(1)
    if how == "min":
        return seg.min(1).values
    if how == "max":
        return seg.max(1).values
    raise ValueError(f"unknown pooling {how!r}")


def _chunks(n_clips: int, n_seg: int, batch: int):
    per = max(1, batch // max(n_seg, 1))
    for start in range(0, n_clips, per):
        yield start, min(start + per, n_clips)


@torch.no_grad()
def embed_clips(netD: nn.Module, specs: torch.Tensor, frame_num: int, hop: int, device: torch.device,
                batch: int = 512, amp: str = "fp32") -> np.ndarray:
    """Mean critic embedding over each clip's segments: (N, C)."""
    netD.eval()
    view = segment_view(specs, frame_num, hop)
    n, s = view.shape[:2]
    out = []
    for a, b in _chunks(n, s, batch):
        seg = view[a:b].reshape(-1, 1, frame_num, frame_num).to(device, non_blocking=True)
        with torch.autocast(device.type, torch.bfloat16, enabled=amp == "bf16"):
            emb = netD.embed(seg)
        out.append(emb.float().reshape(b - a, s, -1).mean(1).cpu())
    return torch.cat(out).numpy().astype(np.float64)


@torch.no_grad()
def generator_scores(netG: nn.Module, netD: nn.Module, specs: torch.Tensor, frame_num: int, hop: int,
                     device: torch.device, pools: tuple[str, ...], batch: int = 512, amp: str = "fp32"
                     ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The 15 G scores of every clip and the clips' mean critic embeddings, in one pass over the segments."""
    netG.eval()
    netD.eval()
    view = segment_view(specs, frame_num, hop)
    n, s = view.shape[:2]
    scores: dict[str, list] = {f"G_{dom}_{dist}_{p}": [] for dom, dist in G_DISTS for p in pools}
    embs = []
    for a, b in _chunks(n, s, batch):
        x = view[a:b].reshape(-1, 1, frame_num, frame_num).to(device, non_blocking=True)
        with torch.autocast(device.type, torch.bfloat16, enabled=amp == "bf16"):
            xh, z = netG.forward_with_z(x)  # encoder output of x reused as Z
            zh = netG.Encoder(xh)
            emb = netD.embed(x)
        seg = segment_scores(x.float(), xh.float(), z.float(), zh.float())
        for (dom, dist) in G_DISTS:
            per_clip = seg[f"{dom}_{dist}"].reshape(b - a, s)
            for p in pools:
                scores[f"G_{dom}_{dist}_{p}"].append(pool(per_clip, p).cpu())
        embs.append(emb.float().reshape(b - a, s, -1).mean(1).cpu())
    out = {k: torch.cat(v).double().numpy() for k, v in scores.items()}
    return out, torch.cat(embs).numpy().astype(np.float64)


class EmbeddingDetectors:
    """D_maha, D_knn, D_lof, D_cos fitted once on the training clips' embeddings (all groups pooled)."""

    def __init__(self, train_emb: np.ndarray):
        train_emb = np.asarray(train_emb, dtype=np.float64)
        self.mean = train_emb.mean(0)
        # pinv equals inv for a full-rank covariance and stays defined when clips < embedding dims
        self.cov_inv = np.linalg.pinv(np.cov(train_emb, rowvar=False))
        self.knn = NearestNeighbors(n_neighbors=min(2, len(train_emb)), metric="cosine").fit(train_emb)
        self.lof = LocalOutlierFactor(n_neighbors=min(4, len(train_emb) - 1), metric="cosine", novelty=True,
                                      contamination=1e-6).fit(train_emb)

    def score(self, emb: np.ndarray) -> dict[str, np.ndarray]:
        emb = np.asarray(emb, dtype=np.float64)
        diff = emb - self.mean
        maha = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", diff, self.cov_inv, diff), 0))
        dist, _ = self.knn.kneighbors(emb)
        cos = 1 - (emb @ self.mean) / (np.linalg.norm(emb, axis=1) * np.linalg.norm(self.mean))
        return {"D_maha": maha, "D_knn": dist.sum(1), "D_lof": -self.lof.score_samples(emb), "D_cos": cos}


def all_scores(g_scores: dict[str, np.ndarray], emb: np.ndarray, detectors: EmbeddingDetectors,
               pools: tuple[str, ...]) -> dict[str, np.ndarray]:
    """All 19 scores per clip in table order; NaN becomes the largest float32 (SPEC section 5)."""
    merged = {**g_scores, **detectors.score(emb)}
    return {name: np.nan_to_num(merged[name], nan=NAN_SCORE, posinf=NAN_SCORE) for name in metric_names(pools)}
