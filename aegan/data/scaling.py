"""The [-1, 1] scaling (SPEC section 2): one global max and min over all training clips."""

from __future__ import annotations

import numpy as np
import torch

from aegan.core.errors import AeganError


def minmax(train_specs: np.ndarray) -> tuple[np.float32, np.float32]:
    """One global max and min over all training clips, as float32 scalars (the original's values)."""
    return np.float32(train_specs.max()), np.float32(train_specs.min())


def scale(specs: np.ndarray, vmax: float, vmin: float) -> np.ndarray:
    """Map [vmin, vmax] to [-1, 1] (test data uses the training max/min, so it may leave that range).

    Computed in float32 as the original does (its max and min are float32 numpy scalars): the same
    arithmetic in float64, rounded once at the end, puts some values one float32 ulp away."""
    vmax, vmin = np.float32(vmax), np.float32(vmin)
    if not vmax > vmin:
        raise AeganError(f"feature max ({vmax}) must exceed min ({vmin}): is all training audio silent?")
    mid, half = (vmax + vmin) / np.float32(2), (vmax - vmin) / np.float32(2)
    return (np.asarray(specs, dtype=np.float32) - mid) / half


def scaled_tensor(raw: np.ndarray, vmax: float, vmin: float, device: torch.device) -> torch.Tensor:
    """Scaled features as one contiguous tensor; on CUDA it lives on the device (no per-batch copies)."""
    return torch.from_numpy(scale(raw, vmax, vmin)).to(device)
