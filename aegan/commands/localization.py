"""Anomaly localization maps (SPEC section 7): where in time and frequency a clip departs from normal, from its
segments' reconstructions rebuilt to full length. "recon" (the paper's): |recon - mean of the dev training clips|,
both in [0, 1]; "residual" (ours): |x - G(x)|."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display needed

import argparse  # noqa: E402

import librosa  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from aegan.commands.plots import save_png  # noqa: E402
from aegan.commands.results import channel_label  # noqa: E402
from aegan.core.progress import Bar  # noqa: E402
from aegan.core.text import plural  # noqa: E402
from aegan.data.cache import clip_features  # noqa: E402
from aegan.data.clips import Clip, DatasetSpec  # noqa: E402
from aegan.data.segments import clip_segments  # noqa: E402
from aegan.inference.model import Model, prepare  # noqa: E402
from aegan.settings.layers import Resolved, record_settings  # noqa: E402


def overlap_average(segments: torch.Tensor, hop: int) -> torch.Tensor:
    """(S, M, F) segments taken every `hop` frames -> (M, T), T = (S-1)*hop + F: each frame the mean of its segments."""
    s, m, f = segments.shape
    t = (s - 1) * hop + f
    # fold sums overlapping windows in one op: (1, M*F, S) columns -> (1, M, 1, T)
    cols = segments.permute(1, 2, 0).reshape(1, m * f, s)
    total = nn.functional.fold(cols, output_size=(1, t), kernel_size=(1, f), stride=(1, hop))
    count = nn.functional.fold(torch.ones(1, f, s, dtype=segments.dtype), output_size=(1, t), kernel_size=(1, f),
                               stride=(1, hop))
    return (total / count).reshape(m, t)


def maps_and_score(model: Model, specs: torch.Tensor, i: int, metric: str) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Clip i's rebuilt reconstruction and residual |x - G(x)|, each (M, T'), and its `metric` score (test.py's)."""
    feat = model.cfg["feat"]
    scored = model.score(specs[i:i + 1], recon=True, desc=None)
    xh = scored.recon[0]
    x = clip_segments(specs, i, feat["frame_num"], feat["graph_hop_f"], model.device)
    hop = feat["graph_hop_f"]
    residual = (x.float() - xh).abs()
    return (overlap_average(xh[:, 0].cpu(), hop), overlap_average(residual[:, 0].cpu(), hop),
            float(scored.scores[metric][0]))


def to_unit(x: torch.Tensor | np.ndarray):
    """[-1, 1] -> [0, 1]."""
    return (x + 1) / 2


def localization_map(recon: torch.Tensor, normal: torch.Tensor) -> torch.Tensor:
    return (to_unit(recon) - to_unit(normal[:, : recon.shape[1]])).abs()


def _panel(ax, data: np.ndarray, sr: int, hop_length: int, title: str, vmax: float = 1):
    """A mel spectrogram-like map, drawn as an image: librosa's specshow (a mesh) takes five times longer to save."""
    n_mels, frames = data.shape
    img = ax.imshow(data, origin="lower", aspect="auto", cmap="magma", vmin=0, vmax=vmax, interpolation="nearest",
                    extent=(0, frames * hop_length / sr, 0, n_mels))
    hz = librosa.mel_frequencies(n_mels + 2, fmax=sr / 2)[1:-1]  # the bands' centres (Slaney, as the features)
    ticks = np.linspace(0, n_mels - 1, 5).round().astype(int)
    ax.set_yticks(ticks + 0.5, [f"{hz[t]:.0f}" if hz[t] < 1000 else f"{hz[t] / 1000:.1f}k" for t in ticks])
    ax.set_ylabel("Hz (mel scale)", fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.label_outer()
    ax.figure.colorbar(img, ax=ax, format="%.2f")
    return img


# the map panel's title: what each --map draws
MAP_NAMES = {"recon": "localization map: |reconstruction - normal average|",
             "residual": "residual map: |input - reconstruction| / 2"}


class ClipFigure:
    """Three aligned panels and the frame-wise anomaly curve, laid out once and redrawn for every clip: laying out
    axes and colorbars anew for each clip cost more than drawing it."""

    def __init__(self, shape: tuple[int, int], sr: int, hop_length: int, map_name: str):
        self.fig, axes = plt.subplots(4, 1, figsize=(8, 9), sharex=True, gridspec_kw={"height_ratios": [3, 3, 3, 1.4]})
        blank = np.zeros(shape, dtype=np.float32)
        self.top = _panel(axes[0], blank, sr, hop_length, "reconstruction")
        self.normal = _panel(axes[1], blank, sr, hop_length, "normal average (dev training clips)")
        self.map = _panel(axes[2], blank, sr, hop_length, map_name)
        times = librosa.frames_to_time(np.arange(shape[1]), sr=sr, hop_length=hop_length)
        (self.curve,) = axes[3].plot(times, blank.mean(0), color="crimson", lw=1)
        self.curve_ax = axes[3]
        axes[3].set_ylabel("mean per frame", fontsize=8)
        axes[3].set_xlabel("Time (s)")
        self.fig.colorbar(plt.cm.ScalarMappable(), ax=axes[3]).ax.set_visible(False)  # the panels' width
        self.fig.subplots_adjust(top=0.93, bottom=0.07)  # the title just above the panels
        self.title = self.fig.suptitle("", fontsize=10)

    def draw(self, path: Path, top: np.ndarray, normal: np.ndarray, amap: np.ndarray, title: str) -> None:
        self.top.set_data(top)
        self.normal.set_data(normal)
        self.map.set_data(amap)
        self.map.set_clim(0, float(amap.max()) or 1.0)
        self.curve.set_ydata(amap.mean(0))
        self.curve_ax.relim()
        self.curve_ax.autoscale_view()
        self.title.set_text(title)
        save_png(self.fig, path, 80, close=False)


def summary_layout(maps: list[tuple[str, np.ndarray]], sr: int, hop_length: int, title: str = ""):
    """The maps of the k highest-scoring clips, one row each, on one colour scale, under `title`."""
    fig, axes = plt.subplots(len(maps), 1, figsize=(8, 2.2 * len(maps) + 0.9), squeeze=False)
    vmax = max(float(m.max()) for _, m in maps) or 1.0
    for ax, (name, amap) in zip(axes[:, 0], maps):
        _panel(ax, amap, sr, hop_length, name, vmax)
    axes[-1, 0].set_xlabel("Time (s)")
    fig.suptitle(title or f"localization maps of the {len(maps)} highest-scoring clips", fontsize=10)
    fig.tight_layout()
    return fig


def figure_name(clip: Clip, group: str) -> str:
    """A clip's figure: its group, domain (when it has one), true label and own number, e.g.
    sec01_source_true1_0003.png (DCASE 2022 sections) or id02_true1_00000012.png (DCASE 2020 machine IDs)."""
    domain = f"_{clip.domain}" if clip.domain else ""
    return f"{'sec' if group == 'section' else group}{clip.group}{domain}_true{clip.label}_{clip.number}.png"


def run_loc(spec: DatasetSpec, resolved: Resolved, args: argparse.Namespace, device: torch.device) -> None:
    """loc.py: one figure per dev test clip under <loc_dir>/<mt>/, and the summary of the --top highest-scoring.
    Earlier figures there are removed first, so a rerun never mixes old and new maps."""
    model, training = prepare(spec, resolved, args.mt, device)
    cfg, mt, kind = model.cfg, args.mt, args.map
    clips = spec.test_clips(cfg, mt, True, training.clips)
    specs = model.scaled(clip_features(cfg, mt, clips, "test_dev"))
    metric = model.metric()
    out = Path(cfg["loc_dir"]) / mt
    train_specs = training.specs()
    dev = [i for i, c in enumerate(training.clips) if c.source == "dev"]  # all training clips if none are dev
    normal = (train_specs[dev] if dev else train_specs).float().mean(0).cpu()
    out.mkdir(parents=True, exist_ok=True)
    old = list(out.glob("*.png"))
    for f in old:
        f.unlink()
    if old:
        print(f"removed the previous run's {plural(len(old), 'figure')} from {out}")
    sr, hop = model.sample_rate, cfg["feat"]["frame_hop"]  # the test clips are checked to have the training clips' rate
    chosen = list(range(len(clips)))[:args.limit]
    maps, scores = {}, {}
    figure = None
    label = channel_label(cfg)  # which channel option the model read its clips with, for several channels
    suffix = f"   ({label})" if label else ""
    for i in Bar(chosen, "localization", unit="clips"):
        recon, resid, scores[i] = maps_and_score(model, specs, i, metric)
        norm01 = to_unit(normal[:, : recon.shape[1]])
        amap = localization_map(recon, normal) if kind == "recon" else resid / 2  # /2: in [0, 1] units
        figure = figure or ClipFigure(tuple(amap.shape), sr, hop, MAP_NAMES[kind])
        figure.draw(out / figure_name(clips[i], spec.group_name), to_unit(recon).numpy(), norm01.numpy(),
                    amap.numpy(), f"{clips[i].path.name}   {metric} = {scores[i]:.4g}{suffix}")
        maps[i] = amap.numpy()
    plt.close(figure.fig)
    best = sorted(chosen, key=lambda i: -scores[i])[:args.top]
    among = (f"of all {len(clips)} dev test clips" if len(chosen) == len(clips) else
             f"of the first {len(chosen)} of {len(clips)} dev test clips (--limit {args.limit}), the only ones scored")
    title = (f"{'localization' if kind == 'recon' else 'residual'} maps of the {len(best)} highest {metric} scores\n"
             f"{among} (one colour scale){'; ' + label if label else ''}")
    save_png(summary_layout([(f"{clips[i].path.name}  {metric} = {scores[i]:.4g}", maps[i]) for i in best], sr, hop,
                            title), out / f"summary_top{len(best)}.png", 80)
    print(f"wrote {len(chosen) + 1} figures ({kind} maps) to {out}")
    record_settings(cfg, mt, "loc")
