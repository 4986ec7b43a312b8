"""Checkpoint files: the original's format loads strictly and safely; anything else is one line naming why."""

import pickle
import re

import numpy as np
import pytest
import torch

from aegan.method.nets import Discriminator, Generator, build_nets
from aegan.store import checkpoint
from declared import section


def net(**changes) -> dict:
    """The paper's `net` section (the declared defaults) with some settings changed (normalize_g sets normalize.g)."""
    out = {k: v for k, v in changes.items() if k != "normalize_g"}
    return section("net", **out, normalize={"d": "ln", "g": changes.get("normalize_g", "ln")})


@pytest.mark.parametrize("norm, first_norm, key", [("ln", False, "best_hmean"), ("bn", True, "best_aver")])
def test_original_format_checkpoint_loads_strict(tmp_path, norm, first_norm, key):
    """A file as the original code writes it: numpy.float64 score, refused by plain weights_only loading."""
    g, d = Generator(norm=norm, first_norm=first_norm), Discriminator()
    path = tmp_path / "orig.pth"
    torch.save({"netD": d.state_dict(), "netG": g.state_dict(), key: np.float64(0.731)}, path)
    with pytest.raises(pickle.UnpicklingError, match="weights_only|Unsupported global"):
        torch.load(path, weights_only=True)
    state = checkpoint.load(path)
    assert isinstance(state[key], np.float64) and state[key] == 0.731
    g2, d2 = Generator(norm=norm, first_norm=first_norm), Discriminator()
    cfg = net(normalize_g=norm, first_norm=first_norm)
    checkpoint.load_weights(g2, state["netG"], path, "netG", cfg)
    checkpoint.load_weights(d2, state["netD"], path, "netD", cfg)
    for ours, theirs in ((g2, g), (d2, d)):
        mine, original = ours.state_dict(), theirs.state_dict()
        assert list(mine) == list(original) and all(torch.equal(mine[k], original[k]) for k in original)


def test_checkpoint_refuses_code_and_names_mismatch(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("owned",))

    path = tmp_path / "evil.pth"
    torch.save({"netG": {}, "netD": {}, "x": Evil()}, path)
    with pytest.raises(checkpoint.AeganError) as e:
        checkpoint.load(path)
    assert str(e.value).endswith("holds an object other than tensors and numbers (print); refused, as loading it "
                                 "would run code") and "weights_only" not in str(e.value)
    path = tmp_path / "ln.pth"
    torch.save({"netG": Generator(norm="ln").state_dict(), "netD": Discriminator().state_dict()}, path)
    state = checkpoint.load(path)
    # one or two net settings with a few values (config.CHOICES, or a boolean) are named with both values
    for changed, named in ((net(normalize_g="bn"), "built with net.normalize.g='ln' (here 'bn')"),
                           (net(first_norm=False), "built with net.first_norm=True (here False)"),
                           (net(normalize_g="bn", first_norm=False),
                            "built with net.normalize.g='ln' (here 'bn'), net.first_norm=True (here False)")):
        with pytest.raises(checkpoint.AeganError, match=re.escape(named)):
            checkpoint.load_weights(build_nets(changed)[0], state["netG"], path, "netG", changed)
    # a size at a quarter, half, twice or four times its value is named too; any other by the first layer that
    # differs, both ways; in one short line, never the whole network configuration
    for changed, named in ((net(isize=64), "built with net.isize=128 (here 64)"),
                           (net(nz=128), "built with net.nz=256 (here 128)"),
                           (net(ndf=24), "layer Encoder.main.0 holds weight (32, 1, 4, 4) in the checkpoint, a Conv2d "
                            "with weight (24, 1, 4, 4) here")):
        with pytest.raises(checkpoint.AeganError) as e:
            checkpoint.load_weights(build_nets(changed)[0], state["netG"], path, "netG", changed)
        msg = str(e.value)
        assert named in msg and len(msg.replace(str(path), "")) < 200 and "net.ngf=" not in msg  # the path: the user's
    trunc = tmp_path / "trunc.pth"
    trunc.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(checkpoint.AeganError, match="truncated"):
        checkpoint.load(trunc)


@pytest.mark.parametrize("damage", ["truncated", "zeroed", "random bytes", "empty", "text"])
def test_a_damaged_checkpoint_is_one_short_line(tmp_path, damage):
    """Never PyTorch's paragraph, never its advice to load with weights_only=False, never 'would run code'."""
    path = tmp_path / "fan.pth"
    torch.save({"netG": Generator(isize=16, nz=8, ndf=4).state_dict(), "netD": {}}, path)
    good = path.read_bytes()
    rng = np.random.default_rng(0)
    path.write_bytes({"truncated": good[: len(good) // 2], "zeroed": bytes(len(good)),
                      "random bytes": rng.integers(0, 256, 5000, dtype=np.uint8).tobytes(), "empty": b"",
                      "text": b"hello\n"}[damage])
    with pytest.raises(checkpoint.AeganError) as e:
        checkpoint.load(path)
    msg = str(e.value)
    assert msg.startswith(f"checkpoint {path} is truncated, damaged or not a PyTorch file (") and "\n" not in msg
    # short but for the path, whose length is the user's (a deeper temp folder once made this fail)
    assert "weights_only" not in msg and "run code" not in msg and len(msg.replace(str(path), "")) < 200
