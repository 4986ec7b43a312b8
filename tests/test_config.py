"""Configuration: defaults.yaml <- pretrain <- config.yaml <- --config <- --set, with the original's key names;
the original's own files load unchanged; validation names the key at fault."""

from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from aegan.core.errors import AeganError
from aegan.inference.model import from_checkpoint
from aegan.settings.layers import Resolved, batch_size, load_config, merge, parse_set, read_yaml
from conftest import ROOT
from oracle import ORIGINAL, needs_original

D22, D20 = ROOT / "dcase2022", ROOT / "dcase2020"


def test_defaults_are_the_paper_settings():
    r = load_config(D22, "ToyTrain")
    assert r.sources == [str(D22 / "defaults.yaml"), str(D22 / "config.yaml")] and not r.explicit
    cfg = r.cfg
    assert cfg["feat"] == {"fft_num": 2048, "mel_bin": 128, "frame_hop": 512, "frame_num": 128, "graph_hop_f": 1,
                           "workers": 0, "channels": 1, "channel": "mean", "far_share": 1.0}  # one channel, as read
    assert cfg["net"]["isize"] == 128 and cfg["net"]["nz"] == 256 and cfg["net"]["normalize"] == {"d": "ln", "g": "ln"}
    t = cfg["train"]
    assert (t["epoch"], t["batch_size"], t["lrD"], t["lrG"], t["beta1"]) == (60, 512, 2e-4, 2e-4, 0.5)
    assert t["wgan"] == {"feat_match_eff": 0.1, "match_item": {"mu": 1}, "ncritic": 1, "lambda_gp": 10}
    assert cfg["train_set"] == "dev" and cfg["detect"]["p"] == 0.1
    assert cfg["model_dir"] == str((ROOT / "model" / "dcase2022").resolve())
    c20 = load_config(D20, "valve", None, ["train_set=dev"]).cfg
    assert c20["train"]["bs"] == 512 and "batch_size" not in c20["train"] and c20["train"]["epoch"] == 50
    assert batch_size(cfg) == 512 == batch_size(c20)


@pytest.mark.parametrize("mt, train_set, g_norm, match, beta1, metric, first_norm", [
    ("bearing", "deval", "ln", {"mu": 1}, 0.5, "G_z_1_sum", False),
    ("fan", "deval", "ln", {"mu": 1}, 0.5, "G_z_cos_min", False),
    ("gearbox", "dev", "bn", {"mu": 1, "sigma": 1}, 0.5, "G_z_cos_min", True),
    ("slider", "dev", "ln", {"mu": 1}, 0.5, "D_lof", True),
    ("ToyCar", "dev", "ln", {"mu": 1}, 0.0, "G_z_1_sum", False),
])
def test_pretrain_settings_match_the_paper_table(mt, train_set, g_norm, match, beta1, metric, first_norm):
    r = load_config(D22, mt)
    assert r.sources[1].endswith(f"pretrain/dcase2022/{mt}.yaml")
    cfg = r.cfg
    assert cfg["train_set"] == train_set and cfg["net"]["normalize"]["g"] == g_norm
    assert cfg["train"]["wgan"]["match_item"] == match and cfg["train"]["wgan"]["feat_match_eff"] == 0.1
    assert cfg["train"]["beta1"] == beta1 and cfg["detect"]["metric"] == metric
    assert cfg["net"]["first_norm"] is first_norm  # the original's net.py decides it by machine type


def test_order_config_file_then_set_and_what_was_explicit(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("train: {epoch: 7, batch_size: 32}\nfeat: {mel_bin: 64, frame_num: 64}\nnet: {isize: 64}\n")
    r = load_config(D22, "fan", str(f), ["train.epoch=3", "dataset_dir=/data/x", "train.lrD=1e-3"])
    cfg = r.cfg
    assert cfg["train"]["epoch"] == 3 and cfg["train"]["batch_size"] == 32 and cfg["train"]["lrD"] == 1e-3
    assert cfg["dataset_dir"] == "/data/x" and cfg["train_set"] == "deval"  # pretrain/fan still applied
    assert len(r.sources) == 7
    assert r.explicit == {"train.epoch", "train.batch_size", "feat.mel_bin", "feat.frame_num", "net.isize",
                          "dataset_dir", "train.lrD"}


def test_the_other_datasets_batch_key_is_an_alias():
    assert load_config(D22, "fan", None, ["train.bs=16"]).cfg["train"]["batch_size"] == 16
    assert load_config(D20, "fan", None, ["train.batch_size=8"]).cfg["train"]["bs"] == 8


def test_relative_paths_from_files_resolve_against_the_dataset_folder_from_set_against_cwd(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("model_dir: ./model\nspec_dir: ../../spec\n")
    r = load_config(D22, "fan", str(f), ["log_dir=logs"], cwd=tmp_path)
    assert r.cfg["model_dir"] == str(D22 / "model") and r.cfg["spec_dir"] == str((D22 / "../../spec").resolve())
    assert r.cfg["log_dir"] == str(tmp_path / "logs")


def test_original_style_keys_are_accepted_and_the_unused_ones_dropped(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text(yaml.safe_dump({"repre": {"normal": 0, "anomaly": 1}, "mt": {"train": ["fan"], "test": ["fan"]},
                                 "feat": {"spec": "mel", "fft_num": 1024}, "card_id": 3}))
    r = load_config(D20, "fan", str(f))
    assert r.ignored == ["repre", "mt", "card_id", "feat.spec"] and r.cfg["feat"]["fft_num"] == 1024
    assert not {"repre", "mt", "card_id"} & set(r.cfg) and "spec" not in r.cfg["feat"]
    f.write_text("feat: {spec: stft}\n")
    with pytest.raises(AeganError, match="feat.spec must be mel"):
        load_config(D20, "fan", str(f))


@needs_original
@pytest.mark.parametrize("dataset, folder", [(D22, "dcase22"), (D20, "dcase20")])
def test_the_originals_config_files_load_unchanged_and_our_pretrain_agrees(dataset, folder):
    """Each of the original's pretrain files, through our loader, gives the settings our pretrain file gives
    (every key the original has); its config.yaml loads too."""
    load_config(dataset, "fan", str(ORIGINAL / folder / "config.yaml"))
    files = sorted((ORIGINAL / folder / "pretrain").glob("*_cfg.yaml"))
    assert len(files) == (5 if folder == "dcase22" else 6)
    for f in files:
        mt = f.name[: -len("_cfg.yaml")]
        theirs = load_config(dataset, mt, str(f)).cfg
        ours = load_config(dataset, mt).cfg
        assert theirs["net"] == ours["net"] and theirs["train_set"] == ours["train_set"], mt
        assert theirs["feat"] == ours["feat"], mt
        for key in ("lrD", "lrG", "beta1", "epoch", "wgan"):
            assert theirs["train"][key] == ours["train"][key], (mt, key)
        assert batch_size(theirs) == batch_size(ours) and theirs["detect"]["p"] == ours["detect"]["p"]


def _every_yaml_file() -> list[Path]:
    ours = [p for p in ROOT.rglob("*.yaml") if ".git" not in p.parts and "reproduce" not in p.parts]
    return sorted(ours) + sorted(ORIGINAL.rglob("*.yaml"))


def test_every_shipped_and_original_config_file_reads_as_pyyaml_read_it():
    """The strict YAML 1.2 reader changes nothing in the files we ship nor in the original's: the same settings
    as PyYAML's YAML 1.1 reading (what they were read with before), key for key and type for type."""
    files = _every_yaml_file()
    assert len(files) >= 16 + (13 if ORIGINAL.is_dir() else 0)
    for f in files:
        before, after = yaml.safe_load(f.read_text()), read_yaml(f)
        assert after == before and repr(after) == repr(before), f


@pytest.mark.parametrize("text, key, value", [
    ("train:\n  epoch: 010\n", "epoch", 10),  # YAML 1.1: octal 8
    ("train:\n  epoch: 0o10\n", "epoch", 8),  # YAML 1.2's octal, written as such
    ("train:\n  lrD: 2e-4\n", "lrD", 2e-4),  # YAML 1.1: the text '2e-4'
])
def test_numbers_are_read_as_written_in_files_and_in_set(tmp_path, text, key, value):
    f = tmp_path / "c.yaml"
    f.write_text(text)
    assert load_config(D22, "ToyTrain", str(f)).cfg["train"][key] == value
    item = f"train.{key}={text.split(': ')[1].strip()}"
    assert load_config(D22, "ToyTrain", None, [item]).cfg["train"][key] == value


@pytest.mark.parametrize("text, lines", [
    ("train:\n  epoch: 3\nfeat: {workers: 1}\ntrain:\n  batch_size: 16\n", "train is given twice (lines 1 and 4)"),
    ("train:\n  epoch: 3\n  lrD: 0.001\n  epoch: 60\n", "epoch is given twice (lines 2 and 4)"),
    ("feat: {workers: 1, workers: 2}\n", "workers is given twice (lines 1 and 1)"),
])
def test_a_key_or_section_given_twice_is_refused_naming_the_file_and_both_lines(tmp_path, text, lines):
    """PyYAML keeps the last one in silence: a second train: section dropped the first one's epochs."""
    f = tmp_path / "twice.yaml"
    f.write_text(text)
    with pytest.raises(AeganError) as e:
        load_config(D22, "ToyTrain", str(f))
    assert str(e.value).startswith(f"config file {f}: key ") and lines in str(e.value) and "\n" not in str(e.value)


def test_a_huge_settings_file_is_refused_before_it_is_parsed(tmp_path):
    """50 MB of settings: PyYAML grew past gigabytes composing it; the size bound refuses it at once."""
    f = tmp_path / "huge.yaml"
    with open(f, "w") as out:
        out.write("train:\n")
        out.writelines(f"  k{i}: [{i}, {i}, {i}, {i}, {i}, {i}, {i}, {i}, {i}, {i}]\n" for i in range(1_000_000))
    assert f.stat().st_size > 50e6
    with pytest.raises(AeganError, match=f"config file {f} is over 1 MiB"):
        load_config(D22, "ToyTrain", str(f))


def test_settings_written_back_read_the_same():
    """What record_settings and --print-config write (dump) reads back as the same values: text that YAML 1.2
    reads as a number is quoted."""
    from aegan.settings.yaml_files import dump, load_text

    values = {"a": "010", "b": "1e-3", "c": "yes", "d": 1e-5, "e": True, "f": None, "g": "1:04", "h": "0o7",
              "i": 7, "j": [0.5, "null"]}
    assert load_text(dump(values), "dumped") == values


def test_original_file_can_replace_config_yaml(tmp_path):
    """The original's README: substitute config.yaml by a pretrain file. A dataset folder whose config.yaml is
    the original's loads it over our defaults (and it overrides the pretrain layer, as it is the user's file)."""
    folder = tmp_path / "dcase2022"
    folder.mkdir()
    (folder / "defaults.yaml").write_text((D22 / "defaults.yaml").read_text())
    (folder / "config.yaml").write_text("dataset_dir: /data\nfeat: {fft_num: 1024}\ntrain_set: eval\n"
                                        "repre: {normal: 0}\n")
    r = load_config(folder, "fan")
    assert r.cfg["feat"]["fft_num"] == 1024 and r.cfg["train_set"] == "eval" and r.ignored == ["repre"]


def test_checkpoint_settings_win_unless_set_explicitly():
    r = load_config(D22, "fan", None, ["feat.frame_hop=256"])
    saved = {"net": {**r.cfg["net"], "ndf": 16}, "feat": {**r.cfg["feat"], "workers": 3}, "train_set": "dev"}
    cfg, changed = from_checkpoint(Resolved(r.cfg, r.sources, set()), saved, "m.pth")
    assert cfg["net"]["ndf"] == 16 and cfg["train_set"] == "dev" and cfg["feat"]["workers"] == 0
    assert changed == ["net.ndf", "train_set"]
    saved["feat"]["frame_hop"] = 512
    with pytest.raises(AeganError, match=r"feat.frame_hop=256 was set, but checkpoint m.pth was trained with "
                                         r"feat.frame_hop=512"):
        from_checkpoint(r, saved, "m.pth")


@pytest.mark.parametrize("sets, message", [
    (["train.epoc=3"], r"unknown key train.epoc \(did you mean train.epoch\?\)"),
    (["train.epoch=three"], "train.epoch must be of type int"),
    (["train.epoch=0"], "train.epoch must be positive"),
    (["feat.mel_bin=64"], "feat.mel_bin .* must equal net.isize"),
    (["feat.frame_num=64"], "feat.frame_num .* must equal net.isize"),
    (["net.isize=96", "feat.mel_bin=96", "feat.frame_num=96"], "net.isize must be a power of two"),
    (["train_set=test"], "train_set must be dev, eval, deval or auto"),
    (["net.normalize.g=gn"], "net.normalize.g must be ln or bn"),
    (["train.wgan.match_item={mu: 1, tau: 2}"], "train.wgan.match_item must be a mapping with keys among mu, sigma"),
    (["train.select=metric", "detect.metric=null"], "train.select=metric needs detect.metric"),
    (["train"], "expected key=value"),
    (["feat=3"], "feat must be a mapping"),
    (["feat.n_fft=1024"], "unknown key feat.n_fft"),
    (["train.batch_size=1:04"], r"train.batch_size must be of type int \(like 512\), got '1:04'"),  # not 64
    (["train.epoch=0b11"], "train.epoch must be of type int"),  # YAML 1.1's binary is text in 1.2
    (["model_dir="], "--set model_dir=: model_dir is empty"),
    (["log_dir=  "], "log_dir is empty"),
    (["net.normalize={g: ln, g: bn}"], "key g is given twice"),
])
def test_bad_settings_name_the_key(sets, message):
    with pytest.raises(AeganError, match=message):
        load_config(D22, "ToyTrain", None, sets)


def test_bad_config_files(tmp_path):
    with pytest.raises(AeganError, match="config file not found"):
        load_config(D22, "fan", str(tmp_path / "nope.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(AeganError, match="not valid YAML"):
        load_config(D22, "fan", str(bad))
    bad.write_text("- a\n- b\n")
    with pytest.raises(AeganError, match="must hold a mapping"):
        load_config(D22, "fan", str(bad))


def test_shipped_config_yaml_sets_only_the_dataset_path():
    """config.yaml is the user's layer: it must not override the paper's per machine type settings."""
    for folder in (D22, D20):
        assert set(yaml.safe_load((folder / "config.yaml").read_text())) == {"dataset_dir"}
    assert Path(load_config(D20, "fan").cfg["dataset_dir"]) == (ROOT / "data" / "dcase2020").resolve()


# ---------------------------------------------------------------- fuzz: never anything but one clear line
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


def test_dcase2020_schema_is_dcase2022_with_what_differs():
    """One schema: dcase2020/defaults.yaml extends 2022's and holds only the differences, its batch key renamed."""
    from aegan.settings.layers import leaves

    a = dict(leaves(load_config(ROOT / "dcase2020", "x").cfg))
    b = dict(leaves(load_config(ROOT / "dcase2022", "x").cfg))
    paths = {"dataset_dir", "model_dir", "spec_dir", "log_dir", "detect_dir", "result_dir", "loc_dir"}
    assert {k for k in a.keys() & b.keys() if a[k] != b[k]} == paths | {"train.epoch", "train.wgan.feat_match_eff"}
    assert a.keys() ^ b.keys() == {"train.bs", "train.batch_size"} and a["train.bs"] == b["train.batch_size"]
    assert all(a[k].endswith("dcase2020") for k in paths)
    assert list(load_config(ROOT / "dcase2020", "x").cfg["train"])[:5] == ["lrD", "lrG", "beta1", "epoch", "bs"]


def test_the_dcase2022_defaults_file_is_what_the_declaration_writes():
    """Every setting is declared once (aegan/settings/schema.py); dcase2022/defaults.yaml, the file people read, is
    generated from it: a declaration changed without `python -m aegan.settings.defaults_file` fails here."""
    from aegan.settings.defaults_file import render

    assert (D22 / "defaults.yaml").read_text() == render()
    loaded, written = load_config(D22, "ToyTrain").cfg, yaml.safe_load(render())
    assert {k: v for k, v in loaded.items() if not k.endswith("_dir")} == {k: v for k, v in written.items()
                                                                           if not k.endswith("_dir")}


@pytest.mark.parametrize("which", ["pretrain/dcase2022/fan.yaml", "dcase2022/config.yaml"])
def test_a_settings_layer_that_is_a_dangling_link_is_named_not_left_out(tmp_path, which):
    """The paper's settings for a machine type, or the user's config.yaml, as a link to a file that is gone: left
    out, fan would train on the defaults without a word."""
    root = tmp_path / "dcase2022"
    root.mkdir()
    (root / "defaults.yaml").write_text(f"_extends: {ROOT / 'dcase2022' / 'defaults.yaml'}\n")
    link = tmp_path / which
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(tmp_path / "gone.yaml")
    with pytest.raises(AeganError) as e:
        load_config(root, "fan")
    assert str(e.value) == (f"config file {link} is a symbolic link to {tmp_path / 'gone.yaml'}, which does not "
                            "exist: restore the file or remove the link")
