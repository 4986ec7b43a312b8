"""One epoch of training through the method's two steps, its losses read from the device once per LOG_EVERY."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import torch

from aegan.core.errors import AeganError
from aegan.core.progress import Bar
from aegan.data.segments import SegmentSampler
from aegan.method.device import autocast
from aegan.method.fast_steps import ddp_train_step, train_step
from aegan.method.steps import CRITIC, GENERATOR, terms
from aegan.training.parts import Nets

G_TERMS = terms(GENERATOR)  # logged once per generator step, not per critic step
LOG_EVERY = 25  # training iterations between reads of the losses (each read waits for the device)


def train_epoch(nets: Nets, sampler: SegmentSampler, train: dict, device: torch.device, desc: str, last_path: Path,
                log: Callable[[int, dict], None] = lambda i, mean: None) -> dict:
    """One pass over this rank's slices of the shuffled batches: each loss term's epoch mean. `train`: the train
    settings (the steps' weights, amp); `log(i, mean)` gets each logging interval's mean losses, i its last
    iteration."""
    nets.netG.train()
    nets.netD.train()
    wgan, sums, seen, pending = train["wgan"], {}, {}, []
    bar = Bar(sampler.epoch(), desc, total=len(sampler), unit="batches", disable=sampler.rank > 0, start_line=True)
    with autocast(device, train["amp"]):
        for i, x in enumerate(bar):
            x = x.to(device, non_blocking=True).contiguous(memory_format=nets.fmt)
            g_update = i % wgan["ncritic"] == 0
            if nets.ddp:
                losses = ddp_train_step(nets.ddp[1], nets.ddp[0], nets.optD, nets.optG, x, train, g_update)
            else:
                losses = train_step(nets.netD, nets.gen, nets.optD, nets.optG, x, train, g_update)
            pending.append((i, losses))
            if len(pending) == LOG_EVERY:
                _read(pending, sums, seen, desc, last_path, bar, log)
                pending = []
    if pending:
        _read(pending, sums, seen, desc, last_path, bar, log)
    n_g = len(range(0, len(sampler), wgan["ncritic"]))
    return {k: v / (n_g if k in G_TERMS else len(sampler)) for k, v in sums.items()}


def _read(pending: list[tuple[int, dict]], sums: dict[str, float], seen: dict[str, int], desc: str, last_path: Path,
          bar: Bar, log: Callable[[int, dict], None]) -> None:
    """The pending iterations' losses in one host sync, added to `sums` in iteration order (the means of reading
    each with .item(), to the bit); the running means beside the bar, the interval's means to `log`."""
    flat = iter(torch.stack([v.float() for _, losses in pending for v in losses.values()]).tolist())
    rows = []
    for i, losses in pending:
        row = {k: next(flat) for k in losses}
        if not all(math.isfinite(v) for v in row.values()):
            kept = (f"the last good run state {last_path} is kept" if last_path.exists() else
                    "no run state was written yet")
            raise AeganError(f"{desc}, batch {i}: loss is not finite ({row}); stopped, {kept} (lower "
                             "train.lrD/lrG, or train.wgan.lambda_gp?)")
        for k, v in row.items():
            sums[k] = sums.get(k, 0.0) + v
        rows.append(row)
    for k in sums:
        seen[k] = seen.get(k, 0) + sum(k in r for r in rows)
    # the epoch's running means (`seen`: how many iterations logged each term), which end at its training line's means
    bar.note(**{f"running mean {k}": f"{sums[k] / seen[k]:.3f}" for k in (terms(CRITIC)[0], G_TERMS[0])
                if seen.get(k)})
    keys = dict.fromkeys(k for r in rows for k in r)  # the generator's terms only in its iterations (ncritic)
    log(pending[-1][0], {k: sum(r[k] for r in rows if k in r) / sum(k in r for r in rows) for k in keys})
