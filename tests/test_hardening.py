"""Bad input, interrupted runs and untrusted files: a non-zero exit, one clear line naming the file or key,
and nothing half-written. Every case builds the bad input for real."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from aegan import checkpoint, synth
from aegan.config import load_config, merge, parse_set, read_yaml
from aegan.errors import AeganError
from aegan.features import load_or_extract, logmel
from conftest import ROOT, SMALL, out_sets, run_script
from dcase2020.datasets import SPEC as SPEC20
from dcase2022.datasets import SPEC as SPEC22

FEAT = {"fft_num": 1024, "frame_hop": 512, "mel_bin": 64}


def one_line_error(r: subprocess.CompletedProcess, *needles: str) -> str:
    assert r.returncode != 0
    lines = [x for x in r.stderr.splitlines() if x.strip() and "%|" not in x]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def small_data(tmp_path):
    """A fresh, small DCASE 2022 dataset a test may break."""
    return synth.make_2022(tmp_path / "data", "ToyTrain", seconds=2.5, n_train=4, n_train_target=1, n_test=2,
                           seed=3)


def train(tmp_path, data, *extra, timeout=600):
    return run_script("dcase2022/train.py", "--mt", "ToyTrain", "--config", str(SMALL), *out_sets(tmp_path, data),
                      "--set", "feat.workers=1", "--set", "train.epoch=1", *extra, timeout=timeout)


TRAIN = "dev_data/ToyTrain/train"


@pytest.mark.parametrize("breakage, needles", [
    (lambda d: __import__("shutil").rmtree(d / "dev_data" / "ToyTrain"), ["dev_data/ToyTrain/train does not exist"]),
    (lambda d: [p.unlink() for p in (d / TRAIN).iterdir()], ["holds no .wav clips"]),
    (lambda d: (d / TRAIN / "normal_0001.wav").write_bytes(b"x"), ["normal_0001.wav", "DCASE 2022 naming"]),
    (lambda d: (d / TRAIN / "section_00_source_train_normal_0100_x.wav").write_bytes(b"RIFF not audio"),
     ["cannot read audio file", "section_00_source_train_normal_0100_x.wav"]),
    (lambda d: (d / TRAIN / "section_00_source_train_normal_0101_x.wav").write_bytes(
        sorted((d / TRAIN).glob("section_00_source_train_normal_0000_*.wav"))[0].read_bytes()[:30000]),
     ["section_00_source_train_normal_0101_x.wav"]),  # truncated: a short clip
    (lambda d: sf.write(d / TRAIN / "section_00_source_train_normal_0102_x.wav", np.zeros((40000, 2)), 16000),
     ["has 2 channels"]),
    (lambda d: sf.write(d / TRAIN / "section_00_source_train_normal_0103_x.wav", np.zeros(40000) + 0.1, 22050),
     ["sample rate 22050"]),
    (lambda d: sf.write(d / TRAIN / "section_00_source_train_normal_0104_x.wav", np.full(80000, 0.1), 16000),
     ["section_00_source_train_normal_0104_x.wav", "same length"]),
    (lambda d: sf.write(d / TRAIN / "section_00_source_train_normal_0105_x.wav", np.full(1000, np.nan), 16000,
                        subtype="FLOAT"), ["0105_x.wav", "finite"]),
    (lambda d: [p.unlink() for p in (d / TRAIN).glob("section_02_*")], ["section 02 has test clips", "no training"]),
])
def test_bad_dataset_is_one_line(tmp_path, small_data, breakage, needles):
    breakage(small_data)
    r = train(tmp_path, small_data)
    one_line_error(r, *needles)
    assert not list((tmp_path / "model_dir").glob("*.pth"))  # nothing half-done left behind


def test_clip_shorter_than_one_segment(tmp_path):
    data = synth.make_2022(tmp_path / "d", "ToyTrain", seconds=1.0, n_train=2, n_train_target=1, n_test=1)
    one_line_error(train(tmp_path, data), "fewer than one segment")


def test_missing_dataset_dir_and_non_wav_files(tmp_path, small_data):
    one_line_error(run_script("dcase2022/train.py", "--mt", "ToyTrain", "--set", f"dataset_dir={tmp_path / 'no'}"),
                   "dataset_dir", "does not exist")
    (small_data / TRAIN / "README.txt").write_text("notes")
    (small_data / TRAIN / "sub").mkdir()
    r = train(tmp_path, small_data)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "ignored 2 entries that are not .wav files" in r.stdout


def test_silence_keeps_features_finite(tmp_path):
    sf.write(tmp_path / "s.wav", np.zeros(16000), 16000, subtype="PCM_16")
    spec, _ = logmel(tmp_path / "s.wav", **FEAT)
    assert np.isfinite(spec).all() and spec.min() == pytest.approx(-100)


def _paths(tmp_path, n=3):
    out = []
    for i in range(n):
        out.append(tmp_path / f"c{i}.wav")
        sf.write(out[-1], np.random.default_rng(i).normal(0, 0.1, 16000), 16000, subtype="PCM_16")
    return out


def test_corrupt_cache_byte_is_detected(tmp_path, capsys):
    paths = _paths(tmp_path)
    a = load_or_extract(paths, FEAT, tmp_path / "c", "x")
    cache = next((tmp_path / "c").glob("x_*.npy"))
    data = bytearray(cache.read_bytes())
    data[-10] ^= 0xFF  # same size, one value changed
    cache.write_bytes(bytes(data))
    capsys.readouterr()
    b = load_or_extract(paths, FEAT, tmp_path / "c", "x")
    assert "corrupt or incomplete" in capsys.readouterr().out
    np.testing.assert_array_equal(a, b)


def test_concurrent_cache_builders_leave_one_valid_cache(tmp_path):
    paths = _paths(tmp_path, 6)
    code = ("import sys; from pathlib import Path; from aegan.features import load_or_extract; "
            f"load_or_extract([Path(p) for p in {[str(p) for p in paths]}], {FEAT}, '{tmp_path / 'c'}', 'x')")
    procs = [subprocess.Popen([sys.executable, "-c", code], cwd=ROOT) for _ in range(2)]
    assert all(p.wait(timeout=300) == 0 for p in procs)
    files = sorted(p.name for p in (tmp_path / "c").iterdir())
    assert len(files) == 2 and {f.rsplit(".", 1)[1] for f in files} == {"npy", "crc32"}  # no temp files left
    arr = load_or_extract(paths, FEAT, tmp_path / "c", "x")
    assert arr.shape[0] == 6


def test_full_disk_keeps_previous_cache(tmp_path):
    """RLIMIT_FSIZE makes writes past a size fail with EFBIG, as a full disk fails with ENOSPC."""
    paths = _paths(tmp_path, 2)
    load_or_extract(paths, FEAT, tmp_path / "c", "x")
    cache = next((tmp_path / "c").glob("x_*.npy"))
    before = cache.read_bytes()
    cache.with_suffix(".crc32").write_text("force a rebuild")
    code = ("import resource, signal; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
            "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096)); "
            "from pathlib import Path; from aegan.features import load_or_extract; "
            f"a = load_or_extract([Path(p) for p in {[str(p) for p in paths]}], {FEAT}, '{tmp_path / 'c'}', 'x'); "
            "print('shape', a.shape)")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "could not write the feature cache" in r.stdout and "shape (2, 64" in r.stdout
    assert cache.read_bytes() == before
    assert sorted(p.suffix for p in (tmp_path / "c").iterdir()) == [".crc32", ".npy"]


def test_checkpoint_for_another_architecture_names_the_setting(tmp_path, small_data):
    r = train(tmp_path, small_data)
    assert r.returncode == 0, r.stderr[-2000:]
    args = ["dcase2022/test.py", "--mt", "ToyTrain", "-d", "--config", str(SMALL), *out_sets(tmp_path, small_data)]
    # the checkpoint holds its settings: one that contradicts them is named with both values
    one_line_error(run_script(*args, "--set", "net.normalize.g=bn"), "net.normalize.g='bn' was set", "'ln'")
    one_line_error(run_script(*args, "--set", "net.nz=32"), "net.nz=32 was set", "net.nz=64")
    one_line_error(run_script(*args, "--set", "feat.fft_num=2048"), "feat.fft_num=2048 was set")
    # without them (the original's format) a mismatch is named from the weights
    state = checkpoint.load(tmp_path / "model_dir" / "ToyTrain.pth")
    torch.save({"netD": state["netD"], "netG": state["netG"], "best_hmean": 0.5},
               tmp_path / "model_dir" / "ToyTrain.pth")
    one_line_error(run_script(*args, "--set", "net.normalize.g=bn"), "norm type differs")
    one_line_error(run_script(*args, "--set", "net.nz=32"), "shape")
    path = tmp_path / "model_dir" / "ToyTrain.pth"
    path.write_bytes(path.read_bytes()[:5000])
    one_line_error(run_script(*args), "truncated")


def test_debug_flag_shows_the_traceback(tmp_path):
    r = run_script("dcase2022/train.py", "--mt", "ToyTrain", "--set", f"dataset_dir={tmp_path}", "--debug")
    assert r.returncode == 1 and "Traceback" in r.stderr and r.stderr.strip().splitlines()[-1].startswith("error:")


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, small_data):
    r = train(tmp_path, small_data, "--set", "train.epoch=2")
    assert r.returncode == 0
    last = tmp_path / "model_dir" / "ToyTrain_last.pth"
    before = last.read_bytes()
    # a penalty weight beyond float32 range makes the critic loss infinite at the first batch
    r = train(tmp_path, small_data, "--resume", "--set", "train.epoch=3", "--set", "train.wgan.lambda_gp=1e39")
    one_line_error(r, "loss is not finite", "ToyTrain_last.pth")
    assert last.read_bytes() == before


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_training_resumes_to_the_same_result(tmp_path, small_data, sig):
    base = ["dcase2022/train.py", "--mt", "ToyTrain", "--seed", "5", "--config", str(SMALL), "--set",
            "feat.workers=1", "--set", "train.batch_size=4", "--set", "train.epoch=3"]
    a, b = tmp_path / "a", tmp_path / "b"
    proc = subprocess.Popen([sys.executable, *base, *out_sets(a, small_data)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    log = a / "log_dir" / "ToyTrain" / "train.log"
    deadline = time.time() + 300
    while time.time() < deadline and not (log.exists() and "epoch 1/3" in log.read_text()):
        time.sleep(0.05)
    time.sleep(0.2)  # inside epoch 2 (an epoch is ~30 batches of 4)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted" in err and "Traceback" not in err
    state = checkpoint.load(a / "model_dir" / "ToyTrain_last.pth")
    assert state["epoch"] == 1
    assert not [p for p in (a / "model_dir").iterdir() if p.suffix == ".tmp" or p.name.startswith(".")]
    r = run_script(*base, *out_sets(a, small_data), "--resume")
    assert r.returncode == 0 and "at epoch 2" in r.stdout, r.stderr[-2000:]
    r = run_script(*base, *out_sets(b, small_data))
    assert r.returncode == 0
    sa = checkpoint.load(a / "model_dir" / "ToyTrain_last.pth")
    sb = checkpoint.load(b / "model_dir" / "ToyTrain_last.pth")
    for k in sb["netG"]:
        torch.testing.assert_close(sa["netG"][k], sb["netG"][k], rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- fuzz: parsers and config never crash otherwise
names = st.one_of(
    st.text(min_size=1, max_size=60).map(lambda s: s.replace("/", "_").replace("\x00", "") + ".wav"),
    st.builds(lambda a, b, c: f"section_{a}_{b}_test_{c}_0001.wav", st.text(max_size=3),
              st.sampled_from(["source", "target", "x"]), st.sampled_from(["normal", "anomaly", ""])),
    st.builds(lambda a, b: f"{a}_id_{b}_00000001.wav", st.sampled_from(["normal", "anomaly", "id"]),
              st.text(max_size=3)),
)


@settings(max_examples=300, deadline=None)
@given(name=names, split=st.sampled_from(["train", "test"]))
def test_fuzz_file_name_parsers(tmp_path_factory, name, split):
    for spec in (SPEC20, SPEC22):
        try:
            clip = spec.parse(tmp_path_factory.getbasetemp() / name, split, "dev")
        except AeganError as e:
            assert "\n" not in str(e) and "\r" not in str(e)
            assert (name in str(e)) if name.isprintable() else repr(name)[1:-1] in str(e)
        else:
            assert clip.group.isdigit() and clip.label in (0, 1, None)


yaml_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=10)),
    lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(st.text(max_size=8), children,
                                                                                max_size=3)),
    max_leaves=6)
KEYS = ["train.epoch", "train.batch_size", "feat.mel_bin", "net.isize", "train_set", "train.wgan.match_item",
        "detect.metric", "net.normalize", "train.lrD", "detect.p", "foo", "train.select", "net.normalize.g", "feat"]


@settings(max_examples=300, deadline=None)
@given(key=st.sampled_from(KEYS), value=yaml_values)
def test_fuzz_config_values(tmp_path_factory, key, value):
    import yaml
    f = tmp_path_factory.getbasetemp() / "fuzz.yaml"
    node: dict = {}
    cur = node
    parts = key.split(".")
    for p in parts[:-1]:
        cur = cur.setdefault(p, {})
    cur[parts[-1]] = value
    f.write_text(yaml.safe_dump(node))
    try:
        cfg = load_config(ROOT / "dcase2022", "ToyTrain", str(f)).cfg
    except AeganError as e:
        assert "\n" not in str(e)
    else:
        assert cfg["net"]["isize"] == cfg["feat"]["mel_bin"]


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=40))
def test_fuzz_set_arguments(text):
    try:
        merge(read_yaml(ROOT / "dcase2022" / "defaults.yaml"), parse_set(text), "--set")
    except AeganError as e:
        assert "\n" not in str(e)


def test_a_key_with_a_line_break_stays_a_one_line_error():
    """Found by hypothesis: `unknown key feat.` then a line break."""
    for text in ("feat.\nx=1", "feat.a\rb=2"):
        with pytest.raises(AeganError) as e:
            merge(read_yaml(ROOT / "dcase2022" / "defaults.yaml"), parse_set(text), "--set")
        assert "\n" not in str(e.value) and "\r" not in str(e.value) and "unknown key" in str(e.value)
