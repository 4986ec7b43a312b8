"""The summary across machine types: each labelled test.py run records its machine type; the table and the
dataset's official score come from all records (DCASE 2022: harmonic mean of every machine type's sections'
AUC_source, AUC_target and pAUC; DCASE 2020: AUC and pAUC averaged)."""

import csv
import shutil
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
from scipy.stats import hmean

from aegan.commands import curves, plots
from aegan.commands.localization import summary_layout
from aegan.commands.results import dataset_title, decision_table, write_decision_metrics
from aegan.commands.summary import record_run, write_summary
from aegan.data.clips import Clip
from aegan.scoring.evaluation import IDS, SECTIONS, decision_metrics
from conftest import ROOT, run_script


def _results(key, rows, summary):
    return {"G_x_2_sum": (rows, summary), "D_lof": (rows, {**summary, key: summary[key] / 2})}


def test_dcase2022_official_score_is_the_harmonic_mean_of_everything(tmp_path):
    a = [{"section": "00", "AUC_source": 0.9, "AUC_target": 0.6, "pAUC": 0.55}]
    b = [{"section": "00", "AUC_source": 0.7, "AUC_target": 0.8, "pAUC": 0.5},
         {"section": "01", "AUC_source": 0.65, "AUC_target": 0.75, "pAUC": 0.52}]
    for mt, rows in (("fan", a), ("valve", b)):
        summ = {"hmean": hmean([r[k] for r in rows for k in ("AUC_source", "AUC_target", "pAUC")])}
        record_run(tmp_path / mt, mt, "dev", "G_x_2_sum", "detect.metric", _results("hmean", rows, summ), SECTIONS,
                   {"paper": 65.83 if mt == "fan" else None})
    csv_path, md = write_summary(SECTIONS, "dcase2022", tmp_path, "dev")
    rows = list(csv.DictReader(csv_path.open()))
    assert [r["machine"] for r in rows] == ["fan", "valve", "official"] and rows[0]["best_metric"] == "G_x_2_sum"
    everything = [r[k] for r in a + b for k in ("AUC_source", "AUC_target", "pAUC")]
    assert rows[2]["hmean"] == f"{100 * hmean(everything):.2f}"  # percent, as the paper's number beside it
    assert "| fan | G_x_2_sum (detect.metric) | " in md.read_text() and "| 65.83 |" in md.read_text()


def test_dcase2020_official_score_averages_auc_and_pauc(tmp_path):
    a = [{"id": "00", "AUC": 0.9, "pAUC": 0.7}, {"id": "02", "AUC": 0.8, "pAUC": float("nan")}]
    b = [{"id": "01", "AUC": 0.6, "pAUC": 0.5}]
    for mt, rows in (("fan", a), ("pump", b)):
        record_run(tmp_path / mt, mt, "dev", "G_x_2_sum", "best on this test set",
                   _results("average", rows, {"average": 0.7}), IDS, {})
    rows = list(csv.DictReader(write_summary(IDS, "dcase2020", tmp_path, "dev")[0].open()))
    auc, pauc = np.mean([0.85, 0.6]), np.mean([0.7, 0.5])  # an undefined (nan) ID value is left out
    assert rows[-1]["average"] == f"{100 * (auc + pauc) / 2:.2f}"


def test_records_of_another_dataset_are_left_out(tmp_path, capsys):
    """DCASE 2020 and 2022 sharing a result_dir: each summary keeps to its own records (it stopped with
    KeyError 'AUC' when the other dataset's run.json was there)."""
    rows22 = [{"section": "00", "AUC_source": 0.9, "AUC_target": 0.6, "pAUC": 0.55}]
    rows20 = [{"id": "00", "AUC": 0.9, "pAUC": 0.7}]
    record_run(tmp_path / "fan", "fan", "dev", "G_x_2_sum", "detect.metric", _results("hmean", rows22, {"hmean": 0.6}),
               SECTIONS, {"dataset": "dcase2022"})
    record_run(tmp_path / "pump", "pump", "dev", "D_lof", "detect.metric",
               _results("average", rows20, {"average": 0.8}), IDS, {"dataset": "dcase2020"})
    rows = list(csv.DictReader(write_summary(IDS, "dcase2020", tmp_path, "dev")[0].open()))
    assert [r["machine"] for r in rows] == ["pump", "official"]
    assert "left out" in capsys.readouterr().out
    rows = list(csv.DictReader(write_summary(SECTIONS, "dcase2022", tmp_path, "dev")[0].open()))
    assert [r["machine"] for r in rows] == ["fan", "official"]


def test_first_shot_summary_names_the_year(tmp_path):
    rows = [{"section": "00", "AUC_source": 0.9, "AUC_target": 0.6, "pAUC": 0.55}]
    record_run(tmp_path / "fan", "fan", "dev", "G_x_2_sum", "detect.metric", _results("hmean", rows, {"hmean": 0.6}),
               SECTIONS, {"dataset": "firstshot", "title": dataset_title("firstshot", {"year": 2025})})
    md = write_summary(SECTIONS, "firstshot", tmp_path, "dev")[1].read_text()
    assert md.startswith("# DCASE 2025: hmean") and "firstshot" not in md
    assert dataset_title("dcase2020", {}) == "DCASE 2020"


def test_zero_decision_hmean_is_written_as_zero(tmp_path):
    """Every decision wrong: precision, recall and F1 are 0; their hmean (floored at machine epsilon, the
    evaluator's rule) is written 0.0, not 3.3e-16, and shown 0.00."""
    clips = [Clip(Path(f"{i}.wav"), "00", "source", i % 2) for i in range(4)]
    rows, summary = decision_metrics(clips, np.array([1 - c.label for c in clips]), "section")
    assert 0 < summary["F1"] < 1e-12  # the floored hmean
    body = list(csv.reader(write_decision_metrics("section", rows, summary, tmp_path).open()))
    assert body[-1] == ["hmean", "", "0.0", "0.0", "0.0"]
    assert decision_table("section", rows, summary, "D_lof").splitlines()[-1].split()[1:] == ["0.00", "0.00", "0.00"]


def _clips20():
    return [Clip(Path(f"{g}_{i}.wav"), g, None, i % 2) for g in ("00", "02", "04") for i in range(6)]


def test_roc_legend_gives_auc_and_the_tables_pauc():
    clips = _clips20()
    scores = np.array([i + (3 * c.label) for i, c in enumerate(clips)], dtype=float)
    fig = plots.roc_figure("id", clips, scores, "D_lof", 0.1, "fan (DCASE 2020, dev test set)")
    rows, _ = IDS.evaluate(clips, scores, 0.1)  # the table's numbers
    assert len(fig.axes) == len(rows) == 3  # one panel per machine ID
    for ax, row in zip(fig.axes, rows):
        texts = [t.get_text() for t in ax.get_legend().get_texts()]
        assert f"all clips: AUC {100 * row['AUC']:.2f}, pAUC {100 * row['pAUC']:.2f}" in texts  # percent, as the tables
        assert "pAUC range (FPR <= 0.1)" in texts
    plt.close(fig)


def test_dcase2020_embedding_map_colours_each_machine_id():
    clips = _clips20()
    rng = np.random.default_rng(0)
    fig = plots.embedding_figure(rng.normal(size=(6, 8)), clips[:6], rng.normal(size=(18, 8)), clips, "t")
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert {"test ID 00 normal", "test ID 02 anomalous", "test ID 04 normal"} <= set(legend)
    colours = {tuple(np.round(c.get_edgecolor()[0][:3], 3)) for c in fig.axes[0].collections
               if "test" in c.get_label() and "normal" in c.get_label()}
    assert len(colours) == 3  # one per ID
    plt.close(fig)


def test_localization_summary_has_a_title_and_a_time_axis():
    maps = [(f"clip{i}.wav  G_x_2_sum = 1", np.random.default_rng(i).random((32, 40))) for i in range(3)]
    fig = summary_layout(maps, 16000, 512, "localization maps of the 3 dev test clips with the highest G_x_2_sum")
    assert fig._suptitle.get_text().startswith("localization maps of the 3")
    assert fig.axes[2].get_xlabel() == "Time (s)" and fig.axes[2].get_title() == "clip2.wav  G_x_2_sum = 1"
    plt.close(fig)


@pytest.mark.slow
def test_demo_ends_by_tying_the_selected_model_to_the_written_files(tmp_path, trained2022, capsys):
    """The demo's last lines: training's selection (best of 19 metrics, on test labels) and the metric the
    written files use, each labelled, so that two different numbers on screen are not a contradiction."""
    import importlib.util

    out = tmp_path / "out"
    shutil.copytree(trained2022[0], out, ignore=shutil.ignore_patterns("result", "detect"))
    sets = [x.replace(str(trained2022[0]), str(out)) for x in trained2022[1]]  # every output in the copy
    r = run_script("dcase2022/test.py", "--mt", "fan", "-d", "--no-plots", *sets)
    assert r.returncode == 0, r.stderr[-2000:]
    spec = importlib.util.spec_from_file_location("demo_run", ROOT / "demo" / "run.py")
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    capsys.readouterr()
    demo.explain(out, "fan")
    first, second = capsys.readouterr().out.splitlines()
    assert first.startswith("demo: training kept epoch ") and "chosen on its labels" in first
    row = next(x for x in csv.DictReader((out / "result" / "summary.csv").open()) if x["machine"] == "fan")
    assert f"use {row['metric']}, the configured detect.metric" in second
    assert f"hmean {row['hmean']} % on the dev test set" in second and "official score" in second


def _clips22():
    """Two sections, each with source and target normal clips and anomalies of both domains."""
    return [Clip(Path(f"{g}_{d}_{i}.wav"), g, d, i % 2) for g in ("00", "01") for d in ("source", "target")
            for i in range(8)]


def test_roc_band_belongs_to_a_drawn_curve_with_the_tables_pauc():
    """The shaded band is the pAUC's FPR range, and the pAUC it gives is that of a curve on the panel: the one of
    all the section's clips (both domains), drawn beside each domain's own curve."""
    clips = _clips22()
    rng = np.random.default_rng(1)
    scores = np.array([rng.normal() + 2 * c.label + (c.domain == "target") for c in clips])
    fig = plots.roc_figure("section", clips, scores, "D_lof", 0.1, "fan (DCASE 2022, dev test set)")
    rows, _ = SECTIONS.evaluate(clips, scores, 0.1)
    for ax, row in zip(fig.axes, rows):
        lines = {ln.get_label(): ln for ln in ax.get_lines()}
        assert f"source: AUC {100 * row['AUC_source']:.2f}" in lines and f"target: AUC {100 * row['AUC_target']:.2f}" \
            in lines
        pooled = lines[f"all clips: pAUC {100 * row['pAUC']:.2f}"]
        assert len(pooled.get_xdata()) > 2  # a real curve, not a marker
        assert "pAUC range (FPR <= 0.1)" in [t.get_text() for t in ax.get_legend().get_texts()]
    plt.close(fig)


def test_pca_axes_give_their_explained_variance():
    rng = np.random.default_rng(2)
    train = rng.normal(size=(20, 6)) * np.array([5, 2, 1, 1, 1, 1])
    test = rng.normal(size=(10, 6))
    clips = _clips20()  # 18 clips of three machine IDs
    fig = plots.embedding_figure(train, [clips[i % 18] for i in range(20)], test, clips[:10], "t")
    both = np.concatenate([train, test])
    var = np.linalg.svd(both - both.mean(0), compute_uv=False) ** 2
    share = 100 * var / var.sum()
    ax = fig.axes[0]
    assert ax.get_xlabel() == f"PC1 ({share[0]:.1f}% of the variance)"
    assert ax.get_ylabel() == f"PC2 ({share[1]:.1f}% of the variance)"
    plt.close(fig)


def _threshold_drawn(ax) -> str:
    """How a panel shows the threshold: its line, or the arrow to it with its value."""
    if any(ln.get_linestyle() == "--" for ln in ax.get_lines()):
        return "line"
    (arrow,) = [t.get_text() for t in ax.texts]
    return arrow


def test_each_score_panel_has_the_range_of_its_own_clips():
    """Source and target scores far apart, the threshold among the source clips: each panel's x-range is its own
    clips' (the threshold's line where it lies near them), so that neither domain is squeezed into a corner of a
    shared range; a panel whose clips lie far from the threshold points to it with an arrow and its value."""
    clips = _clips22()
    scores = np.array([(0 if c.domain == "source" else 100) + c.label + 0.1 * i for i, c in enumerate(clips)])
    threshold = 0.5
    fig = plots.score_figure("section", clips, scores, "G_x_2_sum", threshold, "t")
    shown = {}
    for ax in fig.axes:
        g, d = ax.get_title().replace("section ", "").split(" (")[0].split(", ")
        own = [s for c, s in zip(clips, scores) if c.group == g and c.domain == d]
        shown[g, d] = _threshold_drawn(ax)
        drawn = own + ([threshold] if shown[g, d] == "line" else [])
        lo, hi = ax.get_xlim()
        span = max(drawn) - min(drawn)
        assert min(drawn) - 0.1 * span <= lo <= min(drawn) and max(drawn) <= hi <= max(drawn) + 0.1 * span, \
            ax.get_title()
    assert shown["00", "source"] == "line"  # its clips score 0 to 1.4: the line among them
    assert {v for (g, d), v in shown.items() if d == "target"} == {"threshold 0.5"}
    plt.close(fig)


@pytest.mark.parametrize("sections", [1, 3, 7])
def test_figures_are_readable_at_any_section_count(sections):
    """#37: a one-section ROC was 324 px wide with its title cut; legends covered the bars; the clip counts had
    fractional ticks. Now: a minimum width, titles wrapped inside the figure, one legend outside the panels, integer
    count ticks."""
    clips = [Clip(Path(f"{g}_{d}_{i}.wav"), f"{g:02d}", d, i % 2) for g in range(sections)
             for d in ("source", "target") for i in range(6)]
    scores = np.array([c.label + 0.1 * i for i, c in enumerate(clips)])
    title = "fan (DCASE 2022), dev test set, the model of epoch 4 selected on the hmean of all sections' AUCs and pAUC"
    for fig in (plots.score_figure("section", clips, scores, "D_knn", 0.7, title),
                plots.roc_figure("section", clips, scores, "D_knn", 0.1, title)):
        fig.canvas.draw()
        box = fig.bbox
        assert box.width >= plots.MIN_WIDTH * fig.dpi - 1
        text = fig._suptitle.get_window_extent()
        assert box.x0 <= text.x0 and text.x1 <= box.x1 and text.y1 <= box.y1, (text, box)
        plt.close(fig)
    fig = plots.score_figure("section", clips, scores, "D_knn", 0.7, title)
    assert all(ax.get_legend() is None for ax in fig.axes) and len(fig.legends) == 1
    for ax in fig.axes:
        if ax.get_visible():
            assert all(float(t).is_integer() for t in ax.get_yticks()), ax.get_yticks()
    plt.close(fig)


def test_summary_says_how_each_metric_was_chosen(tmp_path):
    """'best' marks only a metric chosen as the best: a first-shot evaluation type's D_lof is the default."""
    rows = [{"section": "00", "AUC_source": 0.9, "AUC_target": 0.6, "pAUC": 0.55}]
    results = {"D_maha": (rows, {"hmean": 0.92}), "D_lof": (rows, {"hmean": 0.6885})}
    record_run(tmp_path / "Polisher" / "eval", "Polisher", "eval", "D_lof", "default", results, SECTIONS, {})
    csv_path, md = write_summary(SECTIONS, "dcase2025", tmp_path, "eval")
    row = next(csv.DictReader(csv_path.open()))
    assert (row["metric"], row["chosen_by"], row["hmean"], row["best_metric"], row["best_hmean"]) == (
        "D_lof", "default", "68.85", "D_maha", "92.00")
    assert "| Polisher | D_lof (default) | 68.85 | D_maha | 92.00 | - |" in md.read_text()
    assert "(best)" not in md.read_text()


@pytest.mark.parametrize("seeds, epochs", [(1, 1), (3, 4)])
def test_the_tables_curves_read_whole_epochs_and_their_title_fits(seeds, epochs):
    """One machine type of one seed and one epoch (a first try of aegan.reproduce): the title inside the figure, the
    epochs whole numbers, no 'range' of one seed."""
    runs = [[80.0 + s + e for e in range(epochs)] for s in range(seeds)]
    title = "dcase2022: hmean (%) per epoch on the labelled dev test set, the mean over seeds and their range"
    fig = curves.table_figure({"fan": ("G_z_cos_min", runs, 65.83)}, "hmean", title)
    fig.canvas.draw()
    box = fig._suptitle.get_window_extent()
    assert box.x0 >= 0 and box.x1 <= fig.bbox.x1 and fig._suptitle.get_text().replace("\n", " ") == title
    ax = fig.axes[0]
    ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    assert ticks and all(t == int(t) and 1 <= t <= epochs for t in ticks)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    drawn = ["1 seed"] if seeds == 1 else ["range of 3 seeds", "mean"]
    assert labels == [*drawn, "the paper: 65.83"]
    plt.close(fig)
