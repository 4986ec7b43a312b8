"""SPEC section 4, the method's two steps: the gradient penalty, feature matching, and one real iteration."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from aegan.method.nets import build_nets
from aegan.method.steps import critic_step, feature_match, generator_step, gradient_penalty, iteration
from declared import small_net, train_section

TRAIN = train_section()  # the declared weights: lambda_gp 10, feat_match_eff 0.1, match_item {mu: 1}


class LinearCritic(nn.Module):
    """D(x) = <w, x>: its input gradient is w everywhere, so GP = (||w|| - 1)^2 exactly."""

    def __init__(self, w):
        super().__init__()
        self.w = nn.Parameter(w)

    def forward(self, x):
        out = (x * self.w).flatten(1).sum(1, keepdim=True)
        return out, x.flatten(1)


@pytest.mark.parametrize("scale", [0.5, 1.0, 3.0])
def test_gradient_penalty_of_linear_critic(scale):
    w = torch.randn(1, 4, 4)
    w = w / w.norm() * scale
    real, fake = torch.randn(6, 1, 4, 4), torch.randn(6, 1, 4, 4)
    gp = gradient_penalty(LinearCritic(w), real, fake)
    assert gp.item() == pytest.approx((scale - 1) ** 2, abs=1e-5)


def test_gradient_penalty_per_sample_norm():
    """A critic with a sample-dependent gradient: D(x) = 0.5 * ||x||^2, grad = x^, so GP = mean (||x^|| - 1)^2."""

    class Quad(nn.Module):
        def forward(self, x):
            return 0.5 * x.pow(2).flatten(1).sum(1, keepdim=True), x.flatten(1)

    real, fake = torch.randn(5, 1, 3, 3), torch.randn(5, 1, 3, 3)
    state = torch.get_rng_state()
    gp = gradient_penalty(Quad(), real, fake)
    torch.set_rng_state(state)
    a = torch.rand(5, 1, 1, 1)
    interp = a * real + (1 - a) * fake
    assert gp.item() == pytest.approx(((interp.flatten(1).norm(dim=1) - 1) ** 2).mean().item(), rel=1e-5)


def test_feature_matching_against_hand_computation():
    fake = torch.tensor([[1.0, 2.0], [3.0, 6.0]])
    real = torch.tensor([[0.0, 2.0], [2.0, 2.0]])
    # means: fake (2, 4), real (1, 2) -> MSE ((1)^2 + (2)^2) / 2 = 2.5
    # population stds: fake (1, 2), real (1, 0) -> MSE (0 + 4) / 2 = 2
    assert feature_match(fake, real, {"mu": 1}).item() == pytest.approx(2.5)
    assert feature_match(fake, real, {"sigma": 1}).item() == pytest.approx(2.0)
    assert feature_match(fake, real, {"mu": 2, "sigma": 0.5}).item() == pytest.approx(6.0)


def test_each_step_changes_only_its_network_and_the_generator_loss_is_the_formula():
    torch.manual_seed(0)
    g, d = build_nets(small_net())
    optD = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    optG = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    x = torch.rand(8, 1, 32, 32) * 2 - 1
    g0 = [p.detach().clone() for p in g.parameters()]
    d0 = [p.detach().clone() for p in d.parameters()]

    # the generator loss computed by hand with the critic after its step
    ld = critic_step(d, optD, x, g(x).detach(), TRAIN)
    assert all(k in ld for k in ("lossD", "wdist", "gp"))
    assert any(not torch.equal(a, b) for a, b in zip(d0, d.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(g0, g.parameters()))  # critic step leaves G alone
    with torch.no_grad():
        recon = g(x)
        expect = F.mse_loss(recon, x) + 0.1 * F.mse_loss(d(recon)[1].mean(0), d(x)[1].mean(0))
    d1 = [p.detach().clone() for p in d.parameters()]
    lg = generator_step(d, optG, g(x), x, TRAIN)
    assert lg["lossG"].item() == pytest.approx(expect.item(), rel=1e-5)
    assert any(not torch.equal(a, b) for a, b in zip(g0, g.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(d1, d.parameters()))  # generator step leaves D alone
    assert all(p.requires_grad for p in d.parameters())


def test_iteration_without_generator_update_leaves_g_alone():
    torch.manual_seed(1)
    g, d = build_nets(small_net())
    optD = torch.optim.Adam(d.parameters(), lr=2e-4)
    optG = torch.optim.Adam(g.parameters(), lr=2e-4)
    g0 = [p.detach().clone() for p in g.parameters()]
    out = iteration(d, g, optD, optG, torch.rand(4, 1, 32, 32), TRAIN, g_update=False)
    assert "lossG" not in out and all(torch.equal(a, b) for a, b in zip(g0, g.parameters()))
