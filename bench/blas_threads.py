"""What giving the mel product the original's BLAS thread count costs (issue 38): log-mel extraction with the
process's default count (BLAS_THREADS, what librosa gets in the original, so the same bits) against one thread
per mel product (the earlier policy, bits that differ from the original's on a machine with several CPUs), and
librosa's own melspectrogram per clip (the original's way), side by side in one run, alternating.

    python bench/blas_threads.py [--clips 24] [--seconds 10] [--repeat 3]

Writes bench/results/blas_threads_cpu.json.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import tempfile
from pathlib import Path

import numpy as np
from evaluation_cost import timed  # bench/evaluation_cost.py: (seconds, result) of one call
from run import reference_features  # bench/run.py: librosa's own melspectrogram per clip

from aegan import synth
from aegan.data import audio

ROOT = Path(__file__).resolve().parents[1]
FEAT = {"fft_num": 2048, "frame_hop": 512, "mel_bin": 128}  # the paper's features


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clips", type=int, default=24)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "blas_threads_cpu.json"))
    a = p.parse_args()
    default = audio.BLAS_THREADS
    with tempfile.TemporaryDirectory() as tmp:
        root = synth.make_2022(Path(tmp), "fan", seconds=a.seconds, n_train=a.clips, n_train_target=0, n_test=0)
        paths = sorted((root / "dev_data" / "fan" / "train").glob("*.wav"))
        want = reference_features(paths, FEAT)  # also compiles librosa's numba kernels before any timing
        times: dict[str, list[float]] = {}
        equal: dict[str, bool] = {}
        for _ in range(a.repeat):  # alternating, so that a busy machine slows every variant alike
            times.setdefault("librosa", []).append(timed(lambda: reference_features(paths, FEAT))[0])
            for threads in (default, 1):
                audio.BLAS_THREADS = threads  # read at each call; forked workers inherit it
                for workers in (1, 2):
                    key = f"threads={threads} workers={workers}"
                    t, got = timed(functools.partial(audio.extract, paths, FEAT, workers, desc="features"))
                    times.setdefault(key, []).append(t)
                    equal[key] = bool(np.array_equal(got, want))
        audio.BLAS_THREADS = default
    ms = {k: 1000 * min(v) / len(paths) for k, v in times.items()}
    res = {"clips": len(paths), "seconds_per_clip": a.seconds, "default_blas_threads": default,
           "cpus": len(os.sched_getaffinity(0)), "ms_per_clip": ms, "bit_equal_to_librosa": equal,
           "ratio_default_over_one_thread": {w: ms[f"threads={default} workers={w}"] / ms[f"threads=1 workers={w}"]
                                             for w in (1, 2)},
           "ratio_librosa_over_ours_serial": ms["librosa"] / ms[f"threads={default} workers=1"],
           "machine": f"{platform.processor() or platform.machine()}, {platform.system()}"}
    Path(a.out).write_text(json.dumps(res, indent=1))
    for k, v in ms.items():
        print(f"{k:>22}: {v:6.1f} ms per clip" + (f"  bit-equal to librosa: {equal[k]}" if k in equal else ""))
    print(f"default ({default}) / one thread: serial {res['ratio_default_over_one_thread'][1]:.3f}, two workers "
          f"{res['ratio_default_over_one_thread'][2]:.3f}; librosa / ours serial "
          f"{res['ratio_librosa_over_ours_serial']:.2f} (wrote {a.out})")


if __name__ == "__main__":
    main()
