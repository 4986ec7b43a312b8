"""What share of NORMAL dev test clips each metric's decision threshold flags, before and after held-out critic
scores (aegan/scoring/held_out.py). A threshold at the gamma fit's p-point should flag about 1 - p of normal clips.

    python bench/decisions.py [--train 20 --test 20 --epochs 3]

Per dataset layout (synthetic, aegan.synth, machine type fan): train.py with demo/small.yaml on the dev training
clips, then every dev test
clip and training clip scored through the Python API (all 19 metrics). Before: a critic metric's threshold fitted on
the training clips scored against the reference set that holds them (in-sample); after: each training clip against
the other training clips (held out), the gamma fit guarded against its degenerate corner (evaluation.fit_threshold).
Generator metrics' thresholds are the same in both. Writes
bench/results/decisions_cpu.json; `--timing-only`: what the held-out scores cost at 3000 clips of 512-d embeddings,
bench/results/decisions_timing_cpu.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aegan import synth  # noqa: E402
from aegan.core.metrics import D_METRICS, metric_names  # noqa: E402
from aegan.detector import Detector  # noqa: E402
from aegan.scoring.clip_scores import EmbeddingDetectors, training_scores  # noqa: E402
from aegan.scoring.evaluation import fit_threshold  # noqa: E402
from aegan.scoring.held_out import fitted_rule  # noqa: E402
from aegan.settings.layers import output_settings  # noqa: E402


def trained(dataset: str, out: Path, a: argparse.Namespace) -> Path:
    """The model of `dataset` under `out`, trained unless a run of the same --work left it there."""
    data, model = out / "data", out / "model" / "fan.pth"
    if model.exists():
        return model
    if dataset == "dcase2022":
        synth.make_2022(data, "fan", n_train=a.train, n_train_target=2, n_test=a.test, seed=1)
    else:
        synth.make_2020(data, "fan", n_train=a.train, n_test=a.test, seed=1)
    sets = ["--config", str(ROOT / "demo" / "small.yaml"), "--set", f"dataset_dir={data}",
            "--set", f"train.epoch={a.epochs}", "--set", "feat.workers=1", "--set", "train_set=dev"]
    sets += [x for item in output_settings(out) for x in ("--set", item)]
    subprocess.run([sys.executable, str(ROOT / dataset / "train.py"), "--mt", "fan", "--seed", "42", *sets],
                   check=True, stdout=subprocess.DEVNULL)
    return model


def shares(dataset: str, model_path: Path, data: Path, percentile: float) -> dict:
    det = Detector.load(model_path)
    model = det.model
    test = det.score(data / "dev_data" / "fan" / "test", progress=False)
    train = det.score(data / "dev_data" / "fan" / "train", progress=False)
    normal = [r for r in test if "normal" in Path(r.file).name]
    anomalous = [r for r in test if "anomaly" in Path(r.file).name]
    # DCASE 2022's target domain has 2 training clips per section: its normal clips lie outside what training saw
    source = [r for r in normal if "_target_" not in Path(r.file).name]
    rows = {}
    for m in metric_names():
        if m in D_METRICS:
            before = model.detectors.score(model.train_emb, (m,))[m]  # in-sample: the reference set holds each clip
            after = training_scores(m, None, model.detectors, model.train_emb, None, {})
        else:
            before = after = np.array([r.scores[m] for r in train])
        row = {}
        for name, s in (("before", before), ("after", after)):
            # before: the plain gamma fit on in-sample scores; after: the rule the code fits now (fitted_rule)
            t = (fit_threshold(s, percentile) if name == "before" else fitted_rule(m, s, percentile))["threshold"]
            row[name] = {"threshold": t, "normal_flagged": float(np.mean([r.scores[m] > t for r in normal])),
                         "normal_source_flagged": float(np.mean([r.scores[m] > t for r in source])),
                         "anomalous_flagged": float(np.mean([r.scores[m] > t for r in anomalous]))}
        rows[m] = row
    return {"normal_clips": len(normal), "anomalous_clips": len(anomalous), "training_clips": len(model.train_emb),
            "metrics": rows}


def timing(n: int = 3000, dim: int = 512) -> dict:
    """Seconds of each critic metric's held-out training scores at a real size (random clustered float32
    embeddings, as bench/evaluation_cost.py draws them), after the detectors are fitted."""
    rng = np.random.default_rng(0)
    emb = (rng.normal(size=(n, dim)) + 3 * rng.normal(size=(8, dim))[rng.integers(0, 8, n)]).astype(np.float32)
    det = EmbeddingDetectors(emb)
    out = {}
    for m in D_METRICS:
        t = time.perf_counter()
        training_scores(m, None, det, emb, None, {})
        out[m] = round(time.perf_counter() - t, 3)
    return {"clips": n, "dim": dim, "seconds": out}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--train", type=int, default=20, help="training clips per section / ID")
    p.add_argument("--test", type=int, default=20, help="normal (and as many anomalous) test clips per section / ID")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--percentile", type=float, default=0.9)
    p.add_argument("--timing-only", action="store_true", help="only the held-out scores' cost at 3000 x 512")
    p.add_argument("--datasets", nargs="+", default=["dcase2022", "dcase2020"], choices=["dcase2022", "dcase2020"])
    p.add_argument("--work", help="folder of the data and models, kept (a model there is reused); default: temporary")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "decisions_cpu.json"))
    a = p.parse_args()
    if a.timing_only:
        cost = timing()
        print(f"held-out training scores, {cost['clips']} clips x {cost['dim']}: {cost['seconds']} s")
        (ROOT / "bench" / "results" / "decisions_timing_cpu.json").write_text(json.dumps(cost, indent=1) + "\n")
        return
    results = {"machine": platform.processor() or platform.machine(), "percentile": a.percentile, **vars(a)}
    with tempfile.TemporaryDirectory() as tmp:
        for dataset in a.datasets:
            out = Path(a.work or tmp) / dataset
            results[dataset] = shares(dataset, trained(dataset, out, a), out / "data", a.percentile)
    print(f"share of normal dev test clips flagged (threshold at the gamma fit's {a.percentile:g} point; "
          f"expected about {1 - a.percentile:.2f})")
    print(f"{'metric':<14}" + "".join(f"{d + ' ' + w:>22}" for d in a.datasets for w in ("before", "after")))
    for m in metric_names():
        cells = [results[d]["metrics"][m][w]["normal_flagged"] for d in a.datasets for w in ("before", "after")]
        print(f"{m:<14}" + "".join(f"{c:>22.3f}" for c in cells))
    target = Path(a.out)
    target.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
