"""The table a paper needs: each machine type's metrics in percent and the official score. Each labelled test.py run
records its <mt>/run.json and rewrites summary.csv / summary.md from all records: the same in any order of testing."""

from __future__ import annotations

import json
from pathlib import Path

from aegan.commands.results import dataset_title
from aegan.core.errors import AeganError, shown
from aegan.core.files import csv_text, write_text
from aegan.core.metrics import FALLBACK_METRIC
from aegan.core.text import pct, plural
from aegan.scoring.evaluation import Results, Rule


def record_run(out: Path, mt: str, part: str, metric: str, chosen_by: str, results: Results, rule: Rule,
               model_info: dict) -> Path:
    """run.json: what the summary needs of one test.py run (full-precision fractions)."""
    top, key = rule.best_metric(results), rule.summary_key
    record = {"machine": mt, "part": part, "metric": metric, "chosen_by": chosen_by,
              "value": results[metric][1][key], "rows": results[metric][0], "best_metric": top,
              "best_value": results[top][1][key], **model_info}
    path = out / "run.json"
    write_text(path, json.dumps(record, indent=1, default=float))
    return path


def _own(rule: Rule, name: str, record: dict) -> bool:
    """A record of this dataset: its name when it has one (older records have none), and this dataset's columns."""
    rows = record.get("rows")
    return (record.get("dataset", name) == name and isinstance(rows, list)
            and all(isinstance(r, dict) and set(rule.row_columns) <= set(r) for r in rows))


def _records(result_dir: Path, parts: tuple[str, ...]) -> list[tuple[Path, dict]]:
    """(path, record) of every machine type's run.json of these test sets (dev: <mt>/run.json, eval: <mt>/eval/)."""
    if not result_dir.is_dir():
        return []
    out = []
    for mt_dir in sorted(p for p in result_dir.iterdir() if p.is_dir()):
        for part in parts:
            f = mt_dir / ("run.json" if part == "dev" else "eval/run.json")
            if f.is_file():
                try:
                    out.append((f, json.loads(f.read_text())))
                except (OSError, ValueError):
                    raise AeganError(f"{f} is not a readable test.py record: remove it, or rerun test.py for "
                                     f"{mt_dir.name}") from None
    return out


def check_result_dir(rule: Rule, name: str, result_dir: Path) -> None:
    """result_dir holds no other dataset's results, which this run would overwrite (fan is in DCASE 2020 and 2022)."""
    for f, record in _records(result_dir, ("dev", "eval")):
        if not _own(rule, name, record):
            other = record.get("dataset", "another dataset")
            raise AeganError(f"result_dir {shown(result_dir)} holds results of {other} ({f}), not {name}: give each "
                             "dataset its own result_dir")


def write_summary(rule: Rule, name: str, result_dir: Path, part: str) -> tuple[Path, Path]:
    """summary.csv / summary.md (summary_eval.* for the evaluation set) over every recorded machine type."""
    records = []
    for f, record in _records(result_dir, (part,)):
        if _own(rule, name, record):
            records.append(record)
        else:
            print(f"summary: left out {f}: a record of {record.get('dataset', 'another dataset')}, not "
                  f"{name} (give each dataset its own result_dir)")
    key = rule.summary_key
    official = rule.system([r["rows"] for r in records])
    # percentages with two decimals, as the paper's table and summary.md (the paper's values are percentages)
    cols = ["machine", "metric", "chosen_by", key, "best_metric", f"best_{key}", "paper", "model"]
    rows = [[r["machine"], r["metric"], _chosen_by(r), pct(r["value"]), r["best_metric"], pct(r["best_value"]),
             "" if r.get("paper") is None else f"{r['paper']:.2f}", r.get("model", "")] for r in records]
    channels = any(r.get("channel") for r in records)  # clips of several channels: how each model read them
    if channels:
        cols.insert(1, "channel")
        for row, r in zip(rows, records):
            row.insert(1, r.get("channel") or "")
    stem = "summary" if part == "dev" else "summary_eval"
    csv_path, md_path = result_dir / f"{stem}.csv", result_dir / f"{stem}.md"
    official_row = ["official", *[""] * (channels + 2), pct(official["official"]), "", "", "", ""]
    write_text(csv_path, csv_text(cols, [*rows, official_row]))
    write_text(md_path, _markdown(key, name, records, official, part))
    return csv_path, md_path


def _chosen_by(record: dict) -> str:
    """How the record's metric was chosen; records of earlier versions say only whether it was configured."""
    if "chosen_by" in record:
        return record["chosen_by"]
    return "detect.metric" if record.get("configured") else "best on this test set"


def _markdown(key: str, name: str, records: list[dict], official: dict, part: str) -> str:
    title = next((r["title"] for r in records if r.get("title") and not r.get("channel")), dataset_title(name, {}))
    lines = [f"# {title}: {key} (%) per machine type, {part} test set", "",
             f"| machine | metric (chosen by) | {key} | best metric | best {key} | paper |",
             "|---|---|---|---|---|---|"]
    for r in records:
        paper = "-" if r.get("paper") is None else f"{r['paper']:.2f}"
        channel = f" ({r['channel']})" if r.get("channel") else ""
        lines.append(f"| {r['machine']}{channel} | {r['metric']} ({_chosen_by(r)}) | {pct(r['value'])} | "
                     f"{r['best_metric']} | {pct(r['best_value'])} | {paper} |")
    parts = ", ".join(f"{k} {pct(v)}" for k, v in official.items() if k != "official")
    lines += ["", f"**Official score** (the challenge's rule over the {plural(len(records), 'machine type')} above, "
              f"each with its metric): {pct(official['official'])} ({parts}).", ""]
    if part == "dev":
        lines.append("A machine type's metric is the one its score files use: its detect.metric when set, else the "
                     "best on the labelled dev test set being scored, else the one selected in training, else "
                     f"{FALLBACK_METRIC}. The best metric and, in training, the epoch are chosen on the labelled dev "
                     "test set, as in the paper.")
    else:  # the released evaluation labels evaluate, never choose (metrics.metric_choice)
        lines.append("A machine type's metric is the one its score files use: its detect.metric when set, else the "
                     f"one selected in training, else {FALLBACK_METRIC}; the evaluation set's ground truth never "
                     "chooses it. The best metric column is the best on this evaluation set, shown for comparison.")
    return "\n".join(lines) + "\n"
