"""SPEC section 3: layer names/shapes of the original checkpoints, loading them, and the DCGAN init."""

import json

import numpy as np
import pytest
import torch

from aegan import checkpoint
from aegan.nets import Discriminator, Generator, build_nets
from conftest import ROOT

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
    g, d = build_nets({"isize": 128, "nz": 256, "ndf": 32, "ngf": 32, "normalize": {"g": "bn", "d": "ln"}}, True)
    for net in (g, d):
        for m in net.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)) and m.weight.numel() > 5000:
                assert abs(m.weight.std().item() - 0.02) < 0.002
                assert abs(m.weight.mean().item()) < 0.002
    bn = [m for m in g.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bn and all(abs(m.weight.mean().item() - 1) < 0.01 and m.bias.abs().max() == 0 for m in bn)


@pytest.mark.parametrize("norm, first_norm, key", [("ln", False, "best_hmean"), ("bn", True, "best_aver")])
def test_original_format_checkpoint_loads_strict(tmp_path, norm, first_norm, key):
    """A file as the original code writes it: numpy.float64 score, refused by plain weights_only loading."""
    g, d = Generator(norm=norm, first_norm=first_norm), Discriminator()
    path = tmp_path / "orig.pth"
    torch.save({"netD": d.state_dict(), "netG": g.state_dict(), key: np.float64(0.731)}, path)
    with pytest.raises(Exception, match="weights_only|Unsupported global"):
        torch.load(path, weights_only=True)
    state = checkpoint.load(path)
    assert isinstance(state[key], np.float64) and state[key] == 0.731
    g2, d2 = Generator(norm=norm, first_norm=first_norm), Discriminator()
    checkpoint.load_weights(g2, state["netG"], path, "netG", "test")
    checkpoint.load_weights(d2, state["netD"], path, "netD", "test")
    for a, b in zip(g.state_dict().values(), g2.state_dict().values()):
        assert torch.equal(a, b)


def test_checkpoint_refuses_code_and_names_mismatch(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("owned",))

    path = tmp_path / "evil.pth"
    torch.save({"netG": {}, "netD": {}, "x": Evil()}, path)
    with pytest.raises(checkpoint.AeganError, match="refused"):
        checkpoint.load(path)
    path = tmp_path / "ln.pth"
    torch.save({"netG": Generator(norm="ln").state_dict(), "netD": Discriminator().state_dict()}, path)
    state = checkpoint.load(path)
    with pytest.raises(checkpoint.AeganError, match="norm type differs"):
        checkpoint.load_weights(Generator(norm="bn"), state["netG"], path, "netG", "bn")
    with pytest.raises(checkpoint.AeganError, match="first_norm"):
        checkpoint.load_weights(Generator(norm="ln", first_norm=False), state["netG"], path, "netG", "ln")
    with pytest.raises(checkpoint.AeganError, match="net.isize"):
        checkpoint.load_weights(Generator(isize=64), state["netG"], path, "netG", "64")
    with pytest.raises(checkpoint.AeganError, match="shape"):
        checkpoint.load_weights(Generator(nz=128), state["netG"], path, "netG", "nz128")
    trunc = tmp_path / "trunc.pth"
    trunc.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(checkpoint.AeganError, match="truncated"):
        checkpoint.load(trunc)
