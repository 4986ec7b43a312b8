"""WGAN-GP critic loss, the generator's reconstruction + feature-matching loss, and one step of each.

Loss weights are named as in the config (train.wgan.lambda_gp, feat_match_eff, match_item.mu/sigma)
and each step returns a dict of named losses for the log.
"""

from __future__ import annotations

import contextlib
import warnings

import torch
import torch.nn.functional as F
from torch import nn


def gradient_penalty(netD: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """mean_b (||grad_x^ D(x^)||_2 - 1)^2 at x^ = a*real + (1-a)*fake, one a ~ U(0,1) per sample."""
    alpha = torch.rand(real.size(0), *([1] * (real.dim() - 1)), device=real.device, dtype=real.dtype)
    interp = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    out, _ = netD(interp)
    return _penalty(out, interp)


def _penalty(out: torch.Tensor, interp: torch.Tensor) -> torch.Tensor:
    """mean_b (||d out / d interp||_2 - 1)^2; differentiable (create_graph) for the critic's backward."""
    (grad,) = torch.autograd.grad(out.sum(), interp, create_graph=True)
    return ((grad.flatten(1).norm(2, dim=1) - 1) ** 2).mean()


def feature_match(feat_fake: torch.Tensor, feat_real: torch.Tensor, match_item: dict) -> torch.Tensor:
    """mu * MSE of batch means + sigma * MSE of batch (population) stds, per embedding dimension."""
    loss = feat_fake.new_zeros(())
    if match_item.get("mu"):
        loss = loss + match_item["mu"] * F.mse_loss(feat_fake.mean(0), feat_real.mean(0))
    if match_item.get("sigma"):
        loss = loss + match_item["sigma"] * F.mse_loss(feat_fake.std(0, correction=0), feat_real.std(0, correction=0))
    return loss


def d_step(netD: nn.Module, netG: nn.Module, optD: torch.optim.Optimizer, x: torch.Tensor, wgan: dict) -> dict:
    """L_D = mean D(G(x)) - mean D(x) + lambda_gp * GP; one Adam step on D."""
    with torch.no_grad():
        fake = netG(x)
    optD.zero_grad(set_to_none=True)
    d_real, _ = netD(x)
    d_fake, _ = netD(fake)
    return _critic_update(optD, d_real, d_fake, gradient_penalty(netD, x, fake), wgan)


def _critic_update(optD: torch.optim.Optimizer, d_real: torch.Tensor, d_fake: torch.Tensor, gp: torch.Tensor,
                   wgan: dict) -> dict:
    """L_D = -(mean D(x) - mean D(x~)) + lambda_gp * GP, backward and one step of D's optimizer."""
    wdist = d_real.mean() - d_fake.mean()
    loss = -wdist + wgan["lambda_gp"] * gp
    loss.backward()
    optD.step()
    return {"lossD": loss.item(), "wdist": wdist.item(), "gp": gp.item()}


def g_step(netD: nn.Module, netG: nn.Module, optG: torch.optim.Optimizer, x: torch.Tensor, wgan: dict) -> dict:
    """L_G = MSE(G(x), x) + feat_match_eff * feature matching on D's embedding; one Adam step on G."""
    optG.zero_grad(set_to_none=True)
    return _generator_update(netD, optG, netG(x), x, wgan)


def _generator_update(netD: nn.Module, optG: torch.optim.Optimizer, recon: torch.Tensor, x: torch.Tensor,
                      wgan: dict, gather=None) -> dict:
    """L_G = MSE(recon, x) + feat_match_eff * feature matching, backward and one step of G's optimizer.
    `gather` maps per-rank embeddings to the global batch's (distributed runs)."""
    netD.requires_grad_(False)  # D is only a fixed feature extractor here; skips its weight gradients
    rec = F.mse_loss(recon, x)
    _, feat_fake = netD(recon)
    with torch.no_grad():
        _, feat_real = netD(x)
    if gather is not None:
        feat_fake, feat_real = gather(feat_fake), gather(feat_real)
    fm = feature_match(feat_fake, feat_real, wgan["match_item"])
    loss = rec + wgan["feat_match_eff"] * fm
    loss.backward()
    netD.requires_grad_(True)
    optG.step()
    return {"lossG": loss.item(), "rec": rec.item(), "fm": fm.item()}


@contextlib.contextmanager
def bn_counts_twice(net: nn.Module):
    """BatchNorm running stats advance as if the forward ran twice on the batch.

    The original runs G(x) twice per iteration (critic step, then generator step) on the same weights and
    batch, so each BatchNorm updates its running stats twice with the same batch statistics b:
    r <- (1-m)^2 r + (1-(1-m)^2) b. One forward with momentum 1-(1-m)^2 gives exactly that.
    """
    bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training
           and m.track_running_stats and m.momentum is not None]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.momentum = 1 - (1 - m.momentum) ** 2
    try:
        yield
    finally:
        for m, mom in zip(bns, saved):
            m.momentum = mom
            m.num_batches_tracked += 1


def train_step(netD: nn.Module, netG: nn.Module, optD: torch.optim.Optimizer, optG: torch.optim.Optimizer,
               x: torch.Tensor, wgan: dict, g_update: bool = True) -> dict:
    """d_step then g_step with the same results and less work: G(x) is computed once (G does not change
    during the critic step, and BatchNorm stats advance as after two forwards), and the critic's weights
    get no gradients in the generator step. Real and fake samples keep separate critic forwards: one
    batch of both is exact (the critic has no batch-coupled layers) but measured slower on the CPU
    (bench/run.py), and batching the interpolates too would run the penalty's double backward over all."""
    with bn_counts_twice(netG), torch.set_grad_enabled(g_update):
        recon = netG(x)
    fake = recon.detach()
    optD.zero_grad(set_to_none=True)
    d_real, _ = netD(x)
    d_fake, _ = netD(fake)
    losses = _critic_update(optD, d_real, d_fake, gradient_penalty(netD, x, fake), wgan)
    if not g_update:
        return losses
    optG.zero_grad(set_to_none=True)
    return losses | _generator_update(netD, optG, recon, x, wgan)


def ddp_train_step(ddpD: nn.Module, ddpG: nn.Module, optD: torch.optim.Optimizer, optG: torch.optim.Optimizer,
                   x: torch.Tensor, wgan: dict, rank: int, world: int, g_update: bool = True) -> dict:
    """train_step for one rank of a DistributedDataParallel run, equal to train_step on the global batch.

    - DDP averages gradients over ranks, so per-rank means give the global means of the MSE, critic and
      penalty terms.
    - The critic takes one DDP forward per backward: real, fake and interpolates in one batch; the
      penalty differentiates only with respect to the interpolates, which fires no gradient hook.
    - The interpolation weights are drawn for the whole global batch (ranks share the seed), and each
      rank uses its slice: the same a per sample as a single process.
    - Feature matching needs batch statistics of the global batch: embeddings are all-gathered with
      autograd support (each rank then holds W copies of the loss, whose gradients the gather sums and
      DDP averages back to one).
    """
    import torch.distributed.nn.functional as dist_fn

    netG, netD = ddpG.module, ddpD.module
    b = x.size(0)
    with bn_counts_twice(netG), torch.set_grad_enabled(g_update):
        recon = (ddpG if g_update else netG)(x)
    fake = recon.detach()
    alpha = torch.rand(b * world, 1, 1, 1, device=x.device, dtype=x.dtype)[rank * b:(rank + 1) * b]
    interp = (alpha * x + (1 - alpha) * fake).requires_grad_(True)
    optD.zero_grad(set_to_none=True)
    out, _ = ddpD(torch.cat([x, fake, interp]))
    losses = _critic_update(optD, out[:b], out[b:2 * b], _penalty(out[2 * b:], interp), wgan)
    if not g_update:
        return losses

    def gather(feat: torch.Tensor) -> torch.Tensor:
        with warnings.catch_warnings():  # its deprecation names a private replacement; this one is public
            warnings.simplefilter("ignore", FutureWarning)
            return torch.cat(dist_fn.all_gather(feat))

    optG.zero_grad(set_to_none=True)
    return losses | _generator_update(netD, optG, recon, x, wgan, gather)
