"""When a job started: a run's wall_seconds (metrics.json) counts from here.

The first job of a process counts from the process's start (imports and data included);
a later job of the same process (the basic launcher runs a sweep's jobs one after another,
joblib reuses its workers) counts from its own start. The clock lives in an imported
module, not in bnexp.run: `python -m bnexp.run` runs that module as __main__, and joblib
and submitit send __main__'s functions to their workers by value, globals included, so a
start time kept there would be the sweep's, handed to every job."""
from __future__ import annotations

import time

_unclaimed_start: float | None = time.time()   # this module is imported as the process starts


def job_start() -> float:
    """The start of the job now beginning: the process's for its first, now for the others."""
    global _unclaimed_start
    start, _unclaimed_start = _unclaimed_start or time.time(), None
    return start
