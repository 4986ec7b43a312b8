"""Checkpoint files: the original's format loads strictly and safely; anything else is one line naming why."""

import pickle

import numpy as np
import pytest
import torch

from aegan import checkpoint
from aegan.nets import Discriminator, Generator


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
    with pytest.raises(checkpoint.AeganError) as e:
        checkpoint.load(path)
    assert str(e.value).endswith("holds an object other than tensors and numbers (print); refused, as loading it "
                                 "would run code") and "weights_only" not in str(e.value)
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
    assert "weights_only" not in msg and "run code" not in msg and len(msg) < 250
