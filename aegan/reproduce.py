"""Reproduce a whole results table: train and test every machine type for several seeds.

    python -m aegan.reproduce --dataset dcase2022 --mt all --seeds 3 [--set dataset_dir=/data/dcase2022]
    python -m aegan.reproduce --dataset dcase2025 --set dataset_dir=/data/dcase2025   # a first-shot year
    python -m aegan.reproduce --dataset dcase2022 --seeds 3 --launcher slurm --partition gpu --time 12:00:00
    python -m aegan.reproduce --dataset dcase2022 --seeds 3 --status                 # each job's state

Each (machine type, seed) job runs the real train.py and test.py with its outputs under <out>/<mt>/seed<k>/:
test.py -d on the dev test set, or, for a first-shot evaluation machine type, on the evaluation test set
with the released ground truth (<dataset_dir>/ground_truth_data) when it is there. `--launcher local` runs the
jobs on this machine, one per GPU slot; `--launcher slurm` submits them as one Slurm job array (aegan/launchers.py
says how both work). Finished jobs are skipped and interrupted ones resume, so rerunning the same command
continues where it stopped. The summary (<out>/summary.csv and summary.md) gives, per machine type, the mean and
std over seeds of the paper's metric and of the best metric, next to the paper's number, from the jobs that
finished, naming those missing.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

from aegan import registry
from aegan.commands.report import fraction
from aegan.core.errors import AeganError, Parser, shown, sigterm_as_interrupt
from aegan.core.files import write_text
from aegan.core.text import pct, plural
from aegan.jobs.launchers import STOPPED, Job, gpu_slots, key, queue_states, run_local, submit_slurm
from aegan.settings.layers import load_config, output_settings


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


def job_sets(out: Path) -> list[str]:
    return [x for item in output_settings(out) for x in ("--set", item)]


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
        rows.append({"machine": mt, "seeds": len(best_vals), "paper_metric": paper_metric or "",
                     "paper": "" if result is None else f"{result:.2f}", "metric": metric_vals, "best": best_vals})
    # percentages with two decimals, as the paper's table; the std only over two seeds or more
    cols = ["machine", "seeds", "paper_metric", "paper", "metric_mean", "metric_std", "best_mean", "best_std"]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for r in rows:
        w.writerow([r["machine"], r["seeds"], r["paper_metric"], r["paper"], *spread(r["metric"]), *spread(r["best"])])
    csv_path, md_path = out / "summary.csv", out / "summary.md"
    write_text(csv_path, buf.getvalue())
    md = [f"# {dataset}: {key} (%), the mean over seeds (± their standard deviation, from two seeds on)", "",
          "| machine | seeds | paper metric | paper | this code (paper metric) | this code (best metric) |",
          "|---|---|---|---|---|---|"]
    for r in rows:
        md.append(f"| {r['machine']} | {r['seeds']} | {r['paper_metric'] or '-'} | {r['paper'] or '-'} | "
                  f"{mean_std(r['metric'])} | {mean_std(r['best'])} |")
    md += ["", "Epoch and best metric are selected on the labelled dev test set, as in the paper "
           "(train.select=best); pass --set train.select=last for numbers not tuned on it."]
    if missing:
        md += ["", f"**Missing** (not finished, left out of the means): {', '.join(missing)}."]
    write_text(md_path, "\n".join(md) + "\n")
    return csv_path, md_path, missing


def spread(values: list[float]) -> tuple[str, str]:
    """(mean, standard deviation) of fractions, as percentages with two decimals; no std for one value, "" for
    none."""
    if not values:
        return "", ""
    return pct(statistics.mean(values)), pct(statistics.stdev(values)) if len(values) > 1 else ""


def mean_std(values: list[float]) -> str:
    """'63.00 ± 1.25' over seeds, '63.00' for one, '-' for none."""
    mean, std = spread(values)
    return f"{mean} ± {std}" if std else mean or "-"


def minutes(text: str) -> int:
    """--time as Slurm writes it ([D-]H:MM[:SS]) or plain minutes, in whole minutes (submitit's unit)."""
    m = re.fullmatch(r"(?:(\d+)-)?(\d+):(\d{2})(?::(\d{2}))?|(\d+)", text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"--time {text!r}: write H:MM:SS, D-H:MM:SS or minutes")
    d, h, mm, ss, plain = (int(x) if x else 0 for x in m.groups())
    total = plain if m.group(5) else math.ceil(((d * 24 + h) * 60 + mm) + ss / 60)
    if total < 1:
        raise argparse.ArgumentTypeError("--time must be at least one minute")
    return total


def key_value(text: str) -> tuple[str, str]:
    k, sep, v = text.partition("=")
    if not sep or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", k):
        raise argparse.ArgumentTypeError(f"--slurm {text!r}: write an sbatch option as KEY=VALUE, e.g. mem=32G")
    return k, v


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
    p.add_argument("--launcher", choices=("local", "slurm"), default="local",
                   help="local: on this machine, one job per GPU slot; slurm: one Slurm job array")
    p.add_argument("--gpus-per-job", type=int, default=1, metavar="N",
                   help="GPUs of each job; N > 1 trains under torchrun with N processes (default 1)")
    p.add_argument("--partition", help="Slurm partition")
    p.add_argument("--time", type=minutes, default=24 * 60, metavar="H:MM:SS",
                   help="Slurm time limit of each job (default 24:00:00); a job stopped by it is requeued and resumes")
    p.add_argument("--slurm", type=key_value, action="append", default=[], metavar="KEY=VALUE",
                   help="an sbatch option for every job, e.g. --slurm account=abc --slurm mem=32G (repeatable)")
    p.add_argument("--no-wait", action="store_true", help="slurm: submit and return (--status follows the jobs)")
    p.add_argument("--poll", type=float, default=30.0, metavar="S", help="slurm: seconds between queue checks")
    a = p.parse_args(argv)
    if a.seeds < 1 or a.gpus_per_job < 0 or a.poll <= 0:
        p.error("--seeds must be >= 1, --gpus-per-job >= 0 and --poll > 0")
    return a


def plan(a: argparse.Namespace) -> tuple[list[Job], list[str], Path]:
    """The jobs of the table (machine types x seeds), the machine types, and the output folder."""
    entry = registry.dataset(a.dataset)
    spec = entry.spec()
    extra = [*(["--config", a.config] if a.config else []), *[x for s in [*a.set, *entry.sets] for x in ("--set", s)]]
    cfg = load_config(entry.root, "", a.config, [*a.set, *entry.sets]).cfg
    known = spec.machine_types(cfg)
    machines = list(known) if a.mt == "all" else a.mt.split(",")
    unknown = [m for m in machines if m not in known]
    if unknown:
        raise AeganError(f"--mt: unknown machine type {unknown[0]} (known: {', '.join(known)})")
    out = Path(a.out) if a.out else registry.ROOT / "reproduce" / a.dataset
    jobs = [Job(mt, s, out / mt / f"seed{s}", entry.root, (*extra, *job_sets(out / mt / f"seed{s}")),
                tuple(test_args(spec, cfg, mt)), max(a.gpus_per_job, 1)) for mt in machines for s in range(a.seeds)]
    return jobs, machines, out


def check_writable(out: Path) -> None:
    """Refuse an output folder that cannot be written before any job starts."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as e:
        raise AeganError(f"cannot write to the output folder {shown(e.filename or out)}: {e.strerror or e} "
                         "(make it writable, or pass --out with a folder you can write)") from None


def read_record(out: Path) -> dict:
    """<out>/slurm/jobs.json: each submitted job's Slurm id and log, so that --status and resubmissions find it."""
    f = out / "slurm" / "jobs.json"
    return json.loads(f.read_text()) if f.is_file() else {}


def job_state(job: Job, record: dict, queued: dict[str, str]) -> str:
    """A job's state: in the Slurm queue (pending, running ...) or what its folder says."""
    rec = record.get(key(job))
    if rec and rec["id"] in queued:
        return f"{queued[rec['id']].lower()} (Slurm job {rec['id']}, log {rec['log']})"
    if (job.out / "done").exists():
        return "done"
    logs = shown(job.log) + (f", {rec['log']}" if rec else "")
    if (job.out / "failed").exists():
        return f"failed: {(job.out / 'failed').read_text().strip()} (log: {logs})"
    if (job.out / "model" / f"{job.mt}_last.pth").exists():
        return f"interrupted: resumes from its last completed epoch when run again (log: {logs})"
    return f"ended without a result (log: {logs})" if rec else "not started"


def status(jobs: list[Job], out: Path) -> None:
    record = read_record(out)
    queued = queue_states() if record else {}
    for job in jobs:
        print(f"{job.name}: {job_state(job, record, queued)}")


def local_jobs(jobs: list[Job], out: Path, report) -> list[Job]:
    """The jobs to run here: not those still in the Slurm queue of an earlier --launcher slurm (two runs of a job
    would write the same folder)."""
    record = read_record(out)
    try:
        queued = queue_states() if record else {}
    except AeganError:  # no Slurm here: the record comes from elsewhere
        queued = {}
    busy = [j for j in jobs if record.get(key(j), {}).get("id") in queued and not (j.out / "done").exists()]
    for j in busy:
        report(j, "left alone: " + job_state(j, record, queued))
    return [j for j in jobs if j not in busy]


def launch_slurm(a: argparse.Namespace, jobs: list[Job], out: Path, report) -> bool:
    """Submit the jobs not done nor already queued; follow them until they leave the queue unless --no-wait.
    Returns whether every job has ended."""
    record, queued = read_record(out), queue_states()
    todo = [j for j in jobs if not (j.out / "done").exists() and record.get(key(j), {}).get("id") not in queued]
    for j in jobs:
        if j not in todo:
            report(j, job_state(j, record, queued) + (" before" if (j.out / "done").exists() else ""))
    if todo:
        record.update(submit_slurm(todo, out / "slurm", a.gpus_per_job, a.time, a.partition, dict(a.slurm)))
        write_text(out / "slurm" / "jobs.json", json.dumps(record, indent=1))
        array = record[key(todo[0])]["id"].split("_")[0]
        print(f"reproduce: submitted {plural(len(todo), 'job')} as Slurm array {array}; logs under {out / 'slurm'}",
              flush=True)
    if a.no_wait:
        print("reproduce: the jobs run on the cluster; add --status to this command to follow them")
        return False
    watch, seen = [j for j in jobs if not (j.out / "done").exists()], {}
    while watch:
        time.sleep(a.poll)  # squeue is cheap, but a table's jobs take hours: no need to ask often
        queued = queue_states()
        for j in list(watch):
            now = job_state(j, record, queued)
            if record[key(j)]["id"] not in queued:
                watch.remove(j)
                report(j, now)
            elif now.split()[0] != seen.get(key(j)):
                seen[key(j)] = now.split()[0]
                report(j, now)
    return True


def reproduce(a: argparse.Namespace) -> int:
    jobs, machines, out = plan(a)
    if not a.status:
        check_writable(out)
        where = f"Slurm ({a.gpus_per_job} GPU(s) per job)" if a.launcher == "slurm" else "this machine"
        print(f"reproduce: {plural(len(jobs), 'job')} ({plural(len(machines), 'machine type')} x "
              f"{plural(a.seeds, 'seed')}) on {where}; "
              f"outputs under {out}", flush=True)

        def report(job: Job, what: str) -> None:
            print(f"reproduce: {job.name}: {what}", flush=True)

        if a.launcher == "local":
            run_local(local_jobs(jobs, out, report), gpu_slots(a.gpus_per_job), report)
        elif not launch_slurm(a, jobs, out, report):
            return 0
    else:
        status(jobs, out)
    try:
        csv_path, md_path, missing = summarize(a.dataset, machines, list(range(a.seeds)), out)
    except OSError as e:
        raise AeganError(f"cannot write the summary in {shown(out)}: {e.strerror or e}") from None
    print(f"wrote {csv_path}\nwrote {md_path}")
    print(md_path.read_text())
    if missing and not a.status:
        raise AeganError(f"{len(missing)} of {plural(len(jobs), 'job')} did not finish: {', '.join(missing)} (--status "
                         "says why and names their logs; rerun the command to run them again)")
    return 0


def main(argv: list[str] | None = None) -> None:
    """Every failure one line on stderr; Ctrl-C and SIGTERM exit 130 with the running jobs stopped cleanly."""
    a = parse(argv)
    sigterm_as_interrupt()
    try:
        sys.exit(reproduce(a))
    except AeganError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("error: " + interrupted(a.launcher), file=sys.stderr)
        sys.exit(130)
    except Exception as e:  # noqa: BLE001 - last resort: still one line
        print(f"error: unexpected {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)


def interrupted(launcher: str) -> str:
    """The interruption line: which jobs stopped (local) or go on (Slurm), and how to continue."""
    if launcher == "slurm":
        return ("stopped following the jobs; they keep running on the cluster: add --status to the same command to "
                "see them (scancel stops them)")
    running = ", ".join(STOPPED) or "none"
    return (f"interrupted; the running jobs ({running}) stopped at their last completed epoch, none other started, "
            "and no summary was written: rerun the same command to continue")


if __name__ == "__main__":
    main()
