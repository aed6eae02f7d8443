"""Compiled operators: BN written from scratch in C++ (`batch_norm.cc`), for
`perf.bn_impl=compiled` of the scratch layer (bnexp/nn/norm/scratch.py).

MXNet 1.9 loads operators from a shared library at run time (`mx.library.load`, the
extension library API of `mxnet/lib_api.h`; the wheel ships that header and its
`lib_api.cc`). The library is compiled on the machine that runs it -- `-march=native`
uses the instruction sets this CPU has (AVX2, AVX-512, ...), so a library is never
taken to another kind of CPU: it is cached under a key of the sources, the flags and the
CPU, in ~/.cache/bnexp/kernels (or $BNEXP_KERNEL_DIR). `make install`
builds it; a machine without a C++ compiler runs the scratch layer's other formulations.

A library is code every training process runs, and its name is predictable: it is loaded
only if it and its folder belong to this user and nobody else can write them. A cached
file that fails this is built again; a folder that fails it (a shared, group-writable
BNEXP_KERNEL_DIR) is passed over for ~/.cache/bnexp/kernels, else a fresh private folder.

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
import tempfile
import time
from functools import lru_cache
from pathlib import Path

from bnexp.cpu import IDENTITY_FIELDS, cpuinfo
from bnexp.errors import UserError
from bnexp.files import private_reason, untrusted_reason, user_cache

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


def default_kernel_dir() -> Path:
    return user_cache() / "kernels"


def kernel_dir() -> Path:
    if os.environ.get("BNEXP_KERNEL_DIR"):
        return Path(os.environ["BNEXP_KERNEL_DIR"])
    return default_kernel_dir()


def private_kernel_dir() -> Path:
    """kernel_dir() if it is this user's alone (made 0700 if missing), else the default
    folder if that is, else a fresh private folder (the library is then built per process)."""
    for folder in dict.fromkeys([kernel_dir(), default_kernel_dir()]):
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            reason = private_reason(folder, "kernel folder")
        except OSError as err:
            reason = f"the kernel folder {folder} cannot be made ({err.strerror})"
        if reason is None:
            return folder
        log.warning("compiled BN: %s; not loading or building there", reason)
    try:
        return Path(tempfile.mkdtemp(prefix="bnexp-kernels-"))
    except OSError as err:
        raise KernelUnavailable(f"perf.bn_impl=compiled: no private folder to build in "
                                f"({err.strerror}); set BNEXP_KERNEL_DIR to a folder of yours.") from None


def source_digest() -> str:
    """A short digest of the operator's source (the tuning cache keys its timings by it)."""
    return hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:12]


def cpu_identity() -> str:
    """What -march=native compiles for: the architecture, and the CPU's model and
    instruction-set fields (x86: model name, flags; ARM: implementer, part, Features)."""
    info = cpuinfo()
    fields = [f"{key}: {info[key]}" for key in IDENTITY_FIELDS if key in info]
    return "\n".join([platform.machine(), *(fields or [platform.processor()])])


@lru_cache(maxsize=1)
def library() -> Path:
    """The compiled library for this machine, built now if not cached yet (or if the cached
    one is not this user's alone); raises KernelUnavailable saying why it cannot be. The cache
    key is what the library's code depends on -- the sources, the flags and the CPU -- so a
    node without a compiler uses a library built for its kind of CPU elsewhere (the user's
    home, shared by the nodes of a cluster)."""
    mxnet = mxnet_dir()
    if mxnet is None:
        raise KernelUnavailable("perf.bn_impl=compiled: MXNet is not installed; run `make install`.")
    lib_api = mxnet / "src" / "lib_api.cc"
    header = mxnet / "include" / "mxnet" / "lib_api.h"
    if not (lib_api.is_file() and header.is_file()):
        raise KernelUnavailable(f"perf.bn_impl=compiled: this MXNet has no {lib_api.name} and "
                                f"{header.name} (MXNet 1.9's wheel ships them); choose perf.bn_impl=auto.")
    identity = "\n".join([SOURCE.read_text(), lib_api.read_text(), header.read_text(),
                          " ".join(FLAGS), cpu_identity()])
    name = f"libbnexp_kernels_{hashlib.sha256(identity.encode()).hexdigest()[:16]}.so"
    out = private_kernel_dir() / name
    if out.is_file():
        reason = untrusted_reason(out)
        if reason is None:
            return out
        log.warning("compiled BN: not loading %s: %s; building it again", out, reason)
    return build(out, mxnet, lib_api)


def build(out: Path, mxnet: Path, lib_api: Path) -> Path:
    """Compile the operator into `out` (a private folder), atomically: a process building
    the same library at the same time never loads half of one."""
    cxx = compiler()
    if cxx is None or shutil.which(cxx) is None:
        raise KernelUnavailable(
            "perf.bn_impl=compiled needs a C++ compiler (g++) to build its operator for this "
            "CPU: install it (Debian: apt-get install g++; `make install` does so when run as "
            "root) or set CXX; or choose perf.bn_impl=auto.")
    try:
        handle, partial_name = tempfile.mkstemp(dir=out.parent, suffix=".partial")
        os.close(handle)
    except OSError as err:
        raise KernelUnavailable(f"perf.bn_impl=compiled: cannot write to {out.parent} "
                                f"({err.strerror}); set BNEXP_KERNEL_DIR to a writable folder.") from None
    partial = Path(partial_name)  # unique on every node sharing the folder
    command = [cxx, *FLAGS, f"-I{mxnet / 'include'}", str(SOURCE), str(lib_api), "-o", str(partial)]
    start = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=COMPILE_TIMEOUT)
        problem = None if done.returncode == 0 else done.stderr
    except (OSError, subprocess.TimeoutExpired) as err:
        problem = str(err)
    if problem is None:
        try:
            partial.replace(out)
        except OSError as err:
            problem = str(err)
    if problem is not None:
        partial.unlink(missing_ok=True)
        raise build_failed(out, cxx, command, problem)
    log.info("compiled %s for this CPU in %.0f s: %s", SOURCE.name, time.perf_counter() - start, out)
    return out


def build_failed(out: Path, cxx: str, command: list[str], problem: str) -> KernelUnavailable:
    """The one-line error of a failed build; the whole log is kept beside the library."""
    build_log = out.with_suffix(".log")
    try:
        build_log.write_text(" ".join(command) + "\n\n" + problem)
    except OSError:
        pass
    first = next((line for line in problem.splitlines() if "error" in line.lower()),
                 (problem.strip().splitlines() or ["failed"])[0])
    return KernelUnavailable(f"perf.bn_impl=compiled: building {SOURCE.name} with {cxx} failed "
                             f"({first.strip()}; the whole log: {build_log}); choose "
                             f"perf.bn_impl=auto.")


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
        path = library()
        try:
            load_library(path)
        except mx.base.MXNetError as err:
            raise KernelUnavailable(f"perf.bn_impl=compiled: MXNet cannot load {path} "
                                    f"({str(err).strip().splitlines()[0]}); delete it to build it "
                                    f"again, or choose perf.bn_impl=auto.") from None


def load_library(path: Path) -> None:
    """`mx.library.load(path)`, less its cost: that makes the Python functions of all of
    MXNet's ~2,200 operators again, for mx.nd and mx.sym (0.6 s of every run's start); this
    makes the one the library adds, with the same functions of MXNet 1.9's."""
    import ctypes
    import sys

    from mxnet.base import _LIB, OpHandle, c_str, check_call, mx_uint
    from mxnet.ndarray.register import _make_ndarray_function
    from mxnet.symbol.register import _make_symbol_function

    check_call(_LIB.MXLoadLib(c_str(str(path)), mx_uint(0)))
    handle = OpHandle()
    check_call(_LIB.NNGetOpHandle(c_str(OPERATOR), ctypes.byref(handle)))
    for module, make in (("mxnet.ndarray", _make_ndarray_function),
                         ("mxnet.symbol", _make_symbol_function)):
        function = make(handle, OPERATOR, OPERATOR)
        function.__module__ = module.split(".")[1]   # as MXNet's _init_op_module sets it
        op = sys.modules[f"{module}.op"]
        setattr(op, OPERATOR, function)
        op.__all__.append(OPERATOR)
        setattr(sys.modules[module], OPERATOR, function)
