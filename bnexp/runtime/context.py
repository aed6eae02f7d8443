"""Turn the `ctx` setting into MXNet devices.

`auto` takes the first GPU this MXNet can run on (mxnet-cu112 1.9.1: compute
capability 5.0 to 8.9) and otherwise the CPU, logging why. An explicit `gpu`
request for a GPU MXNet cannot use fails with a ConfigError that says which GPU,
its compute capability and the supported range. A list (`gpu:0,1`, `cpu:0,cpu:1`)
trains data-parallel: each batch is split evenly across the devices.

MXNet is imported inside the functions that use it: `parse` also serves the
config checks, which run before MXNet is imported (its thread count is chosen
first, bnexp/tuning/).
"""
from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING

from bnexp.runtime import cuda
from bnexp.runtime import gpu as gpuinfo
from bnexp.errors import ConfigError

if TYPE_CHECKING:
    import mxnet as mx

log = logging.getLogger(__name__)

_DEVICE = re.compile(r"^(cpu|gpu)(?::(\d+))?$")
ALLOWED = "cpu, cpu:N, gpu, gpu:N, auto, or a list such as [cpu:0,cpu:1] or 'gpu:0,1'"


def parse(spec) -> list[tuple[str, int]]:
    """'gpu:0,1' or ['gpu:0', 'gpu:1'] -> [('gpu', 0), ('gpu', 1)]; 'auto' -> []. Checks
    syntax only."""
    if isinstance(spec, (list, tuple)) or type(spec).__name__ == "ListConfig":
        spec = ",".join(str(item) for item in spec)
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


def visible_gpus() -> list[gpuinfo.GPU]:
    """The GPUs MXNet sees (index i is mx.gpu(i)), with compute capability when the driver
    tells it; empty with the CPU build of MXNet or without a GPU."""
    import mxnet as mx
    count = mx.context.num_gpus()  # 0 with the CPU build
    if count <= 0:
        return []
    devices = gpuinfo.cuda_devices() or []
    if len(devices) != count:  # the driver API disagrees: know the count, not the details
        devices = [gpuinfo.GPU(i, f"GPU {i}", None) for i in range(count)]
    return devices


def why_no_gpu() -> str:
    """Why MXNet sees no GPU, with what to do about it."""
    import mxnet as mx
    build = cuda.setup_cuda().build
    if build == "cpu" or not mx.runtime.Features().is_enabled("CUDA"):
        smi, _ = gpuinfo.query()
        if smi and gpuinfo.choose_build(smi)[0] == "gpu":
            return (f"the CPU build of MXNet is installed although there is a usable GPU "
                    f"({smi[0].name}); install the GPU build with `make install GPU=1`")
        return "the CPU build of MXNet is installed and no usable NVIDIA GPU was found"
    return "the GPU build of MXNet is installed but CUDA shows no GPU (check `nvidia-smi` and CUDA_VISIBLE_DEVICES)"


def resolve(spec) -> list[mx.Context]:
    """The devices to train on; fails clearly if a requested GPU is not usable."""
    import mxnet as mx
    devices = parse(spec)
    if not devices:
        return [_auto()]
    wanted = [index for kind, index in devices if kind == "gpu"]
    if wanted:
        gpus = visible_gpus()
        for index in wanted:
            if index >= len(gpus):
                found = f"{len(gpus)} GPU(s)" if gpus else f"no GPU ({why_no_gpu()})"
                raise ConfigError(f"ctx={spec}: gpu:{index} requested but MXNet sees {found}. "
                                  f"Use ctx=cpu, or ctx=auto to take a GPU when there is one.")
            ok, why = gpuinfo.supported(gpus[index].compute_cap)
            if not ok:
                raise ConfigError(
                    f"ctx={spec}: gpu:{index} is {gpus[index].name} with compute capability "
                    f"{gpus[index].cc}, which MXNet 1.9.1 cannot run ({why}). MXNet 1.9.1 "
                    f"(mxnet-cu112) supports {gpuinfo.SUPPORTED_RANGE}. Use ctx=cpu, or ctx=auto.")
    return [mx.gpu(i) if kind == "gpu" else mx.cpu(i) for kind, i in devices]


def _auto() -> mx.Context:
    import mxnet as mx
    gpus = visible_gpus()
    if not gpus:
        log.info("ctx=auto: training on the CPU: %s", why_no_gpu())
        return mx.cpu()
    for g in gpus:
        ok, why = gpuinfo.supported(g.compute_cap)
        if ok:
            log.info("ctx=auto: training on %s: %s", g.describe(), why)
            return mx.gpu(g.index)
    log.warning("ctx=auto: training on the CPU: no GPU MXNet 1.9.1 can run (%s); it supports %s",
                "; ".join(f"{g.describe()}" for g in gpus), gpuinfo.SUPPORTED_RANGE)
    return mx.cpu()
