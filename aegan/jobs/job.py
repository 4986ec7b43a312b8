"""One job of a table: a (machine type, seed) run of a dataset folder's train.py then test.py, in its own folder.
Markers: `trained`, `done` (skipped from then on), `failed` (why; removed when it runs again). Training resumes from
its run state, so an interrupted, preempted or timed-out job continues from its last completed epoch."""

from __future__ import annotations

import contextlib
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
        return ModelDir(self.out / "model", self.mt)

    def state(self, other_log: str | None = None) -> str:
        """What its folder says; `other_log`: a log its launcher keeps too (a Slurm job's)."""
        logs = shown(self.log) + (f", {other_log}" if other_log else "")
        if (self.out / "done").exists():
            return "done"
        if (self.out / "failed").exists():
            return f"failed: {(self.out / 'failed').read_text().strip()} (log: {logs})"
        if self.files.run_state.exists():
            return f"interrupted: resumes from its last completed epoch when run again (log: {logs})"
        return "not started"


def _steps(job: Job) -> list[tuple[str, list[str], str]]:
    """(script, command, marker of its success) of what is left: train.py (resumed) unless trained, then test.py."""
    test = [sys.executable, str(job.script / "test.py"), "--mt", job.mt, *job.test, *job.sets]
    if (job.out / "trained").exists():
        return [("test", test, "done")]
    resume = ["--resume"] if job.files.run_state.exists() else []
    train = [str(job.script / "train.py"), "--mt", job.mt, "--seed", str(job.seed), *resume, *job.sets]
    if job.procs > 1:  # one process per GPU of the job; rank r takes cuda:LOCAL_RANK
        train = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={job.procs}", *train]
    return [("train", [sys.executable, *train], "trained"), ("test", test, "done")]


def run_job(job: Job, report=None) -> str:
    """Train (or resume) then test one job into run.log; what happened in a few words. `report(job, what)`, when
    given, hears each step's start and each epoch trained."""
    if (job.out / "done").exists():
        return "done before"
    try:
        job.out.mkdir(parents=True, exist_ok=True)
        (job.out / "failed").unlink(missing_ok=True)
        with open(job.log, "a") as log:
            for what, cmd, marker in _steps(job):
                if STOP.is_set():
                    return "interrupted"
                log.write(f"reproduce: {' '.join(cmd)}\n")
                log.flush()
                if report:
                    report(job, f"{'training' if what == 'train' else 'testing'} (log: {shown(job.log)})")
                tick = _epoch_reporter(job, report) if report and what == "train" else None
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
    path = epochs_file(job.out / "log", job.mt)
    seen = [read_epochs(path)]  # a resumed job's earlier record is not news

    def tick() -> None:
        now = read_epochs(path)
        if now is not None and now != seen[0]:
            seen[0] = now
            report(job, epochs_line(now))

    return tick


TICK = 2.0  # seconds between looks at a running job's epochs file


def run_child(cmd: list[str], log, env: dict, tick=None) -> int:
    """Run one script where an interrupt can stop it: its own session, so Ctrl-C reaches only us (we send SIGTERM).
    SIGUSR2 ignored: slurmstepd sends it to every process, but it is for submitit's handler in this one."""
    wrapped = ["/bin/sh", "-c", 'trap "" USR2; exec "$@"', "sh", *cmd]
    with _LIVE_LOCK:
        if STOP.is_set():
            return 130
        p = subprocess.Popen(wrapped, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             env={**os.environ, **env}, start_new_session=True)
        _LIVE.add(p)
    try:
        while tick and p.returncode is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(TICK)
            tick()  # every TICK, and once more for the last epoch, written within the last TICK
        return p.wait()
    finally:
        with _LIVE_LOCK:
            _LIVE.discard(p)


def stop_children(in_handler: bool = False) -> None:
    """Stop every running script and wait for it: train.py ends on SIGTERM as on Ctrl-C, at its last epoch."""
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
        # watch the process end (WNOWAIT: a zombie until that wait reaps it) without taking it.
        with contextlib.suppress(ChildProcessError):  # reaped already
            while os.waitid(os.P_PID, p.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
                time.sleep(0.05)
