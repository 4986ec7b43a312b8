"""SPEC section 5: the scores against direct computations, the critic detectors against sklearn."""

import numpy as np
import pytest
import torch
from sklearn.neighbors import LocalOutlierFactor, NearestNeighbors

from aegan.core.metrics import CRITIC, D_METRICS, GENERATOR, METRICS, metric_names, original_names, selecting_names
from aegan.method.nets import build_nets
from aegan.scoring.clip_scores import NAN_SCORE, EmbeddingDetectors, embed_clips, score_clips, with_critic_scores
from declared import settings, small_net, train_section

NET = {"isize": 16, "nz": 8, "ndf": 4, "ngf": 4}


def test_the_originals_metrics_are_declared_in_its_order_and_select():
    names = metric_names()
    assert len(names) == len(set(names)) == len(METRICS)
    assert {m.family for m in METRICS} == {CRITIC, GENERATOR}
    original = original_names()  # SPEC section 5: 4 critic scores, 5 distances x 3 pools over segments
    assert original[:4] == ["D_maha", "D_knn", "D_lof", "D_cos"]  # the original's order: ties go to the critic
    assert original[4:] == [f"G_{d}_{p}" for d in ("x_2", "x_1", "z_2", "z_1", "z_cos") for p in ("sum", "min", "max")]
    assert names[:len(original)] == original  # a new metric comes after the original's: the tie-break is kept
    assert set(original) <= set(selecting_names())  # the original's take part in the model selection


def test_generator_scores_equal_a_direct_per_clip_loop():
    torch.manual_seed(0)
    g, d = build_nets(small_net(**NET))
    g.eval()
    d.eval()
    specs = torch.rand(3, 16, 22) * 2 - 1  # 3 clips, 22 frames -> 4 segments of 16 with hop 2
    cfg = settings(feat={"frame_num": 16, "graph_hop_f": 2})
    scored = score_clips(g, d, specs, cfg, recon=True)
    scores, emb = scored.scores, scored.emb
    assert list(scores) == [m.name for m in METRICS if m.family == GENERATOR]  # without detectors: G's scores
    for c in range(3):
        x = torch.stack([specs[c, :, 2 * i:2 * i + 16] for i in range(4)]).unsqueeze(1)
        with torch.no_grad():
            xh = g(x)
            z, zh = g(x, outz=True).flatten(1), g(xh, outz=True).flatten(1)
            f = d(x)[1]
        per = {
            "x_2": ((xh - x) ** 2).sum((1, 2, 3)), "x_1": (xh - x).abs().sum((1, 2, 3)),
            "z_2": ((zh - z) ** 2).sum(1), "z_1": (zh - z).abs().sum(1),
            "z_cos": torch.stack([1 - torch.dot(z[i], zh[i]) / (z[i].norm() * zh[i].norm()) for i in range(4)]),
        }
        for key, v in per.items():
            for pool, fn in (("sum", torch.sum), ("min", torch.min), ("max", torch.max)):
                assert scores[f"G_{key}_{pool}"][c] == pytest.approx(fn(v).item(), rel=1e-4, abs=1e-6)
        np.testing.assert_allclose(emb[c], f.mean(0).numpy(), rtol=1e-4, atol=1e-6)
        assert torch.equal(scored.recon[c], g(x))  # the reconstruction loc.py maps, from the same pass
    assert emb.dtype == np.float32 and np.array_equal(emb, embed_clips(d, specs, cfg))


def test_embedding_detectors_against_sklearn_and_numpy():
    """Fitted and queried in float32, as the original; the values are the textbook ones to float32 precision."""
    rng = np.random.default_rng(0)
    train = rng.normal(0, 1, (40, 5)).astype(np.float32)
    test = rng.normal(0, 1.5, (7, 5)).astype(np.float32)
    det = EmbeddingDetectors(train).score(test)
    t64 = train.astype(np.float64)
    mu, vi = t64.mean(0), np.linalg.inv(np.cov(t64, rowvar=False))
    maha = [np.sqrt((t - mu) @ vi @ (t - mu)) for t in test.astype(np.float64)]
    np.testing.assert_allclose(det["D_maha"], maha, rtol=1e-6)
    dist, _ = NearestNeighbors(n_neighbors=2, metric="cosine").fit(t64).kneighbors(test)
    np.testing.assert_allclose(det["D_knn"], dist.sum(1), rtol=1e-5)
    lof = LocalOutlierFactor(n_neighbors=4, metric="cosine", novelty=True, contamination=1e-6).fit(t64)
    np.testing.assert_allclose(det["D_lof"], -lof.score_samples(test), rtol=1e-5)
    cos = [1 - t @ mu / (np.linalg.norm(t) * np.linalg.norm(mu)) for t in test.astype(np.float64)]
    np.testing.assert_allclose(det["D_cos"], cos, rtol=1e-5, atol=1e-6)


def test_mahalanobis_pseudo_inverse_when_clips_do_not_outnumber_dimensions():
    """With n <= dim the covariance is singular: the original's inverse is noise, ours the pseudo-inverse."""
    rng = np.random.default_rng(2)
    train = rng.normal(0, 1, (6, 8)).astype(np.float32)
    test = rng.normal(0, 1, (3, 8)).astype(np.float32)
    t64 = train.astype(np.float64)
    vi = np.linalg.pinv(np.cov(t64, rowvar=False))
    d = test.astype(np.float64) - train.mean(0)
    np.testing.assert_allclose(EmbeddingDetectors(train).score(test)["D_maha"],
                               np.sqrt(np.einsum("ij,jk,ik->i", d, vi, d)), rtol=1e-5)


def test_nan_scores_become_largest_float32():
    """A clip whose features hold NaN: every score it gets is the largest float32, in the table's order."""
    torch.manual_seed(0)
    g, d = build_nets(small_net(**NET))
    specs = torch.rand(2, 16, 16) * 2 - 1
    specs[1, 3, 4] = float("nan")
    cfg = settings(feat={"frame_num": 16, "graph_hop_f": 1})
    train = embed_clips(d, torch.rand(20, 16, 16) * 2 - 1, cfg)
    scored = score_clips(g, d, specs, cfg)
    out = with_critic_scores(scored.scores, scored.emb, EmbeddingDetectors(train))
    assert list(out) == metric_names()
    assert out["G_x_2_sum"][1] == NAN_SCORE == np.finfo(np.float32).max and out["D_lof"][1] == NAN_SCORE
    assert all(np.isfinite(v[0]) and v[0] < NAN_SCORE for v in out.values())


def _one_at_a_time(det: EmbeddingDetectors, emb: np.ndarray, metrics) -> dict[str, np.ndarray]:
    """The original's way: every clip queried alone."""
    emb = np.asarray(emb, dtype=np.float32)
    return {m: np.array([det.one(m, e[None]) for e in emb], dtype=np.float64) for m in metrics}


def _embeddings_of_a_trained_critic(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Clip embeddings (512-d, as at the paper's size) from a critic trained a few steps on synthetic segments."""
    from aegan.method.steps import iteration
    torch.manual_seed(3)
    g, d = build_nets(small_net(ndf=128))  # 128*32/8 = 512
    opts = [torch.optim.Adam(m.parameters(), lr=2e-4, betas=(0.5, 0.999)) for m in (d, g)]
    base = torch.rand(1, 32, 34) * 2 - 1  # one "machine sound"; its clips are noisy copies
    for _ in range(3):
        iteration(d, g, *opts, base[None, :, :, :32] + 0.1 * torch.randn(8, 1, 32, 32), train_section())
    with torch.no_grad():  # one segment per clip: its embedding is the clip's
        emb = d.eval().embed(base[None, :, :, :32] + 0.1 * torch.randn(n, 1, 32, 32)).numpy()
    assert emb.shape == (n, 512) and emb.dtype == np.float32
    return emb[: n * 3 // 4], emb[n * 3 // 4:]


@pytest.mark.parametrize("source", ["trained", "random"])
def test_batched_detector_queries_equal_one_clip_at_a_time_to_the_bit(source):
    """score() queries D_maha and D_cos in one batch (the decision fit over every training clip, the evaluation
    of the test clips); each row equals the original's one-clip query to the bit, on 512-d float32 embeddings
    of a trained critic (more training clips than dimensions: the inverse covariance) and on random ones."""
    if source == "trained":
        train, test = _embeddings_of_a_trained_critic(720)
    else:
        rng = np.random.default_rng(0)
        train = (rng.normal(size=(1, 512)) + 0.3 * rng.normal(size=(3000, 512))).astype(np.float32)
        test = (rng.normal(size=(1, 512)) + 0.4 * rng.normal(size=(200, 512))).astype(np.float32)
    det = EmbeddingDetectors(train)
    for emb in (train, test):
        got = det.score(emb, ("D_maha", "D_cos"))
        ref = _one_at_a_time(det, emb, ("D_maha", "D_cos"))
        for m in ("D_maha", "D_cos"):
            assert got[m].dtype == np.float64 and np.array_equal(got[m], ref[m]), m
    sub = test[:40]  # all of them on a few rows: the neighbour metrics stay one clip at a time
    got, ref = det.score(sub), _one_at_a_time(det, sub, D_METRICS)
    assert list(got) == list(D_METRICS)
    assert all(np.array_equal(got[m], ref[m]) for m in ref)


def test_neighbour_metrics_in_a_batch_are_not_exact():
    """Why D_knn and D_lof are not batched: sklearn's batch query differs in the last bits from one clip's."""
    rng = np.random.default_rng(1)
    train = (rng.normal(size=(1, 512)) + 0.3 * rng.normal(size=(1000, 512))).astype(np.float32)
    det = EmbeddingDetectors(train)
    q = train[:100]
    ref = _one_at_a_time(det, q, ("D_knn", "D_lof"))
    assert not np.array_equal(det.knn.kneighbors(q)[0].sum(-1), ref["D_knn"])
    assert not np.array_equal(-det.lof.score_samples(q), ref["D_lof"])


def test_training_scores_query_only_the_metric_and_empty_sets_work():
    from aegan.scoring.clip_scores import training_scores
    rng = np.random.default_rng(2)
    train = rng.normal(size=(30, 8)).astype(np.float32)
    det = EmbeddingDetectors(train)
    for m in D_METRICS:  # #37: held out, each clip against detectors fitted on the other training clips
        got = training_scores(m, None, det, train, None, {})
        for i in (0, 7, 29):
            alone = EmbeddingDetectors(np.delete(train, i, axis=0)).one(m, train[i:i + 1])
            assert float(got[i]) == pytest.approx(float(np.ravel(alone)[0]), rel=1e-5), (m, i)
    assert all(v.shape == (0,) for v in det.score(np.zeros((0, 8), np.float32)).values())
