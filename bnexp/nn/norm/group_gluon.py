"""MXNet's own `gluon.nn.GroupNorm`, `bn=group_gluon`: the same normalization as `bn=group`
(tests/test_norms.py), but MXNet 1.9.1 gives it one gamma and one beta per *group*
(shape (G,)), not per channel as Wu & He's layer has: with G < C it has fewer parameters.
Its operator also wants at least 3 dimensions, so a dense layer's (N, C) is made (N, C, 1)."""
from __future__ import annotations

from mxnet import gluon

from bnexp.nn.norm.group import affine_initializers
from bnexp.nn.norm.registry import NORMALIZATIONS, NormSpec


class GluonGroupNorm(gluon.HybridBlock):
    def __init__(self, groups: int, epsilon: float, **initializers):
        super().__init__()
        with self.name_scope():
            self.norm = gluon.nn.GroupNorm(num_groups=groups, epsilon=epsilon, **initializers)

    def hybrid_forward(self, F, x):
        return F.reshape_like(self.norm(F.reshape(x, (0, 0, -1))), x)


@NORMALIZATIONS.register("group_gluon", summary="MXNet's gluon.nn.GroupNorm (gamma, beta per group, "
                         "not per channel)", order=11, settings=("groups",))
def group_gluon(spec: NormSpec, channels: int, layer: int) -> GluonGroupNorm:
    if channels % spec.groups:
        raise ValueError(f"GroupNorm: {spec.groups} groups do not divide {channels} channels")
    return GluonGroupNorm(spec.groups, spec.eps, **affine_initializers(spec))
