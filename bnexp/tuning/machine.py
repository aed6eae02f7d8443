"""What the speed timings depend on: the machine (CPU model and instruction sets, usable
cores, MXNet build, device) and the run's network and batch. Two runs with the same
setting can share one measurement."""
from __future__ import annotations

import hashlib
import importlib.metadata
import json
import platform

from bnexp import options
from bnexp.config import Config
from bnexp.cpu import cpuinfo
from bnexp.nn.norm import kernels
from bnexp.runtime import context, cuda, gpu
from bnexp.runtime.threads import available_cores

PROBE_VERSION = 7   # bump when what the probe measures changes (5: options by target, 6: engines, 7: sleeping OpenMP threads): older entries are stale


def cpu_identity() -> dict[str, str]:
    """The CPU model and a digest of its instruction-set flags (/proc/cpuinfo)."""
    info = cpuinfo()
    model = info.get("model name") or platform.processor() or "unknown"
    flags = " ".join(sorted(info.get("flags", "").split()))
    return {"cpu": model, "cpu_flags": hashlib.sha1(flags.encode()).hexdigest()[:12]}


def mxnet_identity() -> str:
    build = cuda.mxnet_build()
    dist = cuda.GPU_DISTRIBUTION if build == "gpu" else cuda.CPU_DISTRIBUTION
    try:
        return f"{dist}=={importlib.metadata.version(dist)}"
    except importlib.metadata.PackageNotFoundError:
        return "none"


def this_machine() -> dict:
    """The part of a setting that names the machine."""
    return {**cpu_identity(), "cores": available_cores(), "mxnet": mxnet_identity()}


def device_kind(ctx: str) -> str:
    """"cpu" or "gpu", without importing MXNet: `auto` means a GPU only if the GPU build
    is installed and nvidia-smi lists one it can run."""
    devices = context.parse(ctx)
    if devices:
        return "gpu" if any(kind == "gpu" for kind, _ in devices) else "cpu"
    if cuda.mxnet_build() != "gpu":
        return "cpu"
    found, _ = gpu.query()
    return "gpu" if found and gpu.choose_build(found)[0] == "gpu" else "cpu"


def setting_of(cfg: Config) -> dict:
    """What the timings of `cfg`'s run depend on: the machine, the device kind, the
    normalization and model options (target and settings) and the per-device batch."""
    devices = max(1, len(context.parse(cfg.ctx)))
    setting = {"probe_version": PROBE_VERSION, **this_machine(), "device": device_kind(cfg.ctx),
               "devices": devices, "bn": dict(cfg.bn), "model": dict(cfg.model),
               "batch_per_device": cfg.trainer.batch_size // devices}
    if formulations_of(cfg.bn) is not None:  # the compiled formulation's timings hold for its source only
        setting["kernel_source"] = kernels.source_digest()
    return setting


def formulations_of(bn: dict):
    """The `formulations(device, wanted)` function of a normalization option's module, if it
    has several formulations of its maths (bnexp/nn/norm/scratch.py); else None."""
    if not options.early(bn):  # a user's module may import MXNet: not before its thread count
        return None
    return getattr(options.module_of(bn), "formulations", None)


def setting_key(setting: dict) -> str:
    return hashlib.sha1(json.dumps(setting, sort_keys=True).encode()).hexdigest()[:16]
