"""The measurement behind a speed choice: sustained training, timed through the code path a
run uses, in one worker process per candidate thread count (MXNet fixes its thread count
when it is imported).

Each worker builds the run's own network for every layout and steps it through the
Trainer's own `step` (bnexp/training/trainer.py): the batch gathered from device-resident
images (synthetic, of the real shape), the metrics read every `trainer.log_every_steps`
steps. The parent asks the workers in turn for blocks of about `seconds` of training
-- every thread count x layout once per round, interleaved, so that drift and other
load hit all of them alike; the idle workers wait on their input. The first round
warms up and is not counted; rounds go on (at least MIN_ROUNDS, at most MAX_ROUNDS) until each option's blocks agree
within SETTLED or the choice no longer depends on which of them is taken; after OUT_AFTER
rounds an option far slower than the best (OUT_OF_RACE) is timed no more. The timing of
an option is the median of its blocks. A 3-step burst can say the opposite of sustained
training: on a 2-core Xeon it found 2 threads faster, where 150 steps ran 1.37x faster
with 1 (DESIGN.md).
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

MIN_ROUNDS, MAX_ROUNDS = 3, 6
SETTLED = 0.10              # an option's blocks agree within this fraction of their median
MARGIN = 0.05               # more threads only if they are more than this much faster
OUT_OF_RACE = 1.5           # an option whose fastest block is this much slower than the best
OUT_AFTER = 2               # option's median, after this many counted rounds, is timed no more
STARTUP_TIMEOUT = 300       # seconds for a worker to build its networks
BLOCK_TIMEOUT = 120         # seconds for one block
PROBE_IMAGES = 2048         # synthetic training images on the device (the gather is timed too)


class Layout(NamedTuple):
    """A pooling layout and a formulation of the normalization ("" where it has one only):
    what the probe times side by side."""
    pool: str
    formulation: str

    @property
    def key(self) -> str:
        """Its name in the cache file (JSON keys are strings): "native/centered"."""
        return f"{self.pool}/{self.formulation}"

    @classmethod
    def from_key(cls, key: str) -> Layout:
        return cls(*key.split("/"))


def layouts(formulations: tuple[str, ...], pool: str = "auto") -> list[Layout]:
    """The layouts worth timing: every pooling layout (or the configured one) x formulation."""
    pools = POOL_LAYOUTS if pool == "auto" else (pool,)
    return [Layout(p, f) for p in pools for f in formulations or ("",)]


def decide(timings: dict[int, dict[str, float]]) -> tuple[int, str]:
    """(threads, layout key) from ms per step by thread count and layout: the fastest
    layout at the fewest threads within MARGIN of the fastest option."""
    best = min(ms for table in timings.values() for ms in table.values())
    threads = min(t for t, table in timings.items() if min(table.values()) <= best * (1 + MARGIN))
    table = timings[threads]
    return threads, min(table, key=table.get)


def still_racing(samples: dict[tuple[int, str], list[float]], racing: set[tuple[int, str]],
                 rounds: int) -> set[tuple[int, str]]:
    """The options worth timing further: after OUT_AFTER counted rounds, those whose fastest
    block is within OUT_OF_RACE of the best option's median (a far slower option cannot
    become the choice; timing it again would only make the probe longer)."""
    if rounds < OUT_AFTER:
        return racing
    best = min(statistics.median(samples[option]) for option in racing)
    return {option for option in racing if min(samples[option]) <= OUT_OF_RACE * best}


def settled(samples: dict[tuple[int, str], list[float]]) -> bool:
    """Enough rounds to decide: every option's blocks agree within SETTLED, or the decision
    is the same whichever of an option's blocks is taken (its fastest, median or slowest)."""
    if min(len(v) for v in samples.values()) < MIN_ROUNDS:
        return False
    if all(max(v) - min(v) <= SETTLED * statistics.median(v) for v in samples.values()):
        return True
    decisions = set()
    for summary in (min, statistics.median, max):
        timings: dict[int, dict[str, float]] = {}
        for (threads, key), v in samples.items():
            timings.setdefault(threads, {})[key] = summary(v)
        decisions.add(decide(timings))
    return len(decisions) == 1


def measure(setting: dict, candidates: list[int], wanted: list[Layout],
            seconds: float) -> dict[str, dict[str, float]]:
    """ms per sustained training step of every candidate thread count x wanted layout
    (module docstring): {threads: {layout key: ms}}; {} if the probe failed."""
    spec = {key: setting[key] for key in ("bn", "model", "batch_per_device")}
    spec["layouts"] = [layout.key for layout in wanted]
    workers = [Worker("bnexp.tuning", ["probe", json.dumps(spec)], threads)
               for threads in candidates]
    samples: dict[tuple[int, str], list[float]] = {
        (w.threads, layout.key): [] for w in workers for layout in wanted}
    try:
        for worker in workers:
            worker.read(STARTUP_TIMEOUT)  # its networks are built
        racing = set(samples)
        for round_ in range(MAX_ROUNDS + 1):
            for worker in workers:
                for layout in wanted:
                    if (worker.threads, layout.key) not in racing:
                        continue
                    ms = float(worker.ask(f"{layout.key} {seconds}", BLOCK_TIMEOUT)["ms"])
                    if round_:  # round 0 warms up
                        samples[worker.threads, layout.key].append(ms)
            if round_:
                racing = still_racing(samples, racing, round_)
                if settled({option: samples[option] for option in racing}):
                    break
    except (OSError, ValueError, KeyError) as err:
        log.warning("tuning probe failed (%s)", err)
        return {}
    finally:
        for worker in workers:
            worker.close()
    out: dict[str, dict[str, float]] = {}
    for (threads, key), v in samples.items():
        out.setdefault(str(threads), {})[key] = round(statistics.median(v), 3)
    return out


def serve(spec: dict, threads: int | None) -> None:
    """In a worker process: build every layout's Trainer, then time blocks on request."""
    from bnexp.runtime import mxnet_import
    mxnet_import.import_mxnet_or_exit(threads)
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
    for key in spec["layouts"]:
        layout = Layout.from_key(key)
        net = build_net(cfg, [mx.cpu()], layout.pool, layout.formulation or "reference")
        trainers[key] = Trainer(net, make_optimizer(net, sgd(0.01), [mx.cpu()]), [mx.cpu()],
                                train, batch_size=batch, total_steps=2 ** 62, seed=0,
                                log_every=cfg.trainer.log_every_steps)

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
        key, seconds = line.split()
        print(json.dumps({"ms": round(block(trainers[key], float(seconds)), 4)}), flush=True)
