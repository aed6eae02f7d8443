"""No normalization (`bn=none`): the baseline every variant is compared against."""
from __future__ import annotations

from bnexp.nn.norm.registry import NORMALIZATIONS, NormSpec


@NORMALIZATIONS.register(
    "none", order=0,
    summary="no normalization: the baseline")
def no_norm(spec: NormSpec, channels: int, layer: int) -> None:
    return None
