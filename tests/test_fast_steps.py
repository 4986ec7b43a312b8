"""The fast paths are the method: train_step (G(x) reused where exact) equals method.iteration to the bit."""

import pytest
import torch

from aegan.fast_steps import has_batchnorm, train_step
from aegan.method import iteration
from aegan.nets import build_nets

NET = {"isize": 32, "nz": 16, "ndf": 8, "ngf": 8, "normalize": {"g": "ln", "d": "ln"}}
WGAN = {"lambda_gp": 10.0, "feat_match_eff": 0.1, "match_item": {"mu": 1, "sigma": 1}, "ncritic": 1}


@pytest.mark.parametrize("norm", ["ln", "bn"])
@pytest.mark.parametrize("g_update", [True, False])
def test_train_step_equals_the_originals_iteration(norm, g_update):
    """Same state, batch and random draws: the same losses and the same weights, BatchNorm statistics too."""
    net = {**NET, "normalize": {"g": norm, "d": "ln"}}
    torch.manual_seed(0)
    g, d = build_nets(net, True)
    g2, d2 = build_nets(net, True)
    g2.load_state_dict(g.state_dict())
    d2.load_state_dict(d.state_dict())
    assert has_batchnorm(g) == (norm == "bn")
    opts = [torch.optim.Adam(m.parameters(), lr=2e-4, betas=(0.5, 0.999)) for m in (d, g, d2, g2)]
    for _ in range(3):
        x = torch.rand(8, 1, 32, 32) * 2 - 1
        state = torch.get_rng_state()
        ref = iteration(d, g, opts[0], opts[1], x, WGAN, g_update)
        torch.set_rng_state(state)
        assert train_step(d2, g2, opts[2], opts[3], x, WGAN, g_update) == ref
    for a, b in ((g, g2), (d, d2)):
        for (k, v), v2 in zip(a.state_dict().items(), b.state_dict().values()):
            assert torch.equal(v2, v), k
