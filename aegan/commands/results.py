"""Tables on the console and the CSV files users and the official evaluators read."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from aegan.core.files import csv_text, write_text
from aegan.core.text import pct
from aegan.data.clips import Clip
from aegan.scoring.evaluation import Rule


def _fmt(v: float) -> str:
    return f"{pct(v):>6}"


def fraction(column: str) -> str:
    """The header of a full-precision column that holds a fraction, not a percentage: `hmean_fraction`."""
    return f"{column}_fraction"


def dataset_title(spec_name: str, cfg: dict) -> str:
    """How pictures and summaries name the dataset: "DCASE 2022", and for the first-shot folder its year; with
    clips of several channels, how the model read them ("DCASE 2026, near channel")."""
    year = cfg.get("year") if isinstance(cfg, dict) else None
    name = f"DCASE {year}" if year else spec_name.upper().replace("DCASE", "DCASE ")
    label = channel_label(cfg)
    return f"{name}, {label}" if label else name


def channel_label(cfg: dict) -> str:
    """feat.channel in words for clips of several channels ("near channel"); "" for one-channel clips."""
    feat = cfg.get("feat") if isinstance(cfg, dict) else None
    if not isinstance(feat, dict) or feat.get("channels", 1) == 1:
        return ""
    channel = feat.get("channel", "mean")
    if channel == "subtract":
        return f"near - {feat.get('far_share', 1.0):g} x far channel (mel power)"
    return {"mean": "mean of the channels"}.get(channel, f"{channel} channel")


def table(rule: Rule, metric: str, rows: list[dict], summary: dict, title: str = "") -> str:
    """Per-group table (values in %), then the machine-type summary line(s)."""
    cols, group = rule.row_columns, rule.group
    head = f"{group:>8}  " + "  ".join(f"{c:>10}" for c in cols)
    lines = [f"{metric}{'  (' + title + ')' if title else ''}", head]
    for r in rows:
        lines.append(f"{r[group]:>8}  " + "  ".join(f"{_fmt(r[c]):>10}" for c in cols))
    lines.append(f"{rule.aggregate:>8}  " + "  ".join(f"{_fmt(summary[c]):>10}" for c in cols))
    lines.append(f"{rule.summary_label}: {_fmt(summary[rule.summary_key]).strip()}")
    undefined = [r[group] for r in rows if any(np.isnan(r[c]) for c in cols)]
    if undefined:
        lines.append(f"nan: {group} {', '.join(undefined)} has test clips of one class only; AUC is "
                     "undefined there and left out of the summary")
    return "\n".join(lines)


def write_results(rule: Rule, results: dict[str, tuple[list[dict], dict]], out_dir: Path) -> list[Path]:
    """all_metrics.csv (machine-type summary per metric) and per_<group>.csv: full-precision fractions, for programs."""
    summary_rows = [[m] + [repr(float(s[c])) for c in rule.summary_columns] for m, (_, s) in results.items()]
    group_rows = [[m, r[rule.group]] + [repr(float(r[c])) for c in rule.row_columns]
                  for m, (rows, _) in results.items() for r in rows]
    a = out_dir / "all_metrics.csv"
    b = out_dir / f"per_{rule.group}.csv"
    write_text(a, csv_text(["metric", *map(fraction, rule.summary_columns)], summary_rows))
    write_text(b, csv_text(["metric", rule.group, *map(fraction, rule.row_columns)], group_rows))
    return [a, b]


def write_clip_scores(group: str, clips: list[Clip], scores: dict[str, np.ndarray], out_dir: Path) -> Path:
    """clip_scores.csv: every clip's scores of every metric at full precision, with its section/ID, domain and label."""
    names = list(scores)
    rows = [[c.path.name, c.group, c.domain or "", "" if c.label is None else c.label]
            + [repr(float(scores[m][i])) for m in names] for i, c in enumerate(clips)]
    path = out_dir / "clip_scores.csv"
    write_text(path, csv_text(["file", group, "domain", "label", *names], rows))
    return path


def score_files(rule: Rule, mt: str, clips: list[Clip], values: np.ndarray, out_dir: Path,
                kind: str = "anomaly_score") -> dict[Path, str]:
    """Official submission files (path -> text) per group: anomaly scores, or 0/1 decisions (kind="decision_result")."""
    files = {}
    fmt = (lambda v: repr(float(v))) if kind == "anomaly_score" else (lambda v: str(int(v)))
    for g in sorted({c.group for c in clips}):
        rows = [[c.path.name, fmt(v)] for c, v in zip(clips, values) if c.group == g]
        files[out_dir / rule.score_name(mt, g, kind)] = csv_text([], rows)
    return files


DECISION_COLUMNS = ("precision", "recall", "F1")


def decision_table(group: str, rows: list[dict], summary: dict, metric: str) -> str:
    lines = [f"decisions (the threshold on {metric}, the metric of the score files)",
             f"{group:>8}  {'domain':>8}  " + "  ".join(f"{c:>10}" for c in DECISION_COLUMNS)]
    for r in rows:
        lines.append(f"{r[group]:>8}  {r['domain']:>8}  "
                     + "  ".join(f"{_fmt(r[c]):>10}" for c in DECISION_COLUMNS))
    lines.append(f"{'hmean':>8}  {'':>8}  " + "  ".join(f"{_fmt(summary[c]):>10}" for c in DECISION_COLUMNS))
    return "\n".join(lines)


def write_decision_metrics(group: str, rows: list[dict], summary: dict, out_dir: Path) -> Path:
    """decision_metrics.csv: precision, recall, F1 per group and domain, then their harmonic means (fractions)."""
    body = [[r[group], r["domain"]] + [repr(float(r[c])) for c in DECISION_COLUMNS] for r in rows]
    # the hmean floors values at machine epsilon (the official evaluator's rule): a 0 comes out as ~3e-16
    body.append(["hmean", ""] + [repr(0.0 if summary[c] < 1e-12 else float(summary[c])) for c in DECISION_COLUMNS])
    path = out_dir / "decision_metrics.csv"
    write_text(path, csv_text([group, "domain", *map(fraction, DECISION_COLUMNS)], body))
    return path
