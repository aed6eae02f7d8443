"""A child process with a fixed OpenMP thread count, asked for measurements line by line.

MXNet fixes its thread count when it is imported, so comparing thread counts takes one
process per count. The parent keeps the processes alive and asks them in turn (one
request line in, one JSON line out), so that measurements at different counts interleave
and machine noise hits all alike; an idle worker waits on its input and costs nothing.
Its stderr goes to an unnamed temporary file, not a pipe: nobody reads a pipe while the
worker runs, and a worker that logs more than a pipe holds (64 KiB) would block in its
write until its timeout; its last line is the error reported when it dies.
Used by the tuning probe (bnexp/tuning/probe.py) and the benchmark
(bnexp/bench/worker.py)."""
from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import sys
import tempfile

from bnexp.runtime.threads import child_env


class Worker:
    """`python -m <module> <args>` with `threads` OpenMP threads (and MXNet's `engine`, if
    given); it prints one JSON line when ready, then one per request."""

    ERROR_TAIL = 8192  # bytes of stderr searched for the last line

    def __init__(self, module: str, args: list[str], threads: int, engine: str | None = None):
        self.threads, self.engine = threads, engine
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([sys.executable, "-m", module, *args], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.stderr, text=True,
                                     env=child_env(threads, engine))

    def read(self, timeout: float) -> dict:
        """The next answer; ValueError with the worker's last error line if there is none
        within `timeout` seconds."""
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        if not line and ready:  # its output ended: it is exiting, and its error is written
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
        if not line:
            err = "" if self.proc.poll() is None else self.last_error_line()
            raise ValueError(err or f"no answer within {timeout:.0f} s")
        return json.loads(line)

    def last_error_line(self) -> str:
        """The last non-blank line the worker wrote to stderr ("" if none)."""
        size = self.stderr.seek(0, os.SEEK_END)
        self.stderr.seek(max(0, size - self.ERROR_TAIL))
        lines = self.stderr.read().decode(errors="replace").splitlines()
        return next((line.strip() for line in reversed(lines) if line.strip()), "")

    def ask(self, request: str, timeout: float) -> dict:
        self.proc.stdin.write(request + "\n")
        self.proc.stdin.flush()
        return self.read(timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.stderr.close()
