"""Every command users wait on, timed side by side with the original code itself, in one run.

    python bench/versus_original.py [--train-clips 12 --test-clips 10 --seconds 10 --isize 128 --repeat 2]
    python bench/versus_original.py --quick          # a smoke run at small sizes

Both sides run on the same device (--device): on the CPU (the default; ours with CUDA hidden) the original
(../shared/original) runs from a temporary copy patched only to run on the CPU, as the oracle tests run it; on
CUDA from a copy patched only to let torch >= 2.6 read its own checkpoints, on card 0. One OpenBLAS thread on
both sides (the features' last bit depends on it). On the same
synthetic DCASE 2022 data, seed and config file, timed alternately (original, ours, original, ours):
- one training epoch end to end, with its evaluation (train.py, train.epoch=1);
- test.py on the checkpoint the original's train.py wrote: ours the first time (it derives the sidecar:
  the critic's training embeddings, the decision threshold) and later (reading it), with and without pictures;
- loc.py on the same checkpoint.
Features are cached for both before any timing. Results go to bench/results/versus_original_<device>.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from aegan import synth  # noqa: E402
from aegan.settings.layers import output_settings  # noqa: E402
from oracle import CPU_PATCHES, ENV, FOLDER, ORIGINAL, cpu_copy, original_config  # noqa: E402

MT = "slider"  # a paper machine type with the default network (first_norm, LayerNorm)


RUN_ENV = dict(ENV)  # main() hides CUDA from both sides for --device cpu


def run(cmd: list[str], cwd: Path) -> float:
    """Wall seconds of one command; a failure stops the benchmark with the command's own output."""
    t = time.perf_counter()
    r = subprocess.run(cmd, cwd=cwd, env=RUN_ENV, capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"bench: {' '.join(cmd[:3])} failed:\n{r.stdout[-1500:]}\n{r.stderr[-1500:]}")
    return time.perf_counter() - t


def alternate(pairs: dict[str, tuple], repeat: int) -> dict[str, list[float]]:
    """Each (label: (command, cwd, before)) timed `repeat` times, the labels interleaved so that the machine's
    drifting load hits all alike; `before` (if any) runs untimed before each timing."""
    times: dict[str, list[float]] = {k: [] for k in pairs}
    for _ in range(repeat):
        for label, (cmd, cwd, before) in pairs.items():
            if before:
                before()
            times[label].append(run(cmd, cwd))
    return times


def cuda_copy(dest: Path) -> Path:
    """The original's folder with only the torch >= 2.6 checkpoint-reading patch (its scripts stay on CUDA)."""
    shutil.copytree(ORIGINAL / FOLDER["dcase2022"], dest)
    for script, patches in CPU_PATCHES.items():
        path = dest / script
        path.chmod(0o644)
        text = path.read_text()
        for old, new in patches:
            if "weights_only" in new:
                text = text.replace(old, new)
        path.write_text(text)
    return dest


def setup(tmp: Path, a: argparse.Namespace) -> tuple[Path, Path, list[str], list[str]]:
    """Data, the original's CPU copy with its config, and our --config/--set arguments for the same run."""
    data = synth.make_2022(tmp / "data", MT, seconds=a.seconds, n_train=a.train_clips, n_train_target=1,
                           n_test=a.test_clips // 4 or 1, eval_sections=(), seed=0)
    code = cpu_copy("dcase2022", tmp / "original") if a.device == "cpu" else cuda_copy(tmp / "original")
    cfg = original_config("dcase2022", MT, data, tmp / "orig_out", **{
        "feat.fft_num": 2048, "feat.mel_bin": a.isize, "feat.frame_num": a.isize, "net.isize": a.isize,
        "net.nz": 256, "net.ndf": 32, "net.ngf": 32, "train.epoch": 1, "train.batch_size": a.batch})
    (code / "config.yaml").write_text(yaml.safe_dump(cfg))
    ours = [sys.executable, str(ROOT / "dcase2022" / "{script}"), "--mt", MT, "--config", str(code / "config.yaml"),
            "--set", "feat.workers=1", *[x for s in output_settings(tmp / "ours") for x in ("--set", s)]]
    on_original = [*ours, "--set", f"model_dir={tmp / 'orig_out' / 'model'}"]  # the original's checkpoint
    return data, code, ours, on_original


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--train-clips", type=int, default=12, help="source training clips per section (3 sections)")
    p.add_argument("--test-clips", type=int, default=12, help="dev test clips per section")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--isize", type=int, default=128)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="small sizes, one repeat: a smoke run")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where BOTH sides run")
    p.add_argument("--out", default=None)
    a = p.parse_args()
    if a.device == "cuda" and not torch.cuda.is_available():
        sys.exit("bench: --device cuda but CUDA is not available here")
    if a.device == "cpu":
        RUN_ENV["CUDA_VISIBLE_DEVICES"] = ""  # ours picks CUDA when it sees it
    if not ORIGINAL.is_dir():
        sys.exit(f"bench: {ORIGINAL} (the original code) is absent")
    if a.quick:
        a.train_clips, a.test_clips, a.seconds, a.isize, a.batch, a.repeat = 3, 4, 2.5, 32, 16, 1
    label = torch.cuda.get_device_name(0) if a.device == "cuda" else "cpu"
    res: dict = {"device": label, "torch": torch.__version__, "python": platform.python_version(),
                 "cpu_threads": torch.get_num_threads(), "machine": platform.machine(), "isize": a.isize,
                 "train_clips": 3 * (a.train_clips + 1), "test_clips": 3 * 4 * (a.test_clips // 4 or 1),
                 "seconds": a.seconds, "batch": a.batch}
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        _, code, ours, on_original = setup(tmp, a)
        cmd = {s: [x.replace("{script}", f"{s}.py") for x in ours] for s in ("train", "test", "loc")}
        on_orig = {s: [x.replace("{script}", f"{s}.py") for x in on_original] for s in ("test", "loc")}
        # the original's own scripts, as its README runs them (no -c: the CPU copy ignores the card)
        card = ["-c", "0"] if a.device == "cuda" else []  # the original's default card is 2
        original = {"train": [sys.executable, "train.py", "--mt", MT, "--seed", "42", *card],
                    "test": [sys.executable, "test.py", "--mt", MT, *card],
                    "loc": [sys.executable, "loc.py", "--mt", MT, *card]}
        print(f"bench: {res['train_clips']} training and {res['test_clips']} test clips of {a.seconds:g} s, isize "
              f"{a.isize}, batch {a.batch}, {a.repeat} repeat(s), both on {label}", flush=True)
        if not a.quick:  # features cached for both (and the original's checkpoint written) before any timing
            run(original["train"], code)
            run([*cmd["train"], "--seed", "42"], ROOT)
        sidecar = tmp / "orig_out" / "model" / f"{MT}.scoring.pt"
        times = alternate({"train_original": (original["train"], code, None),
                           "train_ours": ([*cmd["train"], "--seed", "42"], ROOT, None)}, a.repeat)
        shutil.copy(tmp / "orig_out" / "model" / f"{MT}.pth", tmp / "checkpoint_before_timing.pth")
        times |= alternate({
            "test_original": (original["test"], code, None),
            "test_ours_first": ([*on_orig["test"], "-d"], ROOT, lambda: sidecar.unlink(missing_ok=True)),
            "test_ours_later": ([*on_orig["test"], "-d"], ROOT, None),
            "test_ours_later_no_plots": ([*on_orig["test"], "-d", "--no-plots"], ROOT, None),
            "loc_original": (original["loc"], code, lambda: shutil.rmtree(code / "ano_loc", ignore_errors=True)),
            "loc_ours": (on_orig["loc"], ROOT, None)}, a.repeat)
    res["seconds_best_of"] = {k: min(v) for k, v in times.items()}
    res["all_runs"] = times
    best = res["seconds_best_of"]
    res["ratios"] = {"train_epoch": best["train_ours"] / best["train_original"],
                     "test_first": best["test_ours_first"] / best["test_original"],
                     "test_later": best["test_ours_later"] / best["test_original"],
                     "test_later_no_plots": best["test_ours_later_no_plots"] / best["test_original"],
                     "loc": best["loc_ours"] / best["loc_original"]}
    for k, v in res["ratios"].items():
        print(f"{k:22s} ours / original = {v:.2f}")
    name = "cpu" if a.device == "cpu" else "cuda_" + "".join(c if c.isalnum() else "_" for c in label).lower()
    out = Path(a.out) if a.out else ROOT / "bench" / "results" / f"versus_original_{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
