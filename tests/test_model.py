"""A model that stands alone: our checkpoints hold what scoring needs; for one of the original's, what it
lacks is derived once from the training clips, kept in a sidecar keyed on the checkpoint's content."""

import dataclasses
import shutil

import numpy as np
import pytest
import torch

from aegan.core.errors import AeganError
from aegan.detector import Detector
from aegan.inference import model
from aegan.inference.model import prepare
from aegan.settings.layers import load_config
from aegan.store import checkpoint, model_file
from aegan.store.model_dir import sidecar_of as sidecar_path
from conftest import SMALL, out_sets
from dcase2022.datasets import SPEC

pytestmark = pytest.mark.slow
CPU = torch.device("cpu")


def _resolved(out, synth2022):
    return load_config(SPEC.root, "fan", str(SMALL), [*out_sets(out, synth2022)[1::2], "feat.workers=1"])


def test_our_checkpoint_stands_alone(trained2022):
    m = model.load(trained2022[0] / "model" / "fan.pth", CPU)
    state = checkpoint.load(trained2022[0] / "model" / "fan.pth")
    assert m.cfg["net"]["isize"] == 64 and m.metric() == "G_z_cos_min" and m.info["mt"] == "fan"
    assert np.array_equal(m.train_emb, state["train_emb"].numpy()) and m.vmax == np.float32(state["feat_max"])
    assert "G_z_cos_min@0.9" in m.thresholds and m.cfg["net"]["first_norm"] is False  # fan
    assert m.identity.mt == "fan" and len(m.identity.clips) == len(m.train_emb)
    assert not sidecar_path(trained2022[0] / "model" / "fan.pth").exists()


def test_original_checkpoint_gets_its_sidecar_once(trained2022, synth2022, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(trained2022[0] / "spec", out / "spec")
    ours = checkpoint.load(trained2022[0] / "model" / "fan.pth")
    path = out / "model" / "fan.pth"
    path.parent.mkdir(parents=True)
    torch.save({"netD": ours["netD"], "netG": ours["netG"], "best_hmean": np.float64(ours["best_hmean"])}, path)
    with pytest.raises(AeganError, match="original's format and has no sidecar fan.scoring.pt"):
        model.load(path, CPU)
    m, _ = prepare(SPEC, _resolved(out, synth2022), "fan", CPU)
    assert "kept what scoring needs in" in capsys.readouterr().out
    # derived from the training clips: the same max/min and critic embeddings as training recorded
    assert m.vmax == np.float32(ours["feat_max"]) and np.array_equal(m.train_emb, ours["train_emb"].numpy())
    prepare(SPEC, _resolved(out, synth2022), "fan", CPU)
    assert "kept what scoring needs" not in capsys.readouterr().out  # read from the sidecar this time
    alone = model.load(path, CPU)  # now it stands alone
    assert np.array_equal(alone.train_emb, m.train_emb) and alone.cfg["feat"]["mel_bin"] == 64
    # a replaced checkpoint is noticed by its content
    sd = dict(ours["netG"])
    sd["Decoder.main.0.weight"] = sd["Decoder.main.0.weight"] * 1.01
    torch.save({"netD": ours["netD"], "netG": sd, "best_hmean": 0.5}, path)
    prepare(SPEC, _resolved(out, synth2022), "fan", CPU)
    printed = capsys.readouterr().out
    assert "belongs to another checkpoint file" in printed and "kept what scoring needs" in printed


def test_a_fitted_threshold_is_kept(trained2022, synth2022, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(trained2022[0] / "model", out / "model")
    shutil.copytree(trained2022[0] / "spec", out / "spec")
    m, training = prepare(SPEC, _resolved(out, synth2022), "fan", CPU)
    train_specs = training.specs
    rule, fitted = m.threshold("D_lof", train_specs)  # a critic metric: from the stored embeddings, no pass
    assert fitted and rule["metric"] == "D_lof"
    model.save_thresholds(m)
    again, _ = prepare(SPEC, _resolved(out, synth2022), "fan", CPU)
    assert again.threshold("D_lof", train_specs) == (rule, False)
    assert again.threshold("G_z_cos_min", train_specs)[1] is False  # the model file's own is still there


def test_a_model_file_from_before_a_setting_was_declared_scores_as_before(trained2022, synth2022, tmp_path):
    """A model file whose stored settings lack a setting declared since (here detect.amp, which scoring reads)
    reads with the declared default, the behaviour before it, and scores its clips as the complete file does."""
    _, mf = model_file.read(trained2022[0] / "model" / "fan.pth")
    older = {k: dict(v) if isinstance(v, dict) else v for k, v in mf.config.items()}
    del older["detect"]["amp"]
    model_file.write(tmp_path / "fan.pth", dataclasses.replace(mf, config=older))
    assert model_file.read(tmp_path / "fan.pth")[1].config["detect"]["amp"] == "fp32"
    clips = sorted((synth2022 / "dev_data" / "fan" / "test").glob("*.wav"))[:3]
    then, now = Detector.load(tmp_path / "fan.pth").score(clips), Detector.load(trained2022[0] / "model" / "fan.pth")
    assert [r.scores for r in then] == [r.scores for r in now.score(clips)]
