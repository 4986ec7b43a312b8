"""Where the jobs of a table run: on this machine (`local`: a queue, one job per GPU slot) or on a Slurm cluster
(`slurm`: one job array through submitit). Both launchers call the same `Job`, which runs the real train.py and
test.py in the job's own folder, so they differ only in where a job runs.

Why the local launcher is a queue of our own and not submitit's LocalExecutor: that executor starts every
submitted job at once, each on the same first GPUs, under a 2-minute default time limit; a table on one machine
needs a queue that gives each job its own GPU(s) and runs the next one when a slot frees.

A job's folder holds its outputs and three markers: `trained` (train.py finished), `done` (test.py finished: the
job is skipped from then on) and `failed` (what failed; removed when the job runs again). Training resumes from
`model/<mt>_last.pth` (train.py --resume, exact), so an interrupted, preempted or timed-out job continues from its
last completed epoch.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from aegan.core.errors import AeganError, shown
from aegan.core.files import write_text
from aegan.core.progress import epochs_file, epochs_line, read_epochs
from aegan.registry import ROOT

_LIVE: set[subprocess.Popen] = set()  # the train.py / test.py processes of this process's running jobs
_LIVE_LOCK = threading.Lock()
STOP = threading.Event()  # set when the run is interrupted: jobs stop, none starts
RUNNING: set[str] = set()  # the names of the jobs the local launcher is running now
STOPPED: list[str] = []  # those it was running when it was interrupted


@dataclass(frozen=True)
class Job:
    """One (machine type, seed) of a table; calling it runs the job (on this machine or on a cluster node)."""

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
    def log(self) -> Path:
        return self.out / "run.log"

    @property
    def epochs(self) -> Path:
        """The epochs file its train.py rewrites after each epoch (aegan/progress.py): what the launcher reports."""
        return epochs_file(self.out / "log", self.mt)

    def __call__(self) -> str:
        return run_job(self)

    def checkpoint(self):
        """submitit calls this on Slurm's preemption or time-limit signal (USR2), then requeues the job: stop
        train.py at once (its checkpoints are only ever replaced whole) and run the same job again later."""
        import submitit

        stop_children(in_handler=True)
        return submitit.helpers.DelayedSubmission(self)


def train_command(job: Job) -> list[str]:
    resume = ["--resume"] if (job.out / "model" / f"{job.mt}_last.pth").exists() else []
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


# --- local: a queue of jobs, one per slot of GPUs (or one at a time on the CPU) ---


def gpu_slots(per_job: int) -> list[dict]:
    """The environment of each local slot: `per_job` GPUs of this machine each; one CPU slot without GPUs."""
    import torch

    n = torch.cuda.device_count()
    if n == 0 or per_job == 0:
        return [{"CUDA_VISIBLE_DEVICES": ""}] if n else [{}]
    if per_job > n:
        raise AeganError(f"--gpus-per-job {per_job}: this machine shows {n} GPU(s)")
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")  # a slot names the devices as the parent sees them
    ids = visible.split(",")[:n] if visible else [str(i) for i in range(n)]
    return [{"CUDA_VISIBLE_DEVICES": ",".join(ids[i:i + per_job])} for i in range(0, n - per_job + 1, per_job)]


def run_local(jobs: list[Job], slots: list[dict], report) -> None:
    """Run the jobs on this machine, one per slot at a time; report(job, status) after each. Ctrl-C stops the
    running jobs at their last completed epoch and starts no other."""
    queue, lock = list(jobs), threading.Lock()

    def worker(env: dict) -> None:
        while not STOP.is_set():
            with lock:
                if not queue:
                    return
                job = queue.pop(0)
            RUNNING.add(job.name)
            try:
                status = run_job(replace(job, env=env), report)
            except Exception as e:  # noqa: BLE001 - one job's failure is reported; the others go on
                status = f"failed: {e}"
            finally:
                RUNNING.discard(job.name)
            report(job, status)

    threads = [threading.Thread(target=worker, args=(env,), daemon=True) for env in slots]
    for t in threads:
        t.start()
    try:
        for t in threads:
            t.join()
    except KeyboardInterrupt:
        STOPPED.extend(sorted(RUNNING))
        stop_children()
        for t in threads:
            t.join()
        raise


# --- slurm: one job array through submitit; requeued on preemption and at the time limit ---


INTERNAL = {"setup", "teardown", "additional_parameters", "srun_args", "use_srun", "stderr_to_stdout", "num_gpus",
            "job_name"}  # submitit's own parameters that --slurm must not reach


def submit_slurm(jobs: list[Job], folder: Path, gpus: int, minutes: int, partition: str | None,
                 extra: dict[str, str]) -> dict[str, dict]:
    """Submit the jobs as one array; returns {job key: {"id": Slurm job id, "log": its log file}}."""
    import submitit

    # A requeued job resumes from its last epoch; the bound stops a job that never gets through an epoch.
    ex = submitit.SlurmExecutor(folder=folder, max_num_timeout=20)
    named = {k.replace("-", "_"): int(v) if v.isdigit() else v for k, v in extra.items()
             if k.replace("-", "_") in submitit.SlurmExecutor._valid_parameters() - INTERNAL}
    params = {"job_name": "aegan", "time": minutes, "stderr_to_stdout": True, "partition": partition,
              "gpus_per_node": gpus or None,
              # the job runs the code of the checkout that submitted it, whatever is pip-installed on the node
              "setup": [f"export PYTHONPATH={shlex.quote(str(ROOT))}${{PYTHONPATH:+:$PYTHONPATH}}"], **named}
    params["additional_parameters"] = {k: v for k, v in extra.items() if k.replace("-", "_") not in named}
    ex.update_parameters(**{k: v for k, v in params.items() if v is not None})
    with tempfile.TemporaryFile("w+") as said, _stderr_to(said):  # sbatch talks on our stderr: keep it for the line
        try:
            with ex.batch():
                handles = [ex.submit(job) for job in jobs]
        except (submitit.core.utils.FailedJobError, OSError, ValueError) as e:
            said.seek(0)
            why = [x.strip() for x in said.read().splitlines() + str(e).splitlines() if x.strip()] or [repr(e)]
            raise AeganError(f"sbatch refused the job array: {why[0]} (check --partition, --time and --slurm; "
                             "--launcher slurm runs where Slurm's commands are, e.g. a login node)") from None
    return {key(j): {"id": h.job_id, "log": str(h.paths.stdout)} for j, h in zip(jobs, handles)}


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


def key(job: Job) -> str:
    return f"{job.mt}/seed{job.seed}"


def queue_states() -> dict[str, str]:
    """{Slurm job id: state} of this user's jobs in the queue (pending, running, requeued ...); a job that
    ended is no longer there. squeue, not sacct: it needs no accounting database."""
    try:
        r = subprocess.run(["squeue", "--me", "-h", "-r", "-o", "%i|%T"], capture_output=True, text=True)
    except OSError as e:
        raise AeganError(f"squeue: {e.strerror} (--launcher slurm and --status of Slurm jobs run where Slurm's "
                         "commands are, e.g. a cluster's login node)") from None
    if r.returncode:
        raise AeganError(f"squeue failed: {r.stderr.strip().splitlines()[-1:] or r.returncode} (the jobs keep "
                         "running; --status shows them later)")
    return dict(line.split("|", 1) for line in r.stdout.split())
