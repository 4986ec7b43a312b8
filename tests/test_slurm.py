"""`aegan.reproduce --launcher slurm` against a real single-node Slurm cluster (tests/slurm_cluster.py): a tiny
sweep of two machine types and two seeds as one job array, one job signalled as Slurm signals a job before its
time limit (requeued, resumed from its last epoch), one failing (reported with its log, the others go on), --status, the
summary of what finished, and a resubmission that runs only what is missing."""

import csv
import json
import subprocess
import sys

import pytest

import progress
from aegan import synth
from conftest import ROOT, TINY, one_line_error
from slurm_cluster import cluster  # noqa: F401 - the session's cluster fixture


def run(cluster, args: list[str]) -> subprocess.CompletedProcess:  # noqa: F811
    """The command under the hang guard, its progress being its own or that of the cluster's jobs."""
    return progress.run(args, cwd=ROOT, env=cluster.env, capture_output=True, text=True, also=cluster.pids())


@pytest.fixture
def sweep(tmp_path):
    """(the command of a tiny two-epoch sweep on the cluster, its output folder)."""
    data = tmp_path / "data"
    for i, mt in enumerate(("fan", "ToyTrain")):
        synth.make_2022(data, mt, seconds=1.2, n_train=4, n_train_target=1, n_test=2, eval_sections=(), seed=i)
    out = tmp_path / "rep"
    sets = [f"dataset_dir={data}", "train_set=dev", *TINY, "train.epoch=2"]
    args = [sys.executable, "-m", "aegan.reproduce", "--dataset", "dcase2022", "--mt", "fan,ToyTrain", "--seeds", "2",
            "--out", str(out), "--launcher", "slurm", "--gpus-per-job", "0", "--time", "0:30:00", "--poll", "1",
            *[x for s in sets for x in ("--set", s)]]
    return args, out


@pytest.mark.slow
def test_slurm_sweep_requeues_resumes_reports_and_resubmits(cluster, sweep):  # noqa: F811
    args, out = sweep
    bad = out / "ToyTrain" / "seed1" / "model" / "ToyTrain_last.pth"  # this job fails: its checkpoint is not one
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"not a checkpoint")
    p = subprocess.Popen(args, cwd=ROOT, env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    last = out / "fan" / "seed1" / "model" / "fan_last.pth"
    progress.wait_for(lambda: last.exists() or p.poll() is not None, p.pid, *cluster.pids(),
                      what="first epoch of fan seed 1")
    job = json.loads((out / "slurm" / "jobs.json").read_text())["fan/seed1"]
    # Slurm's warning before a time limit (submitit asks for USR2 --signal), as Slurm sends it: to the job's
    # step (step 0 runs submitit's process). Signalling the whole array task instead makes scancel retry for
    # minutes ("try again later") while submitit requeues it, and a retry could hit the restarted job.
    cluster.run("scancel", "--signal=USR2", f"{job['id']}.0")
    stdout, stderr = progress.communicate(p, also=cluster.pids())
    assert p.returncode == 1, stderr
    assert stderr.count("\n") == 1 and stderr.startswith("error: 1 of 4 jobs did not finish: ToyTrain seed 1 ")

    run_log = (out / "fan" / "seed1" / "run.log").read_text()
    trains = [x for x in run_log.splitlines() if x.startswith("reproduce: ") and "train.py" in x]
    assert len(trains) == 2 and "--resume" not in trains[0] and "--resume" in trains[1], run_log[-3000:]
    train_log = (out / "fan" / "seed1" / "log" / "fan" / "train.log").read_text()
    # resumed at epoch 2: epoch 1 trained once, and epoch 2 once after the resume (the weights of a resumed run equal
    # an uninterrupted one's: tests/test_trainer.py). Epoch 2's training line may also stand before the requeue: it
    # is logged when its batches end, and the epoch completes (its run state) once its evaluation has run beside
    # the next epoch, so a signal between the two trains it again, as it should.
    before, resumed = train_log.split("at epoch 2", 1)
    assert "resuming from" in before.rsplit("\n", 1)[-1]
    assert train_log.count("epoch 1/2 training (epoch means): lossD") == 1
    assert resumed.count("epoch 2/2 training (epoch means): lossD") == 1
    slurm_log = open(job["log"]).read()
    assert "Caught signal SIGUSR2" in slurm_log and f"Requeued job {job['id']}" in slurm_log
    assert "reproduce: fan seed 1: pending" in stdout  # the watcher saw it back in the queue
    failed_log = out / "ToyTrain" / "seed1" / "run.log"
    assert f"reproduce: ToyTrain seed 1: failed: train.py exited with status 1 (log: {failed_log}" in stdout
    assert "checkpoint" in failed_log.read_text()

    rows = {r["machine"]: r for r in csv.DictReader((out / "summary.csv").open())}
    assert rows["fan"]["seeds"] == "2" and rows["ToyTrain"]["seeds"] == "1"
    assert "**Missing** (not finished, left out of the means): ToyTrain seed 1." in (out / "summary.md").read_text()

    r = run(cluster, [*args, "--status"])
    assert r.returncode == 0, r.stderr
    states = dict(x.split(": ", 1) for x in r.stdout.splitlines()[:4])
    assert [states[f"{m} seed {s}"] for m in ("fan", "ToyTrain") for s in (0, 1)][:3] == ["done"] * 3
    assert states["ToyTrain seed 1"].startswith(f"failed: train.py exited with status 1 (log: {failed_log}, ")

    # Resubmit after fixing the failed job: only that one runs again.
    bad.unlink()
    r = run(cluster, args)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("done before") == 3 and "submitted 1 job as" in r.stdout
    summary = (out / "summary.csv").read_text()
    assert [r["seeds"] for r in csv.DictReader(summary.splitlines())] == ["2", "2"]

    # the local launcher, on the same finished jobs, runs none and writes the same summary
    local = [a for a in args if a not in ("slurm", "--launcher")]
    r = run(cluster, local)
    assert r.returncode == 0 and r.stdout.count("done before") == 4, r.stderr
    assert (out / "summary.csv").read_text() == summary


def test_slurm_refusal_is_one_line(cluster, sweep):  # noqa: F811
    args, out = sweep
    r = run(cluster, [*args, "--partition", "nosuch"])
    one_line_error(r.returncode, r.stderr, "sbatch refused the job array: ", "invalid partition", "--partition")
    assert not (out / "slurm" / "jobs.json").exists()
