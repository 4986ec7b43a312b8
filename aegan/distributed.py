"""torchrun support: one process per GPU (NCCL) or per CPU slot (gloo), set up from torchrun's env vars."""

from __future__ import annotations

import os
import warnings

import torch
import torch.distributed as dist
from torch import nn

from .errors import AeganError


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def init(device: torch.device) -> tuple[torch.device, int, int]:
    """(device of this rank, rank, world size); a single process when not started by torchrun."""
    world = world_size()
    if world == 1:
        return device, 0, 1
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        if local >= torch.cuda.device_count():
            raise AeganError(f"LOCAL_RANK {local} has no CUDA device ({torch.cuda.device_count()} visible)")
        device = torch.device(f"cuda:{local}")
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device, rank, world


def barrier(world: int) -> None:
    if world > 1:
        dist.barrier()


def wrap(net: nn.Module, device: torch.device) -> nn.Module:
    """DDP; BatchNorm becomes SyncBatchNorm on CUDA (global batch statistics). SyncBatchNorm has no CPU
    kernel, so gloo runs keep per-rank BatchNorm statistics (README: distributed training)."""
    if device.type == "cuda":
        net = nn.SyncBatchNorm.convert_sync_batchnorm(net)
    # LayerNorm weights of (C, H, W) get gradients in another layout than DDP's buckets: a copy, not an error
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    return nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)


def finish(world: int) -> None:
    if world > 1 and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
