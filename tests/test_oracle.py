"""Side by side with the original code (../shared/original, patched only to run on the CPU): the same data,
seed and settings give the same weights, losses, selected epoch, metric and value in training, and the
same scores of its metrics for every clip in testing, on synthetic DCASE 2022 and 2020 data and on real DCASE
2020 clips.

Both sides read the same original-format config file (ours as --config), and our test.py scores the
checkpoint the original's train.py wrote. Expected: bit equality; asserted: 1e-6. Both sides run in one
environment (oracle.py): the synthetic runs with this CPU's kernels, the real clips with AVX2 kernels, both
with one BLAS thread; every real clip's features with either kernels and the default thread count: the
original's own bits differ between these environments (docs/FAITHFUL.md), ours must follow them.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import progress
from aegan import synth
from aegan.core.metrics import metric_names, original_names
from aegan.settings.layers import output_settings
from aegan.store import checkpoint
from conftest import REAL, ROOT, TINY
from oracle import (
    AVX2,
    AVX2_ONE_THREAD,
    DRIVER,
    ENV,
    NATIVE,
    ORIGINAL,
    clip_scores_from_calls,
    cpu_copy,
    needs_original,
    original_config,
    read_clip_scores,
    run_original,
    run_ours,
)

pytestmark = [needs_original, pytest.mark.slow]
TOL = 0.0  # the issue asks for 1e-6; both sides compute the same operations, so the bits agree


def run_both(tmp: Path, dataset: str, mt: str, data: Path, seed: int, env: dict = ENV, **settings) -> dict:
    """Train and test with the original and with ours, both in `env`; our test.py also scores the original's
    checkpoint."""
    cfg = original_config(dataset, mt, data, tmp / "orig", **settings)
    code = cpu_copy(dataset, tmp / "orig_code")
    trained = run_original(code, "train", mt, seed, cfg, tmp, env)
    tested = run_original(code, "test", mt, seed, cfg, tmp, env)
    config = tmp / "original_config.yaml"
    shutil.copy(code / "config.yaml", config)
    ours = tmp / "ours"
    run_ours(dataset, "train.py", mt, config, ours, "--seed", str(seed), env=env)
    (ours / "orig_model").mkdir()
    shutil.copy(tmp / "orig" / "model" / f"{mt}.pth", ours / "orig_model" / f"{mt}.pth")
    run_ours(dataset, "test.py", mt, config, ours, "-d", "--set", f"model_dir={ours / 'orig_model'}", env=env)
    names = sorted(p.name for p in (data / "dev_data" / mt / "test").glob("*.wav"))
    return {"trained": trained, "tested": tested, "ours": ours, "names": names, "orig": tmp / "orig", "mt": mt}


def max_weight_diff(a: dict, b: dict) -> float:
    assert list(a) == list(b)
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a if a[k].numel())


def assert_training_equal(run: dict, best_key: str) -> None:
    mt, trained = run["mt"], run["trained"]
    last = checkpoint.load(run["ours"] / "model" / f"{mt}_last.pth")
    best = checkpoint.load(run["ours"] / "model" / f"{mt}.pth")
    original_best = torch.load(run["orig"] / "model" / f"{mt}.pth", weights_only=False)
    for net in ("netD", "netG"):
        diff = max(max_weight_diff(trained["weights"][-1][net], last[net]),
                   max_weight_diff(original_best[net], best[net]))
        print(f"{net}: largest weight difference to the original after 2 epochs: {diff:.3g}")
        assert diff <= TOL, net
    assert len(best["history"]) == len(trained["losses"]) == 2  # the model file holds the run's whole history
    for ours, theirs, (summary, metric) in zip(best["history"], trained["losses"], trained["test"]):
        assert ours["recon"] == pytest.approx(theirs["recon"], rel=TOL)
        assert ours["feat_match"] == pytest.approx(theirs["d2g"], rel=TOL)
        assert ours["lossG"] == pytest.approx(theirs["gloss"], rel=1e-4)  # the original keeps 5 digits of it
        assert ours["best_metric"] == metric and ours["best_value"] == pytest.approx(summary[-1], abs=TOL)
    assert best[best_key] == pytest.approx(float(original_best[best_key]), abs=TOL)
    assert best["epoch"] == 1 + max(range(2), key=lambda e: (trained["test"][e][0][-1], -e))


def assert_scores_equal(run: dict, group_of) -> float:
    """Every clip's scores of the original's metrics against the original's; returns the largest relative
    difference."""
    ours = read_clip_scores(run["ours"] / "result" / run["mt"] / "clip_scores.csv")
    theirs = clip_scores_from_calls(run["tested"]["calls"], run["names"], group_of)
    assert list(ours) == metric_names()
    worst = 0.0
    for m in original_names():
        assert set(ours[m]) == set(theirs[m]) == set(run["names"])
        a = np.array([ours[m][n] for n in run["names"]])
        b = np.array([theirs[m][n] for n in run["names"]])
        rel = np.abs(a - b) / np.maximum(np.abs(b), 1e-12)
        assert rel.max() <= TOL, (m, rel.max())
        worst = max(worst, float(rel.max()))
    print(f"largest relative score difference to the original: {worst:.3g}")
    return worst


@pytest.fixture(scope="module")
def run2022(tmp_path_factory) -> dict:
    """bearing (no norm after the encoder's first conv) with the gearbox paper options: BatchNorm in G and
    mean + std feature matching."""
    tmp = tmp_path_factory.mktemp("oracle2022")
    data = synth.make_2022(tmp / "data", "bearing", seconds=1.6, n_train=6, n_train_target=2, n_test=3, seed=3)
    return run_both(tmp, "dcase2022", "bearing", data, 7, **{"net.normalize": {"d": "ln", "g": "bn"},
                                                              "train.wgan.match_item": {"mu": 1, "sigma": 1}})


@pytest.fixture(scope="module")
def run2020(tmp_path_factory) -> dict:
    """Trained on dev and eval clips (deval): the critic detectors see the IDs in the original's order."""
    tmp = tmp_path_factory.mktemp("oracle2020")
    data = synth.make_2020(tmp / "data", "pump", seconds=1.6, n_train=4, n_test=3, seed=5)
    return run_both(tmp, "dcase2020", "pump", data, 11, train_set="deval",
                    **{"train.wgan.feat_match_eff": 1, "train.wgan.match_item": {"mu": 1, "sigma": 1}})


def test_training_dcase2022_equals_the_original(run2022):
    assert_training_equal(run2022, "best_hmean")


def test_scores_dcase2022_equal_the_original(run2022):
    assert_scores_equal(run2022, lambda n: n.split("_")[1])
    best_metric, best_hmean = run2022["tested"]["returned"][0]
    table = (run2022["ours"] / "result" / "bearing" / "all_metrics.csv").read_text().splitlines()
    ours = {r.split(",")[0]: float(r.split(",")[4]) for r in table[1:] if r.split(",")[0] in original_names()}
    assert max(ours, key=ours.get) == best_metric and ours[best_metric] == pytest.approx(best_hmean, abs=TOL)


def test_training_dcase2020_equals_the_original(run2020):
    assert_training_equal(run2020, "best_aver")


def test_scores_dcase2020_equal_the_original(run2020):
    assert_scores_equal(run2020, lambda n: n.split("_")[2])


# real 10-s clips of four machine types, one machine ID each: all 93 real clips go through the features test
# below (the whole chain on more of them would add minutes to the suite)
REAL_IDS = {"00": "fan", "02": "pump", "04": "slider", "06": "valve"}


def _real_dataset(root: Path) -> Path:
    """The real 10-s clips of four machine types as one DCASE 2020 machine type, one machine ID each
    (symlinks with DCASE 2020 names; the audio is read in place): per ID five normal clips train, the
    other normal clips and the anomalies are the dev test set."""
    for mid, source in REAL_IDS.items():
        normal = sorted((REAL / source / "normal").glob("*.wav"))
        anomaly = sorted((REAL / source / "anomaly").glob("*.wav"))
        placed = [("train", "normal", w) for w in normal[:5]] + [("test", "normal", w) for w in normal[5:]]
        placed += [("test", "anomaly", w) for w in anomaly]
        for i, (split, label, wav) in enumerate(placed):
            dest = root / "dev_data" / "valve" / split / f"{label}_id_{mid}_{i:08d}.wav"
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(wav, dest)
    return root


@pytest.mark.skipif(not REAL.is_dir(), reason="../shared/real/ (real DCASE 2020 clips) is absent")
def test_real_clips_train_and_score_as_the_original_with_avx2_kernels(tmp_path):
    """Under AVX2 kernels (the synthetic runs above: this CPU's own kernels; the original's numbers differ
    between the two, ours must differ with them). One BLAS thread: the default count, where only the features
    have a thread policy of their own, is the features test's below (here it made the original's train.py take
    over 15 minutes on a busy 2-core machine)."""
    data = _real_dataset(tmp_path / "data")
    assert len(list(data.rglob("*.wav"))) == sum(len(list((REAL / s).rglob("*.wav"))) for s in REAL_IDS.values())
    run = run_both(tmp_path, "dcase2020", "valve", data, 3, env=AVX2_ONE_THREAD,
                   **{"feat.fft_num": 2048, "train.epoch": 1, "train.bs": 64})
    mt = run["mt"]
    last = checkpoint.load(run["ours"] / "model" / f"{mt}_last.pth")
    for net in ("netD", "netG"):
        assert max_weight_diff(run["trained"]["weights"][-1][net], last[net]) <= TOL
    assert_scores_equal(run, lambda n: n.split("_")[2])


OUR_FEATURES = """
import json, sys
import numpy as np
from aegan.data.audio import extract
from aegan.data.segments import minmax, scale
out = {}
for name, clips in json.loads(open(sys.argv[1]).read()).items():
    raw = extract(clips, {"fft_num": 2048, "frame_hop": 512, "mel_bin": 128}, workers=2)
    out[f"{name}_raw"], out[f"{name}_scaled"] = raw, scale(raw, *minmax(raw))
np.savez(sys.argv[2], **out)
"""


@pytest.mark.skipif(not REAL.is_dir(), reason="../shared/real/ (real DCASE 2020 clips) is absent")
@pytest.mark.parametrize("env", [NATIVE, AVX2], ids=["native", "avx2"])
def test_every_real_clip_has_the_originals_features(tmp_path, env):
    """Every real clip through the original's generate_spec and through our extraction (two workers) and
    scaling, each machine type a training set, side by side in one environment: this CPU's kernels with the
    default BLAS thread count, and AVX2 kernels. Bit-equal log-mel and scaled features."""
    groups = {d.name: [str(w) for w in sorted(d.rglob("*.wav"))] for d in sorted(REAL.iterdir()) if d.is_dir()}
    (tmp_path / "groups.json").write_text(json.dumps(groups))
    runs = {"original": ([str(DRIVER), "features", str(tmp_path / "groups.json"), str(tmp_path / "spec")],
                         ORIGINAL / "dcase20"),
            "ours": (["-c", OUR_FEATURES, str(tmp_path / "groups.json")], ROOT)}
    got = {}
    for side, (args, cwd) in runs.items():
        r = progress.run([sys.executable, *args, str(tmp_path / f"{side}.npz")], cwd=cwd, capture_output=True,
                         text=True, env={**env, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": str(ROOT)})
        assert r.returncode == 0, f"{side}:\n{r.stderr[-3000:]}"
        got[side] = np.load(tmp_path / f"{side}.npz")
    assert sum(len(c) for c in groups.values()) == len(list(REAL.rglob("*.wav")))
    for name, clips in groups.items():
        raw = got["original"][f"{name}_raw"]
        np.testing.assert_array_equal(got["ours"][f"{name}_raw"], raw.reshape(len(clips), 128, -1), err_msg=name)
        np.testing.assert_array_equal(got["ours"][f"{name}_scaled"], got["original"][f"{name}_scaled"],
                                      err_msg=name)


@pytest.mark.parametrize("dataset, folder", [("dcase2022", "dcase22"), ("dcase2020", "dcase20")])
def test_every_original_pretrain_file_drives_train_and_test(tmp_path, capsys, dataset, folder):
    """The original's README: use its pretrain/<mt>_cfg.yaml files. Each of the eleven goes unchanged to our
    train.py and test.py as --config (sizes shrunk with --set so that the test is quick)."""
    from aegan.commands.cli import test_main, train_main

    spec = importlib.import_module(f"{dataset}.datasets").SPEC
    files = sorted((ORIGINAL / folder / "pretrain").glob("*_cfg.yaml"))
    assert len(files) == {"dcase22": 5, "dcase20": 6}[folder]
    make = synth.make_2022 if dataset == "dcase2022" else synth.make_2020
    for f in files:
        mt = f.name[: -len("_cfg.yaml")]
        out = tmp_path / mt
        data = make(out / "data", mt, seconds=1.2, n_train=3, n_test=2, seed=1)
        sets = [x for s in [*TINY, f"dataset_dir={data}", *output_settings(out)] for x in ("--set", s)]
        train_main(spec, ["--mt", mt, "--config", str(f), *sets])
        test_main(spec, ["--mt", mt, "-d", "--config", str(f), *sets])
        printed = capsys.readouterr().out
        assert f"<- {f}" in printed and "ignored (keys of the original code that this code does not use): repre" \
            in printed, mt
        state = checkpoint.load(out / "model" / f"{mt}.pth")
        original = yaml.safe_load(f.read_text())
        assert state["config"]["train_set"] == original["train_set"]
        assert state["config"]["net"]["normalize"] == original["net"]["normalize"]
        assert state["config"]["train"]["wgan"]["match_item"] == original["train"]["wgan"]["match_item"]
        assert (out / "result" / mt / "all_metrics.csv").is_file()
