"""MXNet's own `gluon.nn.InstanceNorm`, `bn=instance_gluon`, with a learnable gamma (MXNet's
default is scale=False) so that it is the layer `bn=instance` builds (tests/test_norms.py)."""
from __future__ import annotations

from bnexp.nn.norm.instance import check  # noqa: F401 -- convolutions only, as bn=instance
from bnexp.nn.norm.parameters import initializers


def instance_gluon(channels: int, eps: float = 1e-5, init: str = "standard"):
    """bn=instance_gluon: gluon.nn.InstanceNorm with a learnable gamma."""
    from mxnet import gluon
    return gluon.nn.InstanceNorm(epsilon=eps, scale=True, in_channels=channels,
                                 **initializers(init, moving=False))
