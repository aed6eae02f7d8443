"""MXNet's own `gluon.nn.GroupNorm`, `bn=group_gluon`: the same normalization as `bn=group`
(tests/test_norms.py), but MXNet 1.9.1 gives it one gamma and one beta per *group*
(shape (G,)), not per channel as Wu & He's layer has: with G < C it has fewer parameters.
Its operator also wants at least 3 dimensions, so a dense layer's (N, C) is made (N, C, 1)."""
from __future__ import annotations

from bnexp.nn.lazy_block import LazyHybridBlock
from bnexp.nn.norm.group import check  # noqa: F401 -- the same settings as bn=group, checked alike
from bnexp.nn.norm.parameters import initializers


class GluonGroupNorm(LazyHybridBlock):
    def __init__(self, groups: int, epsilon: float, init: str = "standard"):
        super().__init__()
        from mxnet import gluon
        with self.name_scope():
            self.norm = gluon.nn.GroupNorm(num_groups=groups, epsilon=epsilon,
                                           **initializers(init, moving=False))

    def hybrid_forward(self, F, x):
        return F.reshape_like(self.norm(F.reshape(x, (0, 0, -1))), x)


def group_gluon(channels: int, groups: int = 10, eps: float = 1e-5,
                init: str = "standard") -> GluonGroupNorm:
    """bn=group_gluon: MXNet's GroupNorm with `groups` groups."""
    if channels % groups:
        raise ValueError(f"GroupNorm: {groups} groups do not divide {channels} channels")
    return GluonGroupNorm(groups, eps, init)
