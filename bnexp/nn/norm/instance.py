"""Instance Normalization (Ulyanov et al. 2016), `bn=instance`: Group Normalization with
one channel per group (bnexp/nn/norm/group.py), each channel of each sample normalized
over its positions. A dense layer has no positions (each value would be normalized alone,
to beta): bnexp/validate.py refuses it there."""
from __future__ import annotations

from bnexp.nn.norm.group import GroupNorm, affine_initializers
from bnexp.nn.norm.registry import NORMALIZATIONS, NormSpec


@NORMALIZATIONS.register("instance", summary="Instance Normalization from scratch: GroupNorm with "
                         "one channel per group (conv layers only)", order=14)
def instance_norm(spec: NormSpec, channels: int, layer: int) -> GroupNorm:
    return GroupNorm(channels, channels, spec.eps, **affine_initializers(spec))
