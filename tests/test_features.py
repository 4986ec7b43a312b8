"""SPEC section 2: log-mel features, the cache, the [-1, 1] scaling, segments and the batch sampler."""

import importlib.util

import numpy as np
import pytest
import soundfile as sf
import torch
from threadpoolctl import threadpool_limits

from aegan.errors import AeganError
from aegan.features import SegmentSampler, extract, load_or_extract, logmel, minmax, num_segments, scale, segment_view
from conftest import REAL, ROOT

FEAT = {"fft_num": 2048, "frame_hop": 512, "mel_bin": 128}


def write_wav(path, seconds=1.0, sr=16000, seed=0):
    y = np.random.default_rng(seed).normal(0, 0.1, int(sr * seconds))
    sf.write(path, y, sr, subtype="PCM_16")
    return path


def _bench_reference():
    """The benchmark's reference path (the original's way), so that this test proves the benchmark compares
    equal numbers."""
    spec = importlib.util.spec_from_file_location("bench_run", ROOT / "bench" / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.reference_features


def test_logmel_is_bit_identical_to_direct_librosa(tmp_path):
    reference = _bench_reference()  # librosa.feature.melspectrogram per clip, mel filters rebuilt per call
    p = write_wav(tmp_path / "a.wav", 10.0)
    # bit-identical with the same number of BLAS threads (extraction always uses one); with the machine's
    # default thread count librosa's mel product rounds differently in the last float bit
    with threadpool_limits(1):
        spec, sr = logmel(p, **FEAT)
        np.testing.assert_array_equal(spec, reference([p], FEAT)[0])
    np.testing.assert_array_equal(extract([p], FEAT)[0], spec)
    np.testing.assert_allclose(spec, reference([p], FEAT)[0], rtol=0, atol=1e-5)
    assert sr == 16000 and spec.dtype == np.float32
    assert spec.shape == (128, 313)  # a 10 s clip
    # the cached filter bank is keyed on the rate and sizes: another setting gets its own, and the first
    # setting's is unchanged afterwards
    q = write_wav(tmp_path / "b.wav", 2.0, sr=8000, seed=1)
    small = {"fft_num": 1024, "frame_hop": 256, "mel_bin": 64}
    with threadpool_limits(1):
        spec8, sr8 = logmel(q, **small)
        assert sr8 == 8000
        np.testing.assert_array_equal(spec8, reference([q], small)[0])
        np.testing.assert_array_equal(logmel(p, **FEAT)[0], spec)


def test_313_frames_give_186_segments():
    assert num_segments(313, 128, 1) == 186
    assert num_segments(344, 128, 1) == 217  # DCASE 2020 ToyCar, 11 s
    assert num_segments(100, 128, 1) == 0
    specs = torch.arange(2 * 4 * 313, dtype=torch.float32).reshape(2, 4, 313)
    view = segment_view(specs, 128, 1)
    assert view.shape == (2, 186, 4, 128)
    assert torch.equal(view[1, 57], specs[1, :, 57:57 + 128])
    assert torch.equal(segment_view(specs, 128, 3)[0, 5], specs[0, :, 15:143])


def test_scaling_maps_train_range_to_unit_interval():
    rng = np.random.default_rng(0)
    train = rng.uniform(-80, 20, (5, 8, 30)).astype(np.float32)
    vmax, vmin = minmax(train)
    assert vmax == train.max() and vmin == train.min() and isinstance(vmax, np.float32)
    s = scale(train, vmax, vmin)
    assert s.dtype == np.float32 and s.max() == pytest.approx(1) and s.min() == pytest.approx(-1)
    # the original's float32 arithmetic, step by step (a float64 midpoint moves some values by one ulp)
    mid, half = (vmax + vmin) / 2, (vmax - vmin) / 2
    assert isinstance(mid, np.float32) and np.array_equal(s, (train - mid) / half)
    # test data uses the training max/min, so it can leave [-1, 1]
    assert scale(np.array([[[vmax + (vmax - vmin) / 2]]]), vmax, vmin).item() == pytest.approx(2)
    with pytest.raises(AeganError, match="silent"):
        scale(train, 1.0, 1.0)


def test_sampler_draws_the_permutation_torchs_dataloader_draws():
    """The original shuffles with DataLoader(shuffle=True, drop_last=True): the same global generator state
    gives the same batches of segment numbers, and leaves the generator in the same state."""
    specs = torch.randn(3, 8, 20)
    s = SegmentSampler(specs, 8, 2, batch_size=5)
    assert s.total == 3 * 7 and len(s) == 4  # 21 segments, last incomplete batch dropped
    torch.manual_seed(3)
    loader = [b.tolist() for b in torch.utils.data.DataLoader(range(21), batch_size=5, shuffle=True, drop_last=True)]
    after = torch.get_rng_state()
    torch.manual_seed(3)
    batches = list(s.epoch())
    assert torch.equal(torch.get_rng_state(), after)
    view = segment_view(specs, 8, 2)
    for b, batch in enumerate(batches):
        want = torch.stack([view[i // 7, i % 7] for i in loader[b]]).unsqueeze(1)
        assert torch.equal(batch, want)
    assert not all(torch.equal(a, b) for a, b in zip(batches, s.epoch()))  # the next epoch: a new order
    # rank r of w ranks gets slice r of each global batch
    torch.manual_seed(3)
    perm = torch.cat([torch.tensor(b) for b in loader])
    wide = SegmentSampler(specs, 8, 2, batch_size=6, rank=1, world=2)
    torch.manual_seed(3)
    order = wide.permutation()
    assert torch.equal(order[:20], perm)
    torch.manual_seed(3)
    for b, batch in enumerate(wide.epoch()):
        assert torch.equal(batch[:, 0], torch.stack([view[i // 7, i % 7] for i in order[6 * b + 3:6 * b + 6].tolist()]))
    # a non-contiguous input gives the same segments
    t = torch.randn(3, 20, 8).transpose(1, 2)
    torch.manual_seed(0)
    a = list(SegmentSampler(t, 8, 2, 5).epoch())
    torch.manual_seed(0)
    assert all(torch.equal(x, y) for x, y in zip(a, SegmentSampler(t.contiguous(), 8, 2, 5).epoch()))


def test_cache_is_reused_and_keyed_on_settings_and_clips(tmp_path, capsys):
    paths = [write_wav(tmp_path / f"c{i}.wav", 1.0, seed=i) for i in range(3)]
    a = load_or_extract(paths, FEAT, tmp_path / "cache", "train", workers=1)
    assert "cached 3 clips" in capsys.readouterr().out
    b = load_or_extract(paths, FEAT, tmp_path / "cache", "train", workers=1)
    assert "from cache" in capsys.readouterr().out
    np.testing.assert_array_equal(a, b)
    c = load_or_extract(paths, {**FEAT, "mel_bin": 64}, tmp_path / "cache", "train", workers=1)
    assert c.shape[1] == 64 and "cached" in capsys.readouterr().out
    write_wav(paths[1], 1.0, seed=99)  # same name, new content
    d = load_or_extract(paths, FEAT, tmp_path / "cache", "train", workers=1)
    assert "cached" in capsys.readouterr().out and not np.array_equal(d[1], a[1])
    np.testing.assert_array_equal(d[0], a[0])


def test_corrupt_cache_is_rebuilt(tmp_path, capsys):
    paths = [write_wav(tmp_path / "c.wav")]
    a = load_or_extract(paths, FEAT, tmp_path, "x", workers=1)
    cache = next(tmp_path.glob("x_*.npy"))
    cache.write_bytes(cache.read_bytes()[:100])
    b = load_or_extract(paths, FEAT, tmp_path, "x", workers=1)
    assert "rebuilding" in capsys.readouterr().out
    np.testing.assert_array_equal(a, b)


def test_parallel_extraction_equals_serial(tmp_path):
    paths = [write_wav(tmp_path / f"c{i}.wav", 0.5, seed=i) for i in range(7)]  # > 2 x workers: a real pool
    np.testing.assert_array_equal(extract(paths, FEAT, workers=1), extract(paths, FEAT, workers=2))


def test_unequal_lengths_and_rates_are_clear_errors(tmp_path):
    a = write_wav(tmp_path / "a.wav", 1.0)
    b = write_wav(tmp_path / "b.wav", 2.0)
    with pytest.raises(AeganError, match="b.wav gives .* frames"):
        extract([a, b], FEAT)
    c = write_wav(tmp_path / "c.wav", 1.0, sr=22050)
    with pytest.raises(AeganError, match="c.wav has sample rate 22050"):
        extract([a, c], FEAT)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio at all")
    with pytest.raises(AeganError, match="cannot read audio file .*bad.wav"):
        extract([bad], FEAT)


@pytest.mark.skipif(not REAL.is_dir(), reason="../shared/real/ (real DCASE 2020 clips) is absent")
def test_real_clips_give_expected_frames():
    toycar = sorted((REAL / "ToyCar" / "normal").glob("*.wav"))[0]
    fan = sorted((REAL / "fan" / "normal").glob("*.wav"))[0]
    spec, sr = logmel(toycar, **FEAT)
    assert sr == 16000 and spec.shape == (128, 344)  # 11 s
    spec, sr = logmel(fan, **FEAT)
    assert spec.shape == (128, 313) and np.isfinite(spec).all()
