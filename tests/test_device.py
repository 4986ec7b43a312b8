"""train.tf32 (CUDA precision) set in one place: the TF32 flags every command leaves, read on the CPU build (the
flags exist there; only CUDA reads them). The default is PyTorch's own, which the original never changes."""

import pytest
import torch

from aegan import score
from aegan.commands import cli
from aegan.method.device import PRECISIONS, apply_precision, model_precision
from aegan.settings.layers import load_config
from conftest import TINY, one_line_error, out_sets, run_cli
from dcase2022.datasets import SPEC

SENTINEL = (False, True)  # a pair no choice sets: a command that sets nothing leaves it


def flags() -> tuple[bool, bool]:
    return torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32


@pytest.fixture(autouse=True)
def restore_flags():
    before = flags()
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


def _sentinel():
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = SENTINEL


def test_original_is_pytorchs_default():
    """The default choice is what a fresh PyTorch process has (the original's setting, never changed)."""
    import sys

    import progress
    fresh = progress.run([sys.executable, "-c", "import torch; print(torch.backends.cudnn.allow_tf32, "
                          "torch.backends.cuda.matmul.allow_tf32)"], capture_output=True, text=True).stdout.split()
    assert tuple(x == "True" for x in fresh) == PRECISIONS["original"] == (True, False)
    cfg = load_config(SPEC.root, "fan").cfg
    assert cfg["train"]["tf32"] == "original"


@pytest.mark.parametrize("value, want", [("true", "tf32"), ("false", "fp32"), ("fp32", "fp32"), ("tf32", "tf32"),
                                         ("original", "original")])
def test_old_booleans_map_to_choices(value, want):
    assert load_config(SPEC.root, "fan", sets=[f"train.tf32={value}"]).cfg["train"]["tf32"] == want


def test_unknown_choice_is_one_line(capsys, tmp_path):
    code, _, err = run_cli(cli.train_main, SPEC, ["--mt", "fan", "--set", "train.tf32=half"], capsys)
    one_line_error(code, err, "train.tf32", "original, fp32 or tf32")


def test_saved_setting_wins_unless_set():
    """Scoring uses the checkpoint's train.tf32 (old checkpoints hold a boolean); an explicit setting overrides."""
    run = {"train": {"tf32": "original"}}
    assert model_precision({"train": {"tf32": False}}, run) == "fp32"
    assert model_precision({"train": {"tf32": "tf32"}}, run) == "tf32"
    assert model_precision({"train": {"tf32": "fp32"}}, {"train": {"tf32": "tf32"}}, {"train.tf32"}) == "tf32"
    assert model_precision(None, run) == "original"  # an original-format checkpoint: the run's setting
    assert model_precision({}, {}) == "original"


@pytest.mark.parametrize("name", list(PRECISIONS))
def test_apply_sets_both_flags(name):
    _sentinel()
    assert apply_precision(name) == name and flags() == PRECISIONS[name]


def test_every_command_leaves_the_models_flags(tmp_path, synth2022, capsys):
    """train.py (and its per-epoch evaluation) sets the chosen flags; test.py, loc.py and aegan.score then set the
    saved model's, or the user's when given."""
    sets = [*TINY, "train.tf32=fp32", "train.batch_size=8"]
    args = ["--mt", "fan", *out_sets(tmp_path, synth2022), *[x for s in sets for x in ("--set", s)]]
    _sentinel()
    code, _, err = run_cli(cli.train_main, SPEC, [*args, "--seed", "1"], capsys)
    assert code == 0, err[-2000:]
    assert flags() == PRECISIONS["fp32"]
    base = ["--mt", "fan", *out_sets(tmp_path, synth2022), *[x for s in TINY for x in ("--set", s)]]
    for main, extra in ((cli.test_main, ["-d", "--no-plots"]), (cli.loc_main, ["--limit", "1", "--top", "1"])):
        _sentinel()
        code, _, err = run_cli(main, SPEC, [*base, *extra], capsys)
        assert code == 0, err[-2000:]
        assert flags() == PRECISIONS["fp32"], main.__name__  # the saved model's, not the default
        _sentinel()
        code, _, err = run_cli(main, SPEC, [*base, *extra, "--set", "train.tf32=tf32"], capsys)
        assert code == 0, err[-2000:]
        assert flags() == PRECISIONS["tf32"], main.__name__  # the user's explicit choice
    wav = sorted((synth2022 / "dev_data" / "fan" / "test").glob("*.wav"))[0]
    _sentinel()
    score.main(["--model", str(tmp_path / "model" / "fan.pth"), str(wav)])  # exits only on failure
    assert flags() == PRECISIONS["fp32"]
