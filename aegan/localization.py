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

import librosa.display  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402
from tqdm import tqdm  # noqa: E402

from .data.cache import clip_features  # noqa: E402
from .data.clips import Clip, DatasetSpec  # noqa: E402
from .data.segments import segment_view  # noqa: E402
from .files import atomic_path  # noqa: E402
from .model import Model, prepare  # noqa: E402
from .scores import resolve_metric  # noqa: E402


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


@torch.no_grad()
def reconstruct(netG: nn.Module, spec: torch.Tensor, frame_num: int, hop: int, device: torch.device
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """One clip (M, T) -> (rebuilt reconstruction, rebuilt residual |x - G(x)|), each (M, T')."""
    netG.eval()
    x = segment_view(spec[None], frame_num, hop)[0].unsqueeze(1).to(device)  # (S, 1, M, F)
    xh = netG(x)
    return overlap_average(xh[:, 0].cpu(), hop), overlap_average((x - xh).abs()[:, 0].cpu(), hop)


def to_unit(x: torch.Tensor | np.ndarray):
    """[-1, 1] -> [0, 1]."""
    return (x + 1) / 2


def localization_map(recon: torch.Tensor, normal: torch.Tensor) -> torch.Tensor:
    return (to_unit(recon) - to_unit(normal[:, : recon.shape[1]])).abs()


def _panel(ax, data: np.ndarray, sr: int, hop_length: int, title: str, fig, vmin=None, vmax=None) -> None:
    img = librosa.display.specshow(data, sr=sr, hop_length=hop_length, x_axis="time", y_axis="mel", ax=ax,
                                   vmin=vmin, vmax=vmax, cmap="magma")
    ax.set_title(title, fontsize=9)
    ax.label_outer()
    fig.colorbar(img, ax=ax, format="%.2f")


def clip_figure(path: Path, top: np.ndarray, normal: np.ndarray, amap: np.ndarray, sr: int, hop_length: int,
                title: str, top_name: str = "reconstruction", dpi: int = 80) -> None:
    """Three aligned panels (top, normal average, map) and the frame-wise anomaly curve under them."""
    fig, axes = plt.subplots(4, 1, figsize=(8, 9), sharex=True,
                             gridspec_kw={"height_ratios": [3, 3, 3, 1.4]})
    _panel(axes[0], top, sr, hop_length, top_name, fig, 0, 1)
    _panel(axes[1], normal, sr, hop_length, "normal average (dev training clips)", fig, 0, 1)
    _panel(axes[2], amap, sr, hop_length, "localization map (absolute difference)", fig, 0)
    times = librosa.frames_to_time(np.arange(amap.shape[1]), sr=sr, hop_length=hop_length)
    axes[3].plot(times, amap.mean(0), color="crimson", lw=1)
    axes[3].set_ylabel("mean per frame", fontsize=8)
    axes[3].set_xlabel("Time (s)")
    fig.colorbar(plt.cm.ScalarMappable(), ax=axes[3]).ax.set_visible(False)  # same width as the panels above
    fig.suptitle(title, fontsize=10)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    plt.close(fig)


def summary_figure(path: Path, maps: list[tuple[str, np.ndarray]], sr: int, hop_length: int, dpi: int = 80) -> None:
    """The maps of the k highest-scoring clips, one row each."""
    fig, axes = plt.subplots(len(maps), 1, figsize=(8, 2.2 * len(maps) + 0.5), squeeze=False)
    vmax = max(float(m.max()) for _, m in maps) or 1.0
    for ax, (title, amap) in zip(axes[:, 0], maps):
        _panel(ax, amap, sr, hop_length, title, fig, 0, vmax)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    plt.close(fig)


def normal_average(train_specs: torch.Tensor, train_clips: list[Clip]) -> torch.Tensor:
    """Mean scaled spectrogram (M, T) of the dev training clips (all training clips if none are dev)."""
    dev = [i for i, c in enumerate(train_clips) if c.source == "dev"]
    chosen = train_specs[dev] if dev else train_specs
    return chosen.float().mean(0).cpu()


def draw_maps(spec: DatasetSpec, model: Model, normal: torch.Tensor, clips: list[Clip], specs: torch.Tensor,
              scores: np.ndarray, metric: str, out: Path, kind: str = "recon", limit: int | None = None,
              top: int = 4) -> int:
    """One figure per dev test clip, plus the summary of the `top` highest-scoring ones; returns the count.
    Earlier figures in `out` are removed first, so a rerun never mixes old and new maps."""
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.png"):
        old.unlink()
    feat = model.cfg["feat"]
    sr = sf.info(str(clips[0].path)).samplerate
    hop = feat["graph_hop_f"]
    chosen = list(range(len(clips)))[:limit]
    maps = {}
    for i in tqdm(chosen, desc="localization"):
        recon, resid = reconstruct(model.netG, specs[i], feat["frame_num"], hop, model.device)
        norm01 = to_unit(normal[:, : recon.shape[1]])
        amap = localization_map(recon, normal) if kind == "recon" else resid / 2  # /2: in [0, 1] units
        title = f"{clips[i].path.name}   {metric} = {scores[i]:.4g}"
        clip_figure(out / spec.loc_name(clips[i]), to_unit(recon).numpy(), norm01.numpy(), amap.numpy(), sr,
                    feat["frame_hop"], title)
        maps[i] = amap.numpy()
    best = sorted(chosen, key=lambda i: -scores[i])[:top]
    summary_figure(out / f"summary_top{len(best)}.png",
                   [(f"{clips[i].path.name}  {metric} = {scores[i]:.4g}", maps[i]) for i in best], sr,
                   feat["frame_hop"])
    return len(chosen) + 1


def run_loc(spec: DatasetSpec, resolved, mt: str, device: torch.device, kind: str, limit: int | None, top: int
            ) -> Path:
    """loc.py: the maps of the dev test clips under <loc_dir>/<mt>/."""
    model, train_specs = prepare(spec, resolved, mt, device)
    cfg = model.cfg
    train_clips = spec.train_clips(cfg, mt)
    clips = spec.test_clips(cfg, mt, True, train_clips)
    specs = model.scaled(clip_features(cfg, mt, clips, "test_dev"))
    metric = resolve_metric(model.metric() or "G_x_2_sum")
    scores = model.score(specs)[0][metric]
    out = Path(cfg["loc_dir"]) / mt
    written = draw_maps(spec, model, normal_average(train_specs(), train_clips), clips, specs, scores, metric, out,
                        kind, limit, top)
    print(f"wrote {written} figures ({kind} maps) to {out}")
    return out
