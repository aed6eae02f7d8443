"""Layer Normalization over (C, H, W) (Ba et al. 2016, as Wu & He 2018 define it for
images), `bn=layer`: Group Normalization with one group (bnexp/nn/norm/group.py).
Per-channel gamma and beta, as in Wu & He; no moving statistics."""
from __future__ import annotations

from bnexp.nn.norm.group import GroupNorm, affine_initializers
from bnexp.nn.norm.registry import NORMALIZATIONS, NormSpec


@NORMALIZATIONS.register("layer", summary="Layer Normalization over (C,H,W) from scratch: GroupNorm "
                         "with one group", order=12)
def layer_norm(spec: NormSpec, channels: int, layer: int) -> GroupNorm:
    return GroupNorm(channels, 1, spec.eps, **affine_initializers(spec))
