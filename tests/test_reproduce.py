"""Whole tables: every machine type x seed through the real train.py and test.py, resumable, summarised next to
the paper's numbers (read from pretrain/<dataset>/<mt>.yaml); the local launcher (the Slurm one: test_slurm.py)."""

import argparse
import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
from PIL import Image

import progress
from aegan import synth
from aegan.core.metrics import selecting_names
from aegan.jobs.slurm import key_value, minutes
from aegan.reproduce import mean_std, paper, summarize
from conftest import ROOT, TINY, one_line_error


def test_paper_numbers_have_one_home():
    assert paper("dcase2022", "fan") == ("G_z_cos_min", 65.83)
    assert paper("dcase2020", "slider") == ("G_x_2_sum", 86.50)  # the paper writes G_x_2_mean
    assert paper("dcase2022", "ToyTrain") == (None, None)


def test_slurm_time_and_options_are_read_as_sbatch_writes_them():
    assert [minutes(t) for t in ("1:30:00", "0:00:30", "2-00:00:00", "90", "12:00")] == [90, 1, 2880, 90, 720]
    assert key_value("mem=32G") == ("mem", "32G") and key_value("mail-type=END") == ("mail-type", "END")
    for bad in ("1h", "0", "1:3"):
        with pytest.raises(argparse.ArgumentTypeError):
            minutes(bad)
    with pytest.raises(argparse.ArgumentTypeError):
        key_value("mem")


def test_summary_reads_in_percent_with_two_decimals(tmp_path):
    """A zero reads 0.00 (not 1.998e-13, the floored hmean in percent), one seed has no ±, two seeds have one."""
    for seed, value in ((0, 2e-15), (1, 0.5)):
        job = tmp_path / "bearing" / f"seed{seed}"
        (job / "result" / "bearing").mkdir(parents=True)
        (job / "result" / "bearing" / "all_metrics.csv").write_text(
            f"metric,hmean_fraction\nG_z_1_sum,{value!r}\nD_lof,{value / 2!r}\n")
        (job / "done").write_text("")
    summarize("dcase2022", ["bearing"], [0], tmp_path)
    row = next(csv.DictReader((tmp_path / "summary.csv").open()))
    assert (row["metric_mean"], row["metric_std"], row["best_mean"], row["paper"]) == ("0.00", "", "0.00", "76.03")
    assert "| bearing | 1 | G_z_1_sum | 76.03 | 0.00 | 0.00 |" in (tmp_path / "summary.md").read_text()
    summarize("dcase2022", ["bearing"], [0, 1], tmp_path)
    row = next(csv.DictReader((tmp_path / "summary.csv").open()))
    assert (row["seeds"], row["metric_mean"], row["metric_std"]) == ("2", "25.00", "35.36")
    assert "| 25.00 ± 35.36 |" in (tmp_path / "summary.md").read_text()
    assert mean_std([]) == "-"


def table(tmp_path, machines=("fan", "ToyTrain"), *more: str) -> tuple[list[str], object]:
    """(the command of a tiny sweep of `machines`, one seed, on synthetic data; its output folder)."""
    data = tmp_path / "data"
    for i, mt in enumerate(machines):
        synth.make_2022(data, mt, seconds=1.2, n_train=4, n_train_target=1, n_test=2, eval_sections=(), seed=i)
    out = tmp_path / "rep"
    args = [sys.executable, "-m", "aegan.reproduce", "--dataset", "dcase2022", "--mt", ",".join(machines), "--seeds",
            "1", "--out", str(out), *[x for s in [f"dataset_dir={data}", "train_set=dev", *TINY, *more]
                                      for x in ("--set", s)]]
    return args, out


def _get(port: int, path: str):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=60) as r:
        return json.loads(r.read())


def served_tags(root, jobs: int) -> dict[str, set[str]]:
    """The real tensorboard server on `root`: the scalar tags of each run it lists, once it lists `jobs` runs."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", str(root), "--host", "127.0.0.1",
                               "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    try:
        watch, runs = progress.Watch(server.pid, what="tensorboard"), []
        while len(runs) < jobs:  # the server answers once it has loaded the runs: wait for it, not for seconds
            assert server.poll() is None
            watch.check()
            try:
                runs = _get(port, "/data/runs")
            except OSError:
                time.sleep(0.2)
        tags = _get(port, "/data/plugin/scalars/tags")
        return {run: set(tags[run]) for run in runs}
    finally:
        server.terminate()
        progress.communicate(server)


def run(args: list[str]) -> subprocess.CompletedProcess:
    return progress.run(args, cwd=ROOT, capture_output=True, text=True)


@pytest.mark.slow
def test_reproduce_runner_summary_for_two_machine_types(tmp_path):
    args, out = table(tmp_path)
    r = run(args)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count(": done") == 2
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert [x["machine"] for x in rows] == ["fan", "ToyTrain"] and all(x["seeds"] == "1" for x in rows)
    assert rows[0]["paper"] == "65.83" and rows[0]["paper_metric"] == "G_z_cos_min" and rows[1]["paper"] == ""
    assert rows[0]["metric_std"] == ""  # one seed: no std
    record = json.loads((out / "fan" / "seed0" / "result" / "fan" / "run.json").read_text())
    assert rows[0]["metric_mean"] == f"{100 * record['value']:.2f}"  # the job's own number, in percent
    toy = json.loads((out / "ToyTrain" / "seed0" / "result" / "ToyTrain" / "run.json").read_text())
    assert rows[1]["best_mean"] == f"{100 * toy['best_value']:.2f}"  # its best of 19
    md = (out / "summary.md").read_text()
    assert "| fan | 1 | G_z_cos_min | 65.83 |" in md and "Missing" not in md
    assert f"| {rows[0]['metric_mean']} | {rows[0]['best_mean']} |" in md and "±" not in md.split("\n", 1)[1]
    # the launcher follows each job: where its log is, then every epoch trained; the log holds lines, no bar frames
    log = out / "fan" / "seed0" / "run.log"
    assert f"reproduce: fan seed 0: training (log: {log})" in r.stdout
    assert "reproduce: fan seed 0: epoch 1/1, 0:" in r.stdout and "reproduce: fan seed 0: testing" in r.stdout
    assert "\r" not in log.read_text() and "epoch 1/1: 0/" in log.read_text()
    assert "reproduce: 2 jobs (2 machine types x 1 seed) on this machine" in r.stdout
    assert f"tensorboard --logdir {out / 'tb'}" in r.stdout  # every job's events under one root, served
    served = served_tags(out / "tb", 4)
    # each job's run (the batch axis), and its per-epoch charts in the run's `epochs` folder (#37: an epoch axis)
    assert sorted(run.split("-")[0] + ("/epochs" if run.endswith("/epochs") else "") for run in served) == [
        "ToyTrain/seed0", "ToyTrain/seed0/epochs", "fan/seed0", "fan/seed0/epochs"]
    for job in ("ToyTrain/seed0", "fan/seed0"):
        batches = next(tags for run, tags in served.items() if run.startswith(job) and not run.endswith("/epochs"))
        epochs = next(tags for run, tags in served.items() if run.startswith(job) and run.endswith("/epochs"))
        assert "loss/lossD" in batches and {"epoch/recon", "hmean/D_lof", "selection/epoch", "lr/G"} <= epochs
    with Image.open(out / "summary_curves.png") as im:  # what it says it draws: each type's metric over its seeds
        assert im.text["Title"] == ("dcase2022: hmean (%) per epoch on the labelled dev test set, the mean over "
                                    "seeds and their range")
        assert im.text["Description"] == (f"fan: G_z_cos_min | ToyTrain: the best of the {len(selecting_names())} "
                                          "metrics, per epoch")
        assert np.asarray(im.convert("L")).std() > 10  # drawn, not blank
    r = run(args)  # resumable: nothing to redo
    assert r.returncode == 0 and r.stdout.count("done before") == 2
    r = run([*args, "--status"])
    assert r.returncode == 0 and r.stdout.splitlines()[:2] == ["fan seed 0: done", "ToyTrain seed 0: done"]


@pytest.mark.slow
def test_ctrl_c_stops_the_jobs_in_one_line_and_writes_nothing_half(tmp_path):
    args, out = table(tmp_path, ("ToyTrain",), "train.epoch=3")
    p = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    job = out / "ToyTrain" / "seed0"
    # inside training: epoch 1 done
    progress.wait_for(lambda: (job / "model" / "ToyTrain_last.pth").exists() or p.poll() is not None, p.pid,
                      what="the first epoch")
    p.send_signal(signal.SIGINT)  # as Ctrl-C: the jobs' scripts run in their own sessions and get it from us
    stdout, stderr = progress.communicate(p)
    assert p.returncode == 130
    one_line_error(p.returncode, stderr, "interrupted", "the running jobs (ToyTrain seed 0) stopped",
                   "rerun the same command")
    assert not (out / "summary.csv").exists() and not (job / "done").exists() and not (job / "trained").exists()
    assert "error: interrupted" in (job / "run.log").read_text()  # train.py stopped as on Ctrl-C, and was waited for
    r = run([*args, "--status"])
    assert r.stdout.startswith("ToyTrain seed 0: interrupted: resumes from its last completed epoch")


def test_read_only_output_folder_is_one_line(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    if os.access(ro, os.W_OK):  # root: modes do not bind it, the immutable attribute does
        subprocess.run(["chattr", "+i", str(ro)], capture_output=True)
    try:
        try:
            (ro / "probe").touch()
            (ro / "probe").unlink()
            pytest.skip("no way to make a folder read-only here (root, and chattr +i refused)")
        except OSError:
            pass
        args = [sys.executable, "-m", "aegan.reproduce", "--dataset", "dcase2022", "--mt", "fan", "--set",
                f"dataset_dir={tmp_path}"]
        for out in (ro, ro / "table"):
            r = run([*args, "--out", str(out)])
            one_line_error(r.returncode, r.stderr, f"cannot write to the output folder {out}", "--out")
        r = run([*args, "--out", str(ro), "--status"])
        one_line_error(r.returncode, r.stderr, f"could not write {ro / 'summary.csv'}: ",
                       "choose a folder you can write")
    finally:
        subprocess.run(["chattr", "-i", str(ro)], capture_output=True)
        ro.chmod(0o755)


@pytest.mark.slow
def test_gpus_per_job_trains_under_torchrun(tmp_path):
    args, out = table(tmp_path, ("ToyTrain",))
    r = run([*args, "--gpus-per-job", "2"])  # no GPU here: two processes on the CPU (gloo), as torchrun does
    assert r.returncode == 0, r.stderr[-3000:]
    assert "-m torch.distributed.run --standalone --nproc_per_node=2 " in (out / "ToyTrain/seed0/run.log").read_text()
    assert "distributed: 2 processes (gloo)" in (out / "ToyTrain/seed0/log/ToyTrain/train.log").read_text()


def test_slurm_launcher_without_slurm_is_one_line(tmp_path):
    args, _ = table(tmp_path, ("fan",))
    r = progress.run([*args, "--launcher", "slurm"], cwd=ROOT, capture_output=True, text=True,
                     env={**os.environ, "PATH": str(tmp_path)})  # no Slurm commands on the PATH
    one_line_error(r.returncode, r.stderr, "squeue: ", "where Slurm's commands are")


def _status(argv: list[str], capsys) -> tuple[int, str, str]:
    """`python -m aegan.reproduce ... --status` in this process (it runs no job): (exit status, stdout, stderr)."""
    from aegan import reproduce

    capsys.readouterr()
    try:
        reproduce.main([*argv, "--status"])
        code = 0
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def test_a_machine_type_named_twice_runs_once_and_says_so(tmp_path, synth2022, capsys):
    """--mt fan,fan ran "2 machine types" into one folder and wrote fan twice into the summary."""
    code, out, err = _status(["--dataset", "dcase2022", "--mt", "fan,ToyTrain,fan", "--out", str(tmp_path),
                              "--set", f"dataset_dir={synth2022}"], capsys)
    assert code == 0, err
    assert "reproduce: --mt names fan more than once; each machine type runs once" in out
    assert out.count("fan seed 0:") == 1 and out.count("ToyTrain seed 0:") == 1
    assert [r["machine"] for r in csv.DictReader((tmp_path / "summary.csv").open())] == ["fan", "ToyTrain"]


def test_a_sweep_over_the_bound_is_refused_at_once(tmp_path, synth2022, capsys):
    """--seeds 100000000 listed its jobs for minutes in silence (memory growing); now one line, before any work."""
    from aegan.reproduce import MAX_JOBS

    code, out, err = _status(["--dataset", "dcase2022", "--mt", "fan,ToyTrain", "--seeds", "100000000", "--out",
                              str(tmp_path / "rep"), "--set", f"dataset_dir={synth2022}"], capsys)
    one_line_error(code, err, "--seeds 100000000 x 2 machine types is 200000000 jobs", f"more than the {MAX_JOBS}")
    assert not (tmp_path / "rep").exists()
    code, out, err = _status(["--dataset", "dcase2022", "--mt", "fan", "--seeds", str(MAX_JOBS), "--out",
                              str(tmp_path / "rep"), "--set", f"dataset_dir={synth2022}"], capsys)
    assert code == 0 and out.count(": not started") == MAX_JOBS, err
