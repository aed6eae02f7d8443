"""No normalization (`bn=none`): the baseline every variant is compared against."""
from __future__ import annotations


def no_norm(channels: int) -> None:
    """bn=none: no layer."""
    return None
