"""The evaluation beside the next epoch (training/overlap.py): started with an epoch's weights, its results taken
later are those of waiting for it, to the bit, whether its CPU part ran in a thread, ran when taken, or was kept in
a run state and taken by a resumed run."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from aegan.data.clips import Clip, Identity
from aegan.scoring.evaluation import SECTIONS
from aegan.settings.layers import load_config
from aegan.training.overlap import Overlap, evaluate
from aegan.training.parts import Data, build
from conftest import ROOT, TINY

CPU = torch.device("cpu")


def _run() -> tuple[dict, Data]:
    cfg = load_config(ROOT / "dcase2022", "fan", None, TINY).cfg
    gen = torch.Generator().manual_seed(0)
    train = [Clip(Path(f"t{i}.wav"), "00", "source", 0) for i in range(6)]
    test = [Clip(Path(f"x{i}.wav"), g, d, i % 2) for g in ("00", "01") for d in ("source", "target") for i in range(4)]
    train_specs, test_specs = (torch.rand(n, 32, 40, generator=gen) * 2 - 1 for n in (len(train), len(test)))
    data = Data(train_clips=train, train_specs=train_specs, vmax=np.float32(1), vmin=np.float32(-1),
                test_clips=test, test_specs=test_specs, sample_rate=16000,
                identity=Identity("dcase2022", "fan", "dev", ()))
    return cfg, data


def _same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for metric in a:
        assert a[metric][0] == b[metric][0] and a[metric][1] == b[metric][1], metric


def test_results_taken_later_are_those_of_waiting():
    cfg, data = _run()
    torch.manual_seed(1)
    nets = build(cfg, CPU)
    waited = evaluate(SECTIONS, cfg, nets, data)
    with ThreadPoolExecutor(1) as pool:
        beside = Overlap(SECTIONS, cfg, data, pool)
        beside.start(0, {"lossD": 1.0}, 2.0, nets)
        assert beside.pending.future is not None  # its detectors run in the thread
        p, results = beside.take()
    assert beside.take() is None and p.epoch == 0 and p.mean == {"lossD": 1.0}
    _same(results, waited)
    unthreaded = Overlap(SECTIONS, cfg, data, None)
    unthreaded.start(0, {}, 0.0, nets)
    _same(unthreaded.take()[1], waited)
    kept = Overlap(SECTIONS, cfg, data, None)  # a stopped run's pending epoch, taken by its resumed run
    kept.resume(p.state(), nets.snapshot())
    again, results = kept.take()
    _same(results, waited)
    assert all(torch.equal(again.weights["netG"][k], p.weights["netG"][k]) for k in p.weights["netG"])
