"""The thread policy: how many OpenMP threads a process may use, and whether the user fixed it.

MXNet fixes its OpenMP thread count once, when it is imported; left alone it takes half
the cores. bnexp resolves the policy once at start-up, from the config and the process
environment as the user (or a scheduler) set it, passes it explicitly to the code that
chooses the count (bnexp.tuning), and records it in metrics.json. Environment
variables are written only where a child process is started (`child_env`) and, for the
import itself, by bnexp.runtime.mxnet_import, which puts the user's values back
afterwards: nothing bnexp derived leaks into a child that would mistake it for a
user's choice.

The budget (the most threads a process may use) is the first of:
  launcher  BNEXP_THREAD_BUDGET, set by bnexp.sweep.callbacks.ThreadBudgetCallback for
            the worker processes of a parallel (joblib) sweep: cores // n_jobs
  slurm     SLURM_CPUS_PER_TASK, what a SLURM job was given (its cores are not always
            pinned: with TaskPlugin=task/none a job sees every core of the node)
  cores     the cores this process may run on (taskset / cgroup affinity)
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Mapping

BUDGET_VAR = "BNEXP_THREAD_BUDGET"
# MXNet's execution engine, read when it starts (at its first operation). `threaded` is MXNet's
# default (a worker thread per device beside OpenMP's); `naive` runs each operation in the
# calling thread, synchronously (bnexp/tuning/ measures which is faster here).
ENGINE_VAR = "MXNET_ENGINE_TYPE"
ENGINES = {"naive": "NaiveEngine", "threaded": "ThreadedEnginePerDevice"}
SLURM_VAR = "SLURM_CPUS_PER_TASK"
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def available_cores() -> int:
    """Cores this process may run on (respects taskset/cgroup affinity)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _positive(text: str | None) -> int | None:
    try:
        value = int(str(text).strip())
    except ValueError:
        return None
    return value if value >= 1 else None


@dataclass(frozen=True)
class ThreadPolicy:
    """Resolved once per process; see the module docstring."""
    budget: int             # the most OpenMP threads this process may use
    budget_from: str        # launcher | slurm | cores
    fixed: int | None       # a count the user fixed (perf.threads, else OMP_NUM_THREADS); None: bnexp chooses
    fixed_from: str = ""    # config | environment | ""

    @classmethod
    def resolve(cls, configured: str | int = "auto",
                environ: Mapping[str, str] | None = None) -> ThreadPolicy:
        """From `perf.threads` (`configured`) and the environment as the user set it."""
        environ = os.environ if environ is None else environ
        cores = available_cores()
        budget, budget_from = cores, "cores"
        for var, source in ((BUDGET_VAR, "launcher"), (SLURM_VAR, "slurm")):
            value = _positive(environ.get(var))
            if value is not None:
                budget, budget_from = min(value, cores), source
                break
        if str(configured) != "auto":
            return cls(budget, budget_from, int(configured), "config")
        user = _positive(environ.get("OMP_NUM_THREADS"))
        if user is not None:
            return cls(budget, budget_from, user, "environment")
        return cls(budget, budget_from, None)

    def candidates(self) -> list[int]:
        """The thread counts worth measuring: the fixed one, else 1..budget on small machines
        and powers of two plus the budget on large ones."""
        if self.fixed is not None:
            return [self.fixed]
        if self.budget <= 4:
            return list(range(1, self.budget + 1))
        powers = {2 ** i for i in range(self.budget.bit_length()) if 2 ** i <= self.budget}
        return sorted(powers | {self.budget})

    def default(self) -> int:
        """The count to use when nothing is measured: the fixed one, else the budget."""
        return self.fixed if self.fixed is not None else self.budget

    def describe(self) -> str:
        text = f"at most {self.budget} thread(s) ({self.budget_from})"
        if self.fixed is not None:
            text += f", fixed at {self.fixed} ({'perf.threads' if self.fixed_from == 'config' else 'OMP_NUM_THREADS'})"
        return text

    def to_json(self) -> dict:
        return asdict(self)


def child_env(threads: int, engine: str | None = None,
              environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a child process that must run with exactly `threads` threads
    (a tuning probe, a benchmark process): the count is the child's fixed choice and
    its budget; `engine` (bnexp.runtime.mxnet_import.ENGINES) its MXNet engine."""
    env = dict(os.environ if environ is None else environ)
    for var in (*THREAD_VARS, BUDGET_VAR):
        env[var] = str(threads)
    if engine is not None:
        env[ENGINE_VAR] = ENGINES[engine]
    return env


def threads_per_job(n_jobs, cores: int) -> int:
    """OpenMP threads for each of `n_jobs` parallel jobs sharing `cores` cores.
    joblib's conventions: None or -1 means one job per core, -2 all cores but one, ..."""
    n_jobs = -1 if n_jobs is None else int(n_jobs)
    if n_jobs < 0:
        n_jobs = max(1, cores + 1 + n_jobs)
    return max(1, cores // max(1, n_jobs))
