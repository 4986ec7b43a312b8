"""The table a paper needs: every machine type tested so far, its configured and its best metric, and the
dataset's official score. Each labelled test.py run records its machine type in `result/<dataset>/<mt>/run.json`
(or `<mt>/eval/run.json`) and rewrites `result/<dataset>/summary.csv` and `summary.md` (`summary_eval.*`)
from all the records, so the table is the same whichever order the machine types were tested in."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from .evaluation import Results, Rule
from .files import write_text
from .report import dataset_title


def record_run(out: Path, mt: str, part: str, metric: str, configured: bool, results: Results, rule: Rule,
               model_info: dict) -> Path:
    """run.json: what the summary needs of one test.py run (full-precision values)."""
    top, key = rule.best_metric(results), rule.summary_key
    record = {"machine": mt, "part": part, "metric": metric, "configured": configured,
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


def write_summary(rule: Rule, name: str, result_dir: Path, part: str) -> tuple[Path, Path]:
    """summary.csv / summary.md (summary_eval.* for the evaluation set) over every recorded machine type."""
    records = []
    for mt_dir in sorted(p for p in result_dir.iterdir() if p.is_dir()):
        f = mt_dir / ("run.json" if part == "dev" else "eval/run.json")
        if f.is_file():
            record = json.loads(f.read_text())
            if _own(rule, name, record):
                records.append(record)
            else:
                print(f"summary: left out {f}: a record of {record.get('dataset', 'another dataset')}, not "
                      f"{name} (give each dataset its own result_dir)")
    key = rule.summary_key
    official = rule.official([r["rows"] for r in records])
    cols = ["machine", "metric", "configured", key, "best_metric", f"best_{key}", "paper", "model"]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for r in records:
        w.writerow([r["machine"], r["metric"], r["configured"], repr(r["value"]), r["best_metric"],
                    repr(r["best_value"]), "" if r.get("paper") is None else f"{r['paper']:.2f}", r.get("model", "")])
    w.writerow(["official", "", "", repr(official["official"]), "", "", "", ""])
    stem = "summary" if part == "dev" else "summary_eval"
    csv_path, md_path = result_dir / f"{stem}.csv", result_dir / f"{stem}.md"
    write_text(csv_path, buf.getvalue())
    write_text(md_path, _markdown(key, name, records, official, part))
    return csv_path, md_path


def _pct(v) -> str:
    return "nan" if v is None or np.isnan(v) else f"{100 * v:.2f}"


def _markdown(key: str, name: str, records: list[dict], official: dict, part: str) -> str:
    title = next((r["title"] for r in records if r.get("title")), dataset_title(name, {}))
    lines = [f"# {title}: {key} (%) per machine type, {part} test set", "",
             f"| machine | metric | {key} | best metric | best {key} | paper |", "|---|---|---|---|---|---|"]
    for r in records:
        how = "" if r["configured"] else " (best)"
        paper = "-" if r.get("paper") is None else f"{r['paper']:.2f}"
        lines.append(f"| {r['machine']} | {r['metric']}{how} | {_pct(r['value'])} | {r['best_metric']} | "
                     f"{_pct(r['best_value'])} | {paper} |")
    parts = ", ".join(f"{k} {_pct(v)}" for k, v in official.items() if k != "official")
    n = f"{len(records)} machine type{'s' if len(records) != 1 else ''}"
    lines += ["", f"**Official score** (the challenge's rule over the {n} above, each with its metric): "
              f"{_pct(official['official'])} ({parts}).", "",
              "A machine type's metric is its configured detect.metric, else the best on this test set (marked): "
              "the best metric and, in training, the epoch are chosen on the labelled test set, as in the paper."]
    return "\n".join(lines) + "\n"
