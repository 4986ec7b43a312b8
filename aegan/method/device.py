"""How this process computes: `-c N` means cuda:N when CUDA is there, and the CPU (said in one line) when not; seeds,
the CUDA precision, and glibc's allocator tuned for large blocks."""

from __future__ import annotations

import contextlib
import ctypes
import random
import re
from collections.abc import Iterator

import numpy as np
import torch

from aegan.core.errors import AeganError
from aegan.settings.checks import check_value
from aegan.settings.layers import get


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


# train.tf32: what CUDA may compute in TF32 (10-bit mantissa on tensor cores) instead of exact fp32, as
# (cuDNN convolutions, matmuls). "original" is PyTorch's own default, which the original code never changes:
# on an Ampere or newer card its convolutions run in TF32 and its Linear layers in fp32.
PRECISIONS = {"original": (True, False), "fp32": (False, False), "tf32": (True, True)}


def precision_name(value: str | bool | None) -> str:
    """A train.tf32 value as one of PRECISIONS (an older file's boolean as declared; absent is "original")."""
    return "original" if value is None else check_value("train.tf32", value)


def apply_precision(value: str | bool | None, device: torch.device | None = None) -> str:
    """Both TF32 flags for the whole process: every command sets them, so all compute alike (only CUDA reads them)."""
    name = precision_name(value)
    conv, mm = PRECISIONS[name]
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = conv, mm
    if device is not None and device.type == "cuda":
        print(f"precision: train.tf32={name} (convolutions {'TF32' if conv else 'fp32'}, matmuls "
              f"{'TF32' if mm else 'fp32'})")
    return name


def model_precision(saved_cfg: dict | None, run_cfg: dict, explicit: set[str] | frozenset = frozenset()) -> str:
    """A saved model scores as it trained (its train.tf32), unless the user sets train.tf32 or the file has none."""
    saved = ((saved_cfg or {}).get("train") or {}).get("tf32")
    if saved is None or "train.tf32" in explicit:
        return precision_name((run_cfg.get("train") or {}).get("tf32"))
    return precision_name(saved)


def seed_everything(seed: int) -> None:
    """Python, NumPy and torch seeded; cuDNN deterministic (the API calls, not attribute typos)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def autocast(device: torch.device, amp: str) -> torch.autocast:
    """train.amp / detect.amp: bf16 autocast, or none (fp32), for every pass that computes under it."""
    return torch.autocast(device.type, torch.bfloat16, enabled=amp == "bf16")


def tune_allocator() -> bool:
    """glibc malloc: every block from the heap (no mmap), never trimmed; changes no result. False without glibc.
    Training and scoring free blocks over glibc's 32 MB mmap ceiling, each mapped and zeroed anew: 10% of a CPU step."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(-4, 0) and libc.mallopt(-1, 2**31 - 1))  # M_MMAP_MAX, M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        return False


# what an allocation that failed asked for, as torch's CPU allocator, its CUDA allocator and NumPy say it
ASKED = re.compile(r"(?:you tried to allocate (\d+) bytes|Tried to allocate ([\d.]+ [KMGTP]?i?B)|"
                   r"Unable to allocate ([\d.]+ [KMGTP]?i?B))")
NET_SIZES = ("net.isize", "net.ndf", "net.ngf", "net.nz")


def asked_for(e: BaseException) -> str | None:
    """The size a failed allocation asked for (None: `e` is no allocation failure)."""
    if not isinstance(e, (RuntimeError, MemoryError)):
        return None
    m = ASKED.search(str(e))
    if m is None:
        return "memory" if isinstance(e, MemoryError) or "out of memory" in str(e) else None
    if m.group(1):
        n = int(m.group(1))
        return f"{n / 2 ** 30:,.1f} GiB ({n:,} bytes)"
    return m.group(2) or m.group(3)


@contextlib.contextmanager
def sized_by(cfg: dict, what: str, names: tuple[str, ...] = NET_SIZES) -> Iterator[None]:
    """An allocation that fails inside is one line naming the settings that size it and what it asked for, not
    an allocator's message naming none (alloc_cpu.cpp)."""
    try:
        yield
    except (RuntimeError, MemoryError) as e:
        asked = asked_for(e)
        if asked is None:
            raise
        values = ", ".join(f"{n}={get(cfg, n)}" for n in names)
        raise AeganError(f"{what} asked for {asked}, more memory than this machine could give: lower the "
                         f"settings that size it ({values})") from None
