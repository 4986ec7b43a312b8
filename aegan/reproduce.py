"""Reproduce a whole results table: train and test every machine type for several seeds.

    python -m aegan.reproduce --dataset dcase2022 --mt all --seeds 3 [--set dataset_dir=/data/dcase2022]
    python -m aegan.reproduce --dataset dcase2025 --set dataset_dir=/data/dcase2025   # a first-shot year

Each (machine type, seed) job runs the real train.py and test.py with its outputs under <out>/<mt>/seed<k>/:
test.py -d on the dev test set, or, for a first-shot evaluation machine type, on the evaluation test set
with the released ground truth (<dataset_dir>/ground_truth_data) when it is there. Jobs that finished are
skipped and interrupted ones resume, so rerunning the same command continues where it stopped. With several
visible GPUs one job runs per GPU at a time. The summary (<out>/summary.csv and summary.md) gives, per
machine type, the mean and std over seeds of the paper's metric and of the best metric, next to the paper's
number.
"""

from __future__ import annotations

import argparse
import csv
import importlib
import os
import statistics
import subprocess
import sys
import threading
from pathlib import Path
from queue import Queue

import torch

from .config import load_config, output_settings
from .errors import AeganError
from .files import write_text

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ("dcase2020", "dcase2022", "dcase2023", "dcase2024", "dcase2025", "dcase2026")


def folder(dataset: str) -> tuple[str, list[str]]:
    """(the dataset folder, --set items it needs): the first-shot years share firstshot/ with the year set."""
    year = int(dataset.removeprefix("dcase"))
    return ("firstshot", ["--set", f"year={year}"]) if year >= 2023 else (dataset, [])


def dataset_spec(dataset: str):
    """The dataset folder's DatasetSpec (its machine types, summary key): the folder is the one home."""
    if str(ROOT) not in sys.path:  # the dataset folders sit in the repository, not in the installed package
        sys.path.insert(0, str(ROOT))
    return importlib.import_module(f"{folder(dataset)[0]}.datasets").SPEC


def paper(dataset: str, mt: str) -> tuple[str | None, float | None]:
    """(the paper's metric, its result in %) from pretrain/<dataset>/<mt>.yaml; (None, None) without one."""
    cfg = load_config(ROOT / folder(dataset)[0], mt).cfg
    return (cfg["detect"]["metric"], cfg["paper_result"]) if cfg["paper_result"] is not None else (None, None)


def test_args(spec, cfg: dict, mt: str) -> list[str]:
    """-d where there is a labelled dev test set; else the evaluation set with its ground truth if released."""
    if spec.has_dev_test(cfg, mt):
        return ["-d"]
    truth = Path(cfg["dataset_dir"]) / "ground_truth_data"
    return ["--ground-truth", str(truth)] if truth.is_dir() else []


def job_sets(out: Path) -> list[str]:
    return [x for item in output_settings(out) for x in ("--set", item)]


def run_job(dataset: str, mt: str, seed: int, out: Path, extra: list[str], test: list[str], env: dict) -> str:
    """Train (or resume) then test one job; returns a status word. Output goes to <out>/run.log."""
    done = out / "done"
    if done.exists():
        return "done before"
    out.mkdir(parents=True, exist_ok=True)
    sets = [*extra, *job_sets(out)]
    script = ROOT / folder(dataset)[0]
    with open(out / "run.log", "a") as log:
        if not (out / "model" / f"{mt}.pth").exists() or (out / "model" / f"{mt}_last.pth").exists():
            resume = ["--resume"] if (out / "model" / f"{mt}_last.pth").exists() else []
            r = subprocess.run([sys.executable, str(script / "train.py"), "--mt", mt, "--seed", str(seed), *resume,
                                *sets], stdout=log, stderr=subprocess.STDOUT, env=env)
            if r.returncode:
                return f"train failed (see {out / 'run.log'})"
        r = subprocess.run([sys.executable, str(script / "test.py"), "--mt", mt, *test, *sets], stdout=log,
                           stderr=subprocess.STDOUT, env=env)
    if r.returncode:
        return f"test failed (see {out / 'run.log'})"
    write_text(done, "")
    return "ok"


def summarize(dataset: str, machines: list[str], seeds: list[int], out: Path) -> tuple[Path, Path]:
    key = dataset_spec(dataset).summary_key
    rows = []
    for mt in machines:
        paper_metric, result = paper(dataset, mt)
        metric_vals, best_vals = [], []
        for s in seeds:
            tested = out / mt / f"seed{s}" / "result" / mt
            f = next((x for x in (tested / "all_metrics.csv", tested / "eval" / "all_metrics.csv") if x.exists()), None)
            if f is None:
                continue
            table = {r["metric"]: float(r[key]) for r in csv.DictReader(f.open())}
            best_vals.append(100 * max(table.values()))
            if paper_metric:
                metric_vals.append(100 * table[paper_metric])

        def ms(v):
            return (statistics.mean(v), statistics.stdev(v) if len(v) > 1 else 0.0) if v else (float("nan"),) * 2

        rows.append({"machine": mt, "seeds": len(best_vals), "paper_metric": paper_metric or "",
                     "paper": "" if result is None else f"{result:.2f}",
                     "metric_mean": ms(metric_vals)[0], "metric_std": ms(metric_vals)[1],
                     "best_mean": ms(best_vals)[0], "best_std": ms(best_vals)[1]})
    cols = ["machine", "seeds", "paper_metric", "paper", "metric_mean", "metric_std", "best_mean", "best_std"]
    body = "\n".join(",".join(str(r[c]) for c in cols) for r in rows)
    csv_path, md_path = out / "summary.csv", out / "summary.md"
    write_text(csv_path, ",".join(cols) + "\n" + body + "\n")
    md = [f"# {dataset}: {key} (%), mean ± std over seeds", "",
          "| machine | seeds | paper metric | paper | this code (paper metric) | this code (best metric) |",
          "|---|---|---|---|---|---|"]
    for r in rows:
        md.append(f"| {r['machine']} | {r['seeds']} | {r['paper_metric'] or '-'} | {r['paper'] or '-'} | "
                  f"{r['metric_mean']:.2f} ± {r['metric_std']:.2f} | {r['best_mean']:.2f} ± {r['best_std']:.2f} |")
    md += ["", "Epoch and best metric are selected on the labelled dev test set, as in the paper "
           "(train.select=best); pass --set train.select=last for numbers not tuned on it."]
    write_text(md_path, "\n".join(md) + "\n")
    return csv_path, md_path


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m aegan.reproduce", description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", choices=DATASETS, required=True)
    p.add_argument("--mt", default="all", help="comma-separated machine types, or all")
    p.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1")
    p.add_argument("--out", default=None, help="default: reproduce/<dataset>")
    p.add_argument("--config", help="YAML applied to every job")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    a = p.parse_args(argv)
    spec, (name, year_sets) = dataset_spec(a.dataset), folder(a.dataset)
    extra = (["--config", a.config] if a.config else []) + [x for s in a.set for x in ("--set", s)] + year_sets
    try:
        cfg = load_config(ROOT / name, "", a.config, [*a.set, *year_sets[1::2]]).cfg
        known = spec.machine_types(cfg)
    except AeganError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    machines = list(known) if a.mt == "all" else a.mt.split(",")
    unknown = [m for m in machines if m not in known]
    if unknown or a.seeds < 1:
        print(f"error: {'unknown machine type ' + unknown[0] if unknown else '--seeds must be >= 1'}", file=sys.stderr)
        sys.exit(2)
    out = Path(a.out) if a.out else ROOT / "reproduce" / a.dataset
    seeds = list(range(a.seeds))
    jobs: Queue = Queue()
    for mt in machines:
        for s in seeds:
            jobs.put((mt, s))
    gpus = list(range(torch.cuda.device_count())) or [None]
    where = f"{len(gpus)} GPU(s)" if gpus[0] is not None else "the CPU"
    print(f"reproduce: {jobs.qsize()} jobs ({len(machines)} machine types x {len(seeds)} seeds) on {where}; "
          f"outputs under {out}", flush=True)
    lock = threading.Lock()

    def worker(gpu):
        env = dict(os.environ)
        if gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = str(gpu)  # the job sees one GPU as cuda:0
        while not jobs.empty():
            try:
                mt, s = jobs.get_nowait()
            except Exception:  # noqa: BLE001 - emptied by another worker
                return
            status = run_job(a.dataset, mt, s, out / mt / f"seed{s}", extra, test_args(spec, cfg, mt), env)
            with lock:
                print(f"reproduce: {mt} seed {s}: {status}", flush=True)

    threads = [threading.Thread(target=worker, args=(g,)) for g in gpus]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for f in summarize(a.dataset, machines, seeds, out):
        print(f"wrote {f}")
    print((out / "summary.md").read_text())


if __name__ == "__main__":
    main()
