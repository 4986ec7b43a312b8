"""Device selection: `-c N` means cuda:N when CUDA is there, and the CPU (said in one line) when not."""

from __future__ import annotations

import random

import numpy as np
import torch

from .errors import AeganError


def select_device(card_id: int | None) -> torch.device:
    if not torch.cuda.is_available():
        print("device: CUDA is not available; running on the CPU")
        return torch.device("cpu")
    n = torch.cuda.device_count()
    card = 0 if card_id is None else card_id
    if not 0 <= card < n:
        raise AeganError(f"-c/--card_id {card} does not exist: this machine has {n} CUDA device(s), 0..{n - 1}")
    dev = torch.device(f"cuda:{card}")
    torch.cuda.set_device(dev)
    print(f"device: {dev} ({torch.cuda.get_device_name(dev)})")
    return dev


def seed_everything(seed: int) -> None:
    """Python, NumPy and torch seeded; cuDNN deterministic (the API calls, not attribute typos)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
