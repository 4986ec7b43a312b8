"""The local launcher: a queue with one job per slot of GPUs of this machine (one at a time on the CPU). Not
submitit's LocalExecutor: it starts every job at once on the same first GPUs, under a 2-minute default time limit."""

from __future__ import annotations

import argparse
import os
import threading
from dataclasses import replace

from aegan.core.errors import AeganError
from aegan.jobs.job import STOP, Job, run_job, stop_children
from aegan.jobs.launcher import Launcher, Report, launchers


def gpu_slots(per_job: int) -> list[dict]:
    """The environment of each local slot: `per_job` GPUs of this machine each; one CPU slot without GPUs."""
    import torch  # seconds to import: only when jobs run here

    n = torch.cuda.device_count()
    if n == 0 or per_job == 0:
        return [{"CUDA_VISIBLE_DEVICES": ""}] if n else [{}]
    if per_job > n:
        raise AeganError(f"--gpus-per-job {per_job}: this machine shows {n} GPU(s)")
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")  # a slot names the devices as the parent sees them
    ids = visible.split(",")[:n] if visible else [str(i) for i in range(n)]
    return [{"CUDA_VISIBLE_DEVICES": ",".join(ids[i:i + per_job])} for i in range(0, n - per_job + 1, per_job)]


class Local(Launcher):
    name = "local"
    help = "on this machine, one job per GPU slot"

    def where(self) -> str:
        return "this machine"

    def __init__(self, args: argparse.Namespace, out):
        super().__init__(args, out)
        self.running: set[str] = set()  # the names of the jobs running now
        self.stopped: list[str] = []  # those running when the launcher was interrupted

    def run(self, jobs: list[Job], report: Report) -> bool:
        """The jobs, one per slot at a time, but those another launcher still runs (they would share a folder)."""
        busy = {}
        for other in launchers().values():
            if other is not Local:
                busy |= other(self.args, self.out).in_flight(jobs)
        for j in jobs:
            if j.key in busy:
                report(j, "left alone: " + busy[j.key])
        queue, lock = [j for j in jobs if j.key not in busy], threading.Lock()

        def worker(env: dict) -> None:
            while not STOP.is_set():
                with lock:
                    if not queue:
                        return
                    job = queue.pop(0)
                self.running.add(job.name)
                try:
                    status = run_job(replace(job, env=env), report)
                except Exception as e:  # noqa: BLE001 - one job's failure is reported; the others go on
                    status = f"failed: {e}"
                finally:
                    self.running.discard(job.name)
                report(job, status)

        threads = [threading.Thread(target=worker, args=(env,), daemon=True)
                   for env in gpu_slots(self.args.gpus_per_job)]
        for t in threads:
            t.start()
        try:
            for t in threads:
                t.join()
        except KeyboardInterrupt:
            self.stopped = sorted(self.running)
            stop_children()
            for t in threads:
                t.join()
            raise
        return True

    def interrupted(self) -> str:
        return (f"interrupted; the running jobs ({', '.join(self.stopped) or 'none'}) stopped at their last completed "
                "epoch, none other started, and no summary was written: rerun the same command to continue")
