"""Everything that must happen before `import mxnet`.

MXNet reads OMP_NUM_THREADS and its MXNET_* variables once, when it is imported;
left unset, MXNet on x86 uses only half the cores. This module is imported by
`bnexp/__init__.py`, so importing any bnexp module settles them first.
"""
from __future__ import annotations

import os
import warnings


def available_cores() -> int:
    """Cores this process may run on (respects taskset/cgroup affinity)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def configure() -> None:
    """Set thread defaults for MXNet, keeping anything the user already set."""
    threads = os.environ.get("BNEXP_THREADS") or str(available_cores())
    os.environ.setdefault("OMP_NUM_THREADS", threads)
    os.environ.setdefault("MKL_NUM_THREADS", os.environ["OMP_NUM_THREADS"])
    # mxnet 1.9 warns about numpy's deprecated aliases on every import.
    warnings.filterwarnings("ignore", category=DeprecationWarning, module="mxnet")
    warnings.filterwarnings("ignore", message=".*np.bool.*")
