"""A model that stands alone: our checkpoints hold what scoring needs; for one of the original's, what it
lacks is derived once from the training clips, kept in a sidecar keyed on the checkpoint's content."""

import dataclasses
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

import progress
from aegan.core.errors import AeganError
from aegan.core.files import sha256
from aegan.detector import Detector
from aegan.inference import model
from aegan.inference.model import prepare
from aegan.scoring.held_out import BASIS_KEY, basis
from aegan.settings.layers import load_config
from aegan.store import checkpoint, model_file, sidecar
from aegan.store.model_dir import sidecar_of as sidecar_path
from aegan.store.model_file import threshold_key
from aegan.store.sidecar import Sidecar
from conftest import ROOT, SMALL, out_sets
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


def _copy(trained2022, tmp_path):
    """The trained model alone in a folder of this test's (its sidecar gains thresholds that others must not see)."""
    path = tmp_path / "model" / "fan.pth"
    path.parent.mkdir()
    shutil.copy(trained2022[0] / "model" / "fan.pth", path)
    return path


def test_two_models_saving_thresholds_keep_both(trained2022, tmp_path):
    """Each run read the sidecar when it loaded the model, then wrote its own thresholds: the last writer dropped
    what the other had kept. Saved now under a lock, merged with what is on disk."""
    path = _copy(trained2022, tmp_path)
    a, b = model.load(path, CPU), model.load(path, CPU)  # both loaded before either saves
    for m, percentile in ((a, 0.8), (b, 0.7)):
        m.cfg["detect"]["decision_percentile"] = percentile
        m.threshold("D_lof")
    model.save_thresholds(a)
    model.save_thresholds(b)
    kept = model.load(path, CPU).thresholds
    assert {threshold_key("D_lof", 0.8), threshold_key("D_lof", 0.7), "G_z_cos_min@0.9"} <= set(kept)
    assert kept[threshold_key("D_lof", 0.8)] == a.thresholds[threshold_key("D_lof", 0.8)]


def test_concurrent_test_runs_keep_every_threshold_they_announce(trained2022, tmp_path):
    """Two test.py on one model at once, with other decision percentiles: both said their threshold was kept in
    the sidecar, and only one was."""
    out, sets, _ = trained2022
    path = _copy(trained2022, tmp_path)
    runs = {}
    for p in ("0.8", "0.7"):
        own = [f"model_dir={path.parent}", f"detect.decision_percentile={p}",
               *(f"{k}={tmp_path / p / k}" for k in ("detect_dir", "result_dir", "log_dir"))]
        runs[p] = subprocess.Popen([sys.executable, "dcase2022/test.py", "--mt", "fan", "-d", "--no-plots", *sets,
                                    *(x for s in own for x in ("--set", s))], cwd=ROOT, text=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    for proc in runs.values():
        printed, err = progress.communicate(proc)
        assert proc.returncode == 0, err[-2000:]
        assert ("decision: fitted the gamma threshold of G_z_cos_min on the training clips' own scores; kept in "
                in printed)
    kept = torch.load(sidecar_path(path), weights_only=True)["thresholds"]
    assert {threshold_key("G_z_cos_min", 0.8), threshold_key("G_z_cos_min", 0.7)} <= set(kept)


def test_a_critic_threshold_kept_by_an_earlier_version_is_refitted_and_says_so(trained2022, synth2022, tmp_path,
                                                                                capsys):
    """#37: a critic metric's threshold from in-sample scores (no `fitted_on` in its record) is refitted on held-out
    scores, with a line saying so, and the refit is kept in the sidecar; the AUC scores are untouched."""
    out = tmp_path / "run"
    shutil.copytree(trained2022[0] / "model", out / "model")
    shutil.copytree(trained2022[0] / "spec", out / "spec")
    path = out / "model" / "fan.pth"
    state = checkpoint.load(path)
    old = {"metric": "D_lof", "threshold": 0.5, "percentile": 0.9, "shape": 1.0, "loc": 0.0, "scale": 1.0,
           "shift": 0.0}
    state["thresholds"]["D_lof@0.9"] = old  # in the model file, as training wrote it before
    checkpoint.save(path, state)
    sidecar.write(path, Sidecar(checkpoint_sha256=sha256(path), identity=None, settings={},
                                thresholds={"D_knn@0.9": {**old, "metric": "D_knn"}}))
    for metric in ("D_lof", "D_knn"):
        m, training = prepare(SPEC, _resolved(out, synth2022), "fan", CPU)
        capsys.readouterr()
        rule, fitted = m.threshold(metric, training.specs)
        printed = capsys.readouterr().out
        assert fitted and f"the {metric} threshold kept with fan.pth (0.5) was fitted on in-sample" in printed
        assert rule[BASIS_KEY] == basis(metric) and rule["threshold"] != 0.5
        model.save_thresholds(m)
        again, _ = prepare(SPEC, _resolved(out, synth2022), "fan", CPU)
        assert again.threshold(metric, training.specs) == (rule, False)  # the refit, read from the sidecar
        assert again.threshold("G_z_cos_min", training.specs)[1] is False  # a generator's rule is current


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
