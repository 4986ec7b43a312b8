"""Where the jobs of a table run: a launcher. Each is one module of this package holding a subclass of `Launcher`
(local.py: this machine; slurm.py: a Slurm job array); `launchers()` finds them, so a third is one more file.
Every launcher runs the same jobs (job.py) through `run_job`; they differ only in where a job runs."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

from aegan.jobs.job import Job

Report = Callable[[Job, str], None]  # report(job, what happened): a line on the console


class Launcher:
    name: ClassVar[str]  # --launcher NAME
    help: ClassVar[str]  # one line for --help

    @staticmethod
    def add_arguments(p: argparse.ArgumentParser) -> None:
        """The launcher's own options of `python -m aegan.reproduce`."""

    def __init__(self, args: argparse.Namespace, out: Path):
        self.args, self.out = args, out

    def run(self, jobs: list[Job], report: Report) -> bool:
        """Run (or submit) the jobs not done; whether every job has ended (then the summary is written)."""
        raise NotImplementedError

    def where(self) -> str:
        """Where the jobs run, for the first line."""
        return self.name

    def state(self, job: Job) -> str | None:
        """What this launcher knows of a job (its queue state, its logs), or None (the job's folder tells)."""
        return None

    def in_flight(self, jobs: list[Job]) -> dict[str, str]:
        """{job key: state} of the jobs this launcher still runs elsewhere (another launcher leaves them alone)."""
        return {}

    def interrupted(self) -> str:
        """The line Ctrl-C ends with: what stopped or goes on, and how to continue."""
        return "interrupted; rerun the same command to continue"


def launchers() -> dict[str, type[Launcher]]:
    """Every launcher of this package, by name."""
    for info in pkgutil.iter_modules([str(Path(__file__).parent)]):
        importlib.import_module(f"{__package__}.{info.name}")
    return {cls.name: cls for cls in Launcher.__subclasses__()}
