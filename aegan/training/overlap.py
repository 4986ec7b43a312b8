"""The evaluation after each epoch, every metric on the labelled dev test set: its device part at once with the
epoch's weights, its CPU part (the critic detectors) in a thread beside the next epoch, with the same numbers."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from aegan.scoring.clip_scores import EmbeddingDetectors, embed_clips, reference_order, score_clips, with_critic_scores
from aegan.scoring.evaluation import Results, Rule
from aegan.training.parts import Data, Nets


@dataclass(kw_only=True)
class Pending:
    """An evaluated epoch whose critic detector queries may still be running."""

    epoch: int  # 0-based
    mean: dict  # its training losses
    seconds: float
    g_scores: dict[str, np.ndarray]
    test_emb: np.ndarray
    train_emb: np.ndarray
    weights: dict  # the epoch's netG and netD state dicts (the selected model's if it wins)
    future: Future | None = None

    def state(self) -> dict:
        """What the run state keeps of it, so that a resumed run settles it with the same numbers."""
        return {"epoch": self.epoch, "mean": self.mean, "seconds": self.seconds, "test_emb": _t(self.test_emb),
                "train_emb": _t(self.train_emb), "g_scores": {k: _t(v) for k, v in self.g_scores.items()}}


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a))


def train_embeddings(cfg: dict, nets: Nets, data: Data, desc: str) -> np.ndarray:
    """The critic detectors' reference set, kept with the selected model: in the original's order of the clips."""
    return embed_clips(nets.netD, data.train_specs, cfg, desc)[reference_order(data.train_clips)]


def score_epoch(cfg: dict, nets: Nets, data: Data) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """The device part: (generator scores, test embeddings, training embeddings) of this epoch's weights."""
    train_emb = train_embeddings(cfg, nets, data, "evaluation: training embeddings")
    scored = score_clips(nets.netG, nets.netD, data.test_specs, cfg, desc="evaluation: dev test clips")
    return scored.scores, scored.emb, train_emb


def critic_results(rule: Rule, cfg: dict, test_clips: list, g_scores: dict[str, np.ndarray],
                   test_emb: np.ndarray, train_emb: np.ndarray) -> Results:
    """The CPU part, which may run beside the next epoch: the critic detectors fitted and queried, then the results."""
    scores = with_critic_scores(g_scores, test_emb, EmbeddingDetectors(train_emb))
    return rule.evaluate_all(test_clips, scores, cfg["detect"]["p"])


def evaluate(rule: Rule, cfg: dict, nets: Nets, data: Data) -> Results:
    """One epoch's evaluation, waited for (bench/gpu.py times it); on the nets' device."""
    return critic_results(rule, cfg, data.test_clips, *score_epoch(cfg, nets, data))


class Overlap:
    """At most one evaluated epoch in flight, its CPU part in `pool`'s thread; `take` waits for it when not ready."""

    def __init__(self, rule: Rule, cfg: dict, data: Data, pool: ThreadPoolExecutor | None):
        self.rule, self.cfg, self.data, self.pool = rule, cfg, data, pool
        self.pending: Pending | None = None

    def start(self, epoch: int, mean: dict, seconds: float, nets: Nets) -> None:
        g_scores, test_emb, train_emb = score_epoch(self.cfg, nets, self.data)
        self.pending = Pending(epoch=epoch, mean=mean, seconds=seconds, g_scores=g_scores, test_emb=test_emb,
                               train_emb=train_emb, weights=nets.snapshot())
        if self.pool is not None:
            self.pending.future = self.pool.submit(critic_results, self.rule, self.cfg, self.data.test_clips,
                                                   g_scores, test_emb, train_emb)

    def resume(self, p: dict, weights: dict) -> None:
        """The pending epoch a stopped run kept with Pending.state(), with its weights (the resumed nets hold them)."""
        self.pending = Pending(epoch=p["epoch"], mean=p["mean"], seconds=p["seconds"], weights=weights,
                               g_scores={k: v.numpy() for k, v in p["g_scores"].items()},
                               test_emb=p["test_emb"].numpy(), train_emb=p["train_emb"].numpy())

    def take(self) -> tuple[Pending, Results] | None:
        p, self.pending = self.pending, None
        if p is None:
            return None
        results = (p.future.result() if p.future else
                   critic_results(self.rule, self.cfg, self.data.test_clips, p.g_scores, p.test_emb, p.train_emb))
        return p, results
