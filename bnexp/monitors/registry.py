"""The monitors bnexp can attach to a run, by name (`monitor=[activations,ics,landscape]`).

Each monitor module of this package registers its class with
`@MONITORS.register(name, summary=...)`; its options are `monitor.<name>` in the schema
(bnexp/config.py) and bnexp/conf/monitor/<name>.yaml. Nothing else lists the names.
"""
from __future__ import annotations

from bnexp.registry import Registry

MONITORS = Registry("monitor", "bnexp.monitors", "MONITORS", config_key="monitor")


def build(cfg) -> list:
    """The monitors the config selects, in registry order."""
    return [MONITORS.get(name)(getattr(cfg.monitor, name), cfg) for name in MONITORS.names()
            if getattr(cfg.monitor, name) is not None]
