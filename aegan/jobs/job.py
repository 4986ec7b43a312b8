"""One job of a table: a (machine type, seed) run of the real train.py then test.py of a dataset folder, in the
job's own folder, with its output in run.log. Every launcher (aegan/jobs/launcher.py) runs jobs through `run_job`,
so launchers differ only in where a job runs.

A job's folder holds its outputs and three markers: `trained` (train.py finished), `done` (test.py finished: the
job is skipped from then on) and `failed` (what failed; removed when the job runs again). Training resumes from its
run state (train.py --resume, exact), so an interrupted, preempted or timed-out job continues from its last
completed epoch.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from aegan.core.errors import AeganError, shown
from aegan.core.files import write_text
from aegan.core.progress import epochs_file, epochs_line, read_epochs
from aegan.store.model_dir import ModelDir

_LIVE: set[subprocess.Popen] = set()  # the train.py / test.py processes of this process's running jobs
_LIVE_LOCK = threading.Lock()
STOP = threading.Event()  # set when the run is interrupted: jobs stop, none starts


@dataclass(frozen=True, kw_only=True)
class Job:
    """One (machine type, seed) of a table."""

    mt: str
    seed: int
    out: Path  # the job's folder
    script: Path  # the dataset folder holding train.py and test.py
    sets: tuple[str, ...]  # --config / --set arguments of both scripts, output paths under `out` included
    test: tuple[str, ...]  # test.py's choice of test set
    procs: int = 1  # >1: train.py under torchrun with this many processes (one per GPU of the job)
    env: dict = field(default_factory=dict, compare=False)  # extra environment (CUDA_VISIBLE_DEVICES of a slot)

    @property
    def name(self) -> str:
        return f"{self.mt} seed {self.seed}"

    @property
    def key(self) -> str:
        return f"{self.mt}/seed{self.seed}"

    @property
    def log(self) -> Path:
        return self.out / "run.log"

    @property
    def files(self) -> ModelDir:
        """Its model, run state and lock (the job's model_dir is <out>/model)."""
        return ModelDir(self.out / "model", self.mt)

    @property
    def epochs(self) -> Path:
        """The epochs file its train.py rewrites after each epoch (core/progress.py): what the launcher reports."""
        return epochs_file(self.out / "log", self.mt)

    def state(self, other_log: str | None = None) -> str:
        """What its folder says: done, failed (and why), interrupted (resumes), or not started; `other_log`: a log
        its launcher keeps too (a Slurm job's)."""
        logs = shown(self.log) + (f", {other_log}" if other_log else "")
        if (self.out / "done").exists():
            return "done"
        if (self.out / "failed").exists():
            return f"failed: {(self.out / 'failed').read_text().strip()} (log: {logs})"
        if self.files.run_state.exists():
            return f"interrupted: resumes from its last completed epoch when run again (log: {logs})"
        return "not started"


def train_command(job: Job) -> list[str]:
    resume = ["--resume"] if job.files.run_state.exists() else []
    args = [str(job.script / "train.py"), "--mt", job.mt, "--seed", str(job.seed), *resume, *job.sets]
    if job.procs > 1:  # one process per GPU of the job; rank r takes cuda:LOCAL_RANK
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={job.procs}", *args]
    return [sys.executable, *args]


def test_command(job: Job) -> list[str]:
    return [sys.executable, str(job.script / "test.py"), "--mt", job.mt, *job.test, *job.sets]


def run_job(job: Job, report=None) -> str:
    """Train (or resume) then test one job; returns what happened in a few words. Output goes to run.log;
    `report(job, what)`, when given, hears each step's start and each epoch trained."""
    if (job.out / "done").exists():
        return "done before"
    try:
        job.out.mkdir(parents=True, exist_ok=True)
        (job.out / "failed").unlink(missing_ok=True)
        steps = [("test", test_command, "done")]
        if not (job.out / "trained").exists():
            steps.insert(0, ("train", train_command, "trained"))
        with open(job.log, "a") as log:
            for what, command, marker in steps:
                if STOP.is_set():
                    return "interrupted"
                cmd = command(job)
                log.write(f"reproduce: {' '.join(cmd)}\n")
                log.flush()
                tick = None
                if report:
                    report(job, f"{'training' if what == 'train' else 'testing'} (log: {shown(job.log)})")
                    tick = _epoch_reporter(job, report) if what == "train" else None
                code = run_child(cmd, log, job.env, tick)
                if code == 130 or code < 0 or STOP.is_set():  # Ctrl-C, SIGTERM, a signal: not a failure
                    return "interrupted"
                if code:
                    write_text(job.out / "failed", f"{what}.py exited with status {code}\n")
                    return f"failed: {what}.py exited with status {code} (log: {shown(job.log)})"
                write_text(job.out / marker, "")
    except OSError as e:
        raise AeganError(f"cannot write the job folder {shown(job.out)}: {e.strerror or e} (pass --out with a "
                         "writable folder)") from None
    return "done"


def _epoch_reporter(job: Job, report):
    """A function that reports the job's epochs file when it changes (called every TICK seconds while it trains)."""
    seen = [read_epochs(job.epochs)]  # a resumed job's earlier record is not news

    def tick() -> None:
        now = read_epochs(job.epochs)
        if now is not None and now != seen[0]:
            seen[0] = now
            report(job, epochs_line(now))

    return tick


TICK = 2.0  # seconds between looks at a running job's epochs file


def run_child(cmd: list[str], log, env: dict, tick=None) -> int:
    """Run one script, registered so that an interrupt can stop it. Its own session: Ctrl-C reaches only us, and
    we send it one SIGTERM. SIGUSR2 ignored: on Slurm that signal is for submitit's handler in this process (which
    stops the script), but slurmstepd sends it to every process of the job. `tick()` runs every TICK seconds
    while it runs."""
    wrapped = ["/bin/sh", "-c", 'trap "" USR2; exec "$@"', "sh", *cmd]
    with _LIVE_LOCK:
        if STOP.is_set():
            return 130
        p = subprocess.Popen(wrapped, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             env={**os.environ, **env}, start_new_session=True)
        _LIVE.add(p)
    try:
        while True:
            try:
                code = p.wait(TICK if tick else None)
                break
            except subprocess.TimeoutExpired:
                tick()
        if tick:
            tick()  # the last epoch, written within the last TICK
        return code
    finally:
        with _LIVE_LOCK:
            _LIVE.discard(p)


def stop_children(in_handler: bool = False) -> None:
    """Stop every running script of this process and wait for it: train.py ends on SIGTERM as on Ctrl-C,
    keeping the checkpoints of its last completed epoch."""
    STOP.set()
    with _LIVE_LOCK:
        live = list(_LIVE)
    for p in live:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in live:
        if not in_handler:
            p.wait()
            continue
        # A signal handler runs inside this thread's Popen.wait, which holds the lock a second wait would take:
        # watch the process end (a zombie until that wait reaps it) without taking it.
        while not _ended(p.pid):
            time.sleep(0.05)


def _ended(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True
