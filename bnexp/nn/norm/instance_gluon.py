"""MXNet's own `gluon.nn.InstanceNorm`, `bn=instance_gluon`, with a learnable gamma (MXNet's
default is scale=False) so that it is the layer `bn=instance` builds (tests/test_norms.py)."""
from __future__ import annotations

from mxnet import gluon

from bnexp.nn.norm.group import affine_initializers
from bnexp.nn.norm.registry import NORMALIZATIONS, NormSpec


@NORMALIZATIONS.register("instance_gluon", summary="MXNet's gluon.nn.InstanceNorm (conv layers only)",
                         order=15)
def instance_gluon(spec: NormSpec, channels: int, layer: int) -> gluon.nn.InstanceNorm:
    return gluon.nn.InstanceNorm(epsilon=spec.eps, scale=True, in_channels=channels,
                                 **affine_initializers(spec))
