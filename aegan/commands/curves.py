"""Training as curves, from a run's history: the figure train.py writes when a run finishes, and the one of a whole
table (aegan.reproduce), each machine type's per-epoch value over its seeds."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display needed

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from aegan.commands.plots import save_png  # noqa: E402
from aegan.core.metrics import selecting_names  # noqa: E402
from aegan.core.text import plural  # noqa: E402
from aegan.method import steps  # noqa: E402

CRITIC, GENERATOR = steps.terms(steps.CRITIC), steps.terms(steps.GENERATOR)


def _series(history: list[dict], key: str) -> tuple[list[int], list[float]]:
    rows = [h for h in history if key in h]
    return [h["epoch"] for h in rows], [h[key] for h in rows]


def training_curves(path: Path, history: list[dict], best: dict, key: str, paper: float | None, title: str) -> Path:
    """The critic's and the generator's loss terms, and with a labelled dev test set the selected metric's `key` per
    epoch, with the best of the selecting metrics, the selected epoch and the paper's value."""
    evaluated = any("values" in h for h in history)
    fig, axes = plt.subplots(3 if evaluated else 2, 1, figsize=(8, 8.5 if evaluated else 6), sharex=True)
    for ax, terms, name in ((axes[0], CRITIC, "critic"), (axes[1], GENERATOR, "generator")):
        for term in terms:
            ax.plot(*_series(history, term), marker=".", label=term)
        ax.set_ylabel(f"{name} (epoch mean)", fontsize=8)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    if all(v > 0 for t in GENERATOR for v in _series(history, t)[1]):
        axes[1].set_yscale("log")
    axes[0].set_title("loss terms and the Wasserstein estimate (wdist)", fontsize=9)
    if evaluated:
        ax = axes[2]
        epochs = [h["epoch"] for h in history if "values" in h]
        ax.plot(epochs, [100 * h["values"][best["metric"]] for h in history if "values" in h], marker=".",
                color="tab:blue", label=f"{best['metric']} (the selected metric)")
        at, top = _series(history, "best_value")
        ax.plot(at, [100 * v for v in top], color="grey", lw=0.8, ls=":",
                label=f"best of the {len(selecting_names())} metrics")
        ax.axvline(best["epoch"], color="crimson", lw=1, label=f"selected: epoch {best['epoch']}")
        if paper is not None:
            ax.axhline(paper, color="black", lw=1, ls="--", label=f"the paper: {paper:.2f}")
        ax.set_ylabel(f"{key} (%), dev test set", fontsize=8)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
        ax.set_title(f"{key} per epoch", fontsize=9)
    _epoch_axis(axes[-1], max(h["epoch"] for h in history))
    chosen = "" if math.isnan(best["value"]) else f", {key} {100 * best['value']:.2f}"
    fig.suptitle(f"{title}\nselected: epoch {best['epoch']}, {best['metric']}{chosen}", fontsize=10)
    fig.tight_layout()
    return save_png(fig, path)


def table_curves(path: Path, curves: dict[str, tuple[str, list[list[float]], float | None]], key: str,
                 title: str) -> Path:
    return save_png(table_figure(curves, key, title), path)


def table_figure(curves: dict[str, tuple[str, list[list[float]], float | None]], key: str, title: str):
    """{mt: (what is drawn, per seed its per-epoch values in %, the paper's value)}: seeds' mean and range."""
    n = len(curves)
    cols = min(3, n)
    fig, axes = plt.subplots(-(-n // cols), cols, figsize=(4.2 * cols, 3.2 * -(-n // cols)), squeeze=False)
    for ax, (mt, (what, runs, paper)) in zip(axes.flat, curves.items()):
        length = min(len(r) for r in runs)
        values = np.array([r[:length] for r in runs])
        epochs = np.arange(1, length + 1)
        if len(runs) > 1:
            ax.fill_between(epochs, values.min(0), values.max(0), alpha=0.25,
                            label=f"range of {plural(len(runs), 'seed')}")
        ax.plot(epochs, values.mean(0), marker=".", label="mean" if len(runs) > 1 else "1 seed")
        if paper is not None:
            ax.axhline(paper, color="black", lw=1, ls="--", label=f"the paper: {paper:.2f}")
        ax.set_title(f"{mt}: {what}", fontsize=9)
        _epoch_axis(ax, length)
        ax.set_ylabel(f"{key} (%)", fontsize=8)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    fig.suptitle(textwrap.fill(title, int(13 * 4.2 * cols)), fontsize=10)  # about 13 characters an inch
    fig.tight_layout()
    return fig


def _epoch_axis(ax, epochs: int) -> None:
    """Whole epochs 1..epochs on the x-axis (a run of one epoch too)."""
    ax.set_xlim(0.5, epochs + 0.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    ax.set_xlabel("epoch", fontsize=8)
