"""The normalization layers bnexp can put before each hidden activation, by name (`bn=...`).

Each layer module of this package registers a factory `(spec, channels, layer) -> block`
(or None: no layer) with `@NORMALIZATIONS.register(name, summary=...)`; bnexp/conf/bn/<name>.yaml
selects it. Nothing else lists the names (bnexp/registry.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from bnexp.registry import Registry

NORMALIZATIONS = Registry("normalization", "bnexp.nn.norm", "NORMALIZATIONS", config_key="bn")


@dataclass(frozen=True)
class NormSpec:
    """What every normalization layer of a network is made of (from the config)."""
    variant: str = "scratch"
    momentum: float = 0.9
    eps: float = 1e-5
    impl: str = "centered"   # ScratchBatchNorm formulation (perf.bn_impl): speed only
    noise: float = 1.0       # bn=noisy: strength of the injected noise
    init: str = "standard"   # standard: gamma 1, beta 0, moving var 1 | source: the tutorial's
    init_sigma: float = 0.01  # bn.init=source: gamma and beta from normal(0, init_sigma)
    seed: int = 0            # bn=noisy: seeds the noise
    groups: int = 10         # bn=group/group_gluon: channel groups per layer
    virtual_batch: int = 32  # bn=ghost: images per ghost batch
    r_max: float = 3.0       # bn=renorm: the clips of r and d once relaxed ...
    d_max: float = 5.0
    relax_begin: int = 50    # ... relaxed from 1 and 0 linearly between these steps
    relax_end: int = 250
    devices: int = 1         # bn=sync: the devices whose batches are normalized together

    def initializers(self) -> dict:
        """gluon.nn.BatchNorm's initializer arguments: the defaults (gamma 1, beta 0, moving
        variance 1), or the source tutorial's defects: gamma, beta ~ N(0, 0.01), moving var 0."""
        if self.init != "source":
            return {}
        import mxnet as mx  # only when a network is built: MXNet is imported by then
        return {"gamma_initializer": mx.init.Normal(self.init_sigma),
                "beta_initializer": mx.init.Normal(self.init_sigma),
                "running_variance_initializer": "zeros"}


def make_norm(spec: NormSpec, channels: int, layer: int = 0):
    """The layer of `spec.variant` for `channels` features, or None (bn=none). `layer`
    numbers the normalization layers of a network (bn=noisy keeps their noise apart)."""
    return NORMALIZATIONS.get(spec.variant)(spec, channels, layer)


def variant_label(variant: str, settings: Mapping[str, Any]) -> str:
    """The variant with its own settings, for logs and figures: 'group (groups=10)', 'gluon'.
    `settings`: BN setting name -> value (a BNConfig's fields, or a record's bn.* keys)."""
    own = NORMALIZATIONS.entry(variant).settings if variant in NORMALIZATIONS else ()
    values = ", ".join(f"{key}={settings.get(key, settings.get(f'bn.{key}'))}" for key in own)
    return f"{variant} ({values})" if values else variant
