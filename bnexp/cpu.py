"""What this CPU is, read from /proc/cpuinfo: what a speed measurement and code compiled with
-march=native depend on (bnexp/tuning/machine.py, bnexp/nn/norm/kernels/)."""
from __future__ import annotations

import contextlib
from pathlib import Path

# The fields that name the CPU and its instruction sets: x86 (model name, flags) and ARM.
IDENTITY_FIELDS = ("model name", "flags", "CPU implementer", "CPU architecture", "CPU variant",
                   "CPU part", "Features")


def cpuinfo() -> dict[str, str]:
    """The first processor's fields in /proc/cpuinfo (every processor's are alike); {} where
    there is none."""
    fields: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    return fields
