"""torchrun support: one process per GPU (NCCL) or per CPU slot (gloo), set up from torchrun's env vars."""

from __future__ import annotations

import os
import signal
import sys
import time
import warnings

import torch
import torch.distributed as dist
from torch import nn

from aegan.core.errors import AeganError


def _env_int(name: str, default: int | None, low: int, high: int | None = None) -> int:
    """A torchrun variable as a whole number in [low, high), or one line naming it."""
    raw = os.environ.get(name)
    if raw is None:
        if default is None:
            raise AeganError(f"environment variable WORLD_SIZE={os.environ['WORLD_SIZE']} is set but {name} is not: "
                             "start the run with torchrun, or unset WORLD_SIZE")
        return default
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or value < low or (high is not None and value >= high):
        want = f"in [{low}, {high})" if high is not None else f">= {low}"
        raise AeganError(f"environment variable {name}={raw[:40]!r} must be a whole number {want} (torchrun sets it; "
                         f"unset it for a single process)")
    return value


def world_size() -> int:
    return _env_int("WORLD_SIZE", 1, 1)


def rank() -> int:
    """This process's rank: 0 when not started by torchrun (RANK is read only when WORLD_SIZE > 1)."""
    world = world_size()
    return _env_int("RANK", None, 0, world) if world > 1 else 0


def check_batch(batch: int, key: str) -> None:
    """Before any process group exists: rank 0 refuses a global batch the ranks cannot split evenly, in one line.
    The others wait for torchrun to end them: exiting first would let torchrun kill rank 0 before it prints."""
    world = world_size()
    if world > 1 and batch % world:
        if rank() > 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)  # no "interrupted" line when torchrun ends this rank
            time.sleep(600)  # only reached if rank 0 is somehow gone: then fail on our own
            sys.exit(1)
        raise AeganError(f"{key}={batch} is not divisible by the {world} processes of torchrun (WORLD_SIZE): set "
                         f"{key} to a multiple of {world}")


def init(device: torch.device) -> torch.device:
    """The device of this rank, its process group joined; `device` itself when not started by torchrun."""
    world = world_size()
    if world == 1:
        return device
    rank()  # RANK checked before anything waits for the other processes
    local = _env_int("LOCAL_RANK", 0, 0)
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        if not os.environ.get(name):
            raise AeganError(f"environment variable WORLD_SIZE={world} is set but {name} is not: start the run with "
                             "torchrun, or unset WORLD_SIZE")
    if device.type == "cuda":
        if local >= torch.cuda.device_count():
            raise AeganError(f"LOCAL_RANK {local} has no CUDA device ({torch.cuda.device_count()} visible)")
        device = torch.device(f"cuda:{local}")
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


def wrap(net: nn.Module, device: torch.device) -> nn.Module:
    """DDP, with SyncBatchNorm on CUDA (it has no CPU kernel: gloo runs keep per-rank BatchNorm statistics)."""
    if device.type == "cuda":
        net = nn.SyncBatchNorm.convert_sync_batchnorm(net)
    # LayerNorm weights of (C, H, W) get gradients in another layout than DDP's buckets: a copy, not an error
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    return nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)


def finish() -> None:
    """End the process group, once no DDP wrapper is left: a wrapper freed after it would destroy the group from its
    Reducer holding the GIL, while a gloo thread may wait for the GIL to free its last work: a rank that never exits
    (pytorch/pytorch#56297)."""
    if world_size() > 1 and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
