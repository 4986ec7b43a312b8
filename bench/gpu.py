"""ONE command for a GPU machine: the original's train.py and ours, at the real size's shape, in under 8 minutes.

    bash bench/gpu.sh                          # on the GPU machine (installs librosa/soundfile from bench/wheels/)
    python bench/gpu.py --tiny --device cpu    # the same script at a tiny size on the CPU (tests/test_bench.py)

1. librosa and soundfile from the wheels in bench/wheels/ when they are missing (bench/fetch_wheels.sh fills
   that folder beforehand on a machine that reaches PyPI: the GPU machine reaches none).
2. A synthetic DCASE 2022 machine type (aegan/synth.py) in the real data's shape: 10 s clips, 128 mels.
3. The original's own train.py, first on this device, unpatched (a copy of ../shared/original; only its config.yaml,
   the data paths and the number of epochs, is written): its features are extracted by an untimed first run,
   then a 1-epoch and a 3-epoch run are timed; half their difference is one epoch with its evaluation. On the CPU
   (--tiny) the copy is the oracle tests' CPU copy (its hard-coded cuda device patched), said in the output.
4. Ours in this process, set up as train.py sets it up (seed, determinism, train.tf32, aegan.training.parts
   .build), for each variant: exact fp32, the original's default (TF32 convolutions), bf16 autocast,
   channels_last, torch.compile, and train.depthwise_sum; --iters iterations at --batch timed with
   torch.cuda.synchronize after a warm-up, then one evaluation (training.overlap.evaluate: embeddings, the 19 scores of
   the dev test clips, the metrics).
Prints a table and writes bench/results/gpu_<device>.json. The per-epoch numbers at the real size (557,568
segments) are ESTIMATES: measured segments/s extrapolated, plus the evaluation scaled by the number of clips.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WHEELS = ROOT / "bench" / "wheels"
ORIGINAL = ROOT.parent / "shared" / "original"
MT = "fan"
REAL_SEGMENTS = 557_568  # training segments of one epoch at the paper's size (README, Performance)
REAL_CLIPS = 3000 + 600  # training and dev test clips the real evaluation embeds and scores (about)
GFLOP_PER_SEGMENT = 5.76  # one training iteration's conv/matmul work per segment (bench/run.py counts it)
# NVIDIA H200 SXM datasheet (nvidia.com/en-us/data-center/h200), dense (the datasheet's tensor-core figures are
# with sparsity: halved here), TFLOPS
H200_PEAK_TFLOPS = {"fp32": 67.0, "tf32": 494.5, "bf16": 989.5}
# name: (train.tf32, train.amp, channels_last, compile, depthwise_sum, which peak bounds it)
VARIANTS = {
    "fp32 exact": ("fp32", "fp32", False, False, False, "fp32"),
    "original (TF32 convs)": ("original", "fp32", False, False, False, "tf32"),
    "bf16 autocast": ("original", "bf16", False, False, False, "bf16"),
    "channels_last": ("original", "fp32", True, False, False, "tf32"),
    "compile": ("original", "fp32", False, True, False, "tf32"),
    "depthwise_sum": ("original", "fp32", False, False, True, "tf32"),
}


# what ours and the original import beyond torch and numpy: module -> its pip package
NEEDED = {"librosa": "librosa", "soundfile": "soundfile", "sklearn": "scikit-learn", "scipy": "scipy",
          "yaml": "pyyaml", "tqdm": "tqdm", "matplotlib": "matplotlib"}


def ensure_packages() -> None:
    """librosa, soundfile (and any other of NEEDED this Python lacks) installed from bench/wheels/, no index."""
    missing = [pkg for mod, pkg in NEEDED.items() if importlib.util.find_spec(mod) is None]
    if not missing:
        return
    if not WHEELS.is_dir():
        sys.exit(f"bench: {', '.join(missing)} missing and {WHEELS} is absent: run bench/fetch_wheels.sh first")
    print(f"bench: installing {', '.join(missing)} from {WHEELS}", flush=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-index", "--find-links", str(WHEELS), *missing],
                   check=True)


def sizes(a: argparse.Namespace) -> dict:
    if a.tiny:  # the CPU smoke run: everything small
        return {"seconds": 2.5, "n_train": 1, "n_test": 1, "isize": 32, "nz": 16, "ndf": 8, "batch": 16,
                "iters": a.iters or 4, "warmup": 1, "fft": 1024}
    return {"seconds": 10.0, "n_train": 16, "n_test": 3, "isize": 128, "nz": 256, "ndf": 32, "batch": a.batch,
            "iters": a.iters or 100, "warmup": 5, "fft": 2048}


def settings(s: dict) -> dict:
    """The run's settings in the original's config format (and our --set names)."""
    return {"feat.fft_num": s["fft"], "feat.mel_bin": s["isize"], "feat.frame_num": s["isize"],
            "net.isize": s["isize"], "net.nz": s["nz"], "net.ndf": s["ndf"], "net.ngf": s["ndf"],
            "train.batch_size": s["batch"], "train.epoch": 1}


def run_original(tmp: Path, data: Path, s: dict, device: str) -> dict:
    """The original's train.py: an untimed run (its features), then 1 and 3 epochs timed."""
    sys.path.insert(0, str(ROOT / "tests"))
    import yaml

    from oracle import ENV, FOLDER, cpu_copy, original_config
    if device == "cpu":
        code, note = cpu_copy("dcase2022", tmp / "original"), "CPU copy (its cuda device patched, as the oracle tests)"
    else:
        code, note = tmp / "original", "unpatched copy"
        shutil.copytree(ORIGINAL / FOLDER["dcase2022"], code)
    env = {k: v for k, v in ENV.items() if k != "OPENBLAS_NUM_THREADS"}
    card = [] if device == "cpu" else ["-c", "0"]  # its default card is 2, refused on a one-GPU machine
    times = {}
    for label, epochs in (("features", 1), ("1", 1), ("3", 3)):
        cfg = original_config("dcase2022", MT, data, tmp / "orig_out", **{**settings(s), "train.epoch": epochs})
        (code / "config.yaml").write_text(yaml.safe_dump(cfg))
        t = time.perf_counter()
        r = subprocess.run([sys.executable, "train.py", "--mt", MT, "--seed", "42", *card], cwd=code, env=env,
                           capture_output=True, text=True)
        if r.returncode:
            return {"error": (r.stdout[-800:] + r.stderr[-1500:]).strip(), "code": note}
        times[label] = time.perf_counter() - t
    epoch_s = (times["3"] - times["1"]) / 2  # start-up, data loading and saving cancel out
    # at a tiny size the start-up's noise can exceed two epochs: then no per-epoch number
    return {"code": note, "run_seconds": times, "epoch_with_evaluation_s": epoch_s if epoch_s > 0 else None}


def our_setup(tmp: Path, data: Path, s: dict, device_name: str):
    import torch

    from aegan.settings.layers import load_config, output_settings
    from aegan.training.parts import load_data
    from dcase2022.datasets import SPEC
    sets = [f"{k}={v}" for k, v in settings(s).items()]
    sets += ["train_set=dev", f"dataset_dir={data}", *output_settings(tmp / "ours")]
    cfg = load_config(SPEC.root, MT, sets=sets).cfg
    device = torch.device(device_name)
    data_ = load_data(SPEC, cfg, MT, device)  # features extracted and cached once, before any timing
    return SPEC, cfg, device, data_


def time_variant(name: str, spec, cfg: dict, device, data, s: dict) -> dict:
    """Training iterations of one variant timed with device synchronisation, then one evaluation."""
    import torch

    from aegan.data.segments import SegmentSampler
    from aegan.method.device import seed_everything
    from aegan.method.fast_steps import train_step
    from aegan.scoring.evaluation import SECTIONS
    from aegan.training.overlap import evaluate
    from aegan.training.parts import build

    tf32, amp, cl, comp, dws, _ = VARIANTS[name]
    cfg = copy.deepcopy(cfg)
    cfg["train"].update({"tf32": tf32, "amp": amp, "channels_last": cl, "compile": comp, "depthwise_sum": dws})
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    seed_everything(42)
    nets = build(cfg, device)
    sampler = SegmentSampler(data.train_specs, s["isize"], 1, s["batch"])
    wgan = cfg["train"]["wgan"]

    def batches():
        while True:
            yield from sampler.epoch()

    it = batches()

    def step(i: int) -> dict:
        x = next(it).to(device, non_blocking=True).contiguous(memory_format=nets.fmt)
        with torch.autocast(device.type, torch.bfloat16, enabled=amp == "bf16"):
            return train_step(nets.netD, nets.gen, nets.optD, nets.optG, x, cfg["train"], i % wgan["ncritic"] == 0)

    nets.netG.train()
    nets.netD.train()
    t = time.perf_counter()
    for i in range(s["warmup"]):
        step(i)
    sync()
    warmup_s = time.perf_counter() - t
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    t = time.perf_counter()
    for i in range(s["iters"]):
        losses = step(i)
    sync()
    train_s = time.perf_counter() - t
    t = time.perf_counter()
    evaluate(SECTIONS, cfg, nets, data)
    sync()
    eval_s = time.perf_counter() - t
    segs = s["iters"] * s["batch"] / train_s
    return {"warmup_s": warmup_s, "iterations": s["iters"], "train_s": train_s, "segments_per_s": segs,
            "evaluation_s": eval_s, "last_lossD": float(losses["lossD"]),
            "peak_gpu_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30 if cuda else None}


def summarise(name: str, r: dict, s: dict, n_clips: int, n_segments: int, gpu: str | None) -> dict:
    """Per-epoch estimates, % of the FLOP floor, the evaluation's share."""
    eval_real = r["evaluation_s"] * REAL_CLIPS / n_clips  # about: the detectors grow faster than linearly
    train_real = REAL_SEGMENTS / r["segments_per_s"]
    r["bench_epoch_with_evaluation_s"] = n_segments / r["segments_per_s"] + r["evaluation_s"]
    r["real_epoch_estimate_s"] = {"train": train_real, "evaluation": eval_real, "total": train_real + eval_real}
    r["evaluation_share_estimate"] = eval_real / (train_real + eval_real)
    peak = H200_PEAK_TFLOPS[VARIANTS[name][5]] if gpu and "H200" in gpu and s["isize"] == 128 else None
    achieved = GFLOP_PER_SEGMENT * r["segments_per_s"] / 1e3  # TFLOP/s (meaningful at the real size only)
    r["achieved_tflops"] = achieved if s["isize"] == 128 else None
    r["percent_of_flop_floor"] = 100 * achieved / peak if peak else None
    return r


def table(res: dict) -> str:
    lines = [f"{'variant':24s} {'seg/s':>9s} {'epoch est.':>11s} {'% peak':>7s} {'eval s':>7s} {'eval %':>7s} "
             f"{'peak GiB':>8s}"]
    for name, r in res["ours"].items():
        if "error" in r:
            lines.append(f"{name:24s} failed: {r['error'][:80]}")
            continue
        pct = r["percent_of_flop_floor"]
        mem = r["peak_gpu_memory_gib"]
        lines.append(f"{name:24s} {r['segments_per_s']:9.1f} {r['real_epoch_estimate_s']['total']:10.0f}s "
                     f"{'-' if pct is None else f'{pct:.1f}':>7s} {r['evaluation_s']:7.2f} "
                     f"{100 * r['evaluation_share_estimate']:6.1f}% {'-' if mem is None else f'{mem:.2f}':>8s}")
    o = res["original"]
    lines.append(f"original train.py ({o.get('code')}): " + (
        f"one bench epoch with its evaluation {o['epoch_with_evaluation_s']:.2f} s (ours, original precision: "
        f"{res['ours'].get('original (TF32 convs)', {}).get('bench_epoch_with_evaluation_s', float('nan')):.2f} s)"
        if o.get("epoch_with_evaluation_s") else f"no per-epoch time: {o.get('error', 'too small to resolve')[:300]}"))
    lines.append(f"epoch est. = {REAL_SEGMENTS:,} segments at the measured rate + the evaluation scaled to "
                 f"{REAL_CLIPS} clips: an ESTIMATE")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default=None, help="cuda:0 (default when CUDA is there) or cpu")
    p.add_argument("--tiny", action="store_true", help="tiny sizes: the CPU smoke run of tests/test_bench.py")
    p.add_argument("--iters", type=int, default=0, help="timed iterations per variant (default 100; tiny 4)")
    p.add_argument("--budget", type=float, default=420, help="a variant that would end later than this (seconds "
                   "from the start, the original run first included) is skipped: the command stays under 8 minutes")
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of: " + ", ".join(VARIANTS))
    p.add_argument("--skip-original", action="store_true")
    p.add_argument("--out", default=None)
    a = p.parse_args()
    ensure_packages()
    import torch
    sys.path.insert(0, str(ROOT))
    from aegan import synth
    from aegan.method.device import tune_allocator

    tune_allocator()
    device_name = a.device or ("cuda:0" if torch.cuda.is_available() else "cpu")
    gpu = torch.cuda.get_device_name(torch.device(device_name)) if device_name.startswith("cuda") else None
    s = sizes(a)
    names = [v.strip() for v in a.variants.split(",") if v.strip()]
    if unknown := [v for v in names if v not in VARIANTS]:
        sys.exit(f"bench: unknown variant(s) {unknown}; choose among {list(VARIANTS)}")
    if gpu is None and "compile" in names:
        print("bench: compile skipped on the CPU (inductor's C++ build takes minutes)")
        names.remove("compile")
    t_start = time.perf_counter()
    res: dict = {"device": gpu or "cpu", "torch": torch.__version__, "python": platform.python_version(),
                 "sizes": s, "variants": {n: VARIANTS[n][:5] for n in names}, "ours": {}}
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        data = synth.make_2022(tmp / "data", MT, seconds=s["seconds"], n_train=s["n_train"], n_train_target=1,
                               n_test=s["n_test"], eval_sections=(), seed=0)
        # the original first (its own process, PyTorch's default flags), inside the time budget
        res["original"] = {"error": "skipped (--skip-original)"} if a.skip_original else (
            run_original(tmp, data, s, "cpu" if gpu is None else "cuda") if ORIGINAL.is_dir()
            else {"error": f"{ORIGINAL} is absent"})
        print("bench: the original's train.py done", flush=True)
        spec, cfg, device, d = our_setup(tmp, data, s, device_name)
        n_clips = len(d.train_clips) + len(d.test_clips)
        n_segments = len(d.train_clips) * (d.train_specs.shape[2] - s["isize"] + 1)
        res |= {"train_clips": len(d.train_clips), "test_clips": len(d.test_clips), "frames": d.train_specs.shape[2],
                "bench_epoch_segments": n_segments, "setup_s": time.perf_counter() - t_start}
        print(f"bench: {gpu or 'cpu'}; {len(d.train_clips)} training / {len(d.test_clips)} test clips of "
              f"{s['seconds']:g} s, {s['isize']} mels, batch {s['batch']}, {s['iters']} iterations", flush=True)
        names.sort(key=lambda n: n == "compile")  # the slowest to start, last
        last = 0.0
        for name in names:
            expected = last * (3 if name == "compile" else 1.2)  # compiling G takes a minute or two more
            if time.perf_counter() - t_start + expected > a.budget:
                res["ours"][name] = {"error": f"skipped: it would end past --budget {a.budget:g} s"}
                continue
            t_variant = time.perf_counter()
            try:
                r = time_variant(name, spec, cfg, device, d, s)
                res["ours"][name] = summarise(name, r, s, n_clips, n_segments, gpu)
            except Exception as e:  # noqa: BLE001 - one variant's failure (say compile) must not lose the others
                res["ours"][name] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
            last = time.perf_counter() - t_variant
            print(f"bench: {name} done ({last:.0f} s)", flush=True)
    res["total_s"] = time.perf_counter() - t_start
    text = table(res)
    print(text)
    label = re.sub(r"[^A-Za-z0-9]+", "_", gpu or "cpu").strip("_").lower()
    out = Path(a.out) if a.out else ROOT / "bench" / "results" / f"gpu_{label}{'_tiny' if a.tiny else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1))
    print(f"wrote {out} ({res['total_s']:.0f} s in all)")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
