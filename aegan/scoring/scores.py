"""The 19 anomaly scores of a clip (higher = more anomalous). SPEC section 5.

15 generator scores compare X^ = G(X) with X (input space) and Enc(X^) with Enc(X) (latent space)
per segment, pooled over the clip's segments; 4 critic scores are outlier scores of the clip's mean
critic embedding against the training clips' embeddings.

Every number is computed as the original code computes it, so that near-ties between clips break the
same way (tests/test_oracle.py compares each clip's 19 scores with the original's): one forward per clip
over all of its segments (a convolution's last bit can depend on the batch it runs in), float32
embeddings in the original's order, and each clip's detector scores as one query of that clip gives them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import DistanceMetric
from sklearn.neighbors import LocalOutlierFactor, NearestNeighbors
from torch import nn

from aegan.core.metrics import D_METRICS, G_DISTS, POOLS, metric_names
from aegan.core.progress import Bar
from aegan.data.clips import Clip
from aegan.data.segments import clip_segments
from aegan.method.device import autocast

NAN_SCORE = float(np.finfo(np.float32).max)


def segment_scores(x: torch.Tensor, xh: torch.Tensor, z: torch.Tensor, zh: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-segment distances, each (S,): x (S,1,H,W) vs x^, z (S,nz,1,1) vs Enc(x^), summed over all but the
    segment axis as the original does."""
    return {
        "x_2": (xh - x).pow(2).sum(dim=(1, 2, 3)), "x_1": (xh - x).abs().sum(dim=(1, 2, 3)),
        "z_2": (zh - z).pow(2).sum(dim=(1, 2, 3)), "z_1": (zh - z).abs().sum(dim=(1, 2, 3)),
        "z_cos": (1 - F.cosine_similarity(zh, z)).sum(dim=(1, 2)),
    }


def pool(seg: torch.Tensor, how: str) -> float:
    """One clip's (S,) segment scores -> its score."""
    if how == "sum":
        return seg.sum().item()
    if how == "min":
        return seg.min().item()
    if how == "max":
        return seg.max().item()
    raise ValueError(f"unknown pooling {how!r}")


@dataclass
class Scored:
    """What the scoring pass gives for clips: per metric an array over the clips (the 19, or the 15 generator
    scores without a critic), the clips' mean critic embeddings (N, C) float32, and when asked each clip's
    reconstruction G(x) of its segments (S, 1, M, F), for the localization maps."""

    scores: dict[str, np.ndarray]
    emb: np.ndarray | None
    recon: list[torch.Tensor] | None = None


@torch.inference_mode()
def _clip_pass(netG: nn.Module, netD: nn.Module | None, x: torch.Tensor, amp: str, device: torch.device
               ) -> tuple[dict[str, float], np.ndarray | None, torch.Tensor]:
    """One clip's segments x (S,1,M,F), one forward: its 15 generator scores, mean critic embedding, G(x)."""
    with autocast(device, amp):
        xh, z = netG.forward_with_z(x)  # the encoder output of x is Z
        zh = netG.Encoder(xh)
        emb = netD.embed(x) if netD is not None else None
    seg = segment_scores(x.float(), xh.float(), z.float(), zh.float())
    g = {f"G_{dom}_{dist}_{p}": pool(seg[f"{dom}_{dist}"], p) for dom, dist in G_DISTS for p in POOLS}
    return g, None if emb is None else emb.float().mean(dim=0).cpu().numpy(), xh


def score_clips(netG: nn.Module, netD: nn.Module | None, detectors: EmbeddingDetectors | None, specs: torch.Tensor,
                feat: dict, device: torch.device, amp: str = "fp32", recon: bool = False,
                desc: str | None = "scoring") -> Scored:
    """THE scoring pass (test.py, the per-epoch evaluation, loc.py and the Detector all call it): every clip of
    `specs` (scaled, (N, M, T)) through G and D once, one forward per clip over all of its segments (a
    convolution's last bit can depend on the batch it runs in), then the critic detectors fitted on the
    training clips; NaN and inf become the largest float32 (SPEC section 5). Without netD (or without
    detectors) only the generator scores. A new metric is computed here and named in metric_names()."""
    netG.eval()
    if netD is not None:
        netD.eval()
    rows, embs, recons = [], [], []
    for i in Bar(range(specs.shape[0]), desc or "", unit="clips", disable=desc is None):
        x = clip_segments(specs, i, feat["frame_num"], feat["graph_hop_f"], device)
        g, emb, xh = _clip_pass(netG, netD, x, amp, device)
        rows.append(g)
        if emb is not None:
            embs.append(emb)
        if recon:
            recons.append(xh.float())
    g_scores = {k: np.asarray([r[k] for r in rows], dtype=np.float64) for k in rows[0]} if rows else {}
    emb = np.stack(embs).astype(np.float32) if embs else None
    scores = with_critic_scores(g_scores, emb, detectors)
    return Scored(scores, emb, recons if recon else None)


def with_critic_scores(g_scores: dict[str, np.ndarray], emb: np.ndarray | None,
                       detectors: EmbeddingDetectors | None) -> dict[str, np.ndarray]:
    """The scoring pass's second half (CPU only, so it may run while the next epoch trains): the critic
    detectors' four scores of the embeddings joined to the generator scores, in table order, NaN and inf as
    the largest float32."""
    merged = dict(g_scores)
    if emb is not None and detectors is not None:
        ok = np.isfinite(emb).all(axis=1)  # sklearn refuses NaN; such a clip's critic scores are NaN, then max
        part = detectors.score(emb[ok]) if ok.any() else {m: np.zeros(0) for m in D_METRICS}
        for m in D_METRICS:
            merged[m] = np.full(len(emb), np.nan)
            merged[m][ok] = part[m]
    return {m: np.nan_to_num(merged[m], nan=NAN_SCORE, posinf=NAN_SCORE) for m in metric_names() if m in merged}


@torch.inference_mode()
def embed_clips(netD: nn.Module, specs: torch.Tensor, frame_num: int, hop: int, device: torch.device,
                amp: str = "fp32", desc: str = "critic embeddings") -> np.ndarray:
    """Mean critic embedding over each clip's segments: (N, C) float32 (the training clips' reference set,
    which needs no generator pass)."""
    netD.eval()
    out = []
    for i in Bar(range(specs.shape[0]), desc, unit="clips"):
        x = clip_segments(specs, i, frame_num, hop, device)
        with autocast(device, amp):
            emb = netD.embed(x)
        out.append(emb.float().mean(dim=0).cpu().numpy())
    return np.stack(out).astype(np.float32)


class EmbeddingDetectors:
    """D_maha, D_knn, D_lof, D_cos fitted once on the training clips' embeddings (all groups pooled).

    Fitted and queried with float32 embeddings, as the original does; the order of the training
    embeddings is the original's too (by section or ID, then domain), which fixes the rounding of the
    mean and covariance and which neighbour wins a tie. D_maha inverts the covariance like the original
    (sklearn's np.linalg.inv) when there are more training clips than embedding dimensions; with fewer the
    covariance is singular, the original's inverse is numerical noise, and a pseudo-inverse is used.
    """

    def __init__(self, train_emb: np.ndarray):
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
        """One critic metric of one clip's embedding (1, C), computed as the original does."""
        if metric == "D_maha":
            return float(self.maha.pairwise([self.mean], emb)[0][0])
        if metric == "D_knn":
            return float(self.knn.kneighbors(emb)[0].sum(-1)[0])
        if metric == "D_lof":
            return float(-self.lof.score_samples(emb)[0].sum(-1))
        cos = 1 - torch.cosine_similarity(torch.from_numpy(emb), self.mean_t.repeat(emb.shape[0], 1)).numpy()
        return float(cos[0])

    def score_one(self, emb: np.ndarray) -> dict[str, float]:
        """The four scores of one clip's embedding (1, C)."""
        return {m: self.one(m, emb) for m in D_METRICS}

    def score(self, emb: np.ndarray, metrics: tuple[str, ...] = D_METRICS) -> dict[str, np.ndarray]:
        """`metrics` of every clip, each row equal to score_one's to the bit (tests/test_scores.py). D_maha and
        D_cos are queried in one batch: each row is computed on its own (sklearn's per-pair loop, torch's per-row
        reduction), so the batch changes no bit. D_knn and D_lof stay one clip at a time: a batch's distances
        come from a matrix product (sgemm) whose last bits differ from one row's (gemv) in most rows."""
        emb = np.asarray(emb, dtype=np.float32)
        out: dict[str, np.ndarray] = {}
        if "D_maha" in metrics:
            out["D_maha"] = self.maha.pairwise([self.mean], emb)[0] if len(emb) else np.zeros(0)
        if "D_cos" in metrics:
            x = torch.from_numpy(emb)
            out["D_cos"] = (1 - torch.cosine_similarity(x, self.mean_t.repeat(x.shape[0], 1)).numpy()).astype(
                np.float64)
        for m in ("D_knn", "D_lof"):
            if m in metrics:
                out[m] = np.array([self.one(m, e[None]) for e in emb], dtype=np.float64)
        return {m: np.asarray(out[m], dtype=np.float64) for m in D_METRICS if m in metrics}


def reference_order(clips: list[Clip]) -> list[int]:
    """Training clips in the original's order for the critic detectors: by section or ID, then source before
    target, in listing order within. Only DCASE 2020 deval differs from the listing (dev IDs, then eval IDs)."""
    return sorted(range(len(clips)), key=lambda i: (clips[i].group, clips[i].domain or ""))


def training_scores(metric: str, netG: nn.Module, detectors: EmbeddingDetectors, train_emb: np.ndarray,
                    train_specs: torch.Tensor | None, feat: dict, device: torch.device, amp: str = "fp32"
                    ) -> np.ndarray:
    """One metric's scores of the training clips (for the decision threshold). A critic metric comes from the
    fitted detectors and the stored embeddings; only a generator metric runs G over the training clips'
    scaled features `train_specs` (None will do for a critic metric)."""
    if metric in D_METRICS:
        scores = detectors.score(train_emb, (metric,))[metric]  # only this metric's detector is queried
        return np.nan_to_num(scores, nan=NAN_SCORE, posinf=NAN_SCORE)
    return score_clips(netG, None, None, train_specs, feat, device, amp, desc="training clips' scores").scores[metric]
