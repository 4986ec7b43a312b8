"""The feature cache: a second run reads instead of decoding; any change of clip or setting, a corrupted or
half-written file, a concurrent writer or a full disk never gives wrong features."""

import os
import subprocess
import sys
import time

import numpy as np

import progress
from aegan.data.cache import load_or_extract
from conftest import ROOT, write_wav

FEAT = {"fft_num": 1024, "frame_hop": 512, "mel_bin": 64}


def test_cache_is_reused_and_keyed_on_settings_and_clips(tmp_path, capsys):
    paths = [write_wav(tmp_path / f"c{i}.wav", 1.0, seed=i) for i in range(3)]
    a = load_or_extract(paths, FEAT, tmp_path / "cache", "train", workers=1)
    assert "cached 3 clips" in capsys.readouterr().out
    b = load_or_extract(paths, FEAT, tmp_path / "cache", "train", workers=1)
    assert "from cache" in capsys.readouterr().out
    np.testing.assert_array_equal(a, b)
    c = load_or_extract(paths, {**FEAT, "mel_bin": 32}, tmp_path / "cache", "train", workers=1)
    assert c.shape[1] == 32 and "cached" in capsys.readouterr().out
    write_wav(paths[1], 1.0, seed=99)  # same name, new content
    d = load_or_extract(paths, FEAT, tmp_path / "cache", "train", workers=1)
    assert "cached" in capsys.readouterr().out and not np.array_equal(d[1], a[1])
    np.testing.assert_array_equal(d[0], a[0])


def test_a_clip_replaced_with_its_size_and_mtime_kept_is_noticed(tmp_path, capsys):
    """The key is the clips' content: another recording of the same length, its mtime set back, is new data."""
    paths = [write_wav(tmp_path / f"c{i}.wav", 1.0, seed=i) for i in range(2)]
    a = load_or_extract(paths, FEAT, tmp_path / "c", "x")
    st = os.stat(paths[1])
    write_wav(paths[1], 1.0, seed=7)
    os.utime(paths[1], ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(paths[1]).st_size == st.st_size and os.stat(paths[1]).st_mtime_ns == st.st_mtime_ns
    capsys.readouterr()
    b = load_or_extract(paths, FEAT, tmp_path / "c", "x")
    assert "from cache" not in capsys.readouterr().out and not np.array_equal(a[1], b[1])
    np.testing.assert_array_equal(a[0], b[0])


def test_a_cache_built_for_other_clips_is_never_used(tmp_path, capsys):
    """The wrong file under the right name: the record says which clips it holds, and it is checked on read."""
    first = [write_wav(tmp_path / f"a{i}.wav", 1.0, seed=i) for i in range(2)]
    second = [write_wav(tmp_path / f"b{i}.wav", 1.0, seed=10 + i) for i in range(2)]
    load_or_extract(first, FEAT, tmp_path / "one", "x")
    b = load_or_extract(second, FEAT, tmp_path / "two", "x")
    (theirs,), (ours,) = (tmp_path / "one").glob("x_*.npy"), (tmp_path / "two").glob("x_*.npy")
    for suffix in (".npy", ".json"):  # the first clips' cache (data and record) copied over the second's
        ours.with_suffix(suffix).write_bytes(theirs.with_suffix(suffix).read_bytes())
    capsys.readouterr()
    np.testing.assert_array_equal(b, load_or_extract(second, FEAT, tmp_path / "two", "x"))
    assert "built for other clips; rebuilding" in capsys.readouterr().out


def test_truncated_or_flipped_cache_is_rebuilt(tmp_path, capsys):
    paths = [write_wav(tmp_path / f"c{i}.wav", 1.0, seed=i) for i in range(3)]
    a = load_or_extract(paths, FEAT, tmp_path / "c", "x")
    cache = next((tmp_path / "c").glob("x_*.npy"))
    data = bytearray(cache.read_bytes())
    data[-10] ^= 0xFF  # same size, one value changed
    cache.write_bytes(bytes(data))
    capsys.readouterr()
    np.testing.assert_array_equal(a, load_or_extract(paths, FEAT, tmp_path / "c", "x"))
    assert "corrupt, incomplete or built for other clips" in capsys.readouterr().out
    cache.write_bytes(cache.read_bytes()[:100])
    np.testing.assert_array_equal(a, load_or_extract(paths, FEAT, tmp_path / "c", "x"))
    assert "rebuilding" in capsys.readouterr().out


def test_concurrent_cache_builders_leave_one_valid_cache(tmp_path):
    paths = [write_wav(tmp_path / f"c{i}.wav", 1.0, seed=i) for i in range(6)]
    code = ("import sys; from pathlib import Path; from aegan.data.cache import load_or_extract; "
            f"load_or_extract([Path(p) for p in {[str(p) for p in paths]}], {FEAT}, '{tmp_path / 'c'}', 'x')")
    procs = [subprocess.Popen([sys.executable, "-c", code], cwd=ROOT) for _ in range(2)]
    watch = progress.Watch(*(p.pid for p in procs), what="two cache builders")  # one waits for the other's lock
    while any(p.poll() is None for p in procs):
        watch.check()
        time.sleep(progress.POLL)
    assert [p.returncode for p in procs] == [0, 0]
    files = sorted(p.name for p in (tmp_path / "c").iterdir())
    assert len(files) == 2 and {f.rsplit(".", 1)[1] for f in files} == {"npy", "json"}  # no temp files left
    assert load_or_extract(paths, FEAT, tmp_path / "c", "x").shape[0] == 6


def test_full_disk_keeps_previous_cache(tmp_path):
    """RLIMIT_FSIZE makes writes past a size fail with EFBIG, as a full disk fails with ENOSPC."""
    paths = [write_wav(tmp_path / f"c{i}.wav", 1.0, seed=i) for i in range(2)]
    load_or_extract(paths, FEAT, tmp_path / "c", "x")
    cache = next((tmp_path / "c").glob("x_*.npy"))
    before = cache.read_bytes()
    cache.with_suffix(".json").write_text("force a rebuild")
    code = ("import resource, signal; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
            "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096)); "
            "from pathlib import Path; from aegan.data.cache import load_or_extract; "
            f"a = load_or_extract([Path(p) for p in {[str(p) for p in paths]}], {FEAT}, '{tmp_path / 'c'}', 'x'); "
            "print('shape', a.shape)")
    r = progress.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "could not write the feature cache" in r.stdout and "shape (2, 64" in r.stdout
    assert cache.read_bytes() == before
    assert sorted(p.suffix for p in (tmp_path / "c").iterdir()) == [".json", ".npy"]
