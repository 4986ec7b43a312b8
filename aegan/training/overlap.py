"""The evaluation after each epoch: all 19 metrics on the labelled dev test set. Its device part (the generator
scores, the critic embeddings) runs at once with the epoch's weights; its CPU part (fitting the critic detectors
and querying them) runs in a thread beside the next epoch (train.eval_overlap), and its result is taken when it is
needed, with exactly the numbers of waiting for it."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from aegan.scoring.evaluation import Results, Rule
from aegan.scoring.scores import EmbeddingDetectors, embed_clips, reference_order, score_clips, with_critic_scores
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

    @classmethod
    def from_state(cls, p: dict, weights: dict) -> Pending:
        """The pending epoch kept by state(), with its weights (a resumed run's nets hold them)."""
        return cls(epoch=p["epoch"], mean=p["mean"], seconds=p["seconds"],
                   g_scores={k: v.numpy() for k, v in p["g_scores"].items()}, test_emb=p["test_emb"].numpy(),
                   train_emb=p["train_emb"].numpy(), weights=weights)


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a))


def train_embeddings(cfg: dict, nets: Nets, data: Data, device: torch.device, desc: str) -> np.ndarray:
    """The training clips' critic embeddings in the original's reference order: the critic detectors' reference set,
    kept with the selected model."""
    feat = cfg["feat"]
    return embed_clips(nets.netD, data.train_specs, feat["frame_num"], feat["graph_hop_f"], device,
                       cfg["detect"]["amp"], desc)[reference_order(data.train_clips)]


def score_epoch(cfg: dict, nets: Nets, data: Data, device: torch.device
                ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """The device part: (generator scores, test embeddings, training embeddings) of this epoch's weights."""
    train_emb = train_embeddings(cfg, nets, data, device, "evaluation: training embeddings")
    scored = score_clips(nets.netG, nets.netD, None, data.test_specs, cfg["feat"], device, cfg["detect"]["amp"],
                         desc="evaluation: dev test clips")
    return scored.scores, scored.emb, train_emb


def critic_results(rule: Rule, cfg: dict, test_clips: list, g_scores: dict[str, np.ndarray],
                   test_emb: np.ndarray, train_emb: np.ndarray) -> Results:
    """The CPU part (it may run beside the next epoch): the detectors fitted and queried, then the 19 metrics'
    results."""
    scores = with_critic_scores(g_scores, test_emb, EmbeddingDetectors(train_emb))
    return rule.evaluate_all(test_clips, scores, cfg["detect"]["p"])


def evaluate(rule: Rule, cfg: dict, nets: Nets, data: Data, device: torch.device) -> Results:
    """One epoch's evaluation, waited for (bench/gpu.py times it)."""
    return critic_results(rule, cfg, data.test_clips, *score_epoch(cfg, nets, data, device))


class Overlap:
    """At most one evaluated epoch in flight: `start` scores an epoch's weights on the device and hands its CPU part
    to a thread; `take` returns it with its results, waiting when they are not ready (never, when a whole epoch ran
    beside them); `resume` takes back one a stopped run kept in its run state."""

    def __init__(self, rule: Rule, cfg: dict, data: Data, device: torch.device, pool: ThreadPoolExecutor | None):
        self.rule, self.cfg, self.data, self.device, self.pool = rule, cfg, data, device, pool
        self.pending: Pending | None = None

    def start(self, epoch: int, mean: dict, seconds: float, nets: Nets) -> None:
        g_scores, test_emb, train_emb = score_epoch(self.cfg, nets, self.data, self.device)
        self.pending = Pending(epoch=epoch, mean=mean, seconds=seconds, g_scores=g_scores, test_emb=test_emb,
                               train_emb=train_emb, weights=nets.snapshot())
        if self.pool is not None:
            self.pending.future = self.pool.submit(critic_results, self.rule, self.cfg, self.data.test_clips,
                                                   g_scores, test_emb, train_emb)

    def resume(self, state: dict, weights: dict) -> None:
        self.pending = Pending.from_state(state, weights)

    def take(self) -> tuple[Pending, Results] | None:
        p, self.pending = self.pending, None
        if p is None:
            return None
        results = (p.future.result() if p.future else
                   critic_results(self.rule, self.cfg, self.data.test_clips, p.g_scores, p.test_emb, p.train_emb))
        return p, results
