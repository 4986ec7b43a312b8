"""`train.py` and `test.py` of each dataset folder are thin calls into `train_main` / `test_main` here."""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np

from . import checkpoint
from .config import dump, load_config
from .dataset import DatasetSpec
from .device import select_device
from .errors import AeganError
from .features import minmax
from .nets import build_nets
from .pipeline import best_metric, evaluate_all, features, resolve_metric, scaled_tensor, score_clips, train_features
from .report import table, write_results, write_scores
from .trainer import model_paths, train


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not the usage block
        print(f"error: {message} (see --help)", file=sys.stderr)
        sys.exit(2)


def _parser(spec: DatasetSpec, what: str) -> argparse.ArgumentParser:
    p = _Parser(prog=f"{spec.name}/{what}.py", description=f"AEGAN-AD {what} on {spec.name.upper()} Task 2")
    p.add_argument("--mt", required=True, help=f"machine type: {', '.join(spec.machines)}")
    p.add_argument("-c", "--card_id", type=int, default=0, help="CUDA device index (CPU when CUDA is absent)")
    p.add_argument("--config", help="YAML file applied on top of the defaults and pretrain/<dataset>/<mt>.yaml")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one setting, e.g. --set train.epoch=3 (repeatable)")
    p.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    return p


def _run(fn: Callable[[argparse.Namespace], None], args: argparse.Namespace) -> None:
    try:
        fn(args)
    except AeganError as e:
        if args.debug:
            traceback.print_exc()
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted: the last completed epoch's checkpoint is intact; continue with --resume", file=sys.stderr)
        sys.exit(130)
    except Exception as e:  # noqa: BLE001 - last resort: still one line unless --debug
        if args.debug:
            traceback.print_exc()
        print(f"error: unexpected {type(e).__name__}: {e} (rerun with --debug for the traceback)", file=sys.stderr)
        sys.exit(1)


def _config(spec: DatasetSpec, args: argparse.Namespace) -> dict:
    spec.check_machine(args.mt)
    cfg, sources = load_config(spec.root, args.mt, args.config, args.set)
    print("config: " + " <- ".join(sources))
    print(dump(cfg))
    return cfg


def train_main(spec: DatasetSpec, argv: list[str] | None = None) -> None:
    p = _parser(spec, "train")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--resume", action="store_true", help="continue from model_dir/<mt>_last.pth")
    args = p.parse_args(argv)

    def run(a: argparse.Namespace) -> None:
        cfg = _config(spec, a)
        train(spec, cfg, a.mt, select_device(a.card_id), a.seed, a.resume)

    _run(run, args)


def _load_model(spec: DatasetSpec, cfg: dict, mt: str, device):
    path, _ = model_paths(cfg, mt)
    state = checkpoint.load(path, device)
    first_norm = spec.first_norm(mt)
    netG, netD = build_nets(cfg["net"], first_norm)
    arch = checkpoint.describe_arch(cfg["net"], first_norm)
    checkpoint.load_weights(netG, state["netG"], path, "netG", arch)
    checkpoint.load_weights(netD, state["netD"], path, "netD", arch)
    saved = state.get("config")
    if saved and saved.get("feat") != cfg["feat"]:
        changed = [k for k in cfg["feat"] if saved["feat"].get(k) != cfg["feat"][k] and k != "workers"]
        if changed:
            raise AeganError(f"checkpoint {path} was trained with feat.{changed[0]}={saved['feat'][changed[0]]}, "
                             f"the config says {cfg['feat'][changed[0]]}")
    print(f"model: {path}" + (f" (epoch {state['epoch']}, selected metric {state.get('metric')})"
                              if "epoch" in state else " (original-format checkpoint)"))
    return netG.to(device), netD.to(device), state


def test_main(spec: DatasetSpec, argv: list[str] | None = None) -> None:
    p = _parser(spec, "test")
    which = p.add_mutually_exclusive_group()
    which.add_argument("-d", "--dev", action="store_true", help="evaluate on the development test set (labels known)"
                       + (" (the default)" if spec.default_dev else ""))
    which.add_argument("-e", "--eval", action="store_true", help="score the evaluation test set (no labels)"
                       + ("" if spec.default_dev else " (the default)"))
    args = p.parse_args(argv)
    args.dev = args.dev or (spec.default_dev and not args.eval)

    def run(a: argparse.Namespace) -> None:
        cfg = _config(spec, a)
        device = select_device(a.card_id)
        netG, netD, state = _load_model(spec, cfg, a.mt, device)
        train_clips, raw = train_features(spec, cfg, a.mt)
        if "feat_max" in state:
            vmax, vmin = float(state["feat_max"]), float(state["feat_min"])
        else:
            vmax, vmin = minmax(raw)
            print(f"features: checkpoint holds no max/min; recomputed from {len(train_clips)} training clips "
                  f"({cfg['train_set']}): max {vmax:.4f} min {vmin:.4f}")
        train_specs = scaled_tensor(raw, vmax, vmin, device)
        del raw
        clips = spec.test_clips(cfg, a.mt, dev=a.dev)
        name = "test_dev" if a.dev else "test_eval"
        test_specs = scaled_tensor(features(spec, cfg, a.mt, clips, name), vmax, vmin, device)
        print(f"scoring {len(clips)} {'dev' if a.dev else 'eval'} test clips with all 19 metrics")
        scores = score_clips(netG, netD, train_specs, test_specs, spec, cfg, device)

        chosen = cfg["detect"]["metric"] or state.get("metric")
        if a.dev:
            results = evaluate_all(spec, clips, scores, cfg["detect"]["p"])
            top = best_metric(spec, results)
            print(table(spec, top, *results[top], "best metric on this test set"))
            if chosen:
                chosen = resolve_metric(spec, chosen)
                print(table(spec, chosen, *results[chosen], "configured metric"))
            chosen = chosen or top
            out = Path(cfg["result_dir"]) / a.mt
            for f in write_results(spec, results, out):
                print(f"wrote {f}")
        if not chosen:
            raise AeganError("no metric to write scores with: set detect.metric (e.g. --set detect.metric=D_lof)")
        chosen = resolve_metric(spec, chosen)
        written = write_scores(spec, a.mt, clips, np.asarray(scores[chosen]), Path(cfg["detect_dir"]))
        print(f"wrote {len(written)} anomaly score files ({chosen}) to {cfg['detect_dir']}")

    _run(run, args)

