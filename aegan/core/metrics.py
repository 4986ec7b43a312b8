"""The 19 anomaly scores by name (SPEC section 5) and the one rule for which of them a model's score files use:
what settings, scoring, training and the summaries all need, below all of them."""

from __future__ import annotations

from aegan.core.errors import AeganError

G_DISTS = (("x", "2"), ("x", "1"), ("z", "2"), ("z", "1"), ("z", "cos"))
POOLS = ("sum", "min", "max")
D_METRICS = ("D_maha", "D_knn", "D_lof", "D_cos")


def metric_names() -> list[str]:
    """The 19 metric names in the original's order, critic metrics first: ties go to the earlier one."""
    return list(D_METRICS) + [f"G_{dom}_{dist}_{pool}" for dom, dist in G_DISTS for pool in POOLS]


def resolve_metric(name: str, what: str = "detect.metric") -> str:
    """One of the 19 metric names (`what`: the setting or flag the error names); `_mean`, the paper's DCASE 2020
    spelling, is accepted for `_sum`: the mean over a clip's segments ranks clips like the sum the original computes."""
    names = metric_names()
    if name in names:
        return name
    if name.endswith("_mean") and name[: -len("_mean")] + "_sum" in names:
        return name[: -len("_mean")] + "_sum"
    raise AeganError(f"{what} {name!r} is not one of the 19 metrics: {', '.join(names)}")


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
