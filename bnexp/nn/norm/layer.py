"""Layer Normalization over (C, H, W) (Ba et al. 2016, as Wu & He 2018 define it for
images), `bn=layer`: Group Normalization with one group (bnexp/nn/norm/group.py).
Per-channel gamma and beta, as in Wu & He; no moving statistics."""
from __future__ import annotations

from bnexp.nn.norm.group import GroupNorm
from bnexp.nn.norm.parameters import check_eps, check_init


def layer_norm(channels: int, eps: float = 1e-5, init: str = "standard") -> GroupNorm:
    """bn=layer: GroupNorm with one group."""
    return GroupNorm(channels, 1, eps, init)


def check(network, eps: float, init: str) -> None:
    check_eps(eps)
    check_init(init)
