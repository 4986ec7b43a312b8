"""DCASE 2020 networks: the core G and D; every DCASE 2020 model of the paper has first_norm."""

from __future__ import annotations

from aegan.nets import Discriminator, Generator, build_nets


def first_norm(mt: str) -> bool:
    return True


def build(net_cfg: dict, mt: str) -> tuple[Generator, Discriminator]:
    return build_nets(net_cfg, first_norm(mt))
