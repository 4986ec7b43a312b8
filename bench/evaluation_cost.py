"""What the critic detectors cost on the CPU at a real size, before and after batching the exact ones.

    python bench/evaluation_cost.py [--train 3000 --test 600 --dim 512]

Per-epoch evaluation: the four detectors fitted on the training clips' embeddings and queried for every test
clip (before: each clip alone for all four, the original's way; after: EmbeddingDetectors.score, which queries
D_maha and D_cos in one batch, bit-equal, and D_knn and D_lof one clip at a time). Decision fit: one metric's
scores of every training clip (before: all four detectors queried per clip; after: only the metric's, batched
where exact). Embeddings are float32, clustered like a trained critic's. Writes bench/results/evaluation_cost_cpu.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aegan.core.metrics import D_METRICS  # noqa: E402
from aegan.scoring.clip_scores import EmbeddingDetectors, training_scores  # noqa: E402


def before(det: EmbeddingDetectors, emb: np.ndarray) -> dict[str, np.ndarray]:
    """The previous path: every clip queried alone for the four metrics."""
    rows = [{m: det.one(m, e[None]) for m in D_METRICS} for e in emb]
    return {m: np.array([r[m] for r in rows]) for m in D_METRICS}


def timed(fn, *args):
    t = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t, out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--train", type=int, default=3000)
    p.add_argument("--test", type=int, default=600)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "evaluation_cost_cpu.json"))
    a = p.parse_args()
    rng = np.random.default_rng(0)
    centre = rng.normal(size=(1, a.dim))
    train = (centre + 0.3 * rng.normal(size=(a.train, a.dim))).astype(np.float32)
    test = (centre + 0.35 * rng.normal(size=(a.test, a.dim))).astype(np.float32)
    t_fit, det = timed(EmbeddingDetectors, train)
    t_eval_before, ref = timed(before, det, test)
    t_eval_after, got = timed(det.score, test)
    assert all(np.array_equal(ref[m], got[m]) for m in D_METRICS), "batched scores differ from one-at-a-time"
    res = {"device": "cpu", "cpu_threads": torch.get_num_threads(), "machine": platform.machine(),
           "train_clips": a.train, "test_clips": a.test, "dim": a.dim, "detector_fit_s": t_fit,
           "evaluation_queries_s": {"before": t_eval_before, "after": t_eval_after},
           "decision_fit_s": {}}
    t_all, ref_train = timed(before, det, train)  # the previous decision fit, whatever the metric
    for m in D_METRICS:
        t, scores = timed(training_scores, m, None, det, train, None, {})
        assert np.array_equal(scores, ref_train[m]), m
        res["decision_fit_s"][m] = {"before": t_all, "after": t}
    print(f"{a.train} training / {a.test} test clips, {a.dim}-d, {res['cpu_threads']} CPU threads")
    print(f"detector fit {t_fit:.2f} s (both)")
    print(f"per-epoch evaluation queries: before {t_eval_before:.2f} s, after {t_eval_after:.2f} s")
    for m, v in res["decision_fit_s"].items():
        print(f"decision fit {m:7s}: before {v['before']:.2f} s, after {v['after']:.3f} s")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=1))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
