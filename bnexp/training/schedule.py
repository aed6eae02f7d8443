"""When the training loop evaluates (`trainer.eval_schedule`).

A steps-to-target figure can only be as sharp as the evaluations around it: with
evaluations every 78 steps, a run that first reaches 0.70 at step 78 may have
crossed at step 20. Three schedules:

  uniform      every `trainer.eval_every_steps` steps (and at each epoch end)
  dense_early  from step 1, each evaluation at most `resolution` (10%) of its step after
               the one before -- 1, 2, ..., 10, 11, 12, 13, ..., 20, 22, 24, 26, 28, 31,
               34, ... -- until that gap would exceed `eval_every_steps`, then uniform:
               a crossing at step s is reported within 10% of s
  [s1, s2, ...] exactly these steps

Every schedule also evaluates after the last step of the run.
"""
from __future__ import annotations

import math

DENSE_RESOLUTION = 0.10   # dense_early: the gap before an evaluation, as a fraction of its step
SCHEDULES = ("uniform", "dense_early")


def dense_early(every: int, total_steps: int, resolution: float = DENSE_RESOLUTION) -> list[int]:
    """1, 2, 3, ... growing by at most `resolution` of the step, then every `every` steps."""
    steps, step = [], 1
    while step <= total_steps:
        steps.append(step)
        dense = max(step + 1, math.floor(step / (1 - resolution)))
        step = dense if dense - step <= every else (step // every + 1) * every
    return steps


def evaluation_steps(schedule, every: int, steps_per_epoch: int, total_steps: int) -> set[int]:
    """The optimizer steps after which the loop evaluates (`schedule` as in the config)."""
    if isinstance(schedule, str) and schedule == "uniform":
        due = {s for s in range(every, total_steps + 1, every)}
        due |= {s for s in range(steps_per_epoch, total_steps + 1, steps_per_epoch)}
    elif isinstance(schedule, str) and schedule == "dense_early":
        due = set(dense_early(every, total_steps))
    else:  # an explicit list
        due = {int(s) for s in schedule if 1 <= int(s) <= total_steps}
    return due | {total_steps}


def check(schedule) -> str | None:
    """What is wrong with a `trainer.eval_schedule` value, or None."""
    if isinstance(schedule, str):
        return None if schedule in SCHEDULES else f"choose {', '.join(SCHEDULES)} or a list of steps"
    try:
        steps = [int(s) for s in schedule]
    except (TypeError, ValueError):
        return "a list of optimizer steps (whole numbers >= 1), e.g. [10,20,50]"
    if not steps or min(steps) < 1 or any(float(s) != int(s) for s in schedule):
        return "a list of optimizer steps (whole numbers >= 1), e.g. [10,20,50]"
    return None
