"""The measurement behind a speed choice: sustained training, timed through the code path a
run uses, with a budget of a share of the run it serves.

MXNet fixes its thread count when it is imported and its engine when it starts, so each
combination of the two is a worker process of its own; the pooling layout and the
normalization's formulation can change within one. Each worker steps the run's own
network through the Trainer's own `step` (bnexp/training/trainer.py): the batch gathered
from device-resident images (synthetic, of the real shape), the metrics read every
`trainer.log_every_steps` steps. The parent asks for blocks of about `seconds` of training,
in three stages:

  1. every process (threads x engine), with the first layout (skipped where the threads
     and engine are given: one process, which the next stages time);
  2. every formulation, in the fastest process;
  3. every pooling layout, there, with the fastest formulation
(so their interactions are not measured: 4 + 3 + 2 options instead of 4 x 3 x 2).

Within a stage the options are timed once per round, interleaved, so that drift and other
load hit all alike; the first round warms up and is not counted; rounds go on (at least
MIN_ROUNDS, at most MAX_ROUNDS) until each option's blocks agree within SETTLED or the
choice no longer depends on which of them is taken, and stop earlier once the probe has
spent its budget: SHARE of the run's expected length, which the warm-up round measures.
After OUT_AFTER counted rounds an option far slower than the best (OUT_OF_RACE) is timed no
more. An option's timing is the median of its blocks. A 3-step burst can say the opposite
of sustained training: on a 2-core Xeon it found 2 threads faster, where 150 steps ran
1.37x faster with 1 (DESIGN.md).
"""
from __future__ import annotations

import json
import logging
import statistics
import sys
import time
from typing import NamedTuple

from bnexp.config import POOL_LAYOUTS
from bnexp.runtime.worker import Worker

log = logging.getLogger(__name__)

MIN_ROUNDS, MAX_ROUNDS = 2, 5
SETTLED = 0.10              # an option's blocks agree within this fraction of their median
MARGIN = 0.05               # more threads only if they are more than this much faster
OUT_OF_RACE = 1.5           # an option whose fastest block is this much slower than the best
OUT_AFTER = 2               # option's median, after this many counted rounds, is timed no more
SHARE = 0.10                # the most of a run's expected length its probe may take
STARTUP_TIMEOUT = 300       # seconds for a worker to build its first network
BLOCK_TIMEOUT = 120         # seconds for one block (the first of a layout builds it too)
PROBE_IMAGES = 2048         # synthetic training images on the device (the gather is timed too)


class Option(NamedTuple):
    """What one block times: a process (threads, MXNet's engine) and a layout (pooling, and
    the normalization's formulation: "" where it has one only)."""
    threads: int
    engine: str
    pool: str
    formulation: str

    @property
    def key(self) -> str:
        """Its name in the cache file: "2/naive/native/compiled"."""
        return "/".join(map(str, self))

    @property
    def layout(self) -> str:
        return f"{self.pool}/{self.formulation}"

    @classmethod
    def from_key(cls, key: str) -> Option:
        threads, engine, pool, formulation = key.split("/")
        return cls(int(threads), engine, pool, formulation)


def layouts(formulations: tuple[str, ...], pool: str = "auto") -> list[tuple[str, str]]:
    """The layouts worth timing: every pooling layout (or the configured one) x formulation."""
    pools = POOL_LAYOUTS if pool == "auto" else (pool,)
    return [(p, f) for p in pools for f in formulations or ("",)]


def races_processes(processes: list[tuple[int, str]], wanted: list[tuple[str, str]]) -> bool:
    """Whether `measure` races the processes (stage 1): not where there is one process and
    layouts to race, whose races time it."""
    return len(processes) > 1 or len(wanted) == 1


def decide(timings: dict[str, float]) -> Option:
    """The fastest option, or one with fewer threads within MARGIN of it (the cores it
    leaves are free for others)."""
    options = {Option.from_key(key): ms for key, ms in timings.items()}
    best = min(options.values())
    return min(options, key=lambda o: (options[o] > best * (1 + MARGIN), o.threads, options[o]))


def still_racing(samples: dict[Option, list[float]], racing: set[Option], rounds: int) -> set[Option]:
    """The options worth timing further: after OUT_AFTER counted rounds, those whose fastest
    block is within OUT_OF_RACE of the best option's median."""
    if rounds < OUT_AFTER:
        return racing
    best = min(statistics.median(samples[option]) for option in racing)
    return {option for option in racing if min(samples[option]) <= OUT_OF_RACE * best}


def settled(samples: dict[Option, list[float]]) -> bool:
    """Enough rounds to decide: every option's blocks agree within SETTLED, or the decision
    is the same whichever of an option's blocks is taken (its fastest, median or slowest)."""
    if min(len(v) for v in samples.values()) < MIN_ROUNDS:
        return False
    if all(max(v) - min(v) <= SETTLED * statistics.median(v) for v in samples.values()):
        return True
    return len({decide({o.key: summary(v) for o, v in samples.items()})
                for summary in (min, statistics.median, max)}) == 1


class Probe:
    """The worker processes and the budget of one measurement."""

    def __init__(self, setting: dict, seconds: float, run_steps: int):
        self.spec = {key: setting[key] for key in ("bn", "model", "batch_per_device")}
        self.seconds, self.run_steps = seconds, run_steps
        self.workers: dict[tuple[int, str], Worker] = {}
        self.ready: set[tuple[int, str]] = set()
        self.start = time.monotonic()
        self.budget: float | None = None   # seconds, once the warm-up round measured a step

    def worker(self, threads: int, engine: str) -> Worker:
        if (threads, engine) not in self.workers:
            self.workers[threads, engine] = Worker("bnexp.tuning", ["probe", json.dumps(self.spec)],
                                                   threads, engine)
        return self.workers[threads, engine]

    def time(self, option: Option) -> float:
        worker = self.worker(option.threads, option.engine)
        return float(worker.ask(f"{option.layout} {self.seconds}", BLOCK_TIMEOUT)["ms"])

    def spent(self) -> bool:
        return self.budget is not None and time.monotonic() - self.start >= self.budget

    def race(self, options: list[Option]) -> dict[Option, list[float]]:
        """Counted blocks of each option (module docstring: rounds, settling, the budget)."""
        for option in options:   # start every process first: they start in parallel
            self.worker(option.threads, option.engine)
        for process, worker in self.workers.items():
            if process not in self.ready:
                worker.read(STARTUP_TIMEOUT)
                self.ready.add(process)
        warm = {option: self.time(option) for option in options}
        if self.budget is None:  # the run's expected length, from its fastest option
            self.budget = SHARE * self.run_steps * min(warm.values()) / 1000
        samples: dict[Option, list[float]] = {option: [] for option in options}
        racing = set(options)
        for round_ in range(1, MAX_ROUNDS + 1):
            for option in options:
                if option in racing:
                    samples[option].append(self.time(option))
            racing = still_racing(samples, racing, round_)
            if settled({o: samples[o] for o in racing}) or self.spent():
                break
        return samples

    def close(self) -> None:
        for worker in self.workers.values():
            worker.close()


def measure(setting: dict, processes: list[tuple[int, str]], wanted: list[tuple[str, str]],
            seconds: float, run_steps: int) -> dict[str, float]:
    """ms per sustained training step of the options measured (module docstring):
    {option key: ms}; {} if the probe failed."""
    probe = Probe(setting, seconds, run_steps)
    measured: dict[Option, list[float]] = {}

    def best() -> Option:
        return decide({o.key: statistics.median(v) for o, v in measured.items()})

    first = [Option(t, e, *wanted[0]) for t, e in processes]
    try:
        if races_processes(processes, wanted):
            measured.update(probe.race(first))
        for part in (1, 0):  # the formulations, then the pooling layouts
            choices = list(dict.fromkeys(layout[part] for layout in wanted))
            if len(choices) > 1 and not probe.spent():
                b = best() if measured else first[0]
                measured.update(probe.race([Option(b.threads, b.engine, *(
                    (b.pool, c) if part else (c, b.formulation))) for c in choices]))
    except (OSError, ValueError, KeyError) as err:
        log.warning("tuning probe failed (%s)", err)
        return {}
    finally:
        probe.close()
    return {o.key: round(statistics.median(v), 3) for o, v in measured.items()}


def serve(spec: dict, threads: int | None) -> None:
    """In a worker process: time blocks of a layout on request, building its Trainer at its
    first request (the parent's warm-up round absorbs that)."""
    from bnexp.runtime import mxnet_import
    mxnet_import.import_mxnet_or_exit(threads)   # the engine: as the parent set it (child_env)
    import mxnet as mx
    import numpy as np

    from bnexp.config import Config, TrainerConfig
    from bnexp.nn.build import build_net
    from bnexp.training.optimizers import sgd
    from bnexp.training.step import DeviceSplit, make_optimizer
    from bnexp.training.trainer import Trainer

    batch = int(spec["batch_per_device"])
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (max(PROBE_IMAGES, 2 * batch), 28, 28), dtype=np.uint8)
    train = DeviceSplit.from_numpy(images, rng.integers(0, 10, len(images)), mx.cpu())
    cfg = Config(bn=spec["bn"], model=spec["model"], trainer=TrainerConfig(batch_size=batch), ctx="cpu")
    trainers: dict[str, Trainer] = {}

    def trainer_for(layout: str) -> Trainer:
        if layout not in trainers:
            pool, formulation = layout.split("/")
            net = build_net(cfg, [mx.cpu()], pool, formulation or "reference")
            trainers[layout] = Trainer(net, make_optimizer(net, sgd(0.01), [mx.cpu()]), [mx.cpu()],
                                       train, batch_size=batch, total_steps=2 ** 62, seed=0,
                                       log_every=cfg.trainer.log_every_steps)
        return trainers[layout]

    def block(trainer: Trainer, seconds: float) -> float:
        """ms per step over at least `seconds` of steps, in whole chunks between reads."""
        chunk = trainer.state.log_every
        mx.nd.waitall()
        steps, start = 0, time.perf_counter()
        while True:
            for _ in range(chunk):
                trainer.step()
            steps += chunk
            mx.nd.waitall()
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                return 1000 * elapsed / steps

    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        layout, seconds = line.split()
        trainer = trainer_for(layout)
        print(json.dumps({"ms": round(block(trainer, float(seconds)), 4)}), flush=True)
