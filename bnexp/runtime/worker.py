"""A child process with a fixed OpenMP thread count, asked for measurements line by line.

MXNet fixes its thread count when it is imported, so comparing thread counts takes one
process per count. The parent keeps the processes alive and asks them in turn (one
request line in, one JSON line out), so that measurements at different counts interleave
and machine noise hits all alike; an idle worker waits on its input and costs nothing.
Used by the tuning probe (bnexp/tuning/probe.py) and the benchmark
(bnexp/bench/worker.py)."""
from __future__ import annotations

import json
import select
import subprocess
import sys

from bnexp.runtime.threads import child_env


class Worker:
    """`python -m <module> <args>` with `threads` OpenMP threads; it prints one JSON line
    when ready, then one per request."""

    def __init__(self, module: str, args: list[str], threads: int):
        self.threads = threads
        self.proc = subprocess.Popen([sys.executable, "-m", module, *args], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=child_env(threads))

    def read(self, timeout: float) -> dict:
        """The next answer; ValueError with the worker's last error line if there is none
        within `timeout` seconds."""
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            err = "" if self.proc.poll() is None else self.proc.stderr.read().strip()
            raise ValueError(err.splitlines()[-1] if err else f"no answer within {timeout:.0f} s")
        return json.loads(line)

    def ask(self, request: str, timeout: float) -> dict:
        self.proc.stdin.write(request + "\n")
        self.proc.stdin.flush()
        return self.read(timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
