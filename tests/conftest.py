"""Shared helpers: the real dataset, and the real CLI run as a subprocess."""
from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The speed settings measured during the tests stay out of the user's cache (and are reused by
# the next test session on this machine): bnexp.tuning reads BNEXP_CACHE_DIR.
os.environ.setdefault("BNEXP_CACHE_DIR", str(REPO / ".pytest_cache" / "bnexp"))

from bnexp.runtime import mxnet_import  # noqa: E402
from bnexp.runtime.threads import BUDGET_VAR, ThreadPolicy, available_cores  # noqa: E402

# A suite started in the background by a non-interactive shell (`make test &` in a script)
# inherits SIGINT ignored, and so would every process it starts: the tests of Ctrl-C need it
# delivered, as in a terminal.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# `make test` runs the suite on every core (pytest-xdist, -n auto): each worker, and every run
# it starts, gets its share of the cores, as bnexp's joblib launcher gives each job its share
# (BNEXP_THREAD_BUDGET). Without it two workers' runs each start an OpenMP thread per core and
# wait on each other's descheduled threads. A test of the thread policy sets its own
# environment; tests/test_slurm.py removes the budget (a SLURM job reads SLURM_CPUS_PER_TASK).
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if WORKERS > 1:
    os.environ.setdefault(BUDGET_VAR, str(max(1, available_cores() // WORKERS)))

# MXNet for the tests' own process, imported as bnexp's entry points import it (numpy.bool
# restored on Python 3.12+), with every thread the policy allows, before any test module
# imports it.
mxnet_import.import_mxnet_or_exit(ThreadPolicy.resolve().default())

# Small but real: a few optimizer steps on the real Fashion-MNIST files.
QUICK = ["trainer.max_steps=20", "trainer.eval_every_steps=10", "data.test_subset=512",
         "trainer.progress=log"]


def run_cli(*args: str, timeout: float = 300, env: dict | None = None, cwd: Path = REPO,
            **popen) -> subprocess.CompletedProcess:
    """`python -m bnexp.run ARGS` exactly as a user types it, from the repository root
    (or `cwd`), with `env` added to this environment; `popen` goes to subprocess.run
    (e.g. umask=0o002)."""
    full = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "bnexp.run", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, env=full, **popen)


def config(*overrides: str):
    """The checked config of `overrides`, composed as `python -m bnexp.run` composes it."""
    from bnexp.validate import compose
    return compose(list(overrides))


@pytest.fixture(scope="session")
def fashion_root() -> Path:
    from bnexp import data
    return data.find_root(None)


def module_of(nodeid: str) -> str:
    """The test module's path in a test id: the part before the first "::"."""
    return nodeid.split("::", 1)[0]


@functools.lru_cache(maxsize=None)
def shares_runs(test_file: str) -> bool:
    """Whether a test module has a module-scoped fixture: real runs made once for its tests."""
    return 'scope="module"' in (REPO / test_file).read_text()


def pytest_collection_modifyitems(config, items):
    """Slow tests first, a module whose runs they share with them, the rest in their order: the
    workers hand out tests in this order, and a slow one picked up near the end kept its worker
    busy while the others had nothing left (longest first, the classic fix)."""
    def slow(item) -> bool:
        return item.get_closest_marker("slow") is not None

    slow_shared = {module_of(item.nodeid) for item in items
                   if slow(item) and shares_runs(module_of(item.nodeid))}
    items.sort(key=lambda item: not (slow(item) or module_of(item.nodeid) in slow_shared))


def pytest_xdist_make_scheduler(config, log):
    """`make test` (-n auto --dist loadscope): each test goes to whichever worker is free, except
    that a module with a module-scoped fixture goes whole to one worker (split, each worker would
    make its runs again). xdist's own loadgroup does not group under pytest 9."""
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class Scheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return module_of(nodeid) if shares_runs(module_of(nodeid)) else nodeid

    return Scheduling(config, log)
