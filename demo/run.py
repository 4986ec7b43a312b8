"""The demo: synthetic DCASE data -> train a small model a few epochs -> test.py -d -> the results table.

    python demo/run.py                      # DCASE 2022 layout, machine type fan
    python demo/run.py --dataset dcase2020  # DCASE 2020 layout

Runs the real train.py and test.py (what a user runs on the real data) with demo/small.yaml, writing
everything under demo_out/<dataset>/.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aegan import synth  # noqa: E402
from aegan.settings.layers import output_settings  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", choices=("dcase2022", "dcase2020"), default="dcase2022")
    p.add_argument("--mt", default="fan")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--out", default=str(ROOT / "demo_out"))
    a = p.parse_args()
    out = Path(a.out) / a.dataset
    data = out / "data"
    t0 = time.time()
    if not (data / "dev_data" / a.mt).is_dir():
        print(f"demo: writing a synthetic {a.dataset} dataset for {a.mt} to {data}", flush=True)
        if a.dataset == "dcase2022":
            synth.make_2022(data, a.mt, seconds=3.0, n_train=16, n_train_target=2, n_test=5, seed=0)
        else:
            synth.make_2020(data, a.mt, seconds=3.0, n_train=18, n_test=8, seed=0)
    sets = demo_sets(out, a.epochs)
    script_dir = ROOT / a.dataset
    for cmd in (["train.py", "--mt", a.mt, "-c", "0", "--seed", "42", *sets],
                ["test.py", "--mt", a.mt, "-d", "-c", "0", *sets]):
        print(f"\ndemo: python {a.dataset}/{' '.join(cmd)}", flush=True)
        r = subprocess.run([sys.executable, str(script_dir / cmd[0]), *cmd[1:]])
        if r.returncode:
            sys.exit(r.returncode)
    print(f"\ndemo: done in {time.time() - t0:.0f} s; results in {out / 'result'}, scores in {out / 'detect'}")
    explain(out, a.mt)


def demo_sets(out: Path, epochs: int) -> list[str]:
    """The demo's settings: demo/small.yaml, its data under `out`/data, every output under `out`."""
    sets = ["--config", str(ROOT / "demo" / "small.yaml"), "--set", f"dataset_dir={out / 'data'}",
            "--set", f"train.epoch={epochs}"]
    return sets + [x for item in output_settings(out) for x in ("--set", item)]


def explain(out: Path, mt: str) -> None:
    """Tie the two numbers on screen together: training's model selection (epoch and metric chosen on the
    labelled dev test set, the paper's rule) and the metric the written score and decision files use."""
    log = (out / "log" / mt / "train.log").read_text().splitlines()
    selected = next((x.split("selected model: ", 1)[1] for x in reversed(log) if "selected model: " in x), None)
    rows = {r["machine"]: r for r in csv.DictReader((out / "result" / "summary.csv").open())}
    row, key = rows.get(mt), next(k for k in ("hmean", "average") if k in next(iter(rows.values())))
    if selected:
        print(f"demo: training kept {selected.split(' -> ')[0]} - the best of all 19 metrics on the labelled dev "
              "test set, chosen on its labels (optimistic)")
    if row:
        how = {"detect.metric": "the configured detect.metric (the paper's choice for this machine type)",
               "best on this test set": "the best metric of this test run (no detect.metric configured)"
               }.get(row["chosen_by"], row["chosen_by"])
        print(f"demo: the files in {out / 'detect'} use {row['metric']}, {how}: {key} {row[key]} % on the dev test "
              f"set; official score of the table {rows['official'][key]} % ({out / 'result' / 'summary.md'})")


if __name__ == "__main__":
    main()
