"""The method's two steps: the WGAN-GP critic step and the generator step (reconstruction + feature matching).

Each term is named as in the log, and its weight is the config key with that stem: `gp` is weighted by
train.wgan.lambda_gp, `feat_match` by train.wgan.feat_match_eff (itself mu * mean term + sigma * std term,
train.wgan.match_item). Every expression is written as the original code writes it: the same operations
in the same order give the same autograd graph, hence the same gradients to the last bit
(tests/test_oracle.py trains both side by side).
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn


def gradient_penalty(netD: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """mean_b (||grad_x^ D(x^)||_2 - 1)^2 at x^ = a*real + (1-a)*fake, one a ~ U(0,1) per sample.
    On CUDA the weights a come from the CUDA generator, as in the original."""
    alpha = torch.rand((real.shape[0], 1, 1, 1), dtype=torch.float32, device=real.device)
    interp = (alpha * real + ((1 - alpha) * fake)).requires_grad_(True)
    return penalty(netD(interp)[0], interp)


def penalty(out: torch.Tensor, interp: torch.Tensor) -> torch.Tensor:
    """mean_b (||d out / d interp||_2 - 1)^2; differentiable (create_graph) for the critic's backward."""
    out = out.view(-1, 1)
    (grad,) = torch.autograd.grad(outputs=out, inputs=interp, grad_outputs=torch.ones_like(out),
                                  create_graph=True, retain_graph=True, only_inputs=True)
    grad = grad.view(grad.size(0), -1)
    return ((grad.norm(2, dim=1) - 1) ** 2).mean()


def _sigma(feat: torch.Tensor) -> torch.Tensor:
    """Population std over the batch, per dimension, as the original computes it (not torch.std: other bits)."""
    return (feat - feat.mean(dim=0, keepdim=True)).pow(2).mean(dim=0).sqrt()


def feature_match(feat_fake: torch.Tensor, feat_real: torch.Tensor, match_item: dict) -> torch.Tensor:
    """mu * MSE of batch means + sigma * MSE of batch (population) stds, per embedding dimension; a term
    counts when its key is present (the original's rule)."""
    loss = feat_fake.new_zeros(())
    if "mu" in match_item:
        loss = loss + match_item["mu"] * F.mse_loss(feat_fake.mean(dim=0), feat_real.mean(dim=0))
    if "sigma" in match_item:
        loss = loss + match_item["sigma"] * F.mse_loss(_sigma(feat_fake), _sigma(feat_real))
    return loss


def critic_loss(pred_real: torch.Tensor, pred_fake: torch.Tensor, gp: torch.Tensor, wgan: dict) -> torch.Tensor:
    """L_D = -mean D(x) + mean D(x~) + lambda_gp * GP."""
    return -torch.mean(pred_real) + torch.mean(pred_fake) + wgan["lambda_gp"] * gp


def _critic_update(optD: torch.optim.Optimizer, pred_real: torch.Tensor, pred_fake: torch.Tensor, gp: torch.Tensor,
                   wgan: dict) -> dict:
    loss = critic_loss(pred_real, pred_fake, gp, wgan)
    optD.zero_grad()
    loss.backward()
    optD.step()
    with torch.no_grad():
        wdist = pred_real.mean() - pred_fake.mean()
    return {"lossD": loss.item(), "wdist": wdist.item(), "gp": gp.item()}


def critic_step(netD: nn.Module, optD: torch.optim.Optimizer, x: torch.Tensor, fake: torch.Tensor, wgan: dict
                ) -> dict:
    """One Adam step of the critic on real segments x and reconstructions `fake` (detached)."""
    pred_real, _ = netD(x)
    pred_fake, _ = netD(fake)
    return _critic_update(optD, pred_real, pred_fake, gradient_penalty(netD, x, fake), wgan)


def _generator_update(netD: nn.Module, optG: torch.optim.Optimizer, recon: torch.Tensor, x: torch.Tensor,
                      wgan: dict, gather=None) -> dict:
    """L_G = MSE(recon, x) + feat_match_eff * feature matching, backward and one step of G's optimizer.
    The critic is a fixed feature extractor here: it gets no weight gradients (the original computes and
    discards them; G's gradients are the same either way). `gather` maps per-rank embeddings to the
    global batch's (distributed runs)."""
    netD.requires_grad_(False)
    with torch.no_grad():
        _, feat_real = netD(x)
    _, feat_fake = netD(recon)
    recon_loss = F.mse_loss(recon, x)
    if gather is not None:
        feat_fake, feat_real = gather(feat_fake), gather(feat_real)
    fm = feature_match(feat_fake, feat_real, wgan["match_item"])
    loss = recon_loss + wgan["feat_match_eff"] * fm
    optG.zero_grad()
    loss.backward()
    netD.requires_grad_(True)
    optG.step()
    return {"lossG": loss.item(), "recon": recon_loss.item(), "feat_match": fm.item()}


def generator_step(netD: nn.Module, netG: nn.Module, optG: torch.optim.Optimizer, x: torch.Tensor, wgan: dict
                   ) -> dict:
    """One Adam step of the generator, with the critic as it is after its own step."""
    return _generator_update(netD, optG, netG(x), x, wgan)


def has_batchnorm(net: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())


def train_step(netD: nn.Module, netG: nn.Module, optD: torch.optim.Optimizer, optG: torch.optim.Optimizer,
               x: torch.Tensor, wgan: dict, g_update: bool = True) -> dict:
    """critic_step then generator_step, as the original runs them, with G(x) computed once where that is
    exact: G does not change during the critic step, so its second forward in the original gives the same
    reconstruction, except that BatchNorm advances its running statistics a second time. A generator with
    BatchNorm therefore runs the second forward; a LayerNorm one reuses the first."""
    reuse = g_update and not has_batchnorm(netG)
    with torch.set_grad_enabled(reuse):
        recon = netG(x)
    losses = critic_step(netD, optD, x, recon.detach(), wgan)
    if not g_update:
        return losses
    return losses | _generator_update(netD, optG, recon if reuse else netG(x), x, wgan)


def ddp_train_step(ddpD: nn.Module, ddpG: nn.Module, optD: torch.optim.Optimizer, optG: torch.optim.Optimizer,
                   x: torch.Tensor, wgan: dict, rank: int, world: int, g_update: bool = True) -> dict:
    """train_step for one rank of a DistributedDataParallel run, equal to train_step on the global batch
    (to float rounding: sums over ranks are added in another order).

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
    reuse = g_update and not has_batchnorm(netG)
    with torch.set_grad_enabled(reuse):
        recon = (ddpG if reuse else netG)(x)
    fake = recon.detach()
    alpha = torch.rand((b * world, 1, 1, 1), dtype=torch.float32, device=x.device)[rank * b:(rank + 1) * b]
    interp = (alpha * x + ((1 - alpha) * fake)).requires_grad_(True)
    out, _ = ddpD(torch.cat([x, fake, interp]))
    losses = _critic_update(optD, out[:b], out[b:2 * b], penalty(out[2 * b:], interp), wgan)
    if not g_update:
        return losses

    def gather(feat: torch.Tensor) -> torch.Tensor:
        with warnings.catch_warnings():  # its deprecation names a private replacement; this one is public
            warnings.simplefilter("ignore", FutureWarning)
            return torch.cat(dist_fn.all_gather(feat))

    return losses | _generator_update(netD, optG, recon if reuse else ddpG(x), x, wgan, gather)
