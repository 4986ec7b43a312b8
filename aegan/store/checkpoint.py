"""Torch files: the original's checkpoint format ({'netD', 'netG', 'best_hmean'|'best_aver'}) plus our metadata.
Loaded as data only (weights_only): the original's numpy.float64 score needs exactly the numpy globals allowed here,
under their numpy 2 and numpy 1 names; a pickle that would run code is refused."""

from __future__ import annotations

import copy
import itertools
import os
import pickle
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from aegan.core.errors import AeganError, shown
from aegan.core.files import atomic_path
from aegan.core.kinds import TORCH, sniff
from aegan.method.nets import build_nets
from aegan.settings.checks import choices
from aegan.settings.layers import get, leaves, put

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
    """A checkpoint: a dict with netG and netD (ours, or the original's); any other file is one line."""
    file = Path(path)
    if not file.exists():
        raise AeganError(f"checkpoint not found: {file} (train first, or copy a pretrained dict there)")
    kind = sniff(file)
    if kind not in (TORCH, None):
        raise AeganError(f"{shown(file)} is {kind}, not a checkpoint: give a model file (model_dir/<mt>.pth)")
    try:
        with torch.serialization.safe_globals(NUMPY_SCALAR_GLOBALS):
            state = torch.load(file, map_location=device, weights_only=True)
    except Exception as e:  # noqa: BLE001 - a damaged file raises any of a dozen types: one line for all
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        if isinstance(e, pickle.UnpicklingError) and found:  # a well-formed pickle that names a callable
            raise AeganError(f"checkpoint {shown(file)} holds an object other than tensors and numbers "
                             f"({found.group(1)}); refused, as loading it would run code") from None
        raise AeganError(f"checkpoint {shown(file)} is truncated, damaged or not a PyTorch file "
                         f"({_reason(e)}); train again or restore it") from None
    if not isinstance(state, dict) or "netG" not in state or "netD" not in state:
        if isinstance(state, dict) and "checkpoint_sha256" in state:  # what sidecar.write writes
            raise AeganError(f"{shown(file)} is the scoring sidecar of a model, not a model: give the model file "
                             f"beside it ({file.name.removesuffix('.scoring.pt')}.pth)")
        raise AeganError(f"checkpoint {path} has no netG/netD entries: not an AEGAN-AD checkpoint")
    return state


def _reason(e: BaseException) -> str:
    """PyTorch's messages run to paragraphs: the exception's type and the start of its first line."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    if "weights_only" in text:  # advice to load with weights_only=False, which would run whatever the file holds
        text = ""
    return f"{type(e).__name__}: {text[:80]}" if text else type(e).__name__


def _shapes(sd: dict) -> dict[str, tuple]:
    return {k: tuple(v.shape) for k, v in sd.items()}


def _alternatives(net_cfg: dict) -> Iterator[tuple[list[tuple[str, object]], dict]]:
    """([(setting, other value)], net config with them): each other choice (or bool) of a net setting, each two of them
    together (a 2020 checkpoint, bn with first_norm, under a 2022 setting, ln without), each size /4, /2, x2, x4."""
    options = [(name, other) for name, value in leaves(net_cfg, "net.")
               for other in choices(name) or ((True, False) if isinstance(value, bool) else ()) if other != value]
    pairs = [[a, b] for a, b in itertools.combinations(options, 2) if a[0] != b[0]]
    sizes = [[(name, other)] for name, value in leaves(net_cfg, "net.") if type(value) is int
             for other in (value // 4, value // 2, value * 2, value * 4) if other >= 4]
    for changes in [*([o] for o in options), *pairs, *sizes]:
        alt = {"net": copy.deepcopy(net_cfg)}
        for name, other in changes:
            put(alt, name, other)
        yield changes, alt["net"]


def _first_difference(net: nn.Module, sd: dict) -> str:
    """The first layer, in the network's order, whose tensors differ in name or shape, described both ways."""
    def layers(shapes: dict) -> dict[str, dict[str, tuple]]:
        out: dict[str, dict[str, tuple]] = {}
        for k, shape in shapes.items():
            layer, _, tensor = k.rpartition(".")
            out.setdefault(layer, {})[tensor] = shape
        return out

    def tensors(t: dict | None) -> str:
        return ", ".join(f"{k} {s}" for k, s in t.items() if k != "num_batches_tracked") if t else "no tensors"

    own, theirs = layers(_shapes(net.state_dict())), layers(_shapes(sd))
    for layer in [*own, *(k for k in theirs if k not in own)]:
        if own.get(layer) != theirs.get(layer):
            here = f"a {type(net.get_submodule(layer)).__name__} with {tensors(own[layer])}" if layer in own else \
                "no tensors"
            return f"layer {layer} holds {tensors(theirs.get(layer))} in the checkpoint, {here} here"
    return "unknown difference"


def _hint(net: nn.Module, sd: dict, what: str, net_cfg: dict) -> str:
    """The one or two net settings whose other values build the checkpoint's network; else the first layer differing."""
    wanted = _shapes(sd)
    for changes, alt in _alternatives(net_cfg):
        try:  # on the meta device: shapes only, no memory, no draw from the run's random generator
            with torch.device("meta"):
                g, d = build_nets(alt)
        except (ValueError, RuntimeError, ZeroDivisionError):  # a size the network cannot be built with
            continue
        if _shapes({"netG": g, "netD": d}[what].state_dict()) == wanted:
            return f"the checkpoint's {what} was built with " + ", ".join(
                f"{name}={other!r} (here {get({'net': net_cfg}, name)!r})" for name, other in changes)
    return _first_difference(net, sd)


def load_weights(net: nn.Module, sd: dict, path: str | os.PathLike, what: str, net_cfg: dict) -> None:
    """strict=True load; a mismatch is one line naming the setting or the layer, not a 40-line key dump."""
    try:
        net.load_state_dict(sd, strict=True)
    except RuntimeError:
        raise AeganError(f"checkpoint {shown(path)}: its {what} is not the network these settings build: "
                         f"{_hint(net, sd, what, net_cfg)}") from None
