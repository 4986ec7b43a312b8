"""The method's two steps, one iteration of training on a batch x of normal segments (SPEC section 4):

1. critic step:    L_D = -mean D(x) + mean D(G(x)) + lambda_gp * GP
                   GP  = mean_b (||grad D(x^)||_2 - 1)^2 at x^ = a x + (1 - a) G(x), a ~ U(0, 1) per sample
2. generator step: L_G = MSE(G(x), x) + feat_match_eff * (mu * MSE(mean_b f(G(x)), mean_b f(x))
                                                           + sigma * MSE(std_b f(G(x)), std_b f(x)))
   with f the critic's 512-d embedding and the critic as it is after its own step.
Every expression is the original's, in its order: the same autograd graph, the same gradients to the last bit
(tests/test_oracle.py trains both side by side). Each term's log tag is the stem of its weight's setting.

The loss terms the steps return are declared once in TERMS: epoch means, curves, TensorBoard, the train.log line
and the model's history read it. The steps take the train settings: the original's weights are in train.wgan,
under its config keys; a new term's weight goes in a section of its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

CRITIC, GENERATOR = "critic", "generator"  # which step computes a term: the generator's only every ncritic-th


@dataclass(frozen=True)
class Term:
    """A loss term the steps return: its name (the log tag), its step, what it is, and with how many decimals the
    train.log epoch line shows it (None: not shown there)."""

    name: str
    step: str
    doc: str
    digits: int | None = None


TERMS = (
    Term("lossD", CRITIC, "L_D, the critic's loss", 4),
    Term("wdist", CRITIC, "mean D(x) - mean D(G(x)): the Wasserstein estimate"),
    Term("gp", CRITIC, "GP, the gradient penalty"),
    Term("lossG", GENERATOR, "L_G, the generator's loss", 4),
    Term("recon", GENERATOR, "MSE(G(x), x)", 5),
    Term("feat_match", GENERATOR, "the feature-matching term, before its weight"),
)


def terms(step: str) -> tuple[str, ...]:
    """The names of one step's terms, in TERMS order; the first is its total loss."""
    return tuple(t.name for t in TERMS if t.step == step)


def terms_text(mean: dict) -> str:
    """The terms the train.log epoch line shows: 'lossD 0.1234 lossG 0.5678 recon 0.01234'."""
    return " ".join(f"{t.name} {mean.get(t.name, math.nan):.{t.digits}f}" for t in TERMS if t.digits is not None)


def gradient_penalty(netD: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """GP at x^ = a*real + (1-a)*fake; on CUDA the weights a come from the CUDA generator, as in the original."""
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
    """mu * MSE of batch means + sigma * MSE of batch stds; a term counts when its key is present (the original's)."""
    loss = feat_fake.new_zeros(())
    if "mu" in match_item:
        loss = loss + match_item["mu"] * F.mse_loss(feat_fake.mean(dim=0), feat_real.mean(dim=0))
    if "sigma" in match_item:
        loss = loss + match_item["sigma"] * F.mse_loss(_sigma(feat_fake), _sigma(feat_real))
    return loss


def critic_update(optD: torch.optim.Optimizer, pred_real: torch.Tensor, pred_fake: torch.Tensor, gp: torch.Tensor,
                  train: dict) -> dict:
    """L_D's Adam step; the loss terms stay 0-d tensors on the device (read once per logging interval)."""
    loss = -torch.mean(pred_real) + torch.mean(pred_fake) + train["wgan"]["lambda_gp"] * gp
    optD.zero_grad()
    loss.backward()
    optD.step()
    with torch.no_grad():
        wdist = pred_real.mean() - pred_fake.mean()
    return {"lossD": loss.detach(), "wdist": wdist, "gp": gp.detach()}


def critic_step(netD: nn.Module, optD: torch.optim.Optimizer, x: torch.Tensor, fake: torch.Tensor, train: dict
                ) -> dict:
    """Step 1: one Adam step of the critic on real segments x and their reconstructions `fake` (detached)."""
    pred_real, _ = netD(x)
    pred_fake, _ = netD(fake)
    return critic_update(optD, pred_real, pred_fake, gradient_penalty(netD, x, fake), train)


def generator_step(netD: nn.Module, optG: torch.optim.Optimizer, recon: torch.Tensor, x: torch.Tensor,
                   train: dict, gather=None) -> dict:
    """Step 2: one Adam step of G from `recon` = G(x); `gather` maps per-rank embeddings to the global batch's (DDP).
    The critic gets no weight gradients (the original's are discarded; G's are the same either way)."""
    netD.requires_grad_(False)
    with torch.no_grad():
        _, feat_real = netD(x)
    _, feat_fake = netD(recon)
    recon_loss = F.mse_loss(recon, x)
    if gather is not None:
        feat_fake, feat_real = gather(feat_fake), gather(feat_real)
    wgan = train["wgan"]
    fm = feature_match(feat_fake, feat_real, wgan["match_item"])
    loss = recon_loss + wgan["feat_match_eff"] * fm
    optG.zero_grad()
    loss.backward()
    netD.requires_grad_(True)
    optG.step()
    return {"lossG": loss.detach(), "recon": recon_loss.detach(), "feat_match": fm.detach()}


def iteration(netD: nn.Module, netG: nn.Module, optD: torch.optim.Optimizer, optG: torch.optim.Optimizer,
              x: torch.Tensor, train: dict, g_update: bool = True) -> dict:
    """One iteration as the original runs it: G(x), the critic step, then (every ncritic-th) G(x) again and step 2."""
    losses = critic_step(netD, optD, x, netG(x).detach(), train)
    return losses | generator_step(netD, optG, netG(x), x, train) if g_update else losses
