"""SPEC section 2, wav -> log-mel: librosa's own numbers, many clips in parallel, and clips that cannot be used."""

import importlib.util

import librosa
import numpy as np
import pytest
import soundfile as sf
from threadpoolctl import threadpool_limits

from aegan.core.errors import AeganError
from aegan.data.audio import extract, logmel
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
    """librosa.load(mono=True) averages the channels; DCASE 2026 clips have two."""
    p = write_wav(tmp_path / "st.wav", 1.0, channels=2)
    y, sr = librosa.load(p, sr=None, mono=True)
    want = librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=sr, n_fft=2048, hop_length=512,
                                                              n_mels=128), ref=1.0)
    np.testing.assert_array_equal(logmel(p, **FEAT)[0], want)


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
