"""The fast paths are the method: train_step (G(x) reused where exact) equals method.iteration to the bit."""

import copy
import math
from pathlib import Path

import pytest
import torch

from aegan.core.errors import AeganError
from aegan.data.segments import SegmentSampler
from aegan.method.fast_steps import train_step
from aegan.method.nets import build_nets, repeatable
from aegan.method.steps import TERMS, iteration
from aegan.training import epoch as trainer
from aegan.training.parts import Nets
from declared import network_options, small_net, train_section

TRAIN = train_section(match_item={"mu": 1, "sigma": 1})


@pytest.mark.parametrize("norm", ["ln", "bn"])
@pytest.mark.parametrize("g_update", [True, False])
def test_train_step_equals_the_originals_iteration(norm, g_update):
    """Same state, batch and random draws: the same losses and the same weights, BatchNorm statistics too."""
    torch.manual_seed(0)
    g, d = build_nets(small_net(normalize={"g": norm}))
    g2, d2 = build_nets(small_net(normalize={"g": norm}))
    g2.load_state_dict(g.state_dict())
    d2.load_state_dict(d.state_dict())
    assert repeatable(g) == g.repeatable == (norm != "bn")  # BatchNorm's statistics: the exact path's two forwards
    opts = [torch.optim.Adam(m.parameters(), lr=2e-4, betas=(0.5, 0.999)) for m in (d, g, d2, g2)]
    for _ in range(3):
        x = torch.rand(8, 1, 32, 32) * 2 - 1
        state = torch.get_rng_state()
        ref = iteration(d, g, opts[0], opts[1], x, TRAIN, g_update)
        torch.set_rng_state(state)
        got = train_step(d2, g2, opts[2], opts[3], x, TRAIN, g_update)
        assert got.keys() == ref.keys() and all(torch.equal(got[k], ref[k]) for k in ref)
    for a, b in ((g, g2), (d, d2)):
        for (k, v), v2 in zip(a.state_dict().items(), b.state_dict().values()):
            assert torch.equal(v2, v), k


@pytest.mark.parametrize("option", [{}, *network_options()], ids=str)
def test_the_fast_path_equals_the_exact_one_for_every_network_option(option):
    """Each network option (schema.Net: every choice, the other boolean, a number's declared examples): where the
    generator declares itself repeatable, two training forwards with random draws between them give the same output
    and leave the same state; and the fast path equals the exact one to the bit, reusing G(x) or falling back."""
    torch.manual_seed(0)
    g, d = build_nets(small_net(**option))
    g2, d2 = copy.deepcopy(g), copy.deepcopy(d)
    x = torch.rand(8, 1, 32, 32) * 2 - 1
    if g.repeatable:
        before = copy.deepcopy(g.state_dict())
        with torch.no_grad():
            first, _, second = g(x), torch.rand(100), g(x)
        assert torch.equal(first, second) and all(torch.equal(v, before[k]) for k, v in g.state_dict().items())
    opts = [torch.optim.Adam(m.parameters(), lr=2e-4, betas=(0.5, 0.999)) for m in (d, g, d2, g2)]
    for _ in range(2):
        state = torch.get_rng_state()
        ref = iteration(d, g, opts[0], opts[1], x, TRAIN)
        torch.set_rng_state(state)
        got = train_step(d2, g2, opts[2], opts[3], x, TRAIN)
        assert got.keys() == ref.keys() and all(torch.equal(got[k], ref[k]) for k in ref), option
    for a, b in ((g, g2), (d, d2)):
        assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items()), option


def _nets(seed: int = 0) -> Nets:
    torch.manual_seed(seed)
    g, d = build_nets(small_net())
    optD, optG = (torch.optim.Adam(m.parameters(), lr=2e-4, betas=(0.5, 0.999)) for m in (d, g))
    return Nets(netG=g, netD=d, gen=g, optD=optD, optG=optG, fmt=torch.contiguous_format)


def _losses_read_every_iteration(nets: Nets, sampler: SegmentSampler, tcfg: dict) -> tuple[dict, int | None]:
    """The loop as it was: each loss read with .item() after its iteration and summed; (means, first non-finite
    batch)."""
    sums, bad, wgan = {}, None, tcfg["wgan"]
    for i, x in enumerate(sampler.epoch()):
        losses = {k: v.item() for k, v in train_step(nets.netD, nets.gen, nets.optD, nets.optG, x, tcfg,
                                                      i % wgan["ncritic"] == 0).items()}
        if bad is None and not all(math.isfinite(v) for v in losses.values()):
            bad = i
        for k, v in losses.items():
            sums[k] = sums.get(k, 0.0) + v
    n_g = len(range(0, len(sampler), wgan["ncritic"]))
    return {k: v / (n_g if k in trainer.G_TERMS else len(sampler)) for k, v in sums.items()}, bad


def test_epoch_means_read_once_per_interval_equal_reading_every_iteration():
    """Losses kept on the device and read every LOG_EVERY iterations give the epoch means of reading each one at
    once, to the float, over more iterations than one interval and not a multiple of it."""
    specs = torch.rand(6, 32, 40) * 2 - 1
    tcfg = train_section(match_item={"mu": 1, "sigma": 1}, ncritic=2)
    sampler = SegmentSampler(specs, 32, 1, 2)
    assert len(sampler) > trainer.LOG_EVERY and len(sampler) % trainer.LOG_EVERY
    nets, ref_nets = _nets(), _nets()
    state = torch.get_rng_state()
    mean = trainer.train_epoch(nets, sampler, tcfg, torch.device("cpu"), "epoch 1/1",
                               Path("x.pth"))
    torch.set_rng_state(state)
    ref, _ = _losses_read_every_iteration(ref_nets, sampler, tcfg)
    assert mean == ref and list(mean) == [t.name for t in TERMS]  # every declared term, in its order


def test_a_non_finite_loss_names_the_batch_it_happened_in():
    """The check at the read points stops training naming the first non-finite batch, as the check after every
    iteration did."""
    specs = torch.rand(6, 32, 40) * 2 - 1
    specs[4, 3, 10] = math.nan  # only the batches holding a segment of clip 4 over frame 10
    sampler = SegmentSampler(specs, 32, 1, 4)
    nets = _nets()
    ref_nets = copy.deepcopy(nets)
    state = torch.get_rng_state()
    with pytest.raises(AeganError) as e:
        trainer.train_epoch(nets, sampler, TRAIN, torch.device("cpu"), "epoch 1/1",
                            Path("m_last.pth"))
    torch.set_rng_state(state)
    _, bad = _losses_read_every_iteration(ref_nets, sampler, TRAIN)
    assert bad is not None and bad > 0
    assert str(e.value).startswith(f"epoch 1/1, batch {bad}: loss is not finite ({{'lossD': ")
    assert "no run state was written yet" in str(e.value) and "\n" not in str(e.value)  # m_last.pth: none
