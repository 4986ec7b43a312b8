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
    """One of the 19 metric names; `_mean` is accepted for `_sum` (the paper's DCASE 2020 names: the mean
    over a clip's segments ranks clips like the sum, which the original computes). `what`: the setting or flag
    the name came from, as the user typed it, for the error."""
    names = metric_names()
    if name in names:
        return name
    if name.endswith("_mean") and name[: -len("_mean")] + "_sum" in names:
        return name[: -len("_mean")] + "_sum"
    raise AeganError(f"{what} {name!r} is not one of the 19 metrics: {', '.join(names)}")


# The metric of a model with no labelled test set to choose on and no detect.metric: the metric the paper's
# configurations choose most often (3 of 11).
FALLBACK_METRIC = "D_lof"


def metric_choice(configured: str | None, best_here: str | None = None, selected: str | None = None,
                  selected_by: str = "selected in training") -> tuple[str, str]:
    """THE rule for which metric's scores are written (test.py, loc.py, the Detector, the threshold fitted in
    training), and how it was chosen, in words the summaries show: detect.metric when set; else the best metric on
    the labelled dev test set being scored (as the original's test.py; released evaluation labels evaluate a
    model, they never choose its metric); else the model's own metric (`selected_by` says how training chose it:
    model.training_choice); else FALLBACK_METRIC, "default"."""
    for name, how in zip((configured, best_here, selected, FALLBACK_METRIC),
                         ("detect.metric", "best on this test set", selected_by, "default")):
        if name:
            return resolve_metric(name), how
    raise AssertionError("FALLBACK_METRIC is set")


def choose_metric(configured: str | None, best_here: str | None = None, selected: str | None = None) -> str:
    """The metric of metric_choice."""
    return metric_choice(configured, best_here, selected)[0]
