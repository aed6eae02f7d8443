"""The CUDA 11 libraries of MXNet's GPU build, made loadable before `import mxnet`.

With the GPU build (distribution `mxnet-cu112`), libmxnet.so needs the CUDA 11
libraries. They come from the nvidia-*-cu11 wheels (requirements/gpu.txt) in
site-packages/nvidia/*/lib, where the dynamic linker does not look: they are
loaded here by absolute path, RTLD_GLOBAL, dependencies first, so that
`import mxnet` finds them already loaded (glibc matches a library by its
soname). No system CUDA toolkit and no LD_LIBRARY_PATH is needed, only the
NVIDIA driver (libcuda.so.1). With the CPU build nothing happens here.

Standard library only: `make install` may import it with the system python3.
"""
from __future__ import annotations

import ctypes
import importlib.metadata
import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path

from bnexp.runtime import gpu

CPU_DISTRIBUTION = "mxnet"
GPU_DISTRIBUTION = "mxnet-cu112"


def _installed(distribution: str) -> bool:
    try:
        importlib.metadata.distribution(distribution)
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


def mxnet_build() -> str:
    """Which MXNet distribution is installed: 'cpu', 'gpu', 'both' (broken) or 'none'."""
    cpu, gpu_build = _installed(CPU_DISTRIBUTION), _installed(GPU_DISTRIBUTION)
    return {(True, True): "both", (False, True): "gpu", (True, False): "cpu"}.get((cpu, gpu_build), "none")


# (wheel folder under site-packages/nvidia, library file), in load order: a library
# comes after everything it links against. The cuDNN 8 sub-libraries and NVRTC's
# builtins are opened by soname at run time (dlopen), so they are preloaded too.
CUDA_LIBRARIES: tuple[tuple[str, str], ...] = (
    ("cuda_runtime", "libcudart.so.11.0"),
    ("cuda_nvrtc", "libnvrtc-builtins.so.11.8"),
    ("cuda_nvrtc", "libnvrtc.so.11.2"),
    ("cublas", "libcublasLt.so.11"),
    ("cublas", "libcublas.so.11"),
    ("cufft", "libcufft.so.10"),
    ("curand", "libcurand.so.10"),
    ("cusolver", "libcusolver.so.11"),
    ("nvtx", "libnvToolsExt.so.1"),
    ("nccl", "libnccl.so.2"),
    ("cudnn", "libcudnn_ops_infer.so.8"),
    ("cudnn", "libcudnn_ops_train.so.8"),
    ("cudnn", "libcudnn_cnn_infer.so.8"),
    ("cudnn", "libcudnn_cnn_train.so.8"),
    ("cudnn", "libcudnn_adv_infer.so.8"),
    ("cudnn", "libcudnn_adv_train.so.8"),
    ("cudnn", "libcudnn.so.8"),
)
# What libmxnet.so (mxnet-cu112 1.9.1) itself links against: missing one, `import mxnet` fails.
REQUIRED = {"libcudart.so.11.0", "libnvrtc.so.11.2", "libcublasLt.so.11", "libcublas.so.11",
            "libcufft.so.10", "libcurand.so.10", "libcusolver.so.11", "libnvToolsExt.so.1",
            "libnccl.so.2", "libcudnn.so.8"}
# NVRTC 11.8 emits PTX that drivers before CUDA 11.8 (R520) cannot JIT-compile.
FUSION_MIN_DRIVER = (11, 8)


@dataclass
class LibraryStatus:
    name: str
    path: Path | None      # where it was found; None: not found
    error: str | None = None

    @property
    def loaded(self) -> bool:
        return self.path is not None and self.error is None


@dataclass
class CudaSetup:
    """What `setup_cuda()` did about CUDA, for the doctor and error messages."""
    build: str = "none"                       # "cpu", "gpu", "both" or "none" (no mxnet)
    libraries: list[LibraryStatus] | None = None   # None: not needed (not the GPU build)
    driver: tuple[int, int] | None = None     # CUDA version the driver supports
    driver_error: str | None = None
    notes: list[str] | None = None
    problems: list[str] = field(default_factory=list)   # what will stop or break `import mxnet`

    @property
    def missing(self) -> list[LibraryStatus]:
        return [lib for lib in self.libraries or [] if not lib.loaded and lib.name in REQUIRED]


CUDA = CudaSetup()  # filled in by setup_cuda()
_handles: list[ctypes.CDLL] = []  # keep the libraries loaded for the life of the process


def nvidia_dirs() -> list[Path]:
    """The folders of the `nvidia` namespace package (site-packages/nvidia) on sys.path."""
    try:
        spec = importlib.util.find_spec("nvidia")
    except (ImportError, ValueError):
        return []
    if spec is None or spec.submodule_search_locations is None:
        return []
    return [Path(p) for p in spec.submodule_search_locations]


def find_cuda_libraries(roots: list[Path] | None = None) -> list[LibraryStatus]:
    """Where each CUDA library of CUDA_LIBRARIES is, in load order (path None if absent)."""
    roots = nvidia_dirs() if roots is None else roots
    found = []
    for folder, name in CUDA_LIBRARIES:
        path = next((r / folder / "lib" / name for r in roots
                     if (r / folder / "lib" / name).is_file()), None)
        found.append(LibraryStatus(name, path, None if path else "not found"))
    return found


def load_cuda_libraries(libraries: list[LibraryStatus]) -> None:
    """dlopen every found library by absolute path, RTLD_GLOBAL, in order; record failures."""
    for lib in libraries:
        if lib.path is None:
            continue
        try:
            _handles.append(ctypes.CDLL(str(lib.path), mode=ctypes.RTLD_GLOBAL))
        except OSError as err:
            lib.error = str(err)


def _driver_version() -> tuple[tuple[int, int] | None, str | None]:
    """The CUDA version the driver supports, or why it cannot be had."""
    version = gpu.driver_cuda_version()
    if version is not None:
        return version, None
    if gpu.driver_loadable():
        return None, "the NVIDIA driver did not report its CUDA version"
    return None, "libcuda.so.1 not found: no NVIDIA driver is installed (or visible in this container)"


def setup_cuda() -> CudaSetup:
    """With the GPU build installed: load the CUDA libraries, check the driver, and pick
    safe MXNET_* defaults (read by MXNet while it runs, so they stay set). With the CPU
    build: nothing. Done once per process; later calls return the same record."""
    if CUDA.build != "none":
        return CUDA
    CUDA.build = mxnet_build()
    if CUDA.build not in ("gpu", "both"):
        return CUDA
    CUDA.notes = []
    CUDA.libraries = find_cuda_libraries()
    load_cuda_libraries(CUDA.libraries)
    CUDA.driver, CUDA.driver_error = _driver_version()
    # bnexp pins cuDNN 8.9, newer than the 8.x mxnet-cu112 was compiled against (same ABI):
    # MXNet's version check would warn about that on every run.
    os.environ.setdefault("MXNET_CUDNN_LIB_CHECKING", "0")
    if CUDA.driver is not None and CUDA.driver < FUSION_MIN_DRIVER:
        # MXNet compiles fused kernels with NVRTC 11.8 at run time; an older driver cannot load them.
        if "MXNET_USE_FUSION" not in os.environ:
            os.environ["MXNET_USE_FUSION"] = "0"
            CUDA.notes.append("driver supports CUDA %d.%d < 11.8: MXNET_USE_FUSION=0 (no runtime "
                              "kernel fusion)" % CUDA.driver)
    if CUDA.build == "both":
        CUDA.problems.append("both mxnet and mxnet-cu112 are installed (they overwrite each "
                             "other's files); reinstall with `make install` (GPU=0 or GPU=1)")
    if CUDA.missing:
        CUDA.problems.append("CUDA libraries missing or not loadable: "
                             + ", ".join(f"{lib.name} ({lib.error})" for lib in CUDA.missing)
                             + "; reinstall with `make install GPU=1`")
    if CUDA.driver_error:
        CUDA.problems.append(CUDA.driver_error + "; without a GPU use the CPU build: "
                             "`make install GPU=0`")
    return CUDA
