"""What keying the feature cache and the model's identity on the clips' content costs, next to what the cache
saves: hashing a clip's bytes (sha256) against extracting its log-mel features, side by side in one run.

    python bench/clip_hash.py [--clips 40] [--seconds 10]

Writes bench/results/clip_hash_cpu.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

from aegan import synth
from aegan.data import cache, clips
from aegan.data.audio import extract

ROOT = Path(__file__).resolve().parents[1]
FEAT = {"fft_num": 2048, "frame_hop": 512, "mel_bin": 128}  # the paper's features


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clips", type=int, default=40)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "clip_hash_cpu.json"))
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = synth.make_2022(Path(tmp), "fan", seconds=a.seconds, n_train=a.clips, n_train_target=0, n_test=0)
        paths = sorted((root / "dev_data" / "fan" / "train").glob("*.wav"))

        def hash_all() -> None:
            clips._DIGESTS.clear()  # every clip read and hashed again, as a new process does
            cache.clip_records(paths)

        t_hash = best_of(hash_all, 3)
        t_feat = best_of(lambda: extract(paths, FEAT, 1, desc="features"), 1)
    res = {"clips": len(paths), "seconds_per_clip": a.seconds, "hash_ms_per_clip": 1000 * t_hash / len(paths),
           "features_ms_per_clip": 1000 * t_feat / len(paths), "hash_share_of_extraction": t_hash / t_feat,
           "machine": f"{platform.processor() or platform.machine()}, {platform.system()}"}
    Path(a.out).write_text(json.dumps(res, indent=1))
    print(f"{len(paths)} clips of {a.seconds:g} s: sha256 {res['hash_ms_per_clip']:.2f} ms per clip, log-mel "
          f"{res['features_ms_per_clip']:.1f} ms per clip: hashing costs {100 * res['hash_share_of_extraction']:.2f}% "
          f"of extracting (wrote {a.out})")


if __name__ == "__main__":
    main()
