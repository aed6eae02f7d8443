"""Everything that must happen before `import mxnet`.

MXNet reads OMP_NUM_THREADS and its MXNET_* variables once, when it is imported;
left unset, MXNet on x86 uses only half the cores. This module is imported by
`bnexp/__init__.py`, so importing any bnexp module settles them first.

With the GPU build (distribution `mxnet-cu112`), libmxnet.so needs the CUDA 11
libraries. They come from the nvidia-*-cu11 wheels (requirements/gpu.txt) in
site-packages/nvidia/*/lib, where the dynamic linker does not look: they are
loaded here by absolute path, RTLD_GLOBAL, dependencies first, so that
`import mxnet` finds them already loaded (glibc matches a library by its
soname). No system CUDA toolkit and no LD_LIBRARY_PATH is needed, only the
NVIDIA driver (libcuda.so.1).

Standard library only (numpy if present): `make install` may import the bnexp
package with the system python3.
"""
from __future__ import annotations

import ctypes
import importlib.metadata
import importlib.util
import os
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

GPU_DISTRIBUTION = "mxnet-cu112"
# Marks an OMP_NUM_THREADS that bnexp chose itself (inherited by child processes).
DERIVED_MARKER = "BNEXP_DERIVED_THREADS"
# The most threads a process may use (set per job by the joblib launcher; default: its cores).
BUDGET_VAR = "BNEXP_THREAD_BUDGET"
USER_THREADS: int | None = None  # OMP_NUM_THREADS as the user set it; None: bnexp chooses
CPU_DISTRIBUTION = "mxnet"

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
    """What `configure()` did about CUDA, for `bnexp.doctor` and error messages."""
    build: str = "none"                       # "cpu", "gpu", "both" or "none" (no mxnet)
    libraries: list[LibraryStatus] | None = None   # None: not needed (not the GPU build)
    driver: tuple[int, int] | None = None     # CUDA version the driver supports
    driver_error: str | None = None
    notes: list[str] | None = None
    problems: list[str] = field(default_factory=list)   # what will stop or break `import mxnet`

    @property
    def missing(self) -> list[LibraryStatus]:
        return [lib for lib in self.libraries or [] if not lib.loaded and lib.name in REQUIRED]


CUDA = CudaSetup()  # filled in by configure()
_handles: list[ctypes.CDLL] = []  # keep the libraries loaded for the life of the process


def available_cores() -> int:
    """Cores this process may run on (respects taskset/cgroup affinity)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _installed(distribution: str) -> bool:
    try:
        importlib.metadata.distribution(distribution)
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


def mxnet_build() -> str:
    """Which MXNet distribution is installed: 'cpu', 'gpu', 'both' (broken) or 'none'."""
    cpu, gpu = _installed(CPU_DISTRIBUTION), _installed(GPU_DISTRIBUTION)
    return {(True, True): "both", (False, True): "gpu", (True, False): "cpu"}.get((cpu, gpu), "none")


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
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return None, "libcuda.so.1 not found: no NVIDIA driver is installed (or visible in this container)"
    version = ctypes.c_int()
    if cuda.cuDriverGetVersion(ctypes.byref(version)) != 0:
        return None, "the NVIDIA driver did not report its CUDA version"
    return (version.value // 1000, (version.value % 1000) // 10), None


def setup_cuda() -> CudaSetup:
    """With the GPU build installed: load the CUDA libraries, check the driver, and pick
    safe MXNET_* defaults. With the CPU build: nothing."""
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


def import_mxnet() -> str | None:
    """Import MXNet; None if that worked, else one line saying why not and what to do."""
    global _IMPORT_THREADS
    if not mxnet_imported():
        _IMPORT_THREADS = os.environ.get("OMP_NUM_THREADS")
    try:
        import mxnet  # noqa: F401
    except Exception as err:  # OSError (libcuda.so.1 missing), ImportError, ...
        why = "; ".join(CUDA.problems) if CUDA.problems else f"{type(err).__name__}: {err}"
        build = {"gpu": "the GPU build of MXNet (mxnet-cu112) is installed but ",
                 "both": ""}.get(CUDA.build, "")
        return f"cannot import mxnet: {build}{why}. `make doctor` shows the details."
    if CUDA.problems:
        warnings.warn("bnexp: " + "; ".join(CUDA.problems), RuntimeWarning, stacklevel=2)
    return None


def import_mxnet_or_exit() -> None:
    """For entry points: import MXNet, or print why it cannot be and exit with status 2
    (a broken installation is the user's to fix, not a bug)."""
    problem = import_mxnet()
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(2)


def restore_numpy_bool() -> None:
    """MXNet 1.9.1 reads the alias `numpy.bool` at import; numpy removed it in 1.24. Python
    3.11 gets numpy 1.23.5 (requirements/), which has it; on 3.12+ there is no numpy 1.23
    and bnexp installs numpy 1.26, where the alias is put back here (it meant `bool`)."""
    try:
        import numpy
    except ImportError:  # the system python3 of `make install`: nothing to fix
        return
    if not hasattr(numpy, "bool"):
        numpy.bool = bool


def thread_budget() -> int:
    """The most OpenMP threads this process should use."""
    try:
        return max(1, int(os.environ[BUDGET_VAR]))
    except (KeyError, ValueError):
        pass
    # In a SLURM job: the CPUs it asked for (--cpus-per-task). Clusters without CPU binding
    # (TaskPlugin=task/none) leave every core in the affinity mask, shared with other jobs.
    try:
        return max(1, min(int(os.environ["SLURM_CPUS_PER_TASK"]), available_cores()))
    except (KeyError, ValueError):
        return available_cores()


def set_threads(threads: int) -> None:
    """Choose the OpenMP (and MKL) thread count. Effective only before `import mxnet`.
    Marked as bnexp's own choice, so that a child process counts again."""
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", DERIVED_MARKER):
        os.environ[name] = str(threads)


_IMPORT_THREADS: str | None = None  # OMP_NUM_THREADS when import_mxnet_or_exit imported MXNet


def threads_in_effect() -> int | None:
    """OpenMP threads of this process's MXNet: fixed when it was imported."""
    try:
        return int(_IMPORT_THREADS or os.environ["OMP_NUM_THREADS"])
    except (KeyError, ValueError):
        return None


def mxnet_imported() -> bool:
    return "mxnet" in sys.modules


def configure() -> None:
    """Set thread defaults for MXNet, keeping anything the user already set, and make the
    CUDA libraries of the GPU build loadable."""
    global USER_THREADS
    # A thread count that a parent bnexp process derived from *its* cores (a sweep
    # launched on a login node, say) is not a user's choice: count again here.
    derived = os.environ.pop(DERIVED_MARKER, None)
    if derived is not None and os.environ.get("OMP_NUM_THREADS") == derived:
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.pop(name, None)
    try:
        USER_THREADS = int(os.environ["OMP_NUM_THREADS"])
    except (KeyError, ValueError):
        USER_THREADS = None
    if USER_THREADS is None:
        set_threads(thread_budget())  # until bnexp.tuning chooses (before MXNet is imported)
    os.environ.setdefault("MKL_NUM_THREADS", os.environ["OMP_NUM_THREADS"])
    # mxnet 1.9 warns about numpy's deprecated aliases on every import.
    warnings.filterwarnings("ignore", category=DeprecationWarning, module="mxnet")
    warnings.filterwarnings("ignore", message=".*np.bool.*")
    restore_numpy_bool()
    setup_cuda()
