"""NVIDIA GPUs: what is there, and whether this MXNet (mxnet-cu112 1.9.1) can use it.

Standard library only, and importable without the venv: `make install` runs it
with the system python3 (through scripts/detect_gpu.py) to choose between the
CPU and the GPU build of MXNet, before any package is installed.

    python3 scripts/detect_gpu.py      # prints "gpu" or "cpu", the reason on stderr
    python3 -m bnexp.gpu list          # the GPUs nvidia-smi lists, with a verdict each

mxnet-cu112 1.9.1 carries kernels for compute capability 5.0, 6.0, 7.0, 8.0 and
8.6 and no PTX. A kernel compiled for X.Y runs on X.Z with Z >= Y, so every GPU
from 5.0 up to 8.9 runs it (8.9, Ada, runs the 8.6 code); 9.0 (Hopper) and newer
fail with CUDA error 209 "no kernel image is available", and Kepler (3.x) is
too old.
"""
from __future__ import annotations

import ctypes
import shutil
import subprocess
import sys
from dataclasses import dataclass

KERNEL_ARCHS = ((5, 0), (6, 0), (7, 0), (8, 0), (8, 6))  # sm_XY in mxnet-cu112 1.9.1
MIN_CC, MAX_CC_EXCLUSIVE = (5, 0), (9, 0)
SUPPORTED_RANGE = "compute capability 5.0 to 8.9 (Maxwell, Pascal, Volta, Turing, Ampere, Ada)"
QUERY = ["--query-gpu=name,compute_cap,driver_version", "--format=csv,noheader"]
FALLBACK_QUERY = ["--query-gpu=name,driver_version", "--format=csv,noheader"]


@dataclass(frozen=True)
class GPU:
    index: int
    name: str
    compute_cap: tuple[int, int] | None   # None: the driver's nvidia-smi cannot tell
    driver: str = ""

    @property
    def cc(self) -> str:
        return "unknown" if self.compute_cap is None else "%d.%d" % self.compute_cap

    def describe(self) -> str:
        return f"gpu:{self.index} {self.name} (compute capability {self.cc})"


def supported(compute_cap: tuple[int, int] | None) -> tuple[bool, str]:
    """Whether mxnet-cu112 1.9.1 runs on a GPU of this compute capability, and why."""
    if compute_cap is None:
        return True, "compute capability unknown (old driver); assuming it is supported"
    cc = "%d.%d" % compute_cap
    if compute_cap < MIN_CC:
        return False, f"compute capability {cc} is older than MXNet 1.9.1 supports ({SUPPORTED_RANGE})"
    if compute_cap >= MAX_CC_EXCLUSIVE:
        return False, (f"compute capability {cc} is newer than MXNet 1.9.1 supports "
                       f"({SUPPORTED_RANGE}); its kernels fail with 'no kernel image is available'")
    runs = max(arch for arch in KERNEL_ARCHS if arch[0] == compute_cap[0] and arch <= compute_cap)
    return True, f"compute capability {cc} runs MXNet's sm_{runs[0]}{runs[1]} kernels"


def parse_cc(text: str) -> tuple[int, int] | None:
    try:
        major, minor = text.strip().split(".")
        return int(major), int(minor)
    except ValueError:
        return None


def parse_query(output: str, with_cc: bool = True) -> list[GPU]:
    """Rows of `nvidia-smi --query-gpu=name,compute_cap,driver_version --format=csv,noheader`."""
    gpus = []
    for line in output.splitlines():
        if not line.strip():
            continue
        fields = [f.strip() for f in line.rsplit(",", 2 if with_cc else 1)]
        if with_cc and len(fields) == 3:
            name, cc, driver = fields
            gpus.append(GPU(len(gpus), name, parse_cc(cc), driver))
        elif not with_cc and len(fields) == 2:
            gpus.append(GPU(len(gpus), fields[0], None, fields[1]))
    return gpus


def _smi(nvidia_smi: str, args: list[str], timeout: float) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run([nvidia_smi, *args], capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return None


def query(nvidia_smi: str = "nvidia-smi", timeout: float = 20) -> tuple[list[GPU], str]:
    """The GPUs nvidia-smi lists (in nvidia-smi's PCI order) and a one-line summary.
    No nvidia-smi, or one that fails (no driver loaded), means no GPU."""
    path = shutil.which(nvidia_smi)
    if path is None:
        return [], "no nvidia-smi on PATH (no NVIDIA driver): no GPU"
    result = _smi(path, QUERY, timeout)
    if result is None:
        return [], f"{path} did not run: no GPU"
    if result.returncode == 0:
        gpus = parse_query(result.stdout)
    else:
        # Drivers before ~510 do not know the compute_cap field: ask without it.
        fallback = _smi(path, FALLBACK_QUERY, timeout)
        if fallback is None or fallback.returncode != 0:
            reason = (result.stdout + result.stderr).strip().splitlines()
            return [], f"nvidia-smi failed ({reason[0] if reason else 'exit %d' % result.returncode}): no GPU"
        gpus = parse_query(fallback.stdout, with_cc=False)
    if not gpus:
        return [], "nvidia-smi lists no GPU"
    return gpus, f"nvidia-smi lists {len(gpus)} GPU(s), driver {gpus[0].driver}"


def choose_build(gpus: list[GPU]) -> tuple[str, str]:
    """'gpu' if at least one GPU can run mxnet-cu112, else 'cpu'; and why."""
    if not gpus:
        return "cpu", "no NVIDIA GPU found"
    usable = [g for g in gpus if supported(g.compute_cap)[0]]
    if usable:
        return "gpu", "usable: " + "; ".join(g.describe() for g in usable)
    return "cpu", ("no GPU MXNet 1.9.1 can use: " + "; ".join(
        f"{g.describe()}: {supported(g.compute_cap)[1]}" for g in gpus))


# --- the CUDA driver API (libcuda.so.1 from the driver), numbered as MXNet numbers devices ---

_CU_ATTR_CC_MAJOR, _CU_ATTR_CC_MINOR = 75, 76


def _libcuda():
    try:
        return ctypes.CDLL("libcuda.so.1")
    except OSError:
        return None


def driver_loadable() -> bool:
    """Whether the NVIDIA driver's libcuda.so.1 can be loaded."""
    return _libcuda() is not None


def driver_cuda_version() -> tuple[int, int] | None:
    """The CUDA version the installed driver supports, e.g. (12, 4); None without a driver."""
    cuda = _libcuda()
    if cuda is None:
        return None
    version = ctypes.c_int()
    if cuda.cuDriverGetVersion(ctypes.byref(version)) != 0:
        return None
    return version.value // 1000, (version.value % 1000) // 10


def cuda_devices() -> list[GPU] | None:
    """The GPUs CUDA shows this process (CUDA_VISIBLE_DEVICES applied; index i is MXNet's
    gpu(i)), with their compute capability; None if the driver cannot be asked."""
    cuda = _libcuda()
    if cuda is None or cuda.cuInit(0) != 0:
        return None
    count = ctypes.c_int()
    if cuda.cuDeviceGetCount(ctypes.byref(count)) != 0:
        return None
    devices = []
    for i in range(count.value):
        device, major, minor = ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
        name = ctypes.create_string_buffer(256)
        if cuda.cuDeviceGet(ctypes.byref(device), i) != 0:
            return None
        cuda.cuDeviceGetName(name, len(name), device)
        cuda.cuDeviceGetAttribute(ctypes.byref(major), _CU_ATTR_CC_MAJOR, device)
        cuda.cuDeviceGetAttribute(ctypes.byref(minor), _CU_ATTR_CC_MINOR, device)
        devices.append(GPU(i, name.value.decode(errors="replace"), (major.value, minor.value)))
    return devices


def main(argv: list[str]) -> int:
    usage = "usage: python3 -m bnexp.gpu {detect | list}"
    if len(argv) != 1 or argv[0] not in ("detect", "list"):
        print(usage, file=sys.stderr)
        return 2
    gpus, summary = query()
    if argv[0] == "detect":
        build, why = choose_build(gpus)
        print(f"GPU detection: {summary}; {why} -> the {build.upper()} build of MXNet", file=sys.stderr)
        print(build)
        return 0
    print(summary)
    for g in gpus:
        ok, why = supported(g.compute_cap)
        print(f"{g.describe()}: {'usable' if ok else 'NOT usable'}: {why}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
