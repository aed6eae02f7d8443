"""Importing MXNet: the one place where bnexp does what must happen before `import mxnet`.

MXNet reads OMP_NUM_THREADS (and MKL_NUM_THREADS) once, when it is imported. Entry points
call `import_mxnet(threads)` with the count the thread policy chose: the variables are
set for the import and put back as the user had them right after (MXNet has read them
by then), so no child process inherits a count that bnexp derived. The same call
restores numpy's `bool` alias that MXNet 1.9.1 reads (gone in numpy 1.24; Python 3.12+
gets numpy 1.26), silences MXNet's deprecation noise and, with the GPU build, loads the
CUDA libraries first (bnexp.runtime.cuda). Importing bnexp itself changes nothing.

Standard library only (numpy if present) until MXNet is imported.
"""
from __future__ import annotations

import os
import sys
import warnings

from bnexp.runtime import cuda
from bnexp.runtime.threads import ENGINE_VAR, ENGINES, THREAD_VARS

# How OpenMP's threads wait for work. libgomp (MXNet's OpenMP) lets a waiting thread spin
# for ~300,000 iterations before it sleeps: on a machine with other work, that spin holds
# the core the thread it waits for needs. Measured on a 2-core EPYC beside a sweep and a
# test suite (load average 4-5): LeNet at 2 threads ran 963 ms/step spinning, 124 with
# OMP_WAIT_POLICY=PASSIVE, 206-378 with GOMP_SPINCOUNT=10000 (docs/speed.md has the idle
# cost). bnexp imports MXNet with PASSIVE unless the user set either variable.
WAIT_VARS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
WAIT_POLICY = "PASSIVE"

_import_threads: int | None = None  # the OpenMP threads MXNet was imported with, if bnexp imported it
_import_engine: str | None = None   # the engine bnexp started MXNet with (ENGINES), if it chose one
_import_wait: str | None = None     # the OpenMP wait policy MXNet was imported with


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


def mxnet_imported() -> bool:
    return "mxnet" in sys.modules


def threads_in_effect() -> int | None:
    """OpenMP threads of this process's MXNet (fixed when it was imported); None if
    MXNet is not imported yet, or was imported without bnexp choosing the count."""
    if not mxnet_imported():
        return None
    if _import_threads is not None:
        return _import_threads
    try:
        return int(os.environ["OMP_NUM_THREADS"])
    except (KeyError, ValueError):
        return None


def wait_policy_in_effect() -> str | None:
    """How this process's OpenMP threads wait ("OMP_WAIT_POLICY=PASSIVE", or the user's
    setting); None if MXNet is not imported yet."""
    if not mxnet_imported():
        return None
    if _import_wait is not None:
        return _import_wait
    return ", ".join(f"{v}={os.environ[v]}" for v in WAIT_VARS if v in os.environ) or "libgomp's default"


def engine_in_effect() -> str | None:
    """MXNet's engine in this process (a name of ENGINES; "threaded" is MXNet's default);
    None if MXNet is not imported yet."""
    if not mxnet_imported():
        return None
    if _import_engine is not None:
        return _import_engine
    names = {value: name for name, value in ENGINES.items()}
    return names.get(os.environ.get(ENGINE_VAR, ""), os.environ.get(ENGINE_VAR) or "threaded")


def import_mxnet(threads: int | None = None, cpu_temp_copies: int | None = None,
                 engine: str | None = None) -> str | None:
    """Import MXNet with `threads` OpenMP threads and its `engine` (ENGINES; None: as the
    environment says) and `cpu_temp_copies` workspace copies for the CPU (None: MXNet's
    default; bnexp/nn/norm/sync.py needs more). Returns None if that worked (or MXNet was
    already imported: its settings stay), else one line saying why not and what to do."""
    global _import_threads, _import_engine, _import_wait
    if mxnet_imported():
        return None
    # mxnet 1.9 warns about numpy's deprecated aliases on every import.
    warnings.filterwarnings("ignore", category=DeprecationWarning, module="mxnet")
    warnings.filterwarnings("ignore", message=".*np.bool.*")
    restore_numpy_bool()
    setup = cuda.setup_cuda()
    users = {var: os.environ.get(var) for var in (*THREAD_VARS, ENGINE_VAR, *WAIT_VARS)}
    wait = ", ".join(f"{v}={users[v]}" for v in WAIT_VARS if users[v] is not None)
    if cpu_temp_copies is not None:
        # MXNet reads this when an operator first asks for a workspace, after the import:
        # it stays set (a child process's MXNet gets the same value; a user's value wins).
        os.environ.setdefault("MXNET_CPU_TEMP_COPY", str(cpu_temp_copies))
    try:
        if threads is not None:
            for var in THREAD_VARS:
                os.environ[var] = str(threads)
        if engine is not None:
            os.environ[ENGINE_VAR] = ENGINES[engine]
        if not wait:  # the user's own wait policy wins
            os.environ["OMP_WAIT_POLICY"] = WAIT_POLICY
        import mxnet
        start_engine(mxnet)
    except Exception as err:  # OSError (libcuda.so.1 missing), ImportError, ...
        why = "; ".join(setup.problems) if setup.problems else f"{type(err).__name__}: {err}"
        build = {"gpu": "the GPU build of MXNet (mxnet-cu112) is installed but ",
                 "both": ""}.get(setup.build, "")
        if setup.build == "none":  # bnexp installed without an MXNet build (its extras choose one)
            return ('cannot import mxnet: no MXNet installed; pip install "bnexp[cpu]" (or '
                    '"bnexp[gpu]" for an NVIDIA GPU), or `make install` in a checkout.')
        return f"cannot import mxnet: {build}{why}. `bnexp doctor` shows the details."
    finally:
        for var, value in users.items():  # MXNet has read them: the user's values again
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value
    _import_threads, _import_engine = threads, engine
    _import_wait = wait or f"OMP_WAIT_POLICY={WAIT_POLICY}"
    if setup.problems:
        warnings.warn("bnexp: " + "; ".join(setup.problems), RuntimeWarning, stacklevel=2)
    return None


def start_engine(mxnet) -> None:
    """Start MXNet's engine now, while MXNET_ENGINE_TYPE holds bnexp's choice (MXNet reads it
    at its first operation). MXNet announces any engine but its default on stderr, once;
    the run's record says which engine ran instead, so that line is kept from the terminal."""
    if not os.environ.get(ENGINE_VAR):
        mxnet.nd.zeros((1,)).wait_to_read()
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            mxnet.nd.zeros((1,)).wait_to_read()
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def import_mxnet_or_exit(threads: int | None = None, engine: str | None = None) -> None:
    """For entry points: import MXNet, or print why it cannot be and exit with status 2
    (a broken installation is the user's to fix, not a bug)."""
    problem = import_mxnet(threads, engine=engine)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(2)
