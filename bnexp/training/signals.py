"""Stopping a run cleanly on a signal, without doing anything unsafe inside a handler.

A Python signal handler runs in the main thread between two bytecodes, which
can be in the middle of a write to `run.log` or the terminal. If the handler
writes to the same stream (a `log.warning`, a `print`, tqdm), Python raises
`RuntimeError: reentrant call inside <_io.BufferedWriter ...>`. So the handlers
here only record which signal arrived; the training loop notices it at the end
of the current step and does the talking, the checkpoint and the writing there.

- SIGINT / SIGTERM: stop after the current step (checkpoint, metrics.json,
  exit status 130). A second SIGINT aborts at once (KeyboardInterrupt).
- Signals that another library already handles in Python, e.g. submitit's
  SIGUSR2 ("time is nearly up: checkpoint and requeue"), whose handler logs
  and pickles from inside the signal: while training, such a signal also only
  asks the loop to stop; once the run has stopped cleanly, the library's own
  handler is called from the main thread (`StopRequest.deliver_deferred`),
  where its I/O is safe.
"""
from __future__ import annotations

import contextlib
import signal
from typing import Callable, Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# Delivered to a Python handler installed before the run (if any) after a clean stop.
DEFERRED_SIGNALS = (signal.SIGUSR1, signal.SIGUSR2)


class StopRequest:
    """What the signal handlers recorded; read by the training loop."""

    def __init__(self) -> None:
        self.received: list[int] = []   # appended to by the handler: no I/O, no locks
        self._deferred: dict[int, Callable] = {}

    def __call__(self) -> str:
        """The first signal received, e.g. "SIGINT"; '' while none has arrived."""
        return signal.Signals(self.received[0]).name if self.received else ""

    def handler(self, signum: int, frame) -> None:
        if self.received and signum == signal.SIGINT:
            raise KeyboardInterrupt  # the second Ctrl-C: abort now
        self.received.append(signum)

    def deliver_deferred(self) -> None:
        """Call, from the main thread, the earlier handlers of the deferred signals received."""
        for signum in dict.fromkeys(self.received):
            previous = self._deferred.get(signum)
            if previous is not None:
                previous(signum, None)


@contextlib.contextmanager
def graceful_stop() -> Iterator[StopRequest]:
    """Record SIGINT/SIGTERM (and signals some library handles in Python) during the block."""
    request = StopRequest()
    previous = {}
    for sig in STOP_SIGNALS:
        previous[sig] = signal.signal(sig, request.handler)
    for sig in DEFERRED_SIGNALS:
        current = signal.getsignal(sig)
        if callable(current):  # not SIG_DFL / SIG_IGN / None: someone's Python handler
            request._deferred[sig] = current
            previous[sig] = signal.signal(sig, request.handler)
    try:
        yield request
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
