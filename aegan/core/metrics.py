"""The anomaly scores, declared once as data (SPEC section 5), and the one rule for which of them a model's score
files use: what settings, scoring, training, the summaries and the tests all read, below all of them. A new metric
is one more Metric in METRICS (and its computation in aegan/scoring/clip_scores.py); every table, CSV, chart, count
and message follows."""

from __future__ import annotations

from dataclasses import dataclass

from aegan.core.errors import AeganError

CRITIC, GENERATOR = "critic", "generator"  # the families: of the clip's mean critic embedding, of G(x) against x


@dataclass(frozen=True)
class Metric:
    """One anomaly score (higher = more anomalous). `original`: one of the authors' code's scores, which the oracle
    tests compare; `selects`: it takes part in choosing the best metric (training's model selection, the best on a
    test set); a new metric does not unless declared, so that a default run keeps the epoch it keeps today."""

    name: str
    family: str
    how: str
    original: bool = True
    selects: bool = True


G_DISTS = {("x", "2"): "squared L2 of G(x) - x", ("x", "1"): "L1 of G(x) - x",
           ("z", "2"): "squared L2 of Enc(G(x)) - Enc(x)", ("z", "1"): "L1 of Enc(G(x)) - Enc(x)",
           ("z", "cos"): "1 - cosine of Enc(G(x)), Enc(x)"}
POOLS = ("sum", "min", "max")  # over the clip's segments
# The original's order, critic metrics first: it is the table order and the tie-break (ties go to the earlier one).
METRICS: tuple[Metric, ...] = (
    Metric("D_maha", CRITIC, "Mahalanobis distance to the training clips' mean (their inverse covariance)"),
    Metric("D_knn", CRITIC, "cosine distance to the nearest training clip"),
    Metric("D_lof", CRITIC, "local outlier factor among the 4 nearest training clips (cosine)"),
    Metric("D_cos", CRITIC, "cosine distance to the training clips' mean"),
    *(Metric(f"G_{dom}_{dist}_{pool}", GENERATOR, f"{how}, per segment; {pool} over the clip's segments")
      for (dom, dist), how in G_DISTS.items() for pool in POOLS),
)
D_METRICS = tuple(m.name for m in METRICS if m.family == CRITIC)


def metric_names() -> list[str]:
    """Every metric's name in table order."""
    return [m.name for m in METRICS]


def original_names() -> list[str]:
    """The original's metrics, in its order: what the oracle tests and a model file of an earlier version hold."""
    return [m.name for m in METRICS if m.original]


def selecting_names() -> list[str]:
    """The metrics that take part in choosing the best one, in table order (the tie-break)."""
    return [m.name for m in METRICS if m.selects]


def resolve_metric(name: str, what: str = "detect.metric") -> str:
    """One of the metric names (`what`: the setting or flag the error names); `_mean`, the paper's DCASE 2020
    spelling, is accepted for `_sum`: the mean over a clip's segments ranks clips like the sum the original computes."""
    names = metric_names()
    if name in names:
        return name
    if name.endswith("_mean") and name[: -len("_mean")] + "_sum" in names:
        return name[: -len("_mean")] + "_sum"
    raise AeganError(f"{what} {name!r} is not one of the {len(names)} metrics: {', '.join(names)}")


# with no labelled test set to choose on and no detect.metric: the paper's configurations' most frequent (3 of 11)
FALLBACK_METRIC = "D_lof"


def metric_choice(configured: str | None, best_here: str | None = None, selected: str | None = None,
                  selected_by: str = "selected in training") -> tuple[str, str]:
    """THE rule for which metric's scores are written, and how it was chosen in the summaries' words: the first set
    of detect.metric, the best on the labelled dev test set scored (evaluation labels never choose), the model's own
    (chosen `selected_by`), FALLBACK_METRIC."""
    candidates = [(configured, "detect.metric"), (best_here, "best on this test set"), (selected, selected_by),
                  (FALLBACK_METRIC, "default")]
    name, how = next((name, how) for name, how in candidates if name)
    return resolve_metric(name), how
