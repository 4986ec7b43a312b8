"""Settings that size the run, named when they are at fault: a network too large to allocate, a frame hop longer
than the clips, a learning rate far outside its usual range (typed 2e4 for 2e-4)."""

import pytest

from aegan import synth
from aegan.commands import cli
from aegan.settings.checks import FIELDS
from conftest import TINY, one_line_error, out_sets, run_cli
from dcase2022.datasets import SPEC


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Tiny clips: 1.2 s at 16 kHz, 19,200 samples."""
    return synth.make_2022(tmp_path_factory.mktemp("sizes"), "fan", seconds=1.2, n_train=4, n_train_target=1,
                           n_test=2, eval_sections=(), seed=5)


def _train(tmp_path, data, capsys, *sets: str) -> tuple[int, str, str]:
    args = ["--mt", "fan", *out_sets(tmp_path, data), *[x for s in [*TINY, "train_set=dev", *sets]
                                                         for x in ("--set", s)]]
    return run_cli(cli.train_main, SPEC, args, capsys)


def test_a_network_too_large_to_allocate_names_its_settings_and_size(tmp_path, data, capsys):
    code, _, err = _train(tmp_path, data, capsys, "net.ndf=200000")
    line = one_line_error(code, err, "building the networks on cpu asked for", "GiB", "bytes)", "net.ndf=200000",
                          "net.isize=32", "net.ngf=8", "net.nz=16")
    assert "alloc_cpu" not in line and "unexpected" not in line
    assert not (tmp_path / "model" / "fan.pth").exists()


def test_a_frame_hop_longer_than_the_clips_names_the_hop(tmp_path, data, capsys):
    code, _, err = _train(tmp_path, data, capsys, "feat.frame_hop=100000")
    one_line_error(code, err, "feat.frame_hop=100000 samples is longer than the clips of fan (19200 samples, 1.20 s",
                   "lower feat.frame_hop")


def test_a_clip_a_little_short_names_hop_frame_num_and_the_length_needed(tmp_path, data, capsys):
    code, _, err = _train(tmp_path, data, capsys, "feat.frame_hop=1024")  # 19 frames, a segment is 32
    one_line_error(code, err, "give 19 frames at feat.frame_hop=1024", "feat.frame_num=32",
                   "at least 31744 samples")


def test_a_learning_rate_far_out_warns_once_at_the_start_naming_it(tmp_path, data, capsys):
    lo, hi = FIELDS["train.lrD"].json_schema_extra["sane"]  # the range declared once, in the schema
    assert lo <= FIELDS["train.lrD"].default <= hi
    code, out, err = _train(tmp_path, data, capsys, "train.lrD=2e4")
    assert code == 0, err[-2000:]
    warnings = [x for x in out.splitlines() if x.startswith("warning: ")]
    assert warnings == [f"warning: train.lrD=20000 is outside its usual range [{lo:g}, {hi:g}] (critic learning "
                        "rate (Adam); default 0.0002): check it was typed as meant"]
    assert out.index(warnings[0]) < out.index("training clips")  # at the start, before any work
    code, out, _ = _train(tmp_path / "again", data, capsys, f"train.lrG={hi}", f"train.lrD={lo}")
    assert code == 0 and "warning: " not in out  # the range's ends are usual
