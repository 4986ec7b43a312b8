"""SPEC section 7, anomaly localization: the frame averaging that rebuilds a full-length spectrogram from
overlapping segments, the maps, loc.py's figures, and a map that points at injected anomalies."""

import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from aegan import synth
from aegan.commands import cli
from aegan.commands.localization import localization_map, maps_and_score, overlap_average, to_unit
from aegan.data.audio import logmel
from aegan.data.segments import segment_view
from aegan.inference.model import prepare
from aegan.settings.layers import load_config
from conftest import run_cli
from dcase2022.datasets import SPEC


@pytest.mark.parametrize("frames, width, hop", [(30, 8, 1), (31, 8, 3), (16, 16, 1)])
def test_overlap_average_equals_direct_loop(frames, width, hop):
    torch.manual_seed(0)
    segs = torch.randn((frames - width) // hop + 1, 5, width)
    got = overlap_average(segs, hop)
    t = (segs.shape[0] - 1) * hop + width
    total, count = torch.zeros(5, t), torch.zeros(t)
    for i, seg in enumerate(segs):
        total[:, i * hop:i * hop + width] += seg
        count[i * hop:i * hop + width] += 1
    torch.testing.assert_close(got, total / count)


def test_segments_of_a_spectrogram_rebuild_it_exactly():
    spec = torch.randn(6, 40)
    segs = segment_view(spec[None], 16, 2)[0]
    torch.testing.assert_close(overlap_average(segs, 2), spec[:, : (segs.shape[0] - 1) * 2 + 16])


def test_map_is_absolute_difference_in_unit_range():
    recon = torch.tensor([[-1.0, 0.0, 1.0]])
    normal = torch.tensor([[1.0, 0.0, -1.0, 0.5]])  # longer than the rebuilt clip: cut to length
    torch.testing.assert_close(localization_map(recon, normal), torch.tensor([[1.0, 0.0, 1.0]]))
    assert to_unit(torch.tensor(-1.0)) == 0 and to_unit(torch.tensor(1.0)) == 1


@pytest.mark.slow
def test_localization_figures(trained2022, capsys):
    out, sets, _ = trained2022
    loc = out / "loc"
    (loc / "fan").mkdir(parents=True)
    (loc / "fan" / "stale.png").write_bytes(b"old")  # the original crashes on a non-empty folder
    code, stdout, err = run_cli(cli.loc_main, SPEC, ["--mt", "fan", "-c", "0", *sets, "--limit", "3"], capsys)
    assert code == 0, err[-2000:]
    files = sorted(p.name for p in (loc / "fan").iterdir())
    # named by section, domain, true label and the clip's own number (section_00_source_test_anomaly_0004_...)
    assert files == ["sec00_source_true1_0004.png", "sec00_source_true1_0005.png", "sec00_source_true1_0006.png",
                     "summary_top3.png"]
    for name in files:
        data = (loc / "fan" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = struct.unpack(">II", data[16:24])
        if name.startswith("sec"):
            assert (width, height) == (640, 720)
    code, _, err = run_cli(cli.loc_main, SPEC, ["--mt", "fan", *sets, "--limit", "2", "--map", "residual", "--top",
                                                "1"], capsys)
    assert code == 0, err[-2000:]
    assert sorted(p.name for p in (loc / "fan").iterdir()) == [
        "sec00_source_true1_0004.png", "sec00_source_true1_0005.png", "summary_top1.png"]
    panels = _png_text(loc / "fan" / "sec00_source_true1_0004.png")["Description"]  # the titles say what is drawn
    assert "residual map: |input - reconstruction| / 2" in panels and "localization map" not in panels
    assert _png_text(loc / "fan" / "summary_top1.png")["Title"].startswith("residual maps of the 1 highest")


def _png_text(path) -> dict[str, str]:
    with Image.open(path) as im:
        return dict(im.text)


def _scored(text: str) -> tuple[str, float]:
    """'section_00_....wav   G_z_cos_min = 0.1234' -> (clip, score)."""
    name, score = text.split(" = ")
    return name.split()[0], float(score)


@pytest.mark.slow
def test_the_summary_ranks_what_its_title_says(trained2022, capsys):
    """The summary figure of --limit N ranks only the N clips drawn, and says so; without --limit it ranks all,
    and its clips are the highest-scoring of every clip's own figure (each figure's text, read from the file)."""
    out, sets, _ = trained2022
    loc = out / "loc" / "fan"
    code, _, err = run_cli(cli.loc_main, SPEC, ["--mt", "fan", *sets, "--limit", "3", "--top", "2"], capsys)
    assert code == 0, err[-2000:]
    n = len(list((trained2022_data(sets) / "dev_data" / "fan" / "test").glob("*.wav")))
    summary = _png_text(loc / "summary_top2.png")
    assert f"of the first 3 of {n} dev test clips (--limit 3), the only ones scored" in summary["Title"]
    code, _, err = run_cli(cli.loc_main, SPEC, ["--mt", "fan", *sets, "--top", "2"], capsys)
    assert code == 0, err[-2000:]
    summary = _png_text(loc / "summary_top2.png")
    assert f"highest G_z_cos_min scores of all {n} dev test clips" in summary["Title"]
    every = dict(_scored(_png_text(p)["Title"]) for p in loc.glob("sec*.png"))
    assert len(every) == n
    top = sorted(every, key=every.get, reverse=True)[:2]
    assert [_scored(t)[0] for t in summary["Description"].split(" | ")] == top


def trained2022_data(sets: list[str]):
    return Path(next(s.split("=", 1)[1] for s in sets if s.startswith("dataset_dir=")))


@pytest.mark.slow
def test_residual_map_peaks_at_injected_clicks(trained2022, tmp_path):
    _, sets, _ = trained2022
    resolved = load_config(SPEC.root, "fan", sets[1], sets[3::2])  # sets = [--config, F, --set, k=v, ...]
    model, _ = prepare(SPEC, resolved, "fan", torch.device("cpu"))
    cfg = model.cfg
    sr, seconds = 16000, 2.5
    rng = np.random.default_rng(0)
    y = synth.normal_sound(rng, sr, seconds, synth._base_f0("fan", "00"), 0.01)
    clicks = [0.6, 1.3, 2.0]
    for t in clicks:  # short decaying noise bursts: broadband, a few frames long
        i = int(t * sr)
        y[i:i + 400] += 0.8 * rng.normal(0, 1, 400) * np.exp(-np.arange(400) / 100)
    wav = tmp_path / "section_00_source_test_anomaly_0000_a.wav"
    sf.write(wav, np.clip(y, -1, 1), sr, subtype="PCM_16")  # normal parts keep the level the model knows
    spec, _ = logmel(wav, cfg["feat"]["fft_num"], cfg["feat"]["frame_hop"], cfg["feat"]["mel_bin"])
    _, resid, _ = maps_and_score(model, model.scaled(spec[None]), 0, "G_x_2_sum")
    curve = resid.mean(0).numpy()
    frames = [int(t * sr / cfg["feat"]["frame_hop"]) for t in clicks]
    edge = 8  # the first and last frames are covered by one segment only: skip them for the argmax
    peak = edge + int(np.argmax(curve[edge:-edge]))
    assert min(abs(peak - f) for f in frames) <= 2, (peak, frames)
    for f in frames:
        assert curve[max(f - 2, 0):f + 3].max() > 1.3 * np.median(curve), (f, curve)


@pytest.mark.slow
def test_loc_scores_clips_as_test_py_does(trained2022):
    """loc.py scores each clip in the same generator pass that gives its map: the same numbers as test.py."""
    from aegan.data.cache import clip_features

    _, sets, _ = trained2022
    model, _ = prepare(SPEC, load_config(SPEC.root, "fan", sets[1], sets[3::2]), "fan", torch.device("cpu"))
    clips = SPEC.test_clips(model.cfg, "fan", True, SPEC.train_clips(model.cfg, "fan"))[:3]
    specs = model.scaled(clip_features(model.cfg, "fan", clips, "loc_check"))
    scores = model.score(specs).scores
    for metric in ("G_z_cos_min", "G_x_1_max", "D_lof"):
        assert [maps_and_score(model, specs, i, metric)[2] for i in range(3)] == scores[metric].tolist()
