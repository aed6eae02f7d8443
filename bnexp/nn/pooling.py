"""2x2 max pooling with stride 2 in two layouts with the same results; which is faster
depends on the CPU, so `perf.pool` chooses by measuring (bnexp/tuning/)."""
from __future__ import annotations

from mxnet.gluon import nn

from bnexp.config import POOL_LAYOUTS


class FoldedMaxPool2D(nn.HybridBlock):
    """2x2 max pooling with stride 2, the same as `nn.MaxPool2D(2, 2)`, computed
    with the channels folded into the batch axis: (N, C, H, W) -> (N*C, 1, H, W).
    oneDNN in MXNet 1.9 pools 20 or 50 plain-layout channels with a generic kernel;
    on one CPU folding was 3x faster, on another 1.35x slower."""

    def hybrid_forward(self, F, x):
        folded = F.reshape(x, (-1, 1, 0, 0))
        pooled = F.Pooling(folded, kernel=(2, 2), stride=(2, 2), pool_type="max")
        return F.reshape_like(pooled, x, lhs_begin=0, lhs_end=2, rhs_begin=0, rhs_end=2)


def max_pool(layout: str) -> nn.HybridBlock:
    """2x2 max pooling, stride 2, in the given layout (config.POOL_LAYOUTS)."""
    if layout == "native":
        return nn.MaxPool2D(pool_size=2, strides=2)
    if layout == "folded":
        return FoldedMaxPool2D()
    raise ValueError(f"unknown pooling layout {layout!r}; expected one of {POOL_LAYOUTS}")
