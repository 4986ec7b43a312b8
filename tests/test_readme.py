"""Every command the README shows runs as written: each script's arguments go through its real parser and its
settings resolve (train.py, test.py and loc.py with --print-config, aegan.reproduce with --status, aegan.synth for
real), on synthetic data where the README names /data/...; the install lines name the pinned torch."""

from __future__ import annotations

import importlib.util
import re
import runpy
import shlex
import sys
from pathlib import Path

import pytest
import yaml

from aegan import synth
from conftest import ROOT

README = (ROOT / "README.md").read_text()


def commands() -> list[tuple[str, list[str]]]:
    """(folder the README is in, argv) of every command of its bash blocks, continuation lines joined, comments
    and optional [...] parts dropped, `cd` followed."""
    out = []
    for block in re.findall(r"```bash\n(.*?)```", README, re.S):
        cwd = "."
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\[[^\]]*\]", "", line.split(" #", 1)[0]).strip()
            for part in (p.strip() for p in line.split("&&")):
                if part.startswith("cd "):
                    cwd = part[3:].strip()
                elif part:
                    out.append((cwd, shlex.split(part)))
    return out


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> dict[str, Path]:
    """Small synthetic stand-ins for the README's /data/... folders."""
    root = tmp_path_factory.mktemp("data")
    small = {"seconds": 1.2, "n_train": 2, "n_test": 1}
    d22 = synth.make_2022(root / "dcase2022", "fan", n_train_target=1, **small)
    d20 = synth.make_2020(root / "dcase2020", "pump", **small)
    d24 = synth.make_firstshot(root / "dcase2024", "fan", 2024, "dev", n_train_target=1, **small)
    d25 = synth.make_firstshot(root / "dcase2025", "Polisher", 2025, "eval", n_train_target=1, **small)
    return {"/data/dcase2022_gt": d22, "/data/dcase2022": d22, "/data/dcase2020": d20, "/data/dcase2024": d24,
            "/data/dcase2025": d25}


def _run(script: Path, argv: list[str], cwd: Path, monkeypatch, capsys) -> tuple[int, str, str]:
    """Run a script (or a module of the aegan package, as `python -m`) in this process as the shell would, from
    `cwd`."""
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", [str(script), *argv])
    capsys.readouterr()
    try:
        if script.parent.name == "aegan":
            runpy.run_module(f"aegan.{script.stem}", run_name="__main__", alter_sys=True)
        else:
            runpy.run_path(str(script), run_name="__main__")
        code = 0
    except SystemExit as e:
        code = e.code or 0
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.filterwarnings("ignore:'aegan.*' found in sys.modules:RuntimeWarning")  # runpy: imported by a fixture
def test_the_readme_commands_parse_and_resolve(datasets, tmp_path, monkeypatch, capsys):
    seen = set()
    for cwd, argv in commands():
        text = " ".join(argv)
        for fake, real in datasets.items():
            argv = [a.replace(fake, str(real)) for a in argv]
        here = ROOT / cwd
        if argv[0] == "torchrun":  # the script and its arguments, in one process
            argv = ["python", *argv[2:]]
        if argv[:2] == ["python", "-m"] and argv[2] in ("venv", "pytest") or argv[0] in ("bash", ".", "pip"):
            continue  # the environment and the suite themselves; pip: below
        if argv[0] == "tensorboard":  # installed with the project, and its events are read in test_events.py
            assert importlib.util.find_spec("tensorboard") is not None, text
            seen.add("tensorboard")
            continue
        assert argv[0] == "python", text
        if argv[1] == "-m":
            module = argv[2].removeprefix("aegan.")
            script, args = ROOT / "aegan" / f"{module}.py", argv[3:]
            if module == "reproduce":
                args += ["--status", "--out", str(tmp_path / "rep")]
            elif module == "synth":
                args = [a.replace("data/synth2022", str(tmp_path / "synth")) for a in args] + ["--train", "1",
                                                                                              "--test", "1"]
            run_from = tmp_path  # relative inputs (recordings/, model/...) do not exist there
        else:
            script, args = here / argv[1], [*argv[2:], "--print-config"]
            run_from = here
        code, out, err = _run(script, args, run_from, monkeypatch, capsys)
        seen.add(script.name if script.name not in ("train.py", "test.py", "loc.py") else f"{here.name}/{script.name}")
        if script.name == "score.py":  # parsed, then stopped at the model that is not there
            assert code == 1 and "checkpoint not found" in err, (text, err)
            continue
        assert code == 0, (text, err[-2000:])
        if args[-1] == "--print-config":
            printed = yaml.safe_load(out.split("\n", 1)[1])  # after the line of merged config files
            assert isinstance(printed, dict) and "feat" in printed, text
    assert {"tensorboard", "dcase2022/train.py", "dcase2022/test.py", "dcase2022/loc.py", "dcase2020/train.py",
            "firstshot/test.py", "reproduce.py", "score.py", "synth.py"} <= seen


def test_the_readme_installs_the_pinned_torch():
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)$", (ROOT / "requirements.txt").read_text(), re.M))
    named = set(re.findall(r"pip install torch==(\S+)", README))
    assert named == {pins["torch"]}, (named, pins["torch"])
    assert "pip install -r requirements.txt" in README and (ROOT / "requirements.txt").read_text().rstrip().endswith(
        "-e .")


def test_the_readme_python_imports_resolve():
    """The Python blocks' import lines run as written (their calls need a trained model: test_detector.py)."""
    imports = [line for block in re.findall(r"```python\n(.*?)```", README, re.S) for line in block.splitlines()
               if line.startswith(("from ", "import "))]
    assert imports, "the README shows no Python import"
    for line in imports:
        exec(line, {})


def _demo_images():
    spec = importlib.util.spec_from_file_location("demo_images", ROOT / "demo" / "images.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_readme_pictures_are_the_demo_commands_with_its_captions():
    """#37: the captions named a metric the demo no longer selects and a command it never ran. Each picture is
    written by demo/images.py with its caption in the PNG; the README shows it under that caption."""
    from PIL import Image

    images = _demo_images()
    shown = dict((name, alt) for alt, name in re.findall(r"^!\[([^\]]*)\]\(docs/images/([^)]+)\)$", README, re.M))
    assert set(shown) == set(images.IMAGES)
    for name in images.IMAGES:
        with Image.open(ROOT / "docs" / "images" / name) as im:
            caption = im.text.get("Caption")
        assert caption == shown[name], name
        assert f"({images.COMMAND}: " in caption and "training selected epoch " in caption, caption


def test_the_synthetic_data_section_trains_as_written(tmp_path):
    """#37: the README's synthetic clips are shorter than one segment of the default settings (training failed
    after caching the features); its training command adds demo/small.yaml, with which they give segments."""
    import soundfile as sf

    from aegan.data.segments import num_segments
    from aegan.settings.layers import load_config

    section = README.split("## Synthetic data", 1)[1].split("\n## ", 1)[0]
    synth_cmd, train_cmd = re.findall(r"```bash\n(.*?)```", section, re.S)[0].strip().splitlines()
    argv = shlex.split(synth_cmd.split(" #", 1)[0])[3:]  # after python -m aegan.synth
    synth.main([*(a.replace("data/synth2022", str(tmp_path)) for a in argv), "--train", "1", "--test", "1"])
    samples = sf.info(str(next(tmp_path.glob("dev_data/*/train/*.wav")))).frames
    config = re.search(r"--config (\S+)", train_cmd).group(1)
    assert f"dataset_dir={argv[argv.index('--out') + 1]}" in train_cmd
    for extra, trains in ((None, False), (str(ROOT / config), True)):
        feat = load_config(ROOT / "dcase2022", "fan", extra).cfg["feat"]
        frames = 1 + samples // feat["frame_hop"]  # librosa's centred frames
        assert (num_segments(frames, feat["frame_num"], feat["graph_hop_f"]) > 0) == trains, (extra, frames)
    assert "hours per epoch on a CPU" in section
