"""A real single-node Slurm cluster for the tests: munged, slurmctld and slurmd on this host (Debian's slurm-wlm
and munge, run as root), with its own munge key and socket, slurm.conf, ports, state and pid files in a temp
folder, so that nothing of a system-wide Slurm or munge is used or touched. `cluster()` starts it once per
session; the daemons are stopped by their pid files at the end. Where it cannot start, the reason is given and
the tests that need it skip."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

DAEMONS = ("munged", "slurmctld", "slurmd")
COMMANDS = ("sbatch", "squeue", "scontrol", "scancel", "sinfo")
# A guard against a hang, never reached by a cluster that works: the daemons are up in seconds on an idle machine;
# minutes leave room for a machine busy with other work.
START_GUARD_S = 300


@dataclass
class Cluster:
    root: Path  # the temp folder: slurm.conf, logs, pid files, state
    env: dict  # os.environ with SLURM_CONF (and one thread a job): for Slurm's commands and the jobs they submit
    started_s: float  # seconds from the first daemon's start to an idle node

    def pids(self) -> tuple[int, ...]:
        """The daemons' process ids: slurmd's descendants are the jobs, whose progress is a sweep's."""
        files = [self.root / f"{name}.pid" for name in DAEMONS]
        return tuple(int(f.read_text().split()[0]) for f in files if f.is_file())

    def run(self, *cmd: str) -> str:
        r = subprocess.run(cmd, env=self.env, capture_output=True, text=True)
        assert r.returncode == 0, f"{' '.join(cmd)}: {r.stderr}"
        return r.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node_line() -> str:
    """This host as slurmd sees it (`slurmd -C`: CPUs, cores, memory), named as the host is."""
    out = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, check=True).stdout
    return out.splitlines()[0]


def write_conf(root: Path, host: str) -> tuple[Path, int]:
    node = node_line()
    cpus = int(node.split("CPUs=")[1].split()[0])
    memory = int(node.split("RealMemory=")[1].split()[0])
    conf = root / "slurm.conf"
    conf.write_text(f"""ClusterName=aegantest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket={root}/munge.socket,cred_expire=10
CredType=cred/munge
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU={memory // cpus}
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
SchedulerParameters=sched_interval=1
{node} NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
""")
    return conf, cpus


def why_not() -> str | None:
    """Why a cluster cannot be started here, or None."""
    missing = [c for c in (*DAEMONS, *COMMANDS) if shutil.which(c) is None]
    if missing:
        return f"{', '.join(missing)} not installed (apt-get install slurm-wlm munge)"
    if os.geteuid() != 0:
        return "the single-node Slurm cluster runs its daemons as root"
    return None


def start(root: Path) -> Cluster:
    """Start munged, slurmctld and slurmd; wait until the node is idle. Raises RuntimeError with the logs' end."""
    host = socket.gethostname().split(".")[0]
    conf, _ = write_conf(root, host)
    (root / "state").mkdir()
    (root / "spool").mkdir()
    # A job is given one CPU but, without a binding task plugin here, torch would take a thread per core: the node's
    # jobs would then fight over every core. One thread each, as a cluster's CPU binding gives a one-CPU job.
    env = {**os.environ, "SLURM_CONF": str(conf), "OMP_NUM_THREADS": "1"}
    key = root / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o600)
    t0 = time.monotonic()
    subprocess.run(["munged", "--force", f"--socket={root}/munge.socket", f"--key-file={key}",
                    f"--pid-file={root}/munged.pid", f"--log-file={root}/munged.log",
                    f"--seed-file={root}/munged.seed"], check=True, capture_output=True)
    subprocess.run(["slurmctld", "-i"], env=env, check=True, capture_output=True)  # -i: no state to recover
    subprocess.run(["slurmd"], env=env, check=True, capture_output=True)
    while time.monotonic() - t0 < START_GUARD_S:
        r = subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True)
        if r.returncode == 0 and r.stdout.strip() == "idle":
            return Cluster(root, env, time.monotonic() - t0)
        time.sleep(0.2)
    raise RuntimeError(f"node not idle after {START_GUARD_S} s: " + tail(root))


def tail(root: Path) -> str:
    return " | ".join(f"{f.name}: {f.read_text()[-300:]}" for f in sorted(root.glob("*.log")))


def stop(root: Path) -> None:
    """Cancel the jobs left (slurmd leaves a running job's processes alive), then stop the daemons by their pid
    files (slurmd, slurmctld, munged) and wait until they are gone."""
    env = {**os.environ, "SLURM_CONF": str(root / "slurm.conf")}
    if (root / "slurmctld.pid").is_file() and subprocess.run(["scancel", "--me"], env=env).returncode == 0:
        t0 = time.monotonic()
        while time.monotonic() - t0 < START_GUARD_S:
            r = subprocess.run(["squeue", "--me", "-h"], env=env, capture_output=True, text=True)
            if r.returncode or not r.stdout.strip():
                break
            time.sleep(0.2)
    for name in reversed(DAEMONS):
        pid_file = root / f"{name}.pid"
        if not pid_file.is_file():
            continue
        pid = int(pid_file.read_text().split()[0])
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
        t0 = time.monotonic()
        while Path(f"/proc/{pid}").exists() and time.monotonic() - t0 < START_GUARD_S:
            time.sleep(0.1)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    """The running single-node cluster; skips the test where it cannot start."""
    reason = why_not()
    if reason:
        pytest.skip(reason)
    # a short path: the munge socket path must fit a socket address (108 bytes)
    root = Path(tmp_path_factory.mktemp("slurm"))
    try:
        c = start(root)
    except (RuntimeError, subprocess.CalledProcessError) as e:
        stop(root)
        detail = e.stderr.decode(errors="replace").strip() if isinstance(e, subprocess.CalledProcessError) else e
        pytest.skip(f"the single-node Slurm cluster did not start: {detail} {tail(root)}")
    print(f"\nslurm: single-node cluster up in {c.started_s:.1f} s")
    yield c
    stop(root)
