"""WGAN-GP critic loss, the generator's reconstruction + feature-matching loss, and one step of each.

Loss weights are named as in the config (train.wgan.lambda_gp, feat_match_eff, match_item.mu/sigma)
and each step returns a dict of named losses for the log.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def gradient_penalty(netD: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """mean_b (||grad_x^ D(x^)||_2 - 1)^2 at x^ = a*real + (1-a)*fake, one a ~ U(0,1) per sample."""
    alpha = torch.rand(real.size(0), *([1] * (real.dim() - 1)), device=real.device, dtype=real.dtype)
    interp = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    out, _ = netD(interp)
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
    gp = gradient_penalty(netD, x, fake)
    wdist = d_real.mean() - d_fake.mean()
    loss = -wdist + wgan["lambda_gp"] * gp
    loss.backward()
    optD.step()
    return {"lossD": loss.item(), "wdist": wdist.item(), "gp": gp.item()}


def g_step(netD: nn.Module, netG: nn.Module, optG: torch.optim.Optimizer, x: torch.Tensor, wgan: dict) -> dict:
    """L_G = MSE(G(x), x) + feat_match_eff * feature matching on D's embedding; one Adam step on G."""
    optG.zero_grad(set_to_none=True)
    netD.requires_grad_(False)  # D is only a fixed feature extractor here; skips its weight gradients
    recon = netG(x)
    rec = F.mse_loss(recon, x)
    _, feat_fake = netD(recon)
    with torch.no_grad():
        _, feat_real = netD(x)
    fm = feature_match(feat_fake, feat_real, wgan["match_item"])
    loss = rec + wgan["feat_match_eff"] * fm
    loss.backward()
    netD.requires_grad_(True)
    optG.step()
    return {"lossG": loss.item(), "rec": rec.item(), "fm": fm.item()}
