"""The generator (an autoencoder) and the WGAN-GP critic, DCGAN style. The nn.Sequential indices are the original's
checkpoint key names (shared/reference/state_dict_keys.json): do not insert or reorder modules."""

from __future__ import annotations

import torch
from torch import nn

# Modules whose forward in training mode is not a function of the weights and the input alone: BatchNorm advances
# its running statistics, dropout draws a mask. A network holding none of them is repeatable.
NOT_REPEATABLE = (nn.modules.batchnorm._BatchNorm, nn.modules.dropout._DropoutNd)


def repeatable(net: nn.Module) -> bool:
    """Whether a second forward of `net` in training mode gives the same output and leaves the same state as the
    first: the fast path's precondition for reusing G(x) (method/fast_steps.py); tested for every network option."""
    return not any(isinstance(m, NOT_REPEATABLE) for m in net.modules())


def _norm(kind: str, channels: int, size: int) -> nn.Module:
    # "ln" normalises over the whole (C, H, W) map of one sample: no coupling between samples.
    if kind == "ln":
        return nn.LayerNorm([channels, size, size])
    if kind == "bn":
        return nn.BatchNorm2d(channels)
    raise ValueError(f"unknown norm {kind!r}")


def _pyramid(isize: int, width: int) -> list[tuple[int, int, int]]:
    """(in_ch, out_ch, out_size) of each stride-2 stage from isize down to 4, starting at `width` channels."""
    stages = [(1, width, isize // 2)]
    ch, size = width, isize // 2
    while size > 4:
        stages.append((ch, ch * 2, size // 2))
        ch, size = ch * 2, size // 2
    return stages


class Encoder(nn.Module):
    """x (B, 1, isize, isize) -> z (B, nz, 1, 1).

    `main` at the paper's size (isize 128, ndf 32, nz 256); the index is the checkpoint key
    (`netG.Encoder.main.<i>.weight`), and net.first_norm=false drops index 1, shifting the rest down by one:
         0 Conv2d 1->32        32 x 64 x 64      1 norm     2 LeakyReLU
         3 Conv2d 32->64       64 x 32 x 32      4 norm     5 LeakyReLU
         6 Conv2d 64->128     128 x 16 x 16      7 norm     8 LeakyReLU
         9 Conv2d 128->256    256 x 8 x 8       10 norm    11 LeakyReLU
        12 Conv2d 256->512    512 x 4 x 4       13 norm    14 LeakyReLU
        15 Conv2d 512->nz     256 x 1 x 1
    Each halving of isize removes one stage (isize 64: five fewer indices).
    """

    def __init__(self, isize: int = 128, nz: int = 256, ndf: int = 32, norm: str = "ln", first_norm: bool = True):
        super().__init__()
        layers: list[nn.Module] = []
        stages = _pyramid(isize, ndf)
        for i, (cin, cout, size) in enumerate(stages):
            # state size. cout x size x size
            layers.append(nn.Conv2d(cin, cout, 4, 2, 1, bias=False))
            if i > 0 or first_norm:
                layers.append(_norm(norm, cout, size))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
        # state size. (ndf * isize/8) x 4 x 4 -> nz x 1 x 1
        layers.append(nn.Conv2d(stages[-1][1], nz, 4, 1, 0, bias=False))
        self.main = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x)


class Decoder(nn.Module):
    """z (B, nz, 1, 1) -> x^ (B, 1, isize, isize) in [-1, 1].

    `main` at the paper's size (`netG.Decoder.main.<i>`):
         0 ConvT nz->512      512 x 4 x 4        1 norm     2 ReLU
         3 ConvT 512->256     256 x 8 x 8        4 norm     5 ReLU
         6 ConvT 256->128     128 x 16 x 16      7 norm     8 ReLU
         9 ConvT 128->64       64 x 32 x 32     10 norm    11 ReLU
        12 ConvT 64->32        32 x 64 x 64     13 norm    14 ReLU
        15 ConvT 32->1          1 x 128 x 128   16 Tanh
    """

    def __init__(self, isize: int = 128, nz: int = 256, ngf: int = 32, norm: str = "ln"):
        super().__init__()
        stages = _pyramid(isize, ngf)[::-1]  # mirror of the encoder
        top = stages[0][1]
        layers: list[nn.Module] = [
            # state size. top x 4 x 4
            nn.ConvTranspose2d(nz, top, 4, 1, 0, bias=False),
            _norm(norm, top, 4),
            nn.ReLU(True),
        ]
        for cin, cout, size in stages:
            if cin == 1:  # the image channel: the output layer below
                break
            # state size. cin x (2*size) x (2*size)
            layers += [nn.ConvTranspose2d(cout, cin, 4, 2, 1, bias=False), _norm(norm, cin, size * 2), nn.ReLU(True)]
        # state size. 1 x isize x isize
        layers += [nn.ConvTranspose2d(ngf, 1, 4, 2, 1, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.main(z)


class Generator(nn.Module):
    """Autoencoder. Attribute names `Encoder`/`Decoder` are the original's checkpoint prefixes."""

    def __init__(self, isize: int = 128, nz: int = 256, ndf: int = 32, ngf: int = 32, norm: str = "ln",
                 first_norm: bool = True):
        super().__init__()
        self.Encoder = Encoder(isize, nz, ndf, norm, first_norm)
        self.Decoder = Decoder(isize, nz, ngf, norm)

    def forward(self, x: torch.Tensor, outz: bool = False) -> torch.Tensor:
        z = self.Encoder(x)
        return z if outz else self.Decoder(z)

    @property
    def repeatable(self) -> bool:
        """Whether G's training forward can be reused (nets.repeatable): as its network options make it."""
        return repeatable(self)

    def forward_with_z(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(x^, z) from one encoder pass; the test-time scores need both."""
        z = self.Encoder(x)
        return self.Decoder(z), z


class Discriminator(nn.Module):
    """Critic: x -> (critic value (B, 1), embedding f(x) (B, C)) with C = ndf * isize / 8 (512).

    At the paper's size (`netD.main.<j>.<i>`: i = 0 Conv2d, 1 LayerNorm, 2 LeakyReLU in each block j):
        main.0   1->32     32 x 64 x 64         main.3  128->256   256 x 8 x 8
        main.1  32->64     64 x 32 x 32         main.4  256->512   512 x 4 x 4
        main.2  64->128   128 x 16 x 16
        feat_extract_layer.0  depthwise Conv2d 4x4, groups 512   512 x 1 x 1 -> (flatten) 512: the embedding
        output_layer.0 LayerNorm(512), .1 LeakyReLU, .2 Linear 512->1: the critic value
    """

    def __init__(self, isize: int = 128, ndf: int = 32, depthwise_sum: bool = False):
        super().__init__()
        # train.depthwise_sum: in training, the depthwise layer as a product and sum (README, Performance)
        self.depthwise_sum = depthwise_sum
        self.main = nn.ModuleList(
            nn.Sequential(nn.Conv2d(cin, cout, 4, 2, 1, bias=False), _norm("ln", cout, size),
                          nn.LeakyReLU(0.2, inplace=True))
            for cin, cout, size in _pyramid(isize, ndf)
        )
        ch = _pyramid(isize, ndf)[-1][1]
        # depthwise 4x4 conv: one learned spatial pooling per channel -> ch x 1 x 1 -> ch
        self.feat_extract_layer = nn.Sequential(nn.Conv2d(ch, ch, 4, 1, 0, groups=ch, bias=False), nn.Flatten())
        self.output_layer = nn.Sequential(nn.LayerNorm(ch), nn.LeakyReLU(0.2, inplace=True), nn.Linear(ch, 1))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.main:
            x = block(x)
        if self.depthwise_sum and self.training:
            return depthwise_as_sum(x, self.feat_extract_layer[0].weight)
        return self.feat_extract_layer(x)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feat = self.embed(x)
        return self.output_layer(feat), feat


def depthwise_as_sum(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The critic's depthwise conv as a per-channel product and sum, (B, C, k, k) -> (B, C), equal up to rounding:
    its double backward (the gradient penalty) is a few elementwise CUDA kernels instead of a conv per channel."""
    if x.shape[-2:] != weight.shape[-2:]:
        raise ValueError(f"depthwise_as_sum needs a kernel covering the map: {tuple(x.shape)} vs {tuple(weight.shape)}")
    return (x * weight.squeeze(1)).sum(dim=(2, 3))


def weights_init(m: nn.Module) -> None:
    """DCGAN init; apply with `net.apply(weights_init)` so it reaches every submodule."""
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(m.weight, 0.0, 0.02)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


def build_nets(net_cfg: dict, depthwise_sum: bool = False) -> tuple[Generator, Discriminator]:
    """G and D from the `net` section, D built and initialised first as in the original: the same seed draws the
    same weights (PyTorch's default init and the DCGAN init both draw from the global generator)."""
    d = Discriminator(net_cfg["isize"], net_cfg["ndf"], depthwise_sum)
    g = Generator(net_cfg["isize"], net_cfg["nz"], net_cfg["ndf"], net_cfg["ngf"], net_cfg["normalize"]["g"],
                  net_cfg["first_norm"])
    d.apply(weights_init)
    g.apply(weights_init)
    return g, d
