"""Device selection: `-c N` means cuda:N when CUDA is there, and the CPU (said in one line) when not."""

from __future__ import annotations

import ctypes
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


def tune_allocator() -> bool:
    """glibc malloc: serve every block from the heap (no mmap) and never trim it, instead of mapping each
    large block fresh from the OS and unmapping it on free. A training iteration allocates and frees
    hundreds of MB of activations, several above glibc's largest mmap threshold (32 MB: a 64 x 32 x 64 x 64
    float map is 33.5 MB), and each fresh mapping is page-faulted and zeroed again: about 260k page faults
    and a tenth of a CPU training step (bench/run.py). Freed heap blocks are reused instead; the heap still
    falls back to mmap when it cannot grow. Changes no result. Returns False where there is no glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(M_MMAP_MAX, 0) and libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1))
    except (OSError, AttributeError):
        return False


M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc mallopt parameters
