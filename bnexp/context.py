"""Turn the `ctx` setting into MXNet devices."""
from __future__ import annotations

import re

import mxnet as mx

from bnexp.errors import ConfigError

_DEVICE = re.compile(r"^(cpu|gpu)(?::(\d+))?$")
ALLOWED = "cpu, cpu:N, gpu, gpu:N, a comma list such as gpu:0,1, or auto"


def parse(spec: str) -> list[tuple[str, int]]:
    """'gpu:0,1' -> [('gpu', 0), ('gpu', 1)]; 'auto' -> []. Checks syntax only."""
    spec = str(spec).strip().lower()
    if spec == "auto":
        return []
    devices, kind = [], None
    for item in spec.split(","):
        item = item.strip()
        if item.isdigit() and kind is not None:  # "gpu:0,1" repeats the last kind
            item = f"{kind}:{item}"
        match = _DEVICE.match(item)
        if match is None:
            raise ConfigError(f"ctx={spec!r}: {item!r} is not a device; allowed: {ALLOWED}.")
        kind = match.group(1)
        devices.append((kind, int(match.group(2) or 0)))
    if len(set(devices)) != len(devices):
        raise ConfigError(f"ctx={spec!r}: a device is listed twice.")
    return devices


def resolve(spec: str) -> list[mx.Context]:
    """The devices to train on; fails clearly if a requested GPU is not usable."""
    devices = parse(spec)
    gpus = mx.context.num_gpus()
    if not devices:
        return [mx.gpu(0)] if gpus > 0 else [mx.cpu()]
    for kind, index in devices:
        if kind == "gpu" and index >= gpus:
            found = f"{gpus} GPU(s)" if gpus else "no GPU usable by this MXNet build"
            raise ConfigError(f"ctx={spec}: gpu:{index} requested but MXNet sees {found}. "
                              f"Use ctx=cpu, or ctx=auto to take a GPU when there is one.")
    return [mx.gpu(i) if kind == "gpu" else mx.cpu(i) for kind, i in devices]
