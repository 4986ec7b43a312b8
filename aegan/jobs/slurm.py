"""The Slurm launcher: the jobs as one job array through submitit, followed until they leave the queue; each one's id
and log kept in <out>/slurm/jobs.json. A job preempted or at its time limit requeues itself and resumes. squeue, not
sacct, tells what is still queued (it needs no accounting database)."""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from aegan.core.errors import AeganError
from aegan.core.files import write_text
from aegan.core.text import plural
from aegan.jobs.job import Job, run_job, stop_children
from aegan.jobs.launcher import Launcher, Report
from aegan.registry import ROOT

# submitit's own parameters that --slurm must not reach
INTERNAL = {"setup", "teardown", "additional_parameters", "srun_args", "use_srun", "stderr_to_stdout", "num_gpus",
            "job_name"}


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


@dataclass
class SlurmJob:
    """What submitit runs on a node: the job; on Slurm's preemption or time-limit signal (USR2) submitit calls
    `checkpoint`, which stops train.py at once (its checkpoints are only ever replaced whole) and requeues it."""

    job: Job

    def __call__(self) -> str:
        return run_job(self.job)

    def checkpoint(self):
        import submitit  # the cluster's: only where jobs are submitted or run

        stop_children(in_handler=True)
        return submitit.helpers.DelayedSubmission(self)


def queue_states() -> dict[str, str]:
    """{Slurm job id: state} of this user's jobs in the queue (pending, running, requeued ...)."""
    try:
        r = subprocess.run(["squeue", "--me", "-h", "-r", "-o", "%i|%T"], capture_output=True, text=True)
    except OSError as e:
        raise AeganError(f"squeue: {e.strerror} (--launcher slurm and --status of Slurm jobs run where Slurm's "
                         "commands are, e.g. a cluster's login node)") from None
    if r.returncode:
        raise AeganError(f"squeue failed: {r.stderr.strip().splitlines()[-1:] or r.returncode} (the jobs keep "
                         "running; --status shows them later)")
    return dict(line.split("|", 1) for line in r.stdout.split())


@contextlib.contextmanager
def _stderr_to(f):
    """Point file descriptor 2 (what child processes write their errors to) at `f` for the block."""
    sys.stderr.flush()
    saved = os.dup(2)
    os.dup2(f.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class Slurm(Launcher):
    name = "slurm"
    help = "one Slurm job array (run it where Slurm's commands are, e.g. a login node)"

    @staticmethod
    def add_arguments(p: argparse.ArgumentParser) -> None:
        p.add_argument("--partition", help="Slurm partition")
        p.add_argument("--time", type=minutes, default=24 * 60, metavar="H:MM:SS",
                       help="Slurm time limit of each job (default 24:00:00); a job stopped by it is requeued and "
                            "resumes")
        p.add_argument("--slurm", type=key_value, action="append", default=[], metavar="KEY=VALUE",
                       help="an sbatch option for every job, e.g. --slurm account=abc --slurm mem=32G (repeatable)")
        p.add_argument("--no-wait", action="store_true", help="slurm: submit and return (--status follows the jobs)")
        p.add_argument("--poll", type=float, default=30.0, metavar="S", help="slurm: seconds between queue checks")

    def __init__(self, args: argparse.Namespace, out: Path):
        super().__init__(args, out)
        self.record_path = out / "slurm" / "jobs.json"
        self.record = json.loads(self.record_path.read_text()) if self.record_path.is_file() else {}

    @functools.cached_property
    def queued(self) -> dict[str, str]:
        """The queue's states, asked once (run and follow ask again, and set it)."""
        return queue_states() if self.record else {}

    def where(self) -> str:
        return f"Slurm ({self.args.gpus_per_job} GPU(s) per job)"

    def state(self, job: Job) -> str | None:
        rec = self.record.get(job.key)
        if rec is None:
            return None
        if rec and rec["id"] in self.queued:
            return f"{self.queued[rec['id']].lower()} (Slurm job {rec['id']}, log {rec['log']})"
        state = job.state(rec["log"])
        return f"ended without a result (log: {job.log}, {rec['log']})" if state == "not started" else state

    def in_flight(self, jobs: list[Job]) -> dict[str, str]:
        try:
            queued = self.queued
        except AeganError:  # no Slurm here: the record comes from elsewhere
            return {}
        return {j.key: self.state(j) for j in jobs
                if self.record.get(j.key, {}).get("id") in queued and not (j.out / "done").exists()}

    def submit(self, jobs: list[Job]) -> dict[str, dict]:
        """Submit the jobs as one array; returns {job key: {"id": Slurm job id, "log": its log file}}."""
        import submitit  # the cluster's: only where jobs are submitted or run

        a, extra = self.args, dict(self.args.slurm)
        # A requeued job resumes from its last epoch; the bound stops a job that never gets through an epoch.
        ex = submitit.SlurmExecutor(folder=self.out / "slurm", max_num_timeout=20)
        named = {k.replace("-", "_"): int(v) if v.isdigit() else v for k, v in extra.items()
                 if k.replace("-", "_") in submitit.SlurmExecutor._valid_parameters() - INTERNAL}
        params = {"job_name": "aegan", "time": a.time, "stderr_to_stdout": True, "partition": a.partition,
                  "gpus_per_node": a.gpus_per_job or None,
                  # the job runs the code of the checkout that submitted it, whatever is pip-installed on the node
                  "setup": [f"export PYTHONPATH={shlex.quote(str(ROOT))}${{PYTHONPATH:+:$PYTHONPATH}}"], **named}
        params["additional_parameters"] = {k: v for k, v in extra.items() if k.replace("-", "_") not in named}
        ex.update_parameters(**{k: v for k, v in params.items() if v is not None})
        with tempfile.TemporaryFile("w+") as said, _stderr_to(said):  # sbatch talks on our stderr: keep it
            try:
                with ex.batch():
                    handles = [ex.submit(SlurmJob(job)) for job in jobs]
            except (submitit.core.utils.FailedJobError, OSError, ValueError) as e:
                said.seek(0)
                why = [x.strip() for x in said.read().splitlines() + str(e).splitlines() if x.strip()] or [repr(e)]
                raise AeganError(f"sbatch refused the job array: {why[0]} (check --partition, --time and --slurm; "
                                 "--launcher slurm runs where Slurm's commands are, e.g. a login node)") from None
        return {j.key: {"id": h.job_id, "log": str(h.paths.stdout)} for j, h in zip(jobs, handles)}

    def run(self, jobs: list[Job], report: Report) -> bool:
        """Submit the jobs not done nor already queued; follow them until they leave the queue unless --no-wait."""
        queued = self.queued = queue_states()
        todo = [j for j in jobs if not (j.out / "done").exists() and self.record.get(j.key, {}).get("id") not in queued]
        for j in jobs:
            if j not in todo:
                report(j, (self.state(j) or j.state()) + (" before" if (j.out / "done").exists() else ""))
        if todo:
            self.record.update(self.submit(todo))
            write_text(self.record_path, json.dumps(self.record, indent=1))
            array = self.record[todo[0].key]["id"].split("_")[0]
            print(f"reproduce: submitted {plural(len(todo), 'job')} as Slurm array {array}; logs under "
                  f"{self.out / 'slurm'}", flush=True)
        if self.args.no_wait:
            print("reproduce: the jobs run on the cluster; add --status to this command to follow them")
            return False
        self.follow([j for j in jobs if not (j.out / "done").exists()], report)
        return True

    def follow(self, watch: list[Job], report: Report) -> None:
        """Report each change of a job's state until every job has left the queue."""
        seen: dict[str, str] = {}
        while watch:
            time.sleep(self.args.poll)  # squeue is cheap, but a table's jobs take hours: no need to ask often
            self.queued = queue_states()
            for j in list(watch):
                now = self.state(j)
                if self.record[j.key]["id"] not in self.queued:
                    watch.remove(j)
                    report(j, now)
                elif now.split()[0] != seen.get(j.key):
                    seen[j.key] = now.split()[0]
                    report(j, now)

    def interrupted(self) -> str:
        return ("stopped following the jobs; they keep running on the cluster: add --status to the same command to "
                "see them (scancel stops them)")
