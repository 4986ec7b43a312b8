"""`train.py` and `test.py` of each dataset folder are thin calls into `train_main` / `test_main` here."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .config import Resolved, dump, load_config
from .dataset import DatasetSpec, attach_ground_truth
from .decision import decide, decision_metrics
from .device import select_device, tune_allocator
from .errors import AeganError
from .pipeline import best_metric, decision_rule, evaluate_all, features, load_trained, resolve_metric, score_clips
from .report import (
    decision_table,
    table,
    write_clip_scores,
    write_decision_metrics,
    write_results,
    write_scores,
)
from .trainer import train


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


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt  # SIGTERM ends a run like Ctrl-C: checkpoints are only ever replaced atomically


def _close_bars() -> None:
    """End any progress bar an error cut short, so that the error starts on a line of its own."""
    for bar in list(getattr(tqdm, "_instances", [])):
        bar.close()


def _run(fn: Callable[[argparse.Namespace], None], args: argparse.Namespace) -> None:
    tune_allocator()
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        try:
            fn(args)
        finally:
            _close_bars()
    except AeganError as e:
        if args.debug:
            traceback.print_exc()
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("error: interrupted; the checkpoints of the last completed epoch are intact (train.py --resume "
              "continues from them)", file=sys.stderr)
        sys.exit(130)
    except Exception as e:  # noqa: BLE001 - last resort: still one line unless --debug
        if args.debug:
            traceback.print_exc()
        print(f"error: unexpected {type(e).__name__}: {e} (rerun with --debug for the traceback)", file=sys.stderr)
        sys.exit(1)


def _config(spec: DatasetSpec, args: argparse.Namespace) -> Resolved:
    spec.check_machine(args.mt)
    resolved = load_config(spec.root, args.mt, args.config, args.set)
    print("config: " + " <- ".join(resolved.sources))
    if resolved.ignored:
        print(f"config: ignored (keys of the original code that this code does not use): "
              f"{', '.join(resolved.ignored)}")
    print(dump(resolved.cfg))
    return resolved


def train_main(spec: DatasetSpec, argv: list[str] | None = None) -> None:
    p = _parser(spec, "train")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--resume", action="store_true", help="continue from model_dir/<mt>_last.pth")
    args = p.parse_args(argv)
    if int(os.environ.get("RANK", "0")) > 0:  # torchrun: only rank 0 talks; errors still reach stderr
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the life of the process

    def run(a: argparse.Namespace) -> None:
        train(spec, _config(spec, a).cfg, a.mt, select_device(a.card_id), a.seed, a.resume)

    _run(run, args)


def test_main(spec: DatasetSpec, argv: list[str] | None = None) -> None:
    p = _parser(spec, "test")
    which = p.add_mutually_exclusive_group()
    which.add_argument("-d", "--dev", action="store_true", help="evaluate on the development test set (labels known)"
                       + (" (the default)" if spec.default_dev else ""))
    which.add_argument("-e", "--eval", action="store_true", help="score the evaluation test set"
                       + ("" if spec.default_dev else " (the default)"))
    p.add_argument("--ground-truth", metavar="DIR", help="folder of the released ground_truth_<mt>_..._test.csv "
                   "files: evaluate the evaluation test set with them")
    if spec.has_domains:
        p.add_argument("--ground-truth-domain", metavar="DIR", help="folder of the domain files "
                       "(default: ground_truth_domain/ beside --ground-truth)")
    args = p.parse_args(argv)
    args.dev = (args.dev or (spec.default_dev and not args.eval)) and not args.ground_truth

    def run(a: argparse.Namespace) -> None:
        resolved = _config(spec, a)
        device = select_device(a.card_id)
        model = load_trained(spec, resolved, a.mt, device)
        cfg = model.cfg
        clips = spec.test_clips(cfg, a.mt, a.dev, model.train_clips)
        if a.ground_truth:
            clips = attach_ground_truth(spec, a.mt, clips, a.ground_truth, getattr(a, "ground_truth_domain", None))
            print(f"ground truth: labels of {len(clips)} evaluation test clips from {a.ground_truth}")
        labelled = a.dev or bool(a.ground_truth)
        part = "dev" if a.dev else "eval"
        test_specs = model.scaled(features(spec, cfg, a.mt, clips, f"test_{part}"))
        print(f"scoring {len(clips)} {part} test clips with all 19 metrics")
        scores = score_clips(model.netG, model.netD, model.train_specs, model.train_clips, test_specs, cfg, device)

        chosen = cfg["detect"]["metric"] or model.state.get("metric")
        out = Path(cfg["result_dir"]) / a.mt / ("" if a.dev else "eval")
        print(f"wrote {write_clip_scores(spec, clips, scores, out)}")
        if labelled:
            results = evaluate_all(spec, clips, scores, cfg["detect"]["p"])
            top = best_metric(spec, results)
            print(table(spec, top, *results[top], "best metric on this test set"))
            if chosen:
                chosen = resolve_metric(spec, chosen)
                print(table(spec, chosen, *results[chosen], "configured metric"))
            chosen = chosen or top
            for f in write_results(spec, results, out):
                print(f"wrote {f}")
        if not chosen:
            raise AeganError("no metric to write scores with: set detect.metric (e.g. --set detect.metric=D_lof)")
        chosen = resolve_metric(spec, chosen)
        rule = decision_rule(model, spec, cfg, chosen, device)
        decisions = decide(scores[chosen], rule["threshold"])
        detect_dir = Path(cfg["detect_dir"])
        n = len(write_scores(spec, a.mt, clips, np.asarray(scores[chosen]), detect_dir))
        write_scores(spec, a.mt, clips, decisions, detect_dir, "decision_result")
        print(f"wrote {n} anomaly score and {n} decision files ({chosen}, threshold {rule['threshold']:.6g}) "
              f"to {detect_dir}")
        if labelled:
            rows, summary = decision_metrics(clips, decisions, spec.group_name)
            print(decision_table(spec, rows, summary))
            print(f"wrote {write_decision_metrics(spec, rows, summary, out)}")

    _run(run, args)


def loc_main(spec: DatasetSpec, argv: list[str] | None = None) -> None:
    p = _parser(spec, "loc")
    p.add_argument("--map", choices=("recon", "residual"), default="recon",
                   help="recon: |reconstruction - normal average| (the paper's); residual: |x - G(x)|")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="draw only the first N dev test clips")
    p.add_argument("--top", type=int, default=4, metavar="K", help="clips in the summary figure (highest scores)")
    args = p.parse_args(argv)

    def run(a: argparse.Namespace) -> None:
        from .localization import draw_maps  # matplotlib: only this command needs it

        if a.limit is not None and a.limit < 1 or a.top < 1:
            raise AeganError("--limit and --top must be at least 1")
        resolved = _config(spec, a)
        device = select_device(a.card_id)
        model = load_trained(spec, resolved, a.mt, device)
        cfg = model.cfg
        clips = spec.test_clips(cfg, a.mt, True, model.train_clips)
        specs = model.scaled(features(spec, cfg, a.mt, clips, "test_dev"))
        metric = resolve_metric(spec, cfg["detect"]["metric"] or model.state.get("metric") or "G_x_2_sum")
        scores = score_clips(model.netG, model.netD, model.train_specs, model.train_clips, specs, cfg, device)[metric]
        out = Path(cfg["loc_dir"]) / a.mt
        written = draw_maps(spec, model, clips, specs, scores, metric, cfg["feat"], out, a.map, a.limit, a.top)
        print(f"wrote {written} figures ({a.map} maps) to {out}")

    _run(run, args)
