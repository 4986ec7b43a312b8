"""`train.py`, `test.py` and `loc.py` of each dataset folder are thin calls into `train_main` / `test_main` /
`loc_main` here, with the folder's DatasetSpec (and, for test.py, which test set it scores by default)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from aegan import registry
from aegan.commands.exits import guarded
from aegan.commands.parser import Parser
from aegan.commands.results import dataset_title
from aegan.commands.testset import run_test
from aegan.core import files
from aegan.core.errors import AeganError
from aegan.core.text import plural
from aegan.data.clips import DatasetSpec
from aegan.inference.model import model_settings
from aegan.method.device import select_device, tune_allocator
from aegan.settings.checks import unusual
from aegan.settings.layers import Resolved, batch_key, batch_size, dump, load_config
from aegan.store.model_dir import ModelDir
from aegan.training import distributed
from aegan.training.parts import run_settings
from aegan.training.run import train


def _parser(spec: DatasetSpec, what: str) -> argparse.ArgumentParser:
    p = Parser(prog=f"{spec.name}/{what}.py", description=f"AEGAN-AD {what} on {spec.name.upper()} Task 2")
    known = ", ".join(spec.machines) or ("a folder of <dataset_dir>/dev_data/ or eval_data/ (any name: the "
                                          "evaluation types are new)")
    p.add_argument("--mt", required=True, help=f"machine type: {known}")
    p.add_argument("-c", "--card_id", type=int, default=0, help="CUDA device index (CPU when CUDA is absent)")
    p.add_argument("--config", help="YAML file applied on top of the defaults and pretrain/<dataset>/<mt>.yaml")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one setting, e.g. --set train.epoch=3 (repeatable)")
    p.add_argument("--print-config", action="store_true", help="print the settings this command would run with "
                   "(every layer resolved) and stop")
    p.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    return p


def test_interrupted() -> str:
    """test.py's interruption line: whether its score and decision files were published (all or none)."""
    if not files.PUBLISHED:
        return ("interrupted; nothing was published: the score and decision files in detect_dir are the previous "
                "run's, unchanged")
    return (f"interrupted after publishing this run's {plural(len(files.PUBLISHED), 'score and decision file')}; "
            "the tables, summary and pictures after them may be the previous run's: rerun test.py")


def loc_interrupted() -> str:
    pngs = [p for p in files.WRITTEN if p.suffix == ".png"]
    where = f" to {pngs[0].parent}" if pngs else ""
    return (f"interrupted; {plural(len(pngs), 'figure')} of this run were written{where} (the previous run's were "
            "removed first) and the summary figure was not: rerun loc.py for all of them")


def train_interrupted(run_state: Path | None) -> str:
    """train.py's interruption line, true to where it stopped: `run_state` None while the settings were read; the
    run state of the model (absent until an epoch has completed: nothing to resume from)."""
    if run_state is None:
        return "interrupted while reading the settings; nothing was trained: run train.py again"
    if not run_state.exists():
        return ("interrupted before the first epoch completed (while preparing the features or training it); "
                "nothing was trained yet and no checkpoint was written: run train.py again")
    return (f"interrupted; the checkpoints of the last completed epoch are intact in {run_state} (train.py --resume "
            "continues from them)")


def _config(spec: DatasetSpec, args: argparse.Namespace) -> Resolved:
    resolved = load_config(spec.root, args.mt, args.config, args.set)
    spec.check_machine(args.mt, resolved.cfg)
    print("config: " + " <- ".join(resolved.sources))
    channels = registry.channel_settings(registry.of(spec, resolved.cfg), resolved.cfg, resolved.user)
    if channels:
        print(channels)
    if resolved.ignored:
        print(f"config: ignored (keys of the original code that this code does not use): "
              f"{', '.join(resolved.ignored)}")
    return resolved


def train_main(spec: DatasetSpec, argv: list[str] | None = None) -> None:
    p = _parser(spec, "train")
    p.add_argument("--seed", type=int, default=None, help="random seed (default 42; --resume: the run's)")
    p.add_argument("--resume", action="store_true", help="continue from model_dir/<mt>_last.pth, with the run's "
                   "settings")
    args = p.parse_args(argv)
    if args.seed is not None and not 0 <= args.seed < 2**32:  # numpy's seed range
        p.error(f"argument --seed: must be a whole number in [0, 2**32), got {args.seed}")

    def run(a: argparse.Namespace) -> None:
        if distributed.rank() > 0:  # torchrun: only rank 0 talks; errors still reach stderr
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the life of the process
        cfg, seed, state = run_settings(_config(spec, a), a.mt, a.seed, a.resume)
        stage["run_state"] = ModelDir.of(cfg, a.mt).run_state
        if a.print_config:
            print(dump(cfg))
            return
        distributed.check_batch(batch_size(cfg), batch_key(cfg))
        for line in unusual(cfg):
            print(f"warning: {line}", flush=True)
        run = train(spec, cfg, a.mt, select_device(a.card_id), seed, state)
        if run.rank == 0:
            from aegan.commands.curves import training_curves  # matplotlib: only once training is over

            path = Path(cfg["result_dir"]) / run.mt / "training_curves.png"
            training_curves(path, run.progress.history, run.progress.best, run.rule.summary_key, cfg["paper_result"],
                            f"{run.mt} ({dataset_title(spec.name, cfg)}), seed {run.seed}: training")
            print(f"wrote {path}")

    stage: dict[str, Path] = {}
    tune_allocator()
    guarded(run, args, lambda: train_interrupted(stage.get("run_state")))


def test_main(spec: DatasetSpec, argv: list[str] | None = None, default: str = "eval") -> None:
    """`default`: the test set scored without -d/-e, "eval" (the original's DCASE 2022 script) or "dev" (2020's)."""
    if default not in ("dev", "eval"):
        raise ValueError(f"test_main(default=...) is 'dev' or 'eval', not {default!r}")
    p = _parser(spec, "test")
    default_dev = default == "dev"
    which = p.add_mutually_exclusive_group()
    which.add_argument("-d", "--dev", action="store_true", help="evaluate on the development test set (labels known)"
                       + (" (the default)" if default_dev else ""))
    which.add_argument("-e", "--eval", action="store_true", help="score the evaluation test set"
                       + ("" if default_dev else " (the default)"))
    p.add_argument("--ground-truth", metavar="DIR", help="folder of the released ground_truth_<mt>_..._test.csv "
                   "files: evaluate the evaluation test set with them")
    if spec.has_domains:
        p.add_argument("--ground-truth-domain", metavar="DIR", help="folder of the domain files "
                       "(default: ground_truth_domain/ beside --ground-truth)")
    p.add_argument("--no-plots", action="store_true", help="write no pictures (score distributions, ROC, embeddings)")
    p.add_argument("--embedding-map", choices=("pca", "tsne"), default="pca",
                   help="how the critic embeddings are mapped to 2-D in embeddings_<map>.png")
    args = p.parse_args(argv)
    args.dev = (args.dev or (default_dev and not args.eval)) and not args.ground_truth

    def run(a: argparse.Namespace) -> None:
        resolved = _config(spec, a)
        if a.print_config:
            print(dump(model_settings(resolved, a.mt)))
            return
        run_test(spec, resolved, a, select_device(a.card_id))

    tune_allocator()
    guarded(run, args, test_interrupted)


def loc_main(spec: DatasetSpec, argv: list[str] | None = None) -> None:
    p = _parser(spec, "loc")
    p.add_argument("--map", choices=("recon", "residual"), default="recon",
                   help="recon: |reconstruction - normal average| (the paper's); residual: |x - G(x)|")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="draw only the first N dev test clips")
    p.add_argument("--top", type=int, default=4, metavar="K", help="clips in the summary figure (highest scores)")
    args = p.parse_args(argv)

    def run(a: argparse.Namespace) -> None:
        from aegan.commands.localization import run_loc  # matplotlib: only this command needs it

        if a.limit is not None and a.limit < 1 or a.top < 1:
            raise AeganError("--limit and --top must be at least 1")
        resolved = _config(spec, a)
        if a.print_config:
            print(dump(model_settings(resolved, a.mt)))
            return
        run_loc(spec, resolved, a, select_device(a.card_id))

    tune_allocator()
    guarded(run, args, loc_interrupted)
