"""Pictures test.py writes next to its tables: score distributions with the decision threshold, ROC curves per
section or ID, the critic embeddings in 2-D; and every figure's one writer."""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display needed

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from sklearn.decomposition import PCA  # noqa: E402
from sklearn.metrics import roc_auc_score, roc_curve  # noqa: E402

from aegan.core.files import atomic_path  # noqa: E402
from aegan.core.text import pct  # noqa: E402
from aegan.data.clips import Clip  # noqa: E402

COLORS = {"normal": "tab:blue", "anomaly": "tab:red"}
MIN_WIDTH = 6.5  # inches: a figure of one section still holds its title and legend
DOMAIN_COLORS = {"source": "tab:blue", "target": "tab:orange", None: "tab:green"}


def save_png(fig, path: Path, dpi: int = 90, close: bool = True) -> Path:
    """A PNG written atomically, its suptitle and panel titles in its Title and Description chunks (tests read them)."""
    title = fig._suptitle.get_text() if fig._suptitle else ""
    panels = " | ".join(t for t in (ax.get_title() for ax in fig.axes) if t)
    with atomic_path(path) as tmp:  # laid out by tight_layout already: no second layout pass
        fig.savefig(tmp, format="png", dpi=dpi, metadata={"Title": title.replace("\n", " "), "Description": panels})
    if close:
        plt.close(fig)
    return path


def suptitle(fig, text: str, fontsize: float = 10) -> None:
    """The figure's title, each line wrapped to the figure's width (a long title is never cut at the edges)."""
    chars = max(20, int(fig.get_figwidth() * 72 / (0.6 * fontsize)))
    fig.suptitle("\n".join(textwrap.fill(line, chars) for line in text.split("\n")), fontsize=fontsize)


def _off_range(ax, threshold: float, above: bool) -> None:
    """A threshold beyond the drawn range: an arrow at that edge pointing to it, with its value."""
    x = 0.98 if above else 0.02
    ax.annotate(f"threshold {threshold:.4g}", xy=(x, 0.55), xycoords="axes fraction", xytext=(0.5, 0.55),
                textcoords="axes fraction", ha="center", va="center", fontsize=7,
                bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.85},
                arrowprops={"arrowstyle": "->", "color": "black", "lw": 1})


def score_figure(group: str, clips: list[Clip], scores: np.ndarray, metric: str, threshold: float, title: str):
    """Score histograms per section/ID and domain, each on its own clips' range: the domains' scores can lie far apart.
    The threshold is drawn when it lies near the clips, else an arrow points to it; one legend, above the panels."""
    groups = sorted({c.group for c in clips})  # a panel per section and domain (DCASE 2022), per machine ID (2020)
    domains = sorted({c.domain for c in clips if c.domain}, key=lambda d: d != "source") or [None]
    panels = [(g, d) for g in groups for d in domains]
    ncols = 2 if panels[0][1] else min(3, len(panels))
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(max(4.2 * ncols, MIN_WIDTH), 2.8 * nrows + 1.0), squeeze=False)
    for ax, (g, d) in zip(axes.flat, panels):
        here = [(c.label, v) for c, v in zip(clips, scores) if c.group == g and c.domain == d]
        lo, hi = min(v for _, v in here), max(v for _, v in here)
        near = lo - (hi - lo) / 4 <= threshold <= hi + (hi - lo) / 4  # else drawing it would squeeze the clips
        bins = np.histogram_bin_edges([v for _, v in here] + ([threshold] if near else []), bins=30)
        counts = []
        for label, name in ((0, "normal"), (1, "anomaly")):
            s = [v for y, v in here if y == label]
            ax.hist(s, bins=bins, alpha=0.6, color=COLORS[name], histtype="stepfilled", label=name)
            counts.append(f"{len(s)} {name}")
        if near:
            ax.axvline(threshold, color="black", ls="--", lw=1, label="decision threshold")
        else:
            _off_range(ax, threshold, threshold > hi)
        ax.set_title(f"{group} {g}" + (f", {d}" if d else "") + f" ({', '.join(counts)})", fontsize=9)
        ax.set_xlabel(f"{metric} score", fontsize=8)
        ax.set_ylabel("clips", fontsize=8)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # counts of clips
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    legend = [Patch(color=COLORS[n], alpha=0.6, label=n) for n in COLORS]
    legend.append(Line2D([], [], color="black", ls="--", lw=1, label="decision threshold"))
    fig.legend(handles=legend, loc="lower center", ncol=3, fontsize=8, frameon=False)
    suptitle(fig, f"{title}\n{metric} scores of normal and anomalous clips")
    fig.tight_layout(rect=(0, 0.35 / fig.get_figheight(), 1, 1))  # the legend's row below the panels
    return fig


def roc_figure(group: str, clips: list[Clip], scores: np.ndarray, metric: str, max_fpr: float, title: str):
    """ROC per section/ID, with the pAUC's band: a curve per domain (its normal clips against all the section's
    anomalies, the challenge's rule) with its AUC, and the curve of all clips with the pAUC (and AUC if no domains)."""
    groups = sorted({c.group for c in clips})
    ncols = min(4, len(groups))  # rows of at most four: many sections stay readable
    nrows = -(-len(groups) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(max(3.6 * ncols, MIN_WIDTH), 3.8 * nrows + 0.6), squeeze=False)
    for ax in list(axes.flat)[len(groups):]:
        ax.set_visible(False)
    for ax, g in zip(axes.flat, groups):
        members = [(c, v) for c, v in zip(clips, scores) if c.group == g]
        domains = sorted({c.domain for c, _ in members if c.domain}, key=lambda d: d != "source")
        for d in domains:
            sel = [(c.label, v) for c, v in members if c.label == 1 or c.domain == d]
            y, s = np.array([x[0] for x in sel]), np.array([x[1] for x in sel])
            if len(set(y)) < 2:
                continue
            fpr, tpr, _ = roc_curve(y, s)
            ax.plot(fpr, tpr, color=DOMAIN_COLORS[d], label=f"{d}: AUC {pct(roc_auc_score(y, s))}")
        # the pAUC as the tables have it: over every clip of the section/ID, both domains together
        y, s = np.array([c.label for c, _ in members]), np.array([v for _, v in members])
        if len(set(y)) == 2:
            fpr, tpr, _ = roc_curve(y, s)
            auc = "" if domains else f"AUC {pct(roc_auc_score(y, s))}, "
            ax.plot(fpr, tpr, color="black", lw=1.2, ls="--" if domains else "-",
                    label=f"all clips: {auc}pAUC {pct(roc_auc_score(y, s, max_fpr=max_fpr))}")
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
        ax.axvspan(0, max_fpr, color="grey", alpha=0.12, label=f"pAUC range (FPR <= {max_fpr})")
        ax.set_title(f"{group} {g}", fontsize=9)
        ax.set_xlabel("false positive rate", fontsize=8)
        ax.set_ylabel("true positive rate", fontsize=8)
        ax.set_aspect("equal")
        ax.legend(fontsize=7, loc="lower right")
    suptitle(fig, f"{title}\nROC of {metric} (AUC and pAUC in %)")
    fig.tight_layout()
    return fig


def _colouring(clips: list[Clip]):
    """(clip -> (key, colour), key -> legend word): by domain (DCASE 2022 on), else by machine ID (DCASE 2020)."""
    if any(c.domain for c in clips):
        order = sorted({c.domain for c in clips}, key=lambda d: (d is None, d != "source"))
        return (lambda c: (order.index(c.domain), DOMAIN_COLORS[c.domain])), (lambda k: order[k[0]] or "")
    groups = sorted({c.group for c in clips})
    palette = plt.get_cmap("tab10" if len(groups) <= 10 else "tab20")
    return (lambda c: (groups.index(c.group), palette(groups.index(c.group) % palette.N))), \
        (lambda k: f"ID {groups[k[0]]}")


def embedding_figure(train_emb: np.ndarray, train_clips: list[Clip], test_emb: np.ndarray, test_clips: list[Clip],
                     title: str, method: str = "pca"):
    """The critic's clip embeddings in 2-D: training clips as dots, test clips as circles (normal), crosses
    (anomalous) or squares (unknown)."""
    both = np.concatenate([train_emb, test_emb]).astype(np.float64)
    if method == "tsne":
        from sklearn.manifold import TSNE  # seconds to import: only when asked for

        xy = TSNE(2, perplexity=min(30.0, (len(both) - 1) / 3), init="pca", random_state=0).fit_transform(both)
        axis = ["t-SNE 1", "t-SNE 2"]
    else:
        pca = PCA(2, svd_solver="full").fit(both)
        xy = pca.transform(both)
        axis = [f"PC{i + 1} ({100 * r:.1f}% of the variance)" for i, r in enumerate(pca.explained_variance_ratio_)]
    tr, te = xy[:len(train_emb)], xy[len(train_emb):]
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    colour, word = _colouring(train_clips + test_clips)
    for k in sorted({colour(c) for c in train_clips}, key=lambda k: k[0]):
        m = np.array([colour(c) == k for c in train_clips])
        ax.scatter(tr[m, 0], tr[m, 1], s=6, alpha=0.35, color=k[1], label=f"train {word(k)}".strip())
    markers = {0: ("o", "normal"), 1: ("x", "anomalous"), None: ("s", "unlabelled")}
    for k in sorted({colour(c) for c in test_clips}, key=lambda k: k[0]):
        for label, (marker, kind) in markers.items():
            m = np.array([colour(c) == k and c.label == label for c in test_clips])
            if m.any():
                style = {"color": k[1]} if marker == "x" else {"facecolors": "none", "edgecolors": k[1]}
                ax.scatter(te[m, 0], te[m, 1], s=28, marker=marker, linewidths=1, **style,
                           label=f"test {word(k)} {kind}".replace("  ", " "))
    ax.set_xlabel(axis[0])
    ax.set_ylabel(axis[1])
    ax.legend(fontsize=7, markerscale=1.2)
    ax.set_title("\n".join(textwrap.fill(line, 80) for line in
                            f"{title}\ncritic embeddings ({'PCA' if method == 'pca' else 't-SNE'})".split("\n")),
                 fontsize=10)
    fig.tight_layout()
    return fig
