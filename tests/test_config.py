"""Configuration: defaults <- pretrain <- --config <- --set; validation names the key at fault."""

import pytest
import yaml

from aegan.config import load_config
from aegan.errors import AeganError
from conftest import ROOT
from dcase2022.datasets import SPEC

D22 = ROOT / "dcase2022"


def test_defaults_are_the_paper_settings():
    cfg, sources = load_config(D22, "ToyTrain")
    assert sources == [str(D22 / "config.yaml")]
    assert cfg["feat"] == {"n_fft": 2048, "hop_length": 512, "n_mels": 128, "frame_num": 128, "graph_hop_f": 1,
                           "workers": 0}
    assert cfg["net"]["isize"] == 128 and cfg["net"]["nz"] == 256 and cfg["net"]["normalize"] == {"d": "ln", "g": "ln"}
    t = cfg["train"]
    assert (t["epoch"], t["bs"], t["lrD"], t["lrG"], t["beta1"]) == (60, 512, 2e-4, 2e-4, 0.5)
    assert t["wgan"] == {"feat_match_eff": 0.1, "match_item": {"mu": 1}, "ncritic": 1, "lambda_gp": 10}
    assert cfg["train_set"] == "dev" and cfg["detect"]["p"] == 0.1
    assert cfg["model_dir"] == str((ROOT / "model" / "dcase2022").resolve())


@pytest.mark.parametrize("mt, train_set, g_norm, match, beta1, metric, first_norm", [
    ("bearing", "deval", "ln", {"mu": 1}, 0.5, "G_z_1_sum", False),
    ("fan", "deval", "ln", {"mu": 1}, 0.5, "G_z_cos_min", False),
    ("gearbox", "dev", "bn", {"mu": 1, "sigma": 1}, 0.5, "G_z_cos_min", True),
    ("slider", "dev", "ln", {"mu": 1}, 0.5, "D_lof", True),
    ("ToyCar", "dev", "ln", {"mu": 1}, 0.0, "G_z_1_sum", False),
])
def test_pretrain_settings_match_the_paper_table(mt, train_set, g_norm, match, beta1, metric, first_norm):
    cfg, sources = load_config(D22, mt)
    assert sources[-1].endswith(f"pretrain/dcase2022/{mt}.yaml")
    assert cfg["train_set"] == train_set and cfg["net"]["normalize"]["g"] == g_norm
    assert cfg["train"]["wgan"]["match_item"] == match and cfg["train"]["wgan"]["feat_match_eff"] == 0.1
    assert cfg["train"]["beta1"] == beta1 and cfg["detect"]["metric"] == metric
    assert SPEC.first_norm(mt) is first_norm


def test_order_config_file_then_set(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("train: {epoch: 7, bs: 32}\nfeat: {n_mels: 64, frame_num: 64}\nnet: {isize: 64}\n")
    cfg, sources = load_config(D22, "fan", str(f), ["train.epoch=3", "dataset_dir=/data/x", "train.lrD=1e-3"])
    assert cfg["train"]["epoch"] == 3 and cfg["train"]["bs"] == 32 and cfg["train"]["lrD"] == 1e-3
    assert cfg["dataset_dir"] == "/data/x" and cfg["train_set"] == "deval"  # pretrain/fan still applied
    assert len(sources) == 6


def test_original_style_config_file_works_unchanged(tmp_path):
    original = {
        "dataset_dir": "../../data/dcase2022dataset", "model_dir": "./model", "spec_dir": "./spec",
        "log_dir": "./log", "detect_dir": "./detect", "result_dir": "./result",
        "feat": {"n_fft": 2048, "hop_length": 512, "n_mels": 128, "frame_num": 128, "graph_hop_f": 1},
        "net": {"act": ["leakyrelu", "relu"], "normalize": {"d": "ln", "g": "ln"}, "nz": 256, "ndf": 32,
                "ngf": 32, "isize": 128},
        "train_set": "dev",
        "train": {"lrD": 0.0002, "lrG": 0.0002, "beta1": 0.5, "epoch": 60, "bs": 512,
                  "wgan": {"feat_match_eff": 0.1, "match_item": {"mu": 1}, "ncritic": 1, "lambda_gp": 10}},
        "detect": {"p": 0.1},
    }
    f = tmp_path / "config.yaml"
    f.write_text(yaml.safe_dump(original))
    cfg, _ = load_config(D22, "slider", str(f))
    assert cfg["train"]["epoch"] == 60 and cfg["detect"]["metric"] == "D_lof"


@pytest.mark.parametrize("sets, message", [
    (["train.epoc=3"], "unknown key train.epoc"),
    (["train.epoch=three"], "train.epoch must be of type int"),
    (["train.epoch=0"], "train.epoch must be positive"),
    (["feat.n_mels=64"], "feat.n_mels .* must equal net.isize"),
    (["feat.frame_num=64"], "feat.frame_num .* must equal net.isize"),
    (["net.isize=96", "feat.n_mels=96", "feat.frame_num=96"], "net.isize must be a power of two"),
    (["train_set=test"], "train_set must be dev, eval or deval"),
    (["net.normalize.g=gn"], "net.normalize.g must be ln or bn"),
    (["train.wgan.match_item={mu: 1, tau: 2}"], "train.wgan.match_item must be a mapping with keys among mu, sigma"),
    (["train.select=metric", "detect.metric=null"], "train.select=metric needs detect.metric"),
    (["train"], "expected key=value"),
    (["feat=3"], "feat must be a mapping"),
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
