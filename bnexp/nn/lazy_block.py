"""A Gluon HybridBlock whose module imports no MXNet.

MXNet fixes its OpenMP thread count when it is imported, and bnexp chooses that count only
after the config is checked (bnexp/tuning/). The config check needs the modules that the
config groups name (`_target_`: their settings and checks), so those modules must import
without MXNet. Their layers derive from `LazyHybridBlock` instead of `gluon.HybridBlock`:
the class body is an ordinary HybridBlock's (`__init__` with `self.params.get`, a
`hybrid_forward`), and the first time such a layer is built -- when MXNet is running --
`LazyHybridBlock` makes the Gluon class `type(name, (cls, gluon.HybridBlock), {})` once and
builds that. The layer is then a HybridBlock and an instance of its own class, with the
class's name (so its parameters are named as an ordinary block's would be).
"""
from __future__ import annotations

from typing import Any

_gluon_classes: dict[type, type] = {}


class LazyHybridBlock:
    """Derive a layer from this instead of `gluon.HybridBlock` (see the module docstring)."""

    def __new__(cls, *args: Any, **kwargs: Any):
        gluon_class = _gluon_classes.get(cls)
        if gluon_class is None:
            from mxnet import gluon
            gluon_class = type(cls.__name__, (cls, gluon.HybridBlock),
                               {"__module__": cls.__module__, "__doc__": cls.__doc__})
            _gluon_classes[cls] = gluon_class
        return object.__new__(gluon_class)
