"""What the TensorBoard events cost a training epoch, side by side in one run: the same epoch's iterations with the
events written (the loss terms at every logging interval, the epoch's scalars, the 19 metrics' evaluation) and the
time spent inside the event writer, as a share of the epoch's time; at a tiny size (a whole epoch) and at the paper's
size (isize 128; the first iterations of an epoch after a warm-up, extrapolated to a real DCASE 2022 epoch of 1,089
batches of 512).

    python bench/tensorboard_cost.py [--paper-iters 20] [--quick]

Writes bench/results/tensorboard_cost_cpu.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aegan.core.metrics import metric_names  # noqa: E402
from aegan.data.segments import SegmentSampler  # noqa: E402
from aegan.method.device import tune_allocator  # noqa: E402
from aegan.scoring.evaluation import SECTIONS  # noqa: E402
from aegan.settings.layers import load_config  # noqa: E402
from aegan.training.epoch import LOG_EVERY, train_epoch  # noqa: E402
from aegan.training.events import Events  # noqa: E402
from aegan.training.parts import build  # noqa: E402

REAL_BATCHES = 1089  # a DCASE 2022 epoch: 3000 clips x 186 segments // 512
CPU = torch.device("cpu")


class Timed:
    """An Events whose every call is timed."""

    def __init__(self, events: Events):
        self.events, self.seconds, self.calls = events, {}, {}

    def __getattr__(self, name):
        method = getattr(self.events, name)

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            method(*args, **kwargs)
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0
            self.calls[name] = self.calls.get(name, 0) + 1

        return timed


def one_size(sets: list[str], clips: int, frames: int, iters: int | None) -> dict:
    cfg = load_config(ROOT / "dcase2022", "fan", None, sets).cfg
    isize, batch = cfg["net"]["isize"], cfg["train"]["batch_size"]
    specs = torch.rand(clips, isize, frames) * 2 - 1
    sampler = SegmentSampler(specs, isize, 1, batch)
    results = {m: ([], {q: 0.5 for q in SECTIONS.summary_columns}) for m in metric_names()}
    out = {}
    for logged in (None, False, True):  # None: a warm-up of the same iterations, not reported
        torch.manual_seed(0)
        nets = build(cfg, CPU)
        with tempfile.TemporaryDirectory() as tb:
            events = Timed(Events(Path(tb) / "run" if logged else None, SECTIONS, None, iters))
            if logged is None:
                train_epoch(nets, _first(sampler, 2), cfg["train"], CPU, "warm-up", Path(tb) / "x.pth")
                continue
            limited = _first(sampler, iters)
            t0 = time.perf_counter()
            mean = train_epoch(nets, limited, cfg["train"], CPU, "epoch", Path(tb) / "x.pth", events.losses)
            events.epoch(1, mean, 1.0, len(limited) * batch, (2e-4, 2e-4))
            events.evaluation(1, results, {"epoch": 1, "value": 0.5, "metric": "D_lof"}, True)
            out["with_events" if logged else "without_events"] = {
                "epoch_s": time.perf_counter() - t0, "inside_events_s": sum(events.seconds.values()),
                "seconds_per_call": {k: v / events.calls[k] for k, v in events.seconds.items()}}
    w = out["with_events"]
    w["share"] = w["inside_events_s"] / w["epoch_s"]
    out |= {"isize": isize, "batch": batch, "iterations": len(_first(sampler, iters)), "logging_every": LOG_EVERY}
    return out


def _first(sampler: SegmentSampler, iters: int | None) -> SegmentSampler:
    """The sampler, cut to `iters` batches (of all the segments it holds, whatever an earlier cut was)."""
    sampler.total = getattr(sampler, "all_total", sampler.total)
    sampler.all_total = sampler.total
    if iters is not None and iters < len(sampler):
        sampler.total = iters * sampler.batch_size
    return sampler


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--paper-iters", type=int, default=20)
    p.add_argument("--quick", action="store_true", help="a smoke run: fewer iterations at the paper's size")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "tensorboard_cost_cpu.json"))
    a = p.parse_args()
    torch.set_num_threads(2)
    tune_allocator()  # as train.py does
    tiny = ["feat.fft_num=1024", "feat.mel_bin=32", "feat.frame_num=32", "net.isize=32", "net.nz=16", "net.ndf=8",
            "net.ngf=8", "train.batch_size=16"]
    res = {"tiny (isize 32, batch 16, a whole epoch)": one_size(tiny, 8 if a.quick else 40, 79, None)}
    iters = 1 if a.quick else a.paper_iters
    paper = one_size(["train.batch_size=64"], -(-iters * 64 // 186), 313, iters)  # 186 segments of 128 a clip
    fastest = min(paper["with_events"]["epoch_s"], paper["without_events"]["epoch_s"])  # faster: larger share
    per_iter = fastest / paper["iterations"] * (512 / 64)  # a batch of 512
    call = paper["with_events"]["seconds_per_call"]  # the loss terms every interval, the rest once an epoch
    cost = call["losses"] * -(-REAL_BATCHES // LOG_EVERY) + call["epoch"] + call["evaluation"]
    paper["real_epoch_extrapolation"] = {"epoch_s": per_iter * REAL_BATCHES, "events_s": cost,
                                         "share": cost / (per_iter * REAL_BATCHES)}
    res["paper size (isize 128, batch 64, the first iterations)"] = paper
    res["machine"] = {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
                      "torch": torch.__version__, "date": time.strftime("%Y-%m-%d")}
    for name, r in res.items():
        if name != "machine":
            w, wo = r["with_events"], r["without_events"]
            print(f"{name}: epoch {w['epoch_s']:.2f} s with events, {wo['epoch_s']:.2f} s without; "
                  f"{1000 * w['inside_events_s']:.1f} ms inside the event writer "
                  f"({100 * r['with_events']['share']:.3f}% of the epoch)")
    x = paper["real_epoch_extrapolation"]
    print(f"a real DCASE 2022 epoch (extrapolated): {x['events_s']:.3f} s of events in {x['epoch_s'] / 60:.0f} min "
          f"({100 * x['share']:.5f}%)")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=1))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
