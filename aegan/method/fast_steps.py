"""The method's two steps (steps.py) with less work, and under DistributedDataParallel; each proven equal to
steps.iteration by tests (tests/test_fast_steps.py, tests/test_distributed.py)."""

from __future__ import annotations

import warnings

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn
from torch import nn

from aegan.method.nets import repeatable
from aegan.method.steps import critic_step, critic_update, generator_step, penalty


def train_step(netD: nn.Module, netG: nn.Module, optD: torch.optim.Optimizer, optG: torch.optim.Optimizer,
               x: torch.Tensor, train: dict, g_update: bool = True) -> dict:
    """steps.iteration (same signature) with G(x) computed once where exact: G does not change during the critic
    step, so a repeatable generator's second forward gives the same reconstruction (nets.repeatable: no BatchNorm
    to advance its statistics a second time, no dropout to draw a second mask) and the first is reused (a sixth of
    an iteration saved); any other generator takes the exact path's two forwards."""
    reuse = g_update and repeatable(netG)
    with torch.set_grad_enabled(reuse):
        recon = netG(x)
    losses = critic_step(netD, optD, x, recon.detach(), train)
    if not g_update:
        return losses
    return losses | generator_step(netD, optG, recon if reuse else netG(x), x, train)


def ddp_train_step(ddpD: nn.Module, ddpG: nn.Module, optD: torch.optim.Optimizer, optG: torch.optim.Optimizer,
                   x: torch.Tensor, train: dict, g_update: bool = True) -> dict:
    """train_step for this rank of a DDP run, equal to train_step on the global batch up to float rounding:
    - DDP averages gradients over ranks, so per-rank means give the global means of every loss term;
    - the critic takes one DDP forward per backward (real, fake and interpolates in one batch); the penalty
      differentiates only with respect to the interpolates, which fires no gradient hook;
    - the interpolation weights are drawn for the global batch (ranks share the seed) and each rank takes its slice;
    - feature matching needs the global batch's statistics: embeddings are all-gathered with autograd, so each rank
      holds W copies of the loss, whose gradients the gather sums and DDP averages back to one."""
    netG, netD = ddpG.module, ddpD.module
    b, rank, world = x.size(0), dist.get_rank(), dist.get_world_size()
    reuse = g_update and repeatable(netG)
    with torch.set_grad_enabled(reuse):
        recon = (ddpG if reuse else netG)(x)
    fake = recon.detach()
    alpha = torch.rand((b * world, 1, 1, 1), dtype=torch.float32, device=x.device)[rank * b:(rank + 1) * b]
    interp = (alpha * x + ((1 - alpha) * fake)).requires_grad_(True)
    out, _ = ddpD(torch.cat([x, fake, interp]))
    losses = critic_update(optD, out[:b], out[b:2 * b], penalty(out[2 * b:], interp), train)
    if not g_update:
        return losses

    def gather(feat: torch.Tensor) -> torch.Tensor:
        with warnings.catch_warnings():  # its deprecation names a private replacement; this one is public
            warnings.simplefilter("ignore", FutureWarning)
            return torch.cat(dist_fn.all_gather(feat))

    return losses | generator_step(netD, optG, recon if reuse else ddpG(x), x, train, gather)
