"""Checkpoint files: the original's format ({'netD', 'netG', 'best_hmean'|'best_aver'}) plus our metadata.

Loading is always `weights_only=True`: a checkpoint is data, and a pickle that would run code is
refused. The original's files hold a numpy.float64 score, so exactly the numpy globals that such a
scalar needs are allowed, under their numpy 2 and numpy 1 module names.
"""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .errors import AeganError, shown
from .files import atomic_path

_scalar = np._core.multiarray.scalar
# the float64 scalar, the dtype it is built from, and that dtype's class (set on BUILD)
NUMPY_SCALAR_GLOBALS = [_scalar, (_scalar, "numpy.core.multiarray.scalar"), np.dtype, np.dtypes.Float64DType]


def save(path: str | os.PathLike, state: dict) -> None:
    """torch.save through a temp file and rename: an interrupted or failed write keeps the previous file."""
    with atomic_path(path) as tmp:
        try:
            torch.save(state, tmp)
        except RuntimeError as e:  # PyTorch's writer reports a full disk as "[enforce fail at inline_container...]"
            raise OSError(28, "the write failed (disk full?)") from e


def load(path: str | os.PathLike, device: str | torch.device = "cpu") -> dict:
    path = Path(path)
    if not path.exists():
        raise AeganError(f"checkpoint not found: {path} (train first, or copy a pretrained dict there)")
    try:
        with torch.serialization.safe_globals(NUMPY_SCALAR_GLOBALS):
            state = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # noqa: BLE001 - a damaged file raises any of a dozen types: one line for all
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        if isinstance(e, pickle.UnpicklingError) and found:  # a well-formed pickle that names a callable
            raise AeganError(f"checkpoint {shown(path)} holds an object other than tensors and numbers "
                             f"({found.group(1)}); refused, as loading it would run code") from None
        raise AeganError(f"checkpoint {shown(path)} is truncated, damaged or not a PyTorch file "
                         f"({_reason(e)}); train again or restore it") from None
    if not isinstance(state, dict) or "netG" not in state or "netD" not in state:
        raise AeganError(f"checkpoint {path} has no netG/netD entries: not an AEGAN-AD checkpoint")
    return state


def _reason(e: BaseException) -> str:
    """PyTorch's messages run to paragraphs: the exception's type and the start of its first line."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    if "weights_only" in text:  # advice to load with weights_only=False, which would run whatever the file holds
        text = ""
    return f"{type(e).__name__}: {text[:80]}" if text else type(e).__name__


def model_paths(cfg: dict, mt: str) -> tuple[Path, Path]:
    """(selected model, resumable last epoch) checkpoint paths."""
    d = Path(cfg["model_dir"])
    return d / f"{mt}.pth", d / f"{mt}_last.pth"


def describe_arch(net_cfg: dict) -> str:
    """The network settings, as a mismatch error names them."""
    return ", ".join(f"net.{k}={v}" for k, v in net_cfg.items() if k != "act")


def _hint(net: nn.Module, sd: dict) -> str:
    """Name the setting most likely at fault from how the key sets differ."""
    own = net.state_dict()
    if any(k.endswith("running_mean") for k in sd) != any(k.endswith("running_mean") for k in own):
        return "norm type differs (checkpoint is {} , config is {})".format(
            "bn" if any(k.endswith("running_mean") for k in sd) else "ln",
            "bn" if any(k.endswith("running_mean") for k in own) else "ln")
    if ("Encoder.main.1.weight" in sd) != ("Encoder.main.1.weight" in own):
        return "first_norm differs (a norm after the encoder's first conv: {} in the checkpoint, {} here)".format(
            "Encoder.main.1.weight" in sd, "Encoder.main.1.weight" in own)
    if set(sd) != set(own):
        return f"number of layers differs ({len(sd)} tensors in the checkpoint, {len(own)} here; net.isize?)"
    for k in own:
        if tuple(own[k].shape) != tuple(sd[k].shape):
            return (f"{k} has shape {tuple(sd[k].shape)} in the checkpoint, {tuple(own[k].shape)} here "
                    "(isize/nz/ndf/ngf?)")
    return "unknown difference"


def load_weights(net: nn.Module, sd: dict, path: str | os.PathLike, what: str, arch: str) -> None:
    """strict=True load; a mismatch is one line naming the setting, not a 40-line key dump."""
    try:
        net.load_state_dict(sd, strict=True)
    except RuntimeError:
        raise AeganError(f"checkpoint {path}: {what} does not match the network built from the config "
                         f"({arch}): {_hint(net, sd)}") from None
