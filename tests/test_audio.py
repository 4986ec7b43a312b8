"""SPEC section 2, wav -> log-mel: librosa's own numbers, many clips in parallel, and clips that cannot be used."""

import importlib.util

import librosa
import numpy as np
import pytest
import soundfile as sf
from threadpoolctl import threadpool_limits

from aegan.core.errors import AeganError
from aegan.data.audio import CHANNEL_NAMES, SUBTRACT_FLOOR, extract, logmel
from conftest import REAL, ROOT, needs_real, write_wav

FEAT = {"fft_num": 2048, "frame_hop": 512, "mel_bin": 128}


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
    want = reference([p], FEAT)[0]  # with the default BLAS thread count, as the original runs it
    spec, sr = logmel(p, **FEAT)
    np.testing.assert_array_equal(spec, want)
    # a caller (or a worker) that limits the BLAS threads still gets the original's bits: with one thread
    # instead of this machine's default, librosa's own mel product rounds differently in the last float bit
    with threadpool_limits(1):
        np.testing.assert_array_equal(logmel(p, **FEAT)[0], want)
    np.testing.assert_array_equal(extract([p], FEAT)[0], want)
    assert sr == 16000 and spec.dtype == np.float32
    assert spec.shape == (128, 313)  # a 10 s clip
    # the cached filter bank is keyed on the rate and sizes: another setting gets its own, and the first
    # setting's is unchanged afterwards
    q = write_wav(tmp_path / "b.wav", 2.0, sr=8000, seed=1)
    small = {"fft_num": 1024, "frame_hop": 256, "mel_bin": 64}
    spec8, sr8 = logmel(q, **small)
    assert sr8 == 8000
    np.testing.assert_array_equal(spec8, reference([q], small)[0])
    np.testing.assert_array_equal(logmel(p, **FEAT)[0], spec)


def test_two_channels_are_averaged_as_the_originals_loader_does(tmp_path):
    """feat.channel=mean: librosa.load(mono=True) averages the channels; DCASE 2026 clips have two."""
    p = write_wav(tmp_path / "st.wav", 1.0, channels=2)
    y, sr = librosa.load(p, sr=None, mono=True)
    want = librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=sr, n_fft=2048, hop_length=512,
                                                              n_mels=128), ref=1.0)
    np.testing.assert_array_equal(logmel(p, **FEAT, channels=2, channel="mean")[0], want)


@pytest.mark.parametrize("channel", ["near", "far"])
def test_a_channel_option_equals_reading_that_channel_alone(tmp_path, channel):
    """near is channel 0 and far channel 1 of the same file, written alone as a one-channel clip, to the bit."""
    p = write_wav(tmp_path / "st.wav", 1.0, channels=2)
    y, sr = sf.read(p, dtype="int16")
    alone = tmp_path / "alone.wav"
    sf.write(alone, y[:, CHANNEL_NAMES.index(channel)], sr, subtype="PCM_16")
    got = logmel(p, **FEAT, channels=2, channel=channel)[0]
    np.testing.assert_array_equal(got, logmel(alone, **FEAT)[0])
    assert not np.array_equal(got, logmel(p, **FEAT, channels=2, channel="mean")[0])


def test_subtract_takes_the_far_channels_mel_power_from_the_near_ones_floored(tmp_path):
    p = write_wav(tmp_path / "st.wav", 1.0, channels=2)
    y, sr = librosa.load(p, sr=None, mono=False)
    near, far = (librosa.feature.melspectrogram(y=c, sr=sr, n_fft=2048, hop_length=512, n_mels=128) for c in y)
    for share in (0.0, 0.5, 2.0):
        want = librosa.power_to_db(np.maximum(near - share * far, SUBTRACT_FLOOR * near), ref=1.0)
        got = logmel(p, **FEAT, channels=2, channel="subtract", far_share=share)[0]
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)
    # white noise of one level in both: a share of 2 takes more than the near power in most bins; the floor holds
    floor = librosa.power_to_db(SUBTRACT_FLOOR * near, ref=1.0)
    assert (got >= floor - 1e-4).all() and np.isclose(got, floor, atol=1e-4).mean() > 0.5


@pytest.mark.parametrize(("file_channels", "channels", "channel", "needle"), [
    (2, 1, "mean", "has 2 channels, but this dataset's clips have one (feat.channels=1)"),
    (1, 2, "near", "has one channel, but feat.channel=near reads the near and far channels"),
    (1, 2, "mean", "has one channel, but the dataset's clips have 2 (feat.channels=2)"),
    (3, 2, "near", "has 3 channels, but the dataset's clips have 2 (feat.channels=2)"),
    (2, 2, "mean", None),
])
def test_a_clip_of_another_channel_count_is_one_line_naming_it(tmp_path, file_channels, channels, channel, needle):
    """A stereo clip in a mono year is not averaged in silence; a mono clip is not read as DCASE 2026's pair."""
    p = write_wav(tmp_path / "clip.wav", 0.5, channels=file_channels)
    if needle is None:
        assert logmel(p, **FEAT, channels=channels, channel=channel)[0].shape == (128, 16)
        return
    with pytest.raises(AeganError) as e:
        logmel(p, **FEAT, channels=channels, channel=channel)
    assert str(e.value).startswith(f"audio file {p} ") and needle in str(e.value) and "\n" not in str(e.value)


def test_opposite_phase_channels_are_named_as_such_not_as_silence(tmp_path, capsys):
    """Issue 34, case 10: channels that cancel in their mean are not 'all samples zero'."""
    y = (np.random.default_rng(0).normal(0, 3000, 16000)).astype(np.int16)  # integers: exact opposites
    sf.write(tmp_path / "op.wav", np.stack([y, -y], axis=1), 16000, subtype="PCM_16")
    logmel(tmp_path / "op.wav", **FEAT, channels=2, channel="mean")
    out = capsys.readouterr().out
    assert "channels that cancel in their mean (opposite phase" in out and "all samples zero" not in out
    logmel(tmp_path / "op.wav", **FEAT, channels=2, channel="near")  # one channel: sound, no warning
    assert capsys.readouterr().out == ""
    sf.write(tmp_path / "z.wav", np.zeros((16000, 2)), 16000, subtype="PCM_16")
    logmel(tmp_path / "z.wav", **FEAT, channels=2, channel="far")
    assert "is pure silence (its far channel) (all samples zero)" in capsys.readouterr().out


def test_silence_keeps_features_finite(tmp_path, capsys):
    sf.write(tmp_path / "s.wav", np.zeros(16000), 16000, subtype="PCM_16")
    spec, _ = logmel(tmp_path / "s.wav", **FEAT)
    assert np.isfinite(spec).all() and spec.min() == pytest.approx(-100)
    assert "pure silence" in capsys.readouterr().out


def test_parallel_extraction_equals_serial(tmp_path):
    paths = [write_wav(tmp_path / f"c{i}.wav", 0.5, seed=i) for i in range(7)]  # > 2 x workers: a real pool
    np.testing.assert_array_equal(extract(paths, FEAT, workers=1), extract(paths, FEAT, workers=2))


def test_clips_that_cannot_be_used_are_named(tmp_path):
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
    cut = tmp_path / "cut.wav"
    cut.write_bytes(a.read_bytes()[:30])  # truncated inside the header
    with pytest.raises(AeganError, match="cannot read audio file .*cut.wav"):
        logmel(cut, **FEAT)
    nan = tmp_path / "nan.wav"
    sf.write(nan, np.full(1000, np.nan), 16000, subtype="FLOAT")
    with pytest.raises(AeganError, match="nan.wav: .*not finite"):
        logmel(nan, **FEAT)


@needs_real
def test_real_clips_give_expected_frames():
    toycar = sorted((REAL / "ToyCar" / "normal").glob("*.wav"))[0]
    fan = sorted((REAL / "fan" / "normal").glob("*.wav"))[0]
    spec, sr = logmel(toycar, **FEAT)
    assert sr == 16000 and spec.shape == (128, 344)  # 11 s
    spec, sr = logmel(fan, **FEAT)
    assert spec.shape == (128, 313) and np.isfinite(spec).all()
