"""Benchmark of the stages inside training, which the original cannot run alone, in one run.

    python bench/run.py                  # CPU (or --device cuda:0), paper sizes (isize 128), small batches
    python bench/run.py --quick          # a smoke run in under a minute

The commands users run (train.py epoch, test.py, loc.py) are timed against the original itself by
bench/versus_original.py. This file times the stages inside them against re-implementations of the
original's way, kept here only because the original has no entry point for them: feature extraction
(librosa per clip, in one process), the data pipeline (a per-sample Dataset), one training iteration (two
G forwards, critic weight gradients in the generator step). Scoring is timed for ours only (the per-clip
costs of the real-size epoch estimate, and bf16 against fp32). Writes bench/results/<device>.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import librosa
import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aegan import synth  # noqa: E402
from aegan.data.audio import extract  # noqa: E402
from aegan.data.cache import load_or_extract  # noqa: E402
from aegan.data.segments import SegmentSampler  # noqa: E402
from aegan.method.device import tune_allocator  # noqa: E402
from aegan.method.fast_steps import train_step  # noqa: E402
from aegan.method.nets import build_nets  # noqa: E402
from aegan.method.steps import critic_step, feature_match  # noqa: E402
from aegan.scoring.clip_scores import embed_clips, score_clips  # noqa: E402
from aegan.settings.checks import defaults  # noqa: E402

TRAIN = defaults()["train"]  # the declared weights: lambda_gp 10, feat_match_eff 0.1, match_item {mu: 1}


# ---------------------------------------------------------------- reference paths (the original's way)
class ReferenceDataset(torch.utils.data.Dataset):
    """One segment per __getitem__: np.zeros + copy, as a per-sample Python Dataset does."""

    def __init__(self, specs: np.ndarray, frame_num: int, hop: int):
        self.specs, self.f, self.hop = specs, frame_num, hop
        self.per = (specs.shape[2] - frame_num) // hop + 1

    def __len__(self):
        return len(self.specs) * self.per

    def __getitem__(self, i):
        c, s = divmod(i, self.per)
        out = np.zeros((1, self.specs.shape[1], self.f), dtype=np.float32)
        out[0] = self.specs[c, :, s * self.hop:s * self.hop + self.f]
        return torch.from_numpy(out)


def reference_features(paths: list[Path], feat_cfg: dict) -> np.ndarray:
    """One process, librosa.feature.melspectrogram per clip (its mel filter bank rebuilt for each)."""
    out = []
    for p in paths:
        y, sr = librosa.load(p, sr=None, mono=True)
        mel = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=feat_cfg["fft_num"], hop_length=feat_cfg["frame_hop"],
                                             n_mels=feat_cfg["mel_bin"])
        out.append(librosa.power_to_db(mel, ref=1.0).astype(np.float32))
    return np.stack(out)


def reference_g_step(netD, netG, optG, x, wgan):
    """The generator step as the original writes it: a second G forward, D's weight gradients computed too."""
    optG.zero_grad()
    recon = netG(x)
    _, feat_fake = netD(recon)
    _, feat_real = netD(x)
    loss = F.mse_loss(recon, x) + wgan["feat_match_eff"] * feature_match(feat_fake, feat_real.detach(),
                                                                         wgan["match_item"])
    loss.backward()
    optG.step()


# ---------------------------------------------------------------- helpers
def _once(fn, sync=None) -> float:
    """Wall time of one call; `sync` (CUDA) makes it include the queued device work."""
    if sync:
        sync()
    t = time.perf_counter()
    fn()
    if sync:
        sync()
    return time.perf_counter() - t


def timeit(fn, repeat: int, warmup: int = 1, sync=None) -> float:
    """Best wall time of `repeat` runs after `warmup` runs (best-of: least disturbed by other load)."""
    for _ in range(warmup):
        fn()
    return min(_once(fn, sync) for _ in range(repeat))


def compare(fa, fb, repeat: int, sync=None) -> tuple[float, float]:
    """Best times of fa and fb measured alternately, so that drifting machine load hits both alike."""
    fa()
    fb()
    ta, tb = [], []
    for _ in range(repeat):
        ta.append(_once(fa, sync))
        tb.append(_once(fb, sync))
    return min(ta), min(tb)


def matmul_gflops(device, dtype=torch.float32, n=2048) -> float:
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    return 2 * n ** 3 / timeit(lambda: a @ b, 5, 2, sync) / 1e9


def step_flops(netD, netG, x) -> float:
    """Conv/matmul FLOPs of one train_step, counted on a replica whose gradient penalty differentiates with
    respect to a non-leaf tensor (the FLOP counter cannot follow autograd.grad on a leaf)."""
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as fc:
        recon = netG(x)
        fake = recon.detach()
        out, _ = netD(torch.cat([x, fake]))
        alpha = torch.rand(x.size(0), 1, 1, 1, device=x.device)
        leaf = torch.zeros_like(x, requires_grad=True)
        interp = leaf + alpha * x + (1 - alpha) * fake
        (grad,) = torch.autograd.grad(netD(interp)[0].sum(), interp, create_graph=True)
        gp = ((grad.flatten(1).norm(2, dim=1) - 1) ** 2).mean()
        (out[x.size(0):].mean() - out[: x.size(0)].mean() + 10 * gp).backward()
        netD.requires_grad_(False)
        _, ff = netD(recon)
        with torch.no_grad():
            _, fr = netD(x)
        (F.mse_loss(recon, x) + 0.1 * feature_match(ff, fr, {"mu": 1})).backward()
        netD.requires_grad_(True)
    netD.zero_grad()
    netG.zero_grad()
    return float(fc.get_total_flops())


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda:0" if torch.cuda.is_available() else "cpu")
    p.add_argument("--isize", type=int, default=128)
    p.add_argument("--bs", type=int, default=None, help="training batch (default 64 on CPU, 512 on CUDA)")
    p.add_argument("--clips", type=int, default=400, help="10-s clips for feature extraction")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="small sizes, one repeat: a smoke run")
    p.add_argument("--out", default=None)
    p.add_argument("--no-allocator-tuning", action="store_true", help="keep glibc's malloc defaults")
    a = p.parse_args()
    tuned = False if a.no_allocator_tuning else tune_allocator()
    device = torch.device(a.device)
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else None
    bs = a.bs or (512 if cuda else 64)
    isize, clips, repeat = a.isize, a.clips, a.repeat
    if a.quick:
        isize, bs, clips, repeat = 32, 16, 12, 1
    n_fft, hop_length, frame_num = 2048, 512, isize
    feat_cfg = {"fft_num": n_fft, "frame_hop": hop_length, "mel_bin": isize}
    net_cfg = {**defaults()["net"], "isize": isize}
    res: dict = {"device": str(device), "torch": torch.__version__, "python": platform.python_version(),
                 "cpu_threads": torch.get_num_threads(), "isize": isize, "batch": bs,
                 "gpu": torch.cuda.get_device_name(device) if cuda else None, "allocator_tuned": tuned}
    print(f"bench on {device} (torch {torch.__version__}, {torch.get_num_threads()} threads), isize {isize}, "
          f"batch {bs}, allocator tuning {'on' if tuned else 'off'}", flush=True)

    # ---- feature extraction
    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(0)
        paths = []
        for i in range(clips):
            y = synth.normal_sound(rng, 16000, 10.0, 100 + i, 0.01)
            path = Path(tmp) / f"normal_id_00_{i:08d}.wav"
            synth._write(path, y, 16000)
            paths.append(path)
        extract(paths[:4], feat_cfg, 1, desc="warm-up")  # numba compile, file cache
        t_ref = timeit(lambda: reference_features(paths, feat_cfg), 1, 0)
        t_par = timeit(lambda: extract(paths, feat_cfg, 2, desc="features (2 workers)"), 1, 0)
        load_or_extract(paths, feat_cfg, tmp, "bench", workers=2)
        t_cache = timeit(lambda: load_or_extract(paths, feat_cfg, tmp, "bench", workers=2), 3, 0)
        specs_np = extract(paths[: min(clips, 64)], feat_cfg, 1, desc="features")
    res["features"] = {"reference_clips_per_s": clips / t_ref, "workers2_clips_per_s": clips / t_par,
                       "cache_clips_per_s": clips / t_cache, "ratio_workers2": t_ref / t_par,
                       "ratio_cache": t_ref / t_cache}

    specs_np = (specs_np - specs_np.mean()) / (np.abs(specs_np - specs_np.mean()).max())
    specs_np = specs_np.astype(np.float32)

    # ---- data pipeline: segments delivered to the model
    n_batches = 20 if not a.quick else 5
    ds = ReferenceDataset(specs_np, frame_num, 1)
    loader = torch.utils.data.DataLoader(ds, batch_size=bs, shuffle=True, drop_last=True)

    def ref_pipe():
        for i, x in enumerate(loader):
            x.to(device)
            if i + 1 == n_batches:
                break

    specs_t = torch.from_numpy(specs_np).to(device)
    sampler = SegmentSampler(specs_t, frame_num, 1, bs)

    def our_pipe():
        for i, _ in enumerate(sampler.epoch()):
            if i + 1 == n_batches:
                break

    t_ref, t_our = compare(ref_pipe, our_pipe, repeat, sync)
    # the bound: copying one contiguous batch (every pipeline writes each delivered value at least once)
    batch = next(iter(sampler.epoch()))
    t_copy = timeit(lambda: [batch.clone() for _ in range(n_batches)], repeat, 1, sync)
    res["data"] = {"reference_segments_per_s": n_batches * bs / t_ref, "ours_segments_per_s": n_batches * bs / t_our,
                   "ratio": t_ref / t_our, "batch_copy_segments_per_s": n_batches * bs / t_copy,
                   "fraction_of_copy": t_copy / t_our}

    # ---- training iteration (critic step with GP + generator step)
    torch.manual_seed(0)
    x = next(iter(sampler.epoch())).to(device)

    def fresh():
        g, d = build_nets(net_cfg)
        g, d = g.to(device), d.to(device)
        return (g, d, torch.optim.Adam(d.parameters(), 2e-4, betas=(0.5, 0.999)),
                torch.optim.Adam(g.parameters(), 2e-4, betas=(0.5, 0.999)))

    g0, d0, oD0, oG0 = fresh()
    g, d, oD, oG = fresh()
    t_ref, t_our = compare(lambda: (critic_step(d0, oD0, x, g0(x).detach(), TRAIN),
                                    reference_g_step(d0, g0, oG0, x, TRAIN["wgan"])),
                           lambda: train_step(d, g, oD, oG, x, TRAIN), repeat + 1, sync)
    flops = step_flops(d, g, x)

    def amp_step():
        with torch.autocast(device.type, torch.bfloat16):
            train_step(d, g, oD, oG, x, TRAIN)

    t_our2, t_bf16 = compare(lambda: train_step(d, g, oD, oG, x, TRAIN), amp_step, repeat, sync)
    mm = matmul_gflops(device)
    res["train"] = {"reference_segments_per_s": bs / t_ref, "ours_segments_per_s": bs / t_our,
                    "bf16_segments_per_s": bs / t_bf16, "ratio": t_ref / t_our, "ratio_bf16_vs_fp32": t_our2 / t_bf16,
                    "gflop_per_iteration": flops / 1e9, "achieved_gflops": flops / t_our / 1e9,
                    "matmul_gflops_fp32": mm, "fraction_of_matmul": flops / t_our / 1e9 / mm}

    # ---- scoring: one clip's critic embedding (every training clip, every epoch) and its 19 scores (test clips)
    n_clips = min(len(specs_t), 6 if not a.quick else 3)
    clips_s = specs_t[:n_clips]
    g.eval()
    d.eval()
    feat = {"frame_num": frame_num, "graph_hop_f": 1}
    cfgs = {amp: {"feat": feat, "detect": {"amp": amp}} for amp in ("fp32", "bf16")}
    t_embed = timeit(lambda: embed_clips(d, clips_s, cfgs["fp32"]), repeat, 1, sync) / n_clips
    t_score, t_bf16 = (timeit(lambda amp=amp: score_clips(g, d, clips_s, cfgs[amp]), repeat, 1,
                              sync) / n_clips for amp in ("fp32", "bf16"))
    fp32, bf16 = (score_clips(g, d, clips_s, cfgs[amp]).scores for amp in ("fp32", "bf16"))
    res["score"] = {"embed_s_per_clip": t_embed, "score_s_per_clip": t_score, "bf16_score_s_per_clip": t_bf16,
                    "ratio_bf16_vs_fp32": t_score / t_bf16, "segments_per_clip": specs_t.shape[2] - frame_num + 1,
                    "bf16_max_rel_score_diff": max(float(np.max(np.abs(fp32[k] - bf16[k]) / (np.abs(fp32[k]) + 1e-12)))
                                                   for k in fp32)}
    # ---- one epoch at the real size, from the measured pieces: DCASE 2022, 3000 ten-second training clips
    # (186 segments each) in batches of 512, then the evaluation: every training clip's embedding and the
    # 600 dev test clips' scores (the time per segment grows linearly with the batch on a CPU)
    iters = 3000 * 186 // 512
    train_s = iters * 512 / res["train"]["ours_segments_per_s"]
    per_seg = 186 / res["score"]["segments_per_clip"]
    eval_s = (3000 * t_embed + 600 * t_score) * per_seg
    res["real_size_epoch_estimate"] = {"train_s": train_s, "evaluation_s": eval_s,
                                       "evaluation_share": eval_s / (train_s + eval_s),
                                       "note": "extrapolated from the measured per-segment times (isize "
                                               f"{isize}), not a measured epoch"}
    res["memory"] = {"peak_rss_mb": peak_rss_mb(),
                     "cuda_max_allocated_mb": torch.cuda.max_memory_allocated(device) / 2 ** 20 if cuda else None}

    rows = [
        ("feature extraction (clips/s)", res["features"]["reference_clips_per_s"],
         res["features"]["workers2_clips_per_s"], "2 workers"),
        ("feature cache read (clips/s)", res["features"]["reference_clips_per_s"],
         res["features"]["cache_clips_per_s"], "second run"),
        ("data pipeline (segments/s)", res["data"]["reference_segments_per_s"], res["data"]["ours_segments_per_s"],
         ""),
        ("training iteration fp32 (segments/s)", res["train"]["reference_segments_per_s"],
         res["train"]["ours_segments_per_s"], "exact"),
        ("training iteration bf16 (segments/s)", res["train"]["ours_segments_per_s"],
         res["train"]["bf16_segments_per_s"], "vs our fp32"),
        ("scoring one clip, bf16 (clips/s)", 1 / res["score"]["score_s_per_clip"],
         1 / res["score"]["bf16_score_s_per_clip"], "vs our fp32"),
    ]
    print(f"\n{'what':40} {'reference':>12} {'ours':>12} {'ratio':>7}")
    for name, ref, our, note in rows:
        print(f"{name:40} {ref:12.2f} {our:12.2f} {our / ref:6.2f}x  {note}")
    t = res["train"]
    print(f"\ntraining step: {t['gflop_per_iteration']:.1f} GFLOP/iteration, {t['achieved_gflops']:.1f} GFLOP/s "
          f"achieved, fp32 matmul {t['matmul_gflops_fp32']:.1f} GFLOP/s ({100 * t['fraction_of_matmul']:.0f}%)")
    dd = res["data"]
    print(f"data pipeline: {100 * dd['fraction_of_copy']:.0f}% of the rate of copying contiguous batches "
          f"({dd['batch_copy_segments_per_s']:.0f} segments/s)")
    print(f"bf16 scores: max relative difference to fp32 {res['score']['bf16_max_rel_score_diff']:.3g}")
    e = res["real_size_epoch_estimate"]
    print(f"real-size epoch (estimate): training {e['train_s'] / 60:.0f} min, evaluation "
          f"{e['evaluation_s'] / 60:.0f} min ({100 * e['evaluation_share']:.0f}% of the epoch)")
    print(f"peak RSS {res['memory']['peak_rss_mb']:.0f} MB"
          + (f", CUDA max allocated {res['memory']['cuda_max_allocated_mb']:.0f} MB" if cuda else ""))
    out = Path(a.out) if a.out else ROOT / "bench" / "results" / f"{device.type}{'_quick' if a.quick else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
