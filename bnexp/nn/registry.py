"""The networks bnexp can train, by name (`model=...`): each model module of this package
registers a factory `(model_cfg, norm_spec, pool) -> HybridSequential` with
`@MODELS.register(name, summary=...)`; bnexp/conf/model/<name>.yaml selects it."""
from __future__ import annotations

from bnexp.registry import Registry

MODELS = Registry("model", "bnexp.nn", "MODELS", config_key="model")
