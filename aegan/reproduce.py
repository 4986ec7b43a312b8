"""Reproduce a whole results table: train and test every machine type for several seeds.

Rerunning the same command continues where it stopped; the summary sets the mean and std over seeds beside the
paper's number, from the jobs that finished, naming those missing."""

from __future__ import annotations

import argparse
import csv
import statistics
import tempfile
from pathlib import Path

from aegan import registry
from aegan.commands.exits import guarded
from aegan.commands.parser import Parser
from aegan.commands.results import fraction
from aegan.core.errors import AeganError, shown
from aegan.core.files import csv_text, write_text
from aegan.core.metrics import selecting_names
from aegan.core.text import pct, plural
from aegan.jobs.job import Job
from aegan.jobs.launcher import Launcher, launchers
from aegan.settings.layers import load_config, output_settings
from aegan.store import model_file

# A table's jobs, at most: the paper's are a few seeds of six machine types. Far more is a typo (--seeds 100000000),
# which would spend minutes listing jobs before the first line; 10000 are planned in about a second.
MAX_JOBS = 10_000


def paper(dataset: str, mt: str) -> tuple[str | None, float | None]:
    """(the paper's metric, its result in %) from pretrain/<dataset>/<mt>.yaml; (None, None) without one."""
    entry = registry.dataset(dataset)
    cfg = load_config(entry.root, mt, sets=entry.sets).cfg
    return (cfg["detect"]["metric"], cfg["paper_result"]) if cfg["paper_result"] is not None else (None, None)


def test_args(spec, cfg: dict, mt: str) -> list[str]:
    """-d where there is a labelled dev test set; else the evaluation set with its ground truth if released."""
    if spec.has_dev_test(cfg, mt):
        return ["-d"]
    truth = Path(cfg["dataset_dir"]) / "ground_truth_data"
    return ["--ground-truth", str(truth)] if truth.is_dir() else []


def set_args(items: list[str]) -> list[str]:
    return [x for item in items for x in ("--set", item)]


def summarize(dataset: str, machines: list[str], seeds: list[int], out: Path) -> tuple[Path, Path, list[str]]:
    """summary.csv and summary.md from the jobs that finished; returns them and the jobs missing from them."""
    key = registry.dataset(dataset).rule.summary_key
    rows, missing = [], []
    for mt in machines:
        paper_metric, result = paper(dataset, mt)
        metric_vals, best_vals = [], []
        for s in seeds:
            tested = out / mt / f"seed{s}" / "result" / mt
            f = next((x for x in (tested / "all_metrics.csv", tested / "eval" / "all_metrics.csv") if x.exists()), None)
            if f is None or not (out / mt / f"seed{s}" / "done").exists():
                missing.append(f"{mt} seed {s}")
                continue
            table = {r["metric"]: float(r[fraction(key)]) for r in csv.DictReader(f.open())}
            best_vals.append(max(table.values()))
            if paper_metric:
                metric_vals.append(table[paper_metric])
        rows.append((mt, len(best_vals), paper_metric or "", "" if result is None else f"{result:.2f}", metric_vals,
                     best_vals))
    # percentages with two decimals, as the paper's table; the std only over two seeds or more
    cols = ["machine", "seeds", "paper_metric", "paper", "metric_mean", "metric_std", "best_mean", "best_std"]
    body = [[*r[:4], *spread(r[4]), *spread(r[5])] for r in rows]
    csv_path, md_path = out / "summary.csv", out / "summary.md"
    write_text(csv_path, csv_text(cols, body))
    md = [f"# {dataset}: {key} (%), the mean over seeds (± their standard deviation, from two seeds on)", "",
          "| machine | seeds | paper metric | paper | this code (paper metric) | this code (best metric) |",
          "|---|---|---|---|---|---|"]
    for mt, n, paper_metric, result, metric_vals, best_vals in rows:
        md.append(f"| {mt} | {n} | {paper_metric or '-'} | {result or '-'} | {mean_std(metric_vals)} | "
                  f"{mean_std(best_vals)} |")
    md += ["", "Epoch and best metric are selected on the labelled dev test set, as in the paper "
           "(train.select=best); pass --set train.select=last for numbers not tuned on it."]
    if missing:
        md += ["", f"**Missing** (not finished, left out of the means): {', '.join(missing)}."]
    write_text(md_path, "\n".join(md) + "\n")
    return csv_path, md_path, missing


def curves(dataset: str, jobs: list[Job], out: Path) -> Path | None:
    """<out>/summary_curves.png: each machine type's paper metric (else the best of the selecting metrics) per
    epoch, over the seeds whose training finished; None when no job evaluated epochs."""
    key, found = registry.dataset(dataset).rule.summary_key, {}
    for mt in dict.fromkeys(j.mt for j in jobs):
        paper_metric, result = paper(dataset, mt)
        runs = []
        for job in (j for j in jobs if j.mt == mt):
            model = job.files.model
            history = model_file.read(model)[1].history if model.is_file() else []
            if history and all("values" in h for h in history):
                runs.append([100 * (h["values"][paper_metric] if paper_metric else h["best_value"]) for h in history])
        if runs:
            found[mt] = (paper_metric or f"the best of the {len(selecting_names())} metrics, per epoch", runs, result)
    if not found:
        return None
    from aegan.commands.curves import table_curves  # matplotlib: only for the figure

    return table_curves(out / "summary_curves.png", found, key, f"{dataset}: {key} (%) per epoch on the labelled dev "
                        "test set, the mean over seeds and their range")


def spread(values: list[float]) -> tuple[str, str]:
    """(mean, standard deviation) of fractions in percent with two decimals; no std for one value, "" for none."""
    if not values:
        return "", ""
    return pct(statistics.mean(values)), pct(statistics.stdev(values)) if len(values) > 1 else ""


def mean_std(values: list[float]) -> str:
    """'63.00 ± 1.25' over seeds, '63.00' for one, '-' for none."""
    mean, std = spread(values)
    return f"{mean} ± {std}" if std else mean or "-"


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = Parser(prog="python -m aegan.reproduce", description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", choices=list(registry.REGISTRY), required=True)
    p.add_argument("--mt", default="all", help="comma-separated machine types, or all")
    p.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1")
    p.add_argument("--out", default=None, help="default: reproduce/<dataset>")
    p.add_argument("--config", help="YAML applied to every job")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--status", action="store_true", help="list each job's state and rewrite the summary from the "
                   "jobs that finished; runs nothing")
    found = launchers()
    p.add_argument("--launcher", choices=list(found), default="local",
                   help="; ".join(f"{name}: {cls.help}" for name, cls in found.items()))
    p.add_argument("--gpus-per-job", type=int, default=1, metavar="N",
                   help="GPUs of each job; N > 1 trains under torchrun with N processes (default 1)")
    for cls in found.values():
        cls.add_arguments(p)
    p.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    a = p.parse_args(argv)
    if a.seeds < 1 or a.gpus_per_job < 0 or getattr(a, "poll", 1) <= 0:
        p.error("--seeds must be >= 1, --gpus-per-job >= 0 and --poll > 0")
    return a


def plan(a: argparse.Namespace, out: Path) -> tuple[list[Job], list[str]]:
    """The jobs of the table (machine types x seeds) under `out`, and the machine types."""
    entry = registry.dataset(a.dataset)
    spec = entry.spec()
    extra = [*(["--config", a.config] if a.config else []), *set_args([*a.set, *entry.sets])]
    cfg = load_config(entry.root, "", a.config, [*a.set, *entry.sets]).cfg
    known = spec.machine_types(cfg)
    named = list(known) if a.mt == "all" else a.mt.split(",")
    unknown = [m for m in named if m not in known]
    if unknown:
        raise AeganError(f"--mt: unknown machine type {unknown[0]!r} (known: {', '.join(known)})")
    machines = list(dict.fromkeys(named))  # one folder per job: a machine type named twice would share one
    if len(machines) < len(named):
        twice = [m for m in machines if named.count(m) > 1]
        print(f"reproduce: --mt names {', '.join(twice)} more than once; each machine type runs once", flush=True)
    if len(machines) * a.seeds > MAX_JOBS:
        raise AeganError(f"--seeds {a.seeds} x {plural(len(machines), 'machine type')} is "
                         f"{len(machines) * a.seeds} jobs, more than the {MAX_JOBS} a table is bounded to: give "
                         "fewer seeds (the paper's tables average a few)")
    jobs = [Job(mt=mt, seed=s, out=out / mt / f"seed{s}", script=entry.root,
                sets=(*extra, *set_args([*output_settings(out / mt / f"seed{s}"), f"tb_dir={out / 'tb'}"])),
                test=tuple(test_args(spec, cfg, mt)),
                procs=max(a.gpus_per_job, 1)) for mt in machines for s in range(a.seeds)]
    return jobs, machines


def check_writable(out: Path) -> None:
    """Refuse an output folder that cannot be written before any job starts."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as e:
        raise AeganError(f"cannot write to the output folder {shown(e.filename or out)}: {e.strerror or e} "
                         "(make it writable, or pass --out with a folder you can write)") from None


def reproduce(a: argparse.Namespace, launcher: Launcher, out: Path) -> int:
    jobs, machines = plan(a, out)
    if not a.status:
        check_writable(out)
        print(f"reproduce: {plural(len(jobs), 'job')} ({plural(len(machines), 'machine type')} x "
              f"{plural(a.seeds, 'seed')}) on {launcher.where()}; outputs under {out}", flush=True)
        print(f"reproduce: every job's TensorBoard events under {out / 'tb'}; to watch them: tensorboard --logdir "
              f"{out / 'tb'}", flush=True)

        def report(job: Job, what: str) -> None:
            print(f"reproduce: {job.name}: {what}", flush=True)

        if not launcher.run(jobs, report):
            return 0
    else:  # what a launcher knows of each job (a Slurm queue's state, its log), else what its folder says
        known = [cls(a, out) for cls in launchers().values()]
        for job in jobs:
            print(f"{job.name}: {next((s for x in known if (s := x.state(job))), None) or job.state()}")
    try:
        csv_path, md_path, missing = summarize(a.dataset, machines, list(range(a.seeds)), out)
    except OSError as e:
        raise AeganError(f"cannot write the summary in {shown(out)}: {e.strerror or e}") from None
    print(f"wrote {csv_path}\nwrote {md_path}")
    figure = curves(a.dataset, jobs, out)
    if figure:
        print(f"wrote {figure}")
    print(md_path.read_text())
    if missing and not a.status:
        raise AeganError(f"{len(missing)} of {plural(len(jobs), 'job')} did not finish: {', '.join(missing)} (--status "
                         "says why and names their logs; rerun the command to run them again)")
    return 0


def main(argv: list[str] | None = None) -> None:
    """Every failure one line on stderr; Ctrl-C and SIGTERM exit 130 with the launcher's own line."""
    a = parse(argv)
    out = Path(a.out) if a.out else registry.ROOT / "reproduce" / a.dataset
    launcher = launchers()[a.launcher](a, out)
    guarded(lambda args: reproduce(args, launcher, out), a, launcher.interrupted)


if __name__ == "__main__":
    main()
