"""How far train.depthwise_sum (the critic's depthwise layer as product + sum) is from the grouped conv, on the CPU.

    python bench/depthwise_diff.py [--batch 16 --isize 128]

The same critic weights and batch through both formulations: the embedding and critic value (forward), the
gradient penalty (its double backward) and every weight gradient of L = mean D(x) + 10 GP (backward). Prints
the largest absolute difference, and relative to the largest magnitude of each; writes
bench/results/depthwise_diff_cpu.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aegan.method.nets import Discriminator  # noqa: E402
from aegan.method.steps import penalty  # noqa: E402


def run(net: Discriminator, x: torch.Tensor) -> dict[str, torch.Tensor]:
    net.zero_grad()
    xi = x.clone().requires_grad_(True)
    out, feat = net(xi)
    gp = penalty(out, xi)
    (out.mean() + 10 * gp).backward()
    return {"embedding": feat.detach(), "critic": out.detach(), "gradient_penalty": gp.detach().reshape(1),
            "weight_gradients": torch.cat([p.grad.flatten() for p in net.parameters()])}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--isize", type=int, default=128)
    p.add_argument("--ndf", type=int, default=32)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "depthwise_diff_cpu.json"))
    a = p.parse_args()
    res: dict = {"batch": a.batch, "isize": a.isize, "ndf": a.ndf, "seeds": a.seeds, "torch": torch.__version__}
    worst: dict[str, dict] = {}
    for seed in range(a.seeds):
        torch.manual_seed(seed)
        conv, summed = Discriminator(a.isize, a.ndf), Discriminator(a.isize, a.ndf, depthwise_sum=True)
        summed.load_state_dict(conv.state_dict())  # the same keys: checkpoints load either way
        x = torch.rand(a.batch, 1, a.isize, a.isize) * 2 - 1
        ref, got = run(conv, x), run(summed, x)
        for k in ref:
            d = (ref[k] - got[k]).abs()
            row = {"bit_equal": bool(torch.equal(ref[k], got[k])), "max_abs": d.max().item(),
                   "max_abs_over_max_magnitude": (d.max() / ref[k].abs().max()).item()}
            w = worst.setdefault(k, row)
            w["bit_equal"] &= row["bit_equal"]
            w["max_abs"] = max(w["max_abs"], row["max_abs"])
            w["max_abs_over_max_magnitude"] = max(w["max_abs_over_max_magnitude"], row["max_abs_over_max_magnitude"])
    res["difference"] = worst
    for k, v in worst.items():
        print(f"{k:18s} bit-equal {v['bit_equal']!s:5s}  max abs {v['max_abs']:.3g}  relative to the largest "
              f"{v['max_abs_over_max_magnitude']:.3g}")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=1))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
