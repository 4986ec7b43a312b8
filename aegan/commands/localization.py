"""Anomaly localization maps (SPEC section 7): where in time and frequency a clip departs from normal.

A clip's segments are reconstructed, and a full-length spectrogram is rebuilt with every frame the mean
of that frame over all segments that contain it. Map "recon" (the paper's): |recon - normal average|,
both mapped from [-1, 1] to [0, 1], where the normal average is the mean scaled spectrogram of the dev
training clips. Map "residual" (ours): |x - G(x)| rebuilt the same way.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display needed

import librosa  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from aegan.commands.plots import save_png  # noqa: E402
from aegan.core.progress import Bar  # noqa: E402
from aegan.core.text import plural  # noqa: E402
from aegan.data.cache import clip_features  # noqa: E402
from aegan.data.clips import Clip, DatasetSpec  # noqa: E402
from aegan.data.segments import clip_segments  # noqa: E402
from aegan.inference.model import Model  # noqa: E402
from aegan.inference.prepare import prepare  # noqa: E402
from aegan.settings.layers import record_settings  # noqa: E402


def overlap_average(segments: torch.Tensor, hop: int) -> torch.Tensor:
    """(S, M, F) segments taken every `hop` frames -> (M, T) with T = (S-1)*hop + F, each frame the mean
    over the segments that cover it."""
    s, m, f = segments.shape
    t = (s - 1) * hop + f
    # fold sums overlapping windows in one op: (1, M*F, S) columns -> (1, M, 1, T)
    cols = segments.permute(1, 2, 0).reshape(1, m * f, s)
    total = nn.functional.fold(cols, output_size=(1, t), kernel_size=(1, f), stride=(1, hop))
    count = nn.functional.fold(torch.ones(1, f, s, dtype=segments.dtype), output_size=(1, t), kernel_size=(1, f),
                               stride=(1, hop))
    return (total / count).reshape(m, t)


def maps_and_score(model: Model, specs: torch.Tensor, i: int, metric: str) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Clip i's rebuilt reconstruction and residual |x - G(x)|, each (M, T'), and its score of `metric`: one
    call of the scoring pass (the score equals test.py's)."""
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


def _panel(ax, data: np.ndarray, sr: int, hop_length: int, title: str, fig, vmin=None, vmax=None):
    """A mel spectrogram-like map: time in seconds, mel bins labelled with their frequencies. Drawn as an
    image (librosa's specshow draws a mesh of quads: five times slower to save, the same picture here)."""
    n_mels, frames = data.shape
    img = ax.imshow(data, origin="lower", aspect="auto", cmap="magma", vmin=vmin, vmax=vmax, interpolation="nearest",
                    extent=(0, frames * hop_length / sr, 0, n_mels))
    hz = librosa.mel_frequencies(n_mels + 2, fmax=sr / 2)[1:-1]  # the bands' centres (Slaney, as the features)
    ticks = np.linspace(0, n_mels - 1, 5).round().astype(int)
    ax.set_yticks(ticks + 0.5, [f"{hz[t]:.0f}" if hz[t] < 1000 else f"{hz[t] / 1000:.1f}k" for t in ticks])
    ax.set_ylabel("Hz (mel scale)", fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.label_outer()
    fig.colorbar(img, ax=ax, format="%.2f")
    return img


# the map panel's title: what each --map draws
MAP_NAMES = {"recon": "localization map: |reconstruction - normal average|",
             "residual": "residual map: |input - reconstruction| / 2"}


class ClipFigure:
    """Three aligned panels (top, normal average, map) and the frame-wise anomaly curve under them. Built once
    and redrawn for every clip: laying out axes and colorbars anew for each clip cost more than drawing it."""

    def __init__(self, shape: tuple[int, int], sr: int, hop_length: int, map_name: str = MAP_NAMES["recon"],
                 dpi: int = 80):
        self.dpi = dpi
        self.fig, axes = plt.subplots(4, 1, figsize=(8, 9), sharex=True, gridspec_kw={"height_ratios": [3, 3, 3, 1.4]})
        blank = np.zeros(shape, dtype=np.float32)
        self.top = _panel(axes[0], blank, sr, hop_length, "reconstruction", self.fig, 0, 1)
        self.normal = _panel(axes[1], blank, sr, hop_length, "normal average (dev training clips)", self.fig, 0, 1)
        self.map = _panel(axes[2], blank, sr, hop_length, map_name, self.fig, 0, 1)
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
        save_png(self.fig, path, self.dpi, close=False)

    def close(self) -> None:
        plt.close(self.fig)


def summary_figure(path: Path, maps: list[tuple[str, np.ndarray]], sr: int, hop_length: int, dpi: int = 80,
                   title: str = "") -> None:
    """The maps of the k highest-scoring clips, one row each, on one colour scale, under `title`."""
    save_png(summary_layout(maps, sr, hop_length, title), path, dpi)


def summary_layout(maps: list[tuple[str, np.ndarray]], sr: int, hop_length: int, title: str = ""):
    fig, axes = plt.subplots(len(maps), 1, figsize=(8, 2.2 * len(maps) + 0.9), squeeze=False)
    vmax = max(float(m.max()) for _, m in maps) or 1.0
    for ax, (name, amap) in zip(axes[:, 0], maps):
        _panel(ax, amap, sr, hop_length, name, fig, 0, vmax)
    axes[-1, 0].set_xlabel("Time (s)")
    fig.suptitle(title or f"localization maps of the {len(maps)} highest-scoring clips", fontsize=10)
    fig.tight_layout()
    return fig


def normal_average(train_specs: torch.Tensor, train_clips: list[Clip]) -> torch.Tensor:
    """Mean scaled spectrogram (M, T) of the dev training clips (all training clips if none are dev)."""
    dev = [i for i, c in enumerate(train_clips) if c.source == "dev"]
    chosen = train_specs[dev] if dev else train_specs
    return chosen.float().mean(0).cpu()


GROUP_TAGS = {"section": "sec"}  # how figure names shorten a group's name; others are written whole ("id")


def figure_name(clip: Clip, group: str) -> str:
    """A clip's figure: its group, domain (when it has one), true label and own number, e.g.
    sec01_source_true1_0003.png (DCASE 2022 sections) or id02_true1_00000012.png (DCASE 2020 machine IDs)."""
    domain = f"_{clip.domain}" if clip.domain else ""
    return f"{GROUP_TAGS.get(group, group)}{clip.group}{domain}_true{clip.label}_{clip.number}.png"


def draw_maps(group: str, model: Model, normal: torch.Tensor, clips: list[Clip], specs: torch.Tensor,
              metric: str, out: Path, kind: str = "recon", limit: int | None = None, top: int = 4) -> int:
    """One figure per dev test clip, plus the summary of the `top` highest-scoring ones; returns the count.
    Earlier figures in `out` are removed first, so a rerun never mixes old and new maps."""
    out.mkdir(parents=True, exist_ok=True)
    old = list(out.glob("*.png"))
    for f in old:
        f.unlink()
    if old:
        print(f"removed the previous run's {plural(len(old), 'figure')} from {out}")
    feat, sr = model.cfg["feat"], model.sample_rate  # the test clips are checked to have the training clips' rate
    chosen = list(range(len(clips)))[:limit]
    maps, scores = {}, {}
    figure = None
    for i in Bar(chosen, "localization", unit="clips"):
        recon, resid, scores[i] = maps_and_score(model, specs, i, metric)
        norm01 = to_unit(normal[:, : recon.shape[1]])
        amap = localization_map(recon, normal) if kind == "recon" else resid / 2  # /2: in [0, 1] units
        figure = figure or ClipFigure(tuple(amap.shape), sr, feat["frame_hop"], MAP_NAMES[kind])
        figure.draw(out / figure_name(clips[i], group), to_unit(recon).numpy(), norm01.numpy(), amap.numpy(),
                    f"{clips[i].path.name}   {metric} = {scores[i]:.4g}")
        maps[i] = amap.numpy()
    figure.close()
    best = sorted(chosen, key=lambda i: -scores[i])[:top]
    among = (f"of all {len(clips)} dev test clips" if len(chosen) == len(clips) else
             f"of the first {len(chosen)} of {len(clips)} dev test clips (--limit {limit}), the only ones scored")
    what = "localization" if kind == "recon" else "residual"
    summary_figure(out / f"summary_top{len(best)}.png",
                   [(f"{clips[i].path.name}  {metric} = {scores[i]:.4g}", maps[i]) for i in best], sr,
                   feat["frame_hop"], title=f"{what} maps of the {len(best)} highest {metric} scores\n{among} "
                   "(one colour scale)")
    return len(chosen) + 1


def run_loc(spec: DatasetSpec, resolved, mt: str, device: torch.device, kind: str, limit: int | None, top: int
            ) -> Path:
    """loc.py: the maps of the dev test clips under <loc_dir>/<mt>/."""
    model, training = prepare(spec, resolved, mt, device)
    cfg = model.cfg
    clips = spec.test_clips(cfg, mt, True, training.clips)
    specs = model.scaled(clip_features(cfg, mt, clips, "test_dev"))
    metric = model.metric()
    out = Path(cfg["loc_dir"]) / mt
    normal = normal_average(training.specs(), training.clips)
    written = draw_maps(spec.group_name, model, normal, clips, specs, metric, out, kind, limit, top)
    print(f"wrote {written} figures ({kind} maps) to {out}")
    record_settings(cfg, mt, "loc")
    return out
