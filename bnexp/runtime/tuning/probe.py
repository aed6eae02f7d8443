"""The measurement behind a speed choice: training steps timed in a fresh process per
thread count (MXNet fixes its thread count when it is imported).

The child process builds the run's own network for every layout and steps it through
the Trainer's own `step` (bnexp/training/trainer.py) -- the batch gathered from
device-resident images, the metrics read every `trainer.log_every_steps` steps -- on
synthetic images of the real shape, the layouts interleaved so that drift hits every
one alike; each layout's time is the best of its rounds.
"""
from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from typing import NamedTuple

from bnexp.config import BN_IMPLS, POOL_LAYOUTS
from bnexp.runtime.threads import child_env

log = logging.getLogger(__name__)

PROBE_WARMUP, PROBE_ROUNDS, PROBE_STEPS = 2, 2, 3   # per layout; rounds interleaved
PROBE_TIMEOUT = 300        # seconds per subprocess
PROBE_IMAGES = 2048        # synthetic training images on the device (the gather is timed too)


class Layout(NamedTuple):
    """A pooling layout and a BN formulation: what the probe times side by side."""
    pool: str
    bn_impl: str

    @property
    def key(self) -> str:
        """Its name in the cache file (JSON keys are strings): "native/centered"."""
        return f"{self.pool}/{self.bn_impl}"

    @classmethod
    def from_key(cls, key: str) -> Layout:
        return cls(*key.split("/"))


DEFAULT = Layout(POOL_LAYOUTS[0], BN_IMPLS[0])


def layouts(variant: str, pool: str = "auto", bn_impl: str = "auto") -> list[Layout]:
    """The layouts worth timing for a BN variant (the formulation matters only for scratch)."""
    pools = POOL_LAYOUTS if pool == "auto" else (pool,)
    impls = (BN_IMPLS if bn_impl == "auto" else (bn_impl,)) if variant == "scratch" \
        else (DEFAULT.bn_impl,)
    return [Layout(p, i) for p in pools for i in impls]


def probe(setting: dict, threads: int) -> dict[str, float]:
    """ms per training step of each layout with `threads` OpenMP threads, measured in a
    fresh process ({} if the probe failed)."""
    spec = {key: setting[key] for key in ("bn", "model", "bn_on_dense", "batch_per_device")}
    try:
        result = subprocess.run([sys.executable, "-m", "bnexp.runtime.tuning", "probe",
                                 json.dumps(spec)], capture_output=True, text=True,
                                env=child_env(threads), timeout=PROBE_TIMEOUT)
        timings = json.loads(result.stdout.strip().splitlines()[-1])
        if result.returncode or not timings:
            raise ValueError(result.stderr.strip().splitlines()[-1:] or "no output")
        return {layout: float(ms) for layout, ms in timings.items()}
    except (OSError, ValueError, IndexError, subprocess.TimeoutExpired) as err:
        log.warning("tuning probe with %d thread(s) failed (%s)", threads, err)
        return {}


def probe_main(spec: dict, threads: int | None) -> dict[str, float]:
    """In the probe subprocess: time each layout (module docstring)."""
    from bnexp.runtime import mxnet_import
    mxnet_import.import_mxnet_or_exit(threads)
    import mxnet as mx
    import numpy as np

    from bnexp.config import BNConfig, Config, ModelConfig, PerfConfig, TrainerConfig
    from bnexp.nn.build import build_net
    from bnexp.training.step import DeviceSplit, make_optimizer
    from bnexp.training.trainer import Trainer

    batch = int(spec["batch_per_device"])
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (max(PROBE_IMAGES, 2 * batch), 28, 28), dtype=np.uint8)
    train = DeviceSplit.from_numpy(images, rng.integers(0, 10, len(images)), mx.cpu())
    trainers = {}
    for layout in layouts(spec["bn"]):
        cfg = Config(bn=BNConfig(spec["bn"]), trainer=TrainerConfig(batch_size=batch), ctx="cpu",
                     model=ModelConfig(name=spec.get("model", "lenet"),
                                       bn_on_dense=spec["bn_on_dense"]),
                     perf=PerfConfig(pool=layout.pool, bn_impl=layout.bn_impl))
        net = build_net(cfg, [mx.cpu()])
        trainers[layout.key] = Trainer(net, make_optimizer(net, 0.01, [mx.cpu()]), [mx.cpu()],
                                       train, batch_size=batch, total_steps=2 ** 62, seed=0,
                                       log_every=cfg.trainer.log_every_steps)
    for trainer in trainers.values():
        for _ in range(PROBE_WARMUP):
            trainer.step()
    elapsed: dict[str, list[float]] = {key: [] for key in trainers}
    for _ in range(PROBE_ROUNDS):
        for key, trainer in trainers.items():  # interleaved: drift hits every layout alike
            mx.nd.waitall()
            start = time.perf_counter()
            for _ in range(PROBE_STEPS):
                trainer.step()
            mx.nd.waitall()
            elapsed[key].append((time.perf_counter() - start) / PROBE_STEPS * 1000)
    return {key: round(min(times), 3) for key, times in elapsed.items()}
