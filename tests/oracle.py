"""The original code as the oracle: a CPU copy of ../shared/original run side by side with ours.

The copy is patched only to run on the CPU (its scripts hard-code `cuda:N`, and call torch.load in a
way torch >= 2.6 refuses for its own checkpoints); oracle_driver.py runs its train.py / test.py and
records what they compute. Both sides run as subprocesses in one environment: this CPU's own kernels or
those of a CPU without AVX-512 (AVX2), with one OpenBLAS thread or the machine's default count (as a user
runs): the bits of the mel product, the convolutions and the detectors depend on them, for the original as
for ours, and must agree side by side under each.
"""

from __future__ import annotations

import csv
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

import progress
from aegan.settings.layers import output_settings
from conftest import ROOT

ORIGINAL = ROOT.parent / "shared" / "original"
DRIVER = Path(__file__).with_name("oracle_driver.py")
FOLDER = {"dcase2022": "dcase22", "dcase2020": "dcase20"}
ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
NATIVE = {k: v for k, v in ENV.items() if k != "OPENBLAS_NUM_THREADS"}  # this CPU, default BLAS threads
# PyTorch's oneDNN and ATen kernels, OpenBLAS's and numpy's limited to AVX2 (numpy's names for its AVX-512
# dispatch targets): a CPU without AVX-512, as an AMD EPYC before Zen 4
AVX2_KERNELS = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2", "OPENBLAS_CORETYPE": "Haswell",
                "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR"}
AVX2 = {**NATIVE, **AVX2_KERNELS}  # with the default BLAS thread count
AVX2_ONE_THREAD = {**ENV, **AVX2_KERNELS}  # with one: each threaded BLAS call on a busy machine waits for a core
# script: [(text in the original, replacement)]: run on the CPU; let torch >= 2.6 read the original's own files
CPU_PATCHES = {
    "train.py": [("torch.device('cuda:{}'.format(param['card_id']))", "torch.device('cpu')"),
                 ("map_location=torch.device('cpu'))", "map_location=torch.device('cpu'), weights_only=False)")],
    "test.py": [("torch.device('cuda:{}'.format(param['card_id']))", "torch.device('cpu')"),
                ("map_location=torch.device('cpu'))", "map_location=torch.device('cpu'), weights_only=False)")],
    "loc.py": [("torch.device(f\"cuda:{param['card_id']}\")", "torch.device('cpu')"),
               ("map_location=torch.device('cpu'))", "map_location=torch.device('cpu'), weights_only=False)")],
}

needs_original = pytest.mark.skipif(not ORIGINAL.is_dir(),
                                    reason="../shared/original (the authors' code, the oracle) is absent")


def cpu_copy(dataset: str, dest: Path) -> Path:
    """A writable copy of the original's dataset folder with the CPU patches applied to its scripts."""
    shutil.copytree(ORIGINAL / FOLDER[dataset], dest)
    for p in dest.rglob("*"):
        p.chmod(p.stat().st_mode | stat.S_IWUSR)
    for script, patches in CPU_PATCHES.items():
        path = dest / script
        if not path.exists():  # the DCASE 2020 folder has no loc.py
            continue
        text = path.read_text()
        for old, new in patches:
            assert old in text, f"the original's {script} changed: {old!r} not found"
            text = text.replace(old, new)
        path.write_text(text)
    return dest


def original_config(dataset: str, mt: str, data: Path, out: Path, **settings) -> dict:
    """A config in the original's own format (keys differ between its two datasets: SPEC section 10)."""
    feat = {"fft_num": 1024, "mel_bin": 32, "frame_hop": 512, "frame_num": 32, "graph_hop_f": 1}
    net = {"act": ["leakyrelu", "relu"], "normalize": {"d": "ln", "g": "ln"}, "nz": 16, "ndf": 4, "ngf": 4,
           "isize": 32}
    train = {"lrD": 0.0002, "lrG": 0.0002, "beta1": 0.5, "epoch": 2,
             "wgan": {"feat_match_eff": 0.1, "match_item": {"mu": 1}, "ncritic": 1, "lambda_gp": 10}}
    cfg = {"dataset_dir": str(data), "model_dir": str(out / "model"), "spec_dir": str(out / "spec"),
           "log_dir": "./log"}  # its logger only works with a path relative to its folder
    if dataset == "dcase2022":
        cfg |= {"detect_dir": str(out / "detect"), "result_dir": str(out / "result"), "feat": feat, "net": net,
                "train_set": "dev", "train": {**train, "batch_size": 32}, "detect": {"p": 0.1},
                "repre": {"normal": 0, "anomaly": 1, "source": 0, "target": 1}}
    else:
        cfg |= {"mt": {"train": [mt], "test": [mt]}, "train_set": "dev", "feat": {"spec": "mel", **feat},
                "net": net, "train": {**train, "bs": 32}, "detect": {"p": 0.1}, "repre": {"normal": 0, "anomaly": 1}}
    for key, value in settings.items():  # "train.wgan.match_item" -> nested
        *parents, leaf = key.split(".")
        node = cfg
        for part in parents:
            node = node[part]
        node[leaf] = value
    return cfg


def run_original(copy: Path, mode: str, mt: str, seed: int, cfg: dict, out: Path, env: dict = ENV) -> dict:
    """Run the original's train.py or test.py in `copy` with `cfg` as its config.yaml; what it recorded."""
    (copy / "config.yaml").write_text(yaml.safe_dump(cfg))
    record = out / f"original_{mode}.pt"
    r = progress.run([sys.executable, str(DRIVER), mode, mt, str(seed), str(record)], cwd=copy, env=env,
                     capture_output=True, text=True)
    assert r.returncode == 0, f"the original's {mode}.py failed:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    return torch.load(record, weights_only=False)


def run_ours(dataset: str, script: str, mt: str, config: Path, out: Path, *args: str, env: dict = ENV
             ) -> subprocess.CompletedProcess:
    """Our real script with the original-format config file given as --config, outputs under `out`."""
    sets = [x for item in output_settings(out) for x in ("--set", item)]
    r = progress.run([sys.executable, str(ROOT / dataset / script), "--mt", mt, "--config", str(config), *sets,
                      "--set", "feat.workers=1", *args], env=env, capture_output=True, text=True)
    assert r.returncode == 0, f"our {script} failed:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    return r


def clip_scores_from_calls(calls: list, names: list[str], group_of) -> dict[str, dict[str, float]]:
    """Each clip's scores of the original's metrics from its roc_auc_score calls: per metric (in its order) and per
    section/ID (sorted), the pAUC call (max_fpr set) scores every clip of the group in listing order."""
    from aegan.core.metrics import original_names

    groups = sorted({group_of(n) for n in names})
    members = {g: [n for n in names if group_of(n) == g] for g in groups}
    pauc = [c for c in calls if c[2] is not None]
    assert len(pauc) == len(original_names()) * len(groups), (len(pauc), len(groups))
    out: dict[str, dict[str, float]] = {}
    for k, metric in enumerate(original_names()):
        out[metric] = {}
        for j, g in enumerate(groups):
            _, scores, _ = pauc[k * len(groups) + j]
            assert len(scores) == len(members[g])
            out[metric] |= dict(zip(members[g], scores))
    return out


def read_clip_scores(path: Path) -> dict[str, dict[str, float]]:
    """Our result/<mt>/clip_scores.csv as {metric: {file name: score}}."""
    rows = list(csv.DictReader(path.open()))
    metrics = [k for k in rows[0] if k.startswith(("G_", "D_"))]
    return {m: {r["file"]: float(r[m]) for r in rows} for m in metrics}
