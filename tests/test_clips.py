"""Clips of a DCASE dataset: listing in sorted order, what is skipped or refused, the released ground truth,
and file-name parsers that never fail with anything but one clear line."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aegan import synth
from aegan.core.errors import AeganError
from aegan.data.clips import attach_ground_truth
from dcase2020.datasets import SPEC as SPEC20
from dcase2022.datasets import SPEC as SPEC22


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return synth.make_2022(tmp_path_factory.mktemp("clips"), "ToyTrain", seconds=0.5, n_train=3, n_train_target=1,
                           n_test=2, seed=3)


def test_listing_is_sorted_and_skips_what_is_not_a_wav(tmp_path, capsys):
    d = synth.make_2022(tmp_path / "d", "fan", seconds=0.5, n_train=3, n_train_target=1, n_test=1, seed=1)
    train = d / "dev_data" / "fan" / "train"
    (train / "README.txt").write_text("notes")
    (train / "notes").mkdir()
    clips = SPEC22.list_clips(d, "fan", "dev", "train")
    assert [c.path.name for c in clips] == sorted(p.name for p in train.glob("*.wav") if p.is_file())
    assert "ignored 2 entries not named .wav: README.txt, notes" in capsys.readouterr().out
    (train / "sub.wav").mkdir()  # named like a clip, but none: refused by name, never skipped
    with pytest.raises(AeganError, match="sub.wav is not a regular file"):
        SPEC22.list_clips(d, "fan", "dev", "train")
    assert {c.source for c in clips} == {"dev"} and clips[0].number == "0000"


@pytest.mark.parametrize("breakage, message", [
    (lambda d: __import__("shutil").rmtree(d / "dev_data" / "fan"), "dev_data/fan/train does not exist"),
    (lambda d: [p.unlink() for p in (d / "dev_data" / "fan" / "train").iterdir()], "holds no .wav clips"),
    (lambda d: (d / "dev_data" / "fan" / "train" / "normal_0001.wav").write_bytes(b"x"),
     "normal_0001.wav: file name does not follow DCASE 2022 naming"),
])
def test_a_broken_dataset_folder_is_named(tmp_path, breakage, message):
    d = synth.make_2022(tmp_path / "d", "fan", seconds=0.5, n_train=2, n_train_target=1, n_test=1, seed=1)
    breakage(d)
    with pytest.raises(AeganError, match=message):
        SPEC22.train_clips({"dataset_dir": str(d), "train_set": "dev"}, "fan")
    with pytest.raises(AeganError, match="dataset_dir .*nowhere does not exist"):
        SPEC22.list_clips(tmp_path / "nowhere", "fan", "dev", "train")


def test_a_test_section_without_training_clips_is_named(data, tmp_path):
    cfg = {"dataset_dir": str(data), "train_set": "dev"}
    train = [c for c in SPEC22.train_clips(cfg, "ToyTrain") if c.group != "02"]
    with pytest.raises(AeganError, match="section 02 has test clips in .* but no training clip"):
        SPEC22.test_clips(cfg, "ToyTrain", True, train)


def test_ground_truth_labels_the_evaluation_clips(data, tmp_path):
    cfg = {"dataset_dir": str(data), "train_set": "dev"}
    clips = SPEC22.test_clips(cfg, "ToyTrain", False, [])
    assert all(c.label is None for c in clips)
    labelled = attach_ground_truth(SPEC22, "ToyTrain", clips, data / "ground_truth_data")
    assert [c.path for c in labelled] == [c.path for c in clips]
    assert {c.label for c in labelled} == {0, 1} and {c.domain for c in labelled} == {"source", "target"}
    bad = tmp_path / "ground_truth_data"
    bad.mkdir()
    for f in (data / "ground_truth_data").iterdir():
        (bad / f.name).write_text(f.read_text())
    f = bad / "ground_truth_ToyTrain_section_04_test.csv"
    f.write_text("\n".join(f.read_text().splitlines()[1:]) + "\n")
    with pytest.raises(AeganError, match=f"{f} has no row for"):
        attach_ground_truth(SPEC22, "ToyTrain", clips, bad, data / "ground_truth_domain")
    f.write_text("section_04_9999.wav,1\n")
    with pytest.raises(AeganError, match="section_04_9999.wav is not a test clip"):
        attach_ground_truth(SPEC22, "ToyTrain", clips, bad, data / "ground_truth_domain")
    f.unlink()
    with pytest.raises(AeganError, match="ground-truth file .* is missing"):
        attach_ground_truth(SPEC22, "ToyTrain", clips, bad, data / "ground_truth_domain")


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
            assert clip.group.isdigit() and clip.label in (0, 1, None) and clip.number.isdigit()
