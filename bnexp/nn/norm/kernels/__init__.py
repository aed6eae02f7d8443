"""Compiled operators: BN written from scratch in C++ (`batch_norm.cc`), for
`perf.bn_impl=compiled` of the scratch layer (bnexp/nn/norm/scratch.py).

MXNet 1.9 loads operators from a shared library at run time (`mx.library.load`, the
extension library API of `mxnet/lib_api.h`; the wheel ships that header and its
`lib_api.cc`). The library is compiled on the machine that runs it -- `-march=native`
uses the instruction sets this CPU has (AVX2, AVX-512, ...), so a library is never
taken to another kind of CPU: it is cached under a key of the sources, the flags, the
compiler and the CPU, in ~/.cache/bnexp/kernels (or $BNEXP_KERNEL_DIR). `make install`
builds it; a machine without a C++ compiler runs the scratch layer's other formulations.

    python -m bnexp.nn.norm.kernels     # build (if needed) and print the library's path
"""
from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import platform
import shutil
import subprocess
import time
from functools import lru_cache
from pathlib import Path

from bnexp.errors import UserError

SOURCE = Path(__file__).resolve().parent / "batch_norm.cc"
OPERATOR = "bnexp_batch_norm"
FLAGS = ("-shared", "-fPIC", "-std=c++17", "-O3", "-march=native", "-fopenmp")
COMPILE_TIMEOUT = 300  # seconds; the build takes ~10 s on a 2-core machine

log = logging.getLogger(__name__)


class KernelUnavailable(UserError):
    """The compiled operator cannot be built or loaded here; the message says why and what to do."""


def compiler() -> str | None:
    """The C++ compiler: $CXX, else g++ on the PATH."""
    return os.environ.get("CXX") or shutil.which("g++")


def mxnet_dir() -> Path | None:
    """The installed mxnet package (found without importing it: MXNet fixes its thread
    count when imported, bnexp/runtime/mxnet_import.py)."""
    spec = importlib.util.find_spec("mxnet")
    return Path(spec.origin).parent if spec and spec.origin else None


def kernel_dir() -> Path:
    if os.environ.get("BNEXP_KERNEL_DIR"):
        return Path(os.environ["BNEXP_KERNEL_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "bnexp" / "kernels"


def cpu_identity() -> str:
    """What -march=native compiles for: the CPU model and its instruction-set flags."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or platform.machine()
    wanted = [line for line in lines if line.startswith(("model name", "flags"))]
    return "\n".join(dict.fromkeys(wanted))  # the first processor's (all are alike)


def compiler_version(cxx: str) -> str:
    done = subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=30)
    return done.stdout.splitlines()[0] if done.returncode == 0 and done.stdout else ""


@lru_cache(maxsize=1)
def library() -> Path:
    """The compiled library for this machine, built now if not cached yet; raises
    KernelUnavailable saying why it cannot be."""
    cxx, mxnet = compiler(), mxnet_dir()
    if mxnet is None:
        raise KernelUnavailable("perf.bn_impl=compiled: MXNet is not installed; run `make install`.")
    lib_api = mxnet / "src" / "lib_api.cc"
    if not lib_api.is_file():
        raise KernelUnavailable(f"perf.bn_impl=compiled: this MXNet wheel has no {lib_api} "
                                f"(MXNet 1.9 ships it); choose perf.bn_impl=auto.")
    if cxx is None or shutil.which(cxx) is None:
        raise KernelUnavailable(
            "perf.bn_impl=compiled needs a C++ compiler (g++) to build its operator on this "
            "machine: install it (Debian: apt-get install g++; `make install` does) or set CXX; "
            "or choose perf.bn_impl=auto.")
    identity = "\n".join([SOURCE.read_text(), lib_api.read_text(), " ".join(FLAGS),
                          compiler_version(cxx), cpu_identity()])
    key = hashlib.sha256(identity.encode()).hexdigest()[:16]
    out = kernel_dir() / f"libbnexp_kernels_{key}.so"
    if out.is_file():
        return out
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise KernelUnavailable(f"perf.bn_impl=compiled: cannot create {out.parent} ({err.strerror}); "
                                f"set BNEXP_KERNEL_DIR to a writable folder.") from None
    partial = out.with_name(f"{out.stem}.{os.getpid()}.partial")
    command = [cxx, *FLAGS, f"-I{mxnet / 'include'}", str(SOURCE), str(lib_api), "-o", str(partial)]
    start = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=COMPILE_TIMEOUT)
    except subprocess.TimeoutExpired:
        done = None
    if done is None or done.returncode != 0:
        partial.unlink(missing_ok=True)
        detail = "timed out" if done is None else (done.stderr.strip().splitlines() or ["failed"])[-1]
        raise KernelUnavailable(f"perf.bn_impl=compiled: building {SOURCE.name} with {cxx} failed "
                                f"({detail}); choose perf.bn_impl=auto.")
    partial.replace(out)  # atomic: a process building the same library at once never loads half
    log.info("compiled %s for this CPU in %.0f s: %s", SOURCE.name, time.perf_counter() - start, out)
    return out


def unavailable_reason() -> str | None:
    """Why the compiled operator cannot be used here; None if it can (builds it if needed)."""
    try:
        library()
    except KernelUnavailable as err:
        return str(err)
    return None


def load() -> None:
    """Make `F.bnexp_batch_norm` exist (mx.nd and mx.sym): once per process, after MXNet is
    imported."""
    import mxnet as mx

    if not hasattr(mx.nd, OPERATOR):
        mx.library.load(str(library()), verbose=False)

