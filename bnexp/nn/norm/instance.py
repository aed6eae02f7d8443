"""Instance Normalization (Ulyanov et al. 2016), `bn=instance`: Group Normalization with
one channel per group (bnexp/nn/norm/group.py), each channel of each sample normalized
over its positions. A dense layer has no positions (each value would be normalized alone,
to beta): `check` refuses it there."""
from __future__ import annotations

from bnexp.config import fail
from bnexp.nn.norm.group import GroupNorm
from bnexp.nn.norm.parameters import check_eps, check_init


def instance_norm(channels: int, eps: float = 1e-5, init: str = "standard") -> GroupNorm:
    """bn=instance: GroupNorm with one channel per group."""
    return GroupNorm(channels, channels, eps, init)


def check(network, eps: float, init: str) -> None:
    check_eps(eps)
    check_init(init)
    check_spatial(network)


def check_spatial(network) -> None:
    """Every normalized layer has positions to average over (convolutions, not dense layers)."""
    if network.sites is not None and not all(site.spatial for site in network.sites):
        fail("bn", "instance", f"instance normalization averages over a channel's positions and a "
             f"dense layer has none ({network.model}): every output would be beta; use bn=layer "
             f"or bn=group.")
