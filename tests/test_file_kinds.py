"""Every file this project writes, given where another kind is expected, is named for what it is, with what to pass
instead: one table of (the file, the place it is given), each a real run of the command's entry point in this
process on a real file of that kind (from one trained run, its test.py and its feature cache)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
import yaml

from aegan import score as score_cli
from aegan.commands import cli
from aegan.store import checkpoint
from conftest import TINY, one_line_error, out_sets, run_cli
from dcase2022.datasets import SPEC

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def files(trained2022, tmp_path_factory) -> dict[str, Path]:
    """One real file of every kind, in a folder of this module's own: a tested run's outputs."""
    out, sets, _ = trained2022
    code = run_cli_plain(cli.test_main, ["--mt", "fan", "-d", *sets])
    assert code == 0
    here = tmp_path_factory.mktemp("kinds")
    model, log, result = out / "model", out / "log" / "fan", out / "result" / "fan"
    picks = {"model file": model / "fan.pth", "run state": model / "fan_last.pth",
             "feature cache": next((out / "spec" / "fan").glob("train_*.npy")),
             "feature cache record": next((out / "spec" / "fan").glob("train_*.json")),
             "results table": result / "all_metrics.csv", "test record": result / "run.json",
             "epochs file": log / "progress.json", "settings file": log / "train.settings.yaml",
             "picture": result / "embeddings_pca.png", "log": log / "train.log",
             "submission file": next((out / "detect").glob("anomaly_score_fan_*.csv")),
             "tensorboard events": next((out / "tb" / "fan").glob("*/events.out.tfevents.*"))}
    kept = {kind: shutil.copy(path, here / path.name) for kind, path in picks.items()}
    kept["lock"] = here / "fan.lock"
    kept["lock"].write_text("process 4242 on host since 2026-12-03 10:00:00")
    state = checkpoint.load(model / "fan.pth")  # the sidecar test.py keeps beside an original checkpoint
    torch.save({"version": 2, "checkpoint_sha256": "0" * 64, "identity": None, "settings": {}, "thresholds": {}},
               here / "fan.scoring.pt")
    kept["sidecar"] = here / "fan.scoring.pt"
    kept["recording"] = next((trained2022_data(sets) / "dev_data" / "fan" / "test").glob("*.wav"))
    assert state["format"] == "aegan-ad model"
    return kept


def run_cli_plain(main, argv: list[str]) -> int:
    try:
        main(SPEC, argv)
    except SystemExit as e:
        return e.code
    return 0


def trained2022_data(sets: list[str]) -> Path:
    return Path(next(s.split("=", 1)[1] for s in sets if s.startswith("dataset_dir=")))


# (the file's kind, what the line says it is): given as a model (aegan.score --model)
AS_MODEL = [
    ("run state", ["is the run state of a training run", "not a model", "give fan.pth"]),
    ("sidecar", ["is the scoring sidecar of a model, not a model", "fan.pth"]),
    ("feature cache", ["is a NumPy array (a feature cache", "not a checkpoint"]),
    ("feature cache record", ["is the record of a feature cache", "not a checkpoint"]),
    ("results table", ["is a CSV table of results (all_metrics.csv), not a checkpoint"]),
    ("test record", ["is the record of a test.py run", "not a checkpoint"]),
    ("epochs file", ["is the epochs file of a training run", "not a checkpoint"]),
    ("settings file", ["is a settings file (YAML), not a checkpoint"]),
    ("picture", ["is a PNG picture, not a checkpoint"]),
    ("log", ["is a log file, not a checkpoint"]),
    ("lock", ["is the lock of a training run", "not a checkpoint"]),
    ("submission file", ["is a submission file", "not a checkpoint"]),
    ("recording", ["is a WAV recording, not a checkpoint"]),
    ("tensorboard events", ["is a TensorBoard events file, not a checkpoint"]),
]


@pytest.mark.parametrize("kind, needles", AS_MODEL, ids=[k for k, _ in AS_MODEL])
def test_a_file_given_as_the_model_is_named_for_what_it_is(kind, needles, files, capsys):
    code, _, err = run_cli(lambda _, argv: score_cli.main(argv), None,
                           ["--model", str(files[kind]), str(files["recording"])], capsys)
    one_line_error(code, err, *needles, files[kind].name)


AS_CONFIG = [
    ("model file", ["is a PyTorch file (a model or a run state), not a YAML file of settings"]),
    ("feature cache", ["is a NumPy array", "not a YAML file"]),
    ("results table", ["is a CSV table of results", "not a YAML file"]),
    ("picture", ["is a PNG picture, not a YAML file"]),
    ("recording", ["is a WAV recording, not a YAML file"]),
    ("lock", ["is the lock of a training run", "not a YAML file"]),
    ("test record", ["is the record of a test.py run", "not a YAML file"]),
    ("tensorboard events", ["is a TensorBoard events file, not a YAML file"]),
    ("settings file", None),  # a settings file is a config file: it loads
]


@pytest.mark.parametrize("kind, needles", AS_CONFIG, ids=[k for k, _ in AS_CONFIG])
def test_a_file_given_as_a_config_is_named_for_what_it_is(kind, needles, files, synth2022, tmp_path, capsys):
    args = ["--mt", "fan", "--config", str(files[kind]), *out_sets(tmp_path, synth2022)]
    code, out, err = run_cli(cli.train_main, SPEC, [*args, "--print-config"], capsys)
    if needles is None:  # what a run wrote as its settings is a config file another run can take
        assert code == 0 and yaml.safe_load(out.split("\n", 1)[1])["feat"]["mel_bin"] == 64, err
        return
    one_line_error(code, err, *needles, files[kind].name)
    assert not (tmp_path / "model").exists()


AS_RECORDING = [
    ("model file", ["is a PyTorch file", "not audio: give a WAV recording"]),
    ("results table", ["is a CSV table of results", "not audio"]),
    ("settings file", ["is a settings file (YAML), not audio"]),
]


@pytest.mark.parametrize("kind, needles", AS_RECORDING, ids=[k for k, _ in AS_RECORDING])
def test_a_file_given_as_a_recording_is_named_and_the_others_are_scored(kind, needles, files, capsys):
    code, out, err = run_cli(lambda _, argv: score_cli.main(argv), None,
                             ["--model", str(files["model file"]), str(files[kind]), str(files["recording"])], capsys)
    lines = [x for x in err.splitlines() if x.strip()]
    assert code == 1 and len(lines) == 2 and lines[1] == "error: 1 of 2 files could not be scored", err
    one_line_error(code, lines[0], *needles)
    assert f"\n{files['recording']},G_z_cos_min," in out


def test_a_model_file_under_the_run_states_name_is_named_on_resume(trained2022, synth2022, tmp_path, capsys):
    """The wrong file under the right name: --resume finds a model file where the run state belongs."""
    shutil.copytree(trained2022[0] / "model", tmp_path / "model")
    shutil.copy(tmp_path / "model" / "fan.pth", tmp_path / "model" / "fan_last.pth")
    code, _, err = run_cli(cli.train_main, SPEC, ["--mt", "fan", "--resume", *out_sets(tmp_path, synth2022)], capsys)
    one_line_error(code, err, "fan_last.pth is a model file, not the run state of a training run")
    assert not (tmp_path / "spec").exists()


@pytest.mark.parametrize("which", ["model file", "run state"])
def test_damaged_stored_settings_are_named_with_their_file(which, trained2022, synth2022, tmp_path, capsys):
    """A model or run state whose stored settings are out of range passes the same checks as a config file's
    (it ended in 'unexpected ValueError: Parameter Nx=0 is not a positive integer')."""
    shutil.copytree(trained2022[0] / "model", tmp_path / "model")
    name = "fan.pth" if which == "model file" else "fan_last.pth"
    state = checkpoint.load(tmp_path / "model" / name)
    state["config"]["feat"]["fft_num"] = 0
    torch.save(state, tmp_path / "model" / name)
    if which == "model file":
        wav = next((synth2022 / "dev_data" / "fan" / "test").glob("*.wav"))
        code, _, err = run_cli(lambda _, argv: score_cli.main(argv), None,
                               ["--model", str(tmp_path / "model" / name), str(wav)], capsys)
    else:
        code, _, err = run_cli(cli.train_main, SPEC, ["--mt", "fan", "--resume", *out_sets(tmp_path, synth2022)],
                               capsys)
    one_line_error(code, err, f"the settings stored in {tmp_path / 'model' / name}: feat.fft_num must be positive")


def test_a_dangling_link_among_the_training_clips_is_named(synth2022, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(synth2022 / "dev_data" / "ToyTrain", data / "dev_data" / "ToyTrain")
    link = data / "dev_data" / "ToyTrain" / "train" / "section_00_source_train_normal_0099_x.wav"
    link.symlink_to(tmp_path / "gone.wav")
    code, _, err = run_cli(cli.train_main, SPEC, ["--mt", "ToyTrain", "--set", "train_set=dev",
                                                  *[x for s in TINY for x in ("--set", s)], *out_sets(tmp_path, data)],
                           capsys)
    one_line_error(code, err, "section_00_source_train_normal_0099_x.wav is a symbolic link to", "gone.wav",
                   "which does not exist")
    assert not (tmp_path / "model").exists() and not (tmp_path / "spec").exists()


def test_two_datasets_in_one_result_dir_are_refused_before_anything_is_written(trained2022, files, tmp_path,
                                                                              capsys):
    """DCASE 2020's results in the result_dir a DCASE 2022 test.py is given: both have a machine type fan and a
    summary there; the run stops before writing anything (it replaced the other dataset's summary)."""
    out, sets, _ = trained2022
    result = tmp_path / "result"
    (result / "pump").mkdir(parents=True)
    record = files["test record"].read_text()  # a real record, made one of another dataset
    (result / "pump" / "run.json").write_text(record.replace('"dcase2022"', '"dcase2020"'))
    detect = tmp_path / "detect"
    code, _, err = run_cli(cli.test_main, SPEC, ["--mt", "fan", "-d", *sets, "--set", f"result_dir={result}",
                                                 "--set", f"detect_dir={detect}"], capsys)
    one_line_error(code, err, f"result_dir {result} holds results of dcase2020", "pump/run.json",
                   "give each dataset its own result_dir")
    assert sorted(p.name for p in result.rglob("*")) == ["pump", "run.json"] and not detect.exists()
