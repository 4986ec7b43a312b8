"""SPEC section 3: the networks have the original checkpoints' layer names and shapes, and the DCGAN init."""

import json

import pytest
import torch

from aegan.method.nets import Discriminator, Generator, build_nets, weights_init
from conftest import ROOT
from declared import section, small_net

# the original checkpoints' parameter names and shapes (a copy of shared/reference/state_dict_keys.json)
REF = json.loads((ROOT / "tests" / "data" / "state_dict_keys.json").read_text())


def shapes(net):
    return {k: list(v.shape) for k, v in net.state_dict().items()}


@pytest.mark.parametrize("name, norm, first_norm", [
    ("generator_ln_first_norm", "ln", True),
    ("generator_ln_no_first_norm", "ln", False),
    ("generator_bn_first_norm", "bn", True),
])
def test_generator_state_dict_matches_original(name, norm, first_norm):
    g = Generator(norm=norm, first_norm=first_norm)
    assert shapes(g) == REF[name]
    assert list(g.state_dict()) == list(REF[name])  # order too


def test_discriminator_state_dict_matches_original():
    assert shapes(Discriminator()) == REF["discriminator_ln"]


def test_sizes_match_spec():
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert 10.0e6 < n(Generator()) < 11.0e6
    assert 3.2e6 < n(Discriminator()) < 3.4e6


def test_forward_shapes():
    g, d = Generator(), Discriminator()
    x = torch.rand(2, 1, 128, 128) * 2 - 1
    xh, z = g.forward_with_z(x)
    assert xh.shape == x.shape and z.shape == (2, 256, 1, 1)
    assert torch.equal(g(x, outz=True), z)
    assert xh.abs().max() <= 1
    out, feat = d(x)
    assert out.shape == (2, 1) and feat.shape == (2, 512)


def test_dcgan_init_really_runs():
    g, d = build_nets(section("net", normalize={"g": "bn"}))  # the paper's size
    for net in (g, d):
        for m in net.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)) and m.weight.numel() > 5000:
                assert abs(m.weight.std().item() - 0.02) < 0.002
                assert abs(m.weight.mean().item()) < 0.002
    bn = [m for m in g.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bn and all(abs(m.weight.mean().item() - 1) < 0.01 and m.bias.abs().max() == 0 for m in bn)


def test_d_is_built_and_initialised_before_g():
    """The original builds D, then G, and initialises them in that order: the draws of one seed land in D first."""
    torch.manual_seed(5)
    d = Discriminator(32, 8)
    g = Generator(32, 16, 8, 8, "ln", True)
    d.apply(weights_init)
    g.apply(weights_init)
    torch.manual_seed(5)
    g2, d2 = build_nets(small_net())
    for a, b in ((g, g2), (d, d2)):
        assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_depthwise_sum_option_keeps_keys_and_is_the_conv_to_float_rounding():
    """train.depthwise_sum: the same state_dict keys (checkpoints load either way); in training the grouped
    conv's values to float rounding (1e-5 of the largest: forward, the penalty's double backward, weight
    gradients); outside training (evaluation, scoring) exactly the grouped conv."""
    from aegan.method.nets import Discriminator, depthwise_as_sum
    from aegan.method.steps import penalty

    torch.manual_seed(0)
    conv, summed = Discriminator(32, 8), Discriminator(32, 8, depthwise_sum=True)
    assert list(conv.state_dict()) == list(summed.state_dict())
    summed.load_state_dict(conv.state_dict())
    x = torch.rand(6, 1, 32, 32) * 2 - 1
    results = []
    for net in (conv, summed):
        xi = x.clone().requires_grad_(True)
        out, feat = net(xi)
        gp = penalty(out, xi)
        (out.mean() + 10 * gp).backward()
        results.append([feat.detach(), out.detach(), gp.detach(), *[p.grad.clone() for p in net.parameters()]])
    for a, b in zip(*results):
        assert (a - b).abs().max() <= 1e-5 * a.abs().max()
    conv.eval()
    summed.eval()
    with torch.no_grad():
        assert torch.equal(conv(x)[1], summed(x)[1])
    with pytest.raises(ValueError, match="covering"):
        depthwise_as_sum(torch.rand(1, 4, 5, 5), torch.rand(4, 1, 4, 4))
