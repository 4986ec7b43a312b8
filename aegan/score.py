"""Score new recordings with a trained model.

One row per clip on stdout and in --out (README, "Scoring new recordings"); exit status 1 when some file failed."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import get_args

from aegan.commands.exits import guarded
from aegan.commands.parser import Parser
from aegan.core.errors import AeganError, shown
from aegan.core.files import csv_text, write_text
from aegan.core.metrics import metric_names, resolve_metric
from aegan.core.text import plural
from aegan.detector import MAX_SECONDS, Detector, Result, expand
from aegan.method.device import select_device, tune_allocator
from aegan.settings.schema import Feat
from aegan.store.model_dir import sidecar_of


def rows_csv(results: list[Result], metric: str, all_metrics: bool) -> str:
    """The table of the scored files (the failed ones are named on stderr instead)."""
    names = metric_names() if all_metrics else []
    return csv_text(["file", "metric", "score", "decision", *names],
                    [[r.file, metric, repr(r.score), r.decision, *(repr(r.scores[m]) for m in names)]
                     for r in results if r.error is None])


OUTPUT_SUFFIXES = (".csv", ".tsv", ".txt")


def check_output(out: Path, inputs: list[Path]) -> None:
    """--out must be a new or existing table, never the model, its sidecar or a recording being scored."""
    if out.suffix.lower() not in OUTPUT_SUFFIXES:
        raise AeganError(f"--out {shown(out)}: the rows are a CSV table; name a {', '.join(OUTPUT_SUFFIXES)} file")
    if out.is_dir():
        raise AeganError(f"--out {shown(out)} is a folder; name a .csv file")
    for p in [*inputs, sidecar_of(inputs[0])]:
        if p.exists() and (p.resolve() == out.resolve() or out.exists() and os.path.samefile(p, out)):
            raise AeganError(f"--out {shown(out)} is {shown(p)}, an input of this run: it would be overwritten; "
                             "choose another file")


def said(text: str) -> bool:
    """Print a line; False when stdout is closed (a pipe such as | head ended), which then goes to /dev/null."""
    try:
        print(text, flush=True)
        return True
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's recipe: no error at exit
        return False


def finish(results: list[Result], closed: bool, out: str | None) -> None:
    """The files that failed and a closed stdout, each one line on stderr; exit status 1 for either."""
    failed = [r for r in results if r.error]
    for r in failed:
        print(f"error: {r.error}", file=sys.stderr)
    if closed:
        kept = f"every row is in {out}" if out else "--out FILE.csv keeps every row"
        print(f"error: stdout was closed before the rows were printed in full (a pipe such as | head ended); {kept}",
              file=sys.stderr)
    if failed:
        print(f"error: {len(failed)} of {plural(len(results), 'file')} could not be scored", file=sys.stderr)
    if failed or closed:
        sys.exit(1)


def _parser() -> Parser:
    p = Parser(prog="python -m aegan.score", description=__doc__.split("\n\n")[0])
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="WAV files or folders of them")
    p.add_argument("--model", required=True, help="a checkpoint (ours, or the original's with its .scoring.pt)")
    p.add_argument("--metric", help=f"one of the {len(metric_names())} metrics (default: the model's)")
    p.add_argument("--out", metavar="FILE.csv", help="also write the rows to this CSV file")
    p.add_argument("--all-metrics", action="store_true", help="add every metric's score to every row")
    p.add_argument("--max-seconds", type=float, default=MAX_SECONDS, metavar="S",
                   help=f"refuse recordings longer than this (default {MAX_SECONDS:g}: a clip is scored in one pass, "
                   "its memory grows with its length)")
    p.add_argument("--channel", choices=get_args(Feat.model_fields["channel"].annotation),
                   help="how the clips' channels are read (default and only choice: the model's feat.channel; "
                   "another is refused)")
    p.add_argument("-c", "--card_id", type=int, default=0, help="CUDA device index (CPU when CUDA is absent)")
    p.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    return p


def main(argv: list[str] | None = None) -> None:
    p = _parser()
    args = p.parse_args(argv)
    if not args.max_seconds > 0:
        p.error(f"argument --max-seconds: must be a positive number of seconds, got {args.max_seconds}")
    results: list[Result] = []
    files: list[Path] = []
    closed: list[bool] = []  # stdout was closed (a pipe such as | head ended): the rest goes to /dev/null

    def say(text: str) -> None:
        closed.extend([] if said(text) else [True])

    def run(a: argparse.Namespace) -> None:
        metric = resolve_metric(a.metric, "--metric") if a.metric else None  # named as typed, before any work
        det = Detector.load(a.model, metric, select_device(a.card_id), a.max_seconds, a.channel)
        ignored: list[Path] = []
        files.extend(expand(a.inputs, ignored))
        if ignored:
            names = ", ".join(shown(p) for p in ignored[:3]) + (" ..." if len(ignored) > 3 else "")
            say(f"inputs: ignored {plural(len(ignored), 'file')} of the folders not named .wav: {names}")
        if a.out:
            check_output(Path(a.out), [Path(a.model), *files])
        # before the bar starts on stderr: a console shows the two in order
        say(f"model: {det.model.path} ({det.metric}, threshold {det.threshold:.6g}, clips read as feat.channel="
            f"{det.channels['channel']}); scoring {plural(len(files), 'file')}")
        results.extend(det.scores(files))
        table = rows_csv(results, det.metric, a.all_metrics)
        if a.out:  # before stdout, which a reader may close (| head): the file asked for is never lost with it
            write_text(a.out, table)
        say(table.removesuffix("\n"))
        if a.out:
            say(f"wrote {a.out}")
        finish(results, bool(closed), a.out)

    def interrupted() -> str:
        where = f" to {args.out}" if args.out else ""
        return (f"interrupted after scoring {len(results)} of {plural(len(files), 'file')}; nothing was written"
                f"{where}: rerun the command for all of them")

    tune_allocator()
    guarded(run, args, interrupted)


if __name__ == "__main__":
    main()
