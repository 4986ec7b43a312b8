"""DCASE 2022 networks: the core G and D, with the paper's first_norm rule per machine type."""

from __future__ import annotations

from aegan.nets import Discriminator, Generator, build_nets

# The paper's bearing, fan and ToyCar models have no norm after the encoder's first conv
# (their checkpoints' Encoder.main indices are shifted by one).
NO_FIRST_NORM = ("bearing", "fan", "ToyCar")


def first_norm(mt: str) -> bool:
    return mt not in NO_FIRST_NORM


def build(net_cfg: dict, mt: str) -> tuple[Generator, Discriminator]:
    return build_nets(net_cfg, first_norm(mt))
