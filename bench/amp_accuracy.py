"""bf16 autocast against fp32 on a trained model: the 19-metric table of both, and its largest difference.

    python bench/amp_accuracy.py [--dataset dcase2022]

Trains the demo model first when demo_out/ has none (demo/run.py), then runs the real test.py twice on
its dev test set, with detect.amp=fp32 and detect.amp=bf16 (the scoring precision), and compares the two
all_metrics.csv files.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", choices=("dcase2022", "dcase2020"), default="dcase2022")
    p.add_argument("--mt", default="fan")
    a = p.parse_args()
    out = ROOT / "demo_out" / a.dataset
    if not (out / "model" / f"{a.mt}.pth").exists():
        subprocess.run([sys.executable, str(ROOT / "demo" / "run.py"), "--dataset", a.dataset, "--mt", a.mt],
                       check=True)
    tables = {}
    for amp in ("fp32", "bf16"):
        res = out / f"result_{amp}"
        sets = ["--config", str(ROOT / "demo" / "small.yaml"), "--set", f"dataset_dir={out / 'data'}",
                "--set", f"model_dir={out / 'model'}", "--set", f"spec_dir={out / 'spec'}",
                "--set", f"result_dir={res}", "--set", f"detect_dir={out / ('detect_' + amp)}",
                "--set", f"detect.amp={amp}", "--no-plots"]
        subprocess.run([sys.executable, str(ROOT / a.dataset / "test.py"), "--mt", a.mt, "-d", *sets], check=True,
                       stdout=subprocess.DEVNULL)
        rows = list(csv.reader((res / a.mt / "all_metrics.csv").open()))
        tables[amp] = {r[0]: [float(v) for v in r[1:]] for r in rows[1:]}
    diff = {m: max(abs(x - y) for x, y in zip(tables["fp32"][m], tables["bf16"][m])) for m in tables["fp32"]}
    worst = max(diff, key=diff.get)
    print(f"{'metric':14} {'max |fp32 - bf16|':>18}")
    for m, v in diff.items():
        print(f"{m:14} {v:18.4f}")
    print(f"largest difference: {diff[worst]:.4f} ({worst}); target <= 0.02")
    path = ROOT / "bench" / "results" / f"amp_accuracy_{a.dataset}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"max_abs_diff": diff[worst], "metric": worst, "per_metric": diff}, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
