"""Speed settings that depend on the machine, chosen by measuring the machine.

Three settings change how fast bnexp trains, never what it computes:

  threads  OpenMP threads (fixed when MXNet is imported: once per process)
  pool     max-pooling layout: `native` (nn.MaxPool2D) or `folded` (channels
           folded into the batch axis; bnexp/model.py)
  bn_impl  formulation of the from-scratch BN (bn=scratch): `centered` or
           `surrogate` (bnexp/bn.py)

Which is fastest differs between CPUs: folded pooling was 3x faster than
native on one AMD EPYC and 1.35x slower on another (AVX-512); 1 thread beat 2
there, 2 beat 1 on a third. So with `perf.<setting>=auto` bnexp measures: a
short probe times a few training steps of the run's own network, BN variant
and batch size for every layout and formulation, interleaved, in one
subprocess per candidate thread count (the count must be set before MXNet is
imported). The timings are cached per machine and setting -- CPU model and
flags, usable cores, MXNet version and build, device, model, BN variant and
batch size per device -- in ~/.cache/bnexp/tuning.json (or $BNEXP_CACHE_DIR)
and reused; each choice is the fastest measured combination. A corrupt or
outdated cache is ignored and rebuilt, a failed probe falls back to the
defaults; neither stops a run.

    python -m bnexp.tuning show        # what is cached for this machine
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import json
import logging
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

from bnexp import context, gpu, mxenv
from bnexp.config import BN_IMPLS, POOL_LAYOUTS, Config
from bnexp.files import write_json_atomic

log = logging.getLogger(__name__)

PROBE_VERSION = 1          # bump when what the probe measures changes: older entries are stale
CACHE_FILE = "tuning.json"
DEFAULTS = {"pool": "native", "bn_impl": "centered"}
PROBE_WARMUP, PROBE_ROUNDS, PROBE_STEPS = 2, 2, 3   # per combination; rounds interleaved
PROBE_TIMEOUT = 300        # seconds per subprocess
LOCK_TIMEOUT = 600         # seconds to wait for another process probing the same machine


# --------------------------------------------------------------------- what is measured
def cpu_identity() -> dict[str, str]:
    """The CPU model and a digest of its instruction-set flags (/proc/cpuinfo)."""
    model, flags = platform.processor() or "unknown", ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model in ("unknown", "", platform.processor()):
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = " ".join(sorted(value.split()))
    return {"cpu": model, "cpu_flags": hashlib.sha1(flags.encode()).hexdigest()[:12]}


def mxnet_identity() -> str:
    build = mxenv.mxnet_build()
    dist = mxenv.GPU_DISTRIBUTION if build == "gpu" else mxenv.CPU_DISTRIBUTION
    try:
        return f"{dist}=={importlib.metadata.version(dist)}"
    except importlib.metadata.PackageNotFoundError:
        return "none"


def device_kind(ctx: str) -> str:
    """"cpu" or "gpu", without importing MXNet: `auto` means a GPU only if the GPU build
    is installed and nvidia-smi lists one it can run."""
    devices = context.parse(ctx)
    if devices:
        return "gpu" if any(kind == "gpu" for kind, _ in devices) else "cpu"
    if mxenv.mxnet_build() != "gpu":
        return "cpu"
    found, _ = gpu.query()
    return "gpu" if found and gpu.choose_build(found)[0] == "gpu" else "cpu"


def setting_of(cfg: Config, saved: dict | None = None) -> dict:
    """What the timings depend on: the machine and the run's network and batch. `saved`:
    the flat config of the run being resumed (metrics.json), whose network it continues."""
    saved = saved or {}
    devices = max(1, len(context.parse(cfg.ctx)))
    batch = int(saved.get("trainer.batch_size", cfg.trainer.batch_size))
    return {"probe_version": PROBE_VERSION, **cpu_identity(), "cores": mxenv.available_cores(),
            "mxnet": mxnet_identity(), "device": device_kind(cfg.ctx), "model": "lenet",
            "bn_on_dense": bool(saved.get("model.bn_on_dense", cfg.model.bn_on_dense)),
            "bn": saved.get("bn.variant", cfg.bn.variant), "batch_per_device": batch // devices}


def setting_key(setting: dict) -> str:
    return hashlib.sha1(json.dumps(setting, sort_keys=True).encode()).hexdigest()[:16]


def combos(variant: str) -> list[str]:
    """Every pool layout x BN formulation the probe times ("native/centered", ...)."""
    impls = BN_IMPLS if variant == "scratch" else (DEFAULTS["bn_impl"],)
    return [f"{pool}/{impl}" for pool in POOL_LAYOUTS for impl in impls]


def thread_candidates(budget: int) -> list[int]:
    """1..budget on small machines; powers of two and the budget itself on large ones."""
    if budget <= 4:
        return list(range(1, budget + 1))
    powers = {2 ** i for i in range(budget.bit_length()) if 2 ** i <= budget}
    return sorted(powers | {budget})


# ------------------------------------------------------------------------------ cache
def cache_dir() -> Path:
    if os.environ.get("BNEXP_CACHE_DIR"):
        return Path(os.environ["BNEXP_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "bnexp"


def read_cache() -> dict[str, dict]:
    """Entries by setting key; {} if the file is missing, unreadable or malformed."""
    path = cache_dir() / CACHE_FILE
    try:
        data = json.loads(path.read_text())
        entries = data["entries"]
        if not isinstance(entries, dict):
            raise ValueError("entries is not an object")
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, KeyError, TypeError) as err:
        log.warning("tuning cache %s is unreadable (%s); ignoring it and measuring again", path, err)
        return {}
    return {key: entry for key, entry in entries.items() if valid_entry(entry)}


def valid_entry(entry) -> bool:
    try:
        return (entry["setting"]["probe_version"] == PROBE_VERSION
                and all(isinstance(ms, (int, float)) for table in entry["timings"].values()
                        for ms in table.values()))
    except (KeyError, TypeError, AttributeError):
        return False


@contextlib.contextmanager
def cache_lock() -> Iterator[bool]:
    """Only one process probes at a time (others wait, then find the timings cached).
    Yields False if the lock could not be had; the caller then goes on without it."""
    folder = cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle = open(folder / ".lock", "a")
    except OSError as err:
        log.warning("tuning cache folder %s is not writable (%s): timings are not kept", folder, err)
        yield False
        return
    with handle:
        deadline = time.monotonic() + LOCK_TIMEOUT
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                if time.monotonic() > deadline:
                    yield False
                    return
                time.sleep(0.2)
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def store(key: str, entry: dict) -> None:
    entries = read_cache()
    entries[key] = entry
    try:
        write_json_atomic(cache_dir() / CACHE_FILE, {"entries": entries})
    except OSError as err:
        log.warning("could not write the tuning cache in %s (%s)", cache_dir(), err)


# ------------------------------------------------------------------------------ probe
def probe(setting: dict, threads: int) -> dict[str, float]:
    """ms per training step of each combination with `threads` OpenMP threads, measured
    in a fresh process ({} if the probe failed)."""
    spec = {key: setting[key] for key in ("bn", "bn_on_dense", "batch_per_device")}
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           mxenv.BUDGET_VAR: str(threads)}
    env.pop(mxenv.DERIVED_MARKER, None)
    try:
        result = subprocess.run([sys.executable, "-m", "bnexp.tuning", "probe", json.dumps(spec)],
                                capture_output=True, text=True, env=env, timeout=PROBE_TIMEOUT)
        timings = json.loads(result.stdout.strip().splitlines()[-1])
        if result.returncode or not timings:
            raise ValueError(result.stderr.strip().splitlines()[-1:] or "no output")
        return {combo: float(ms) for combo, ms in timings.items()}
    except (OSError, ValueError, IndexError, subprocess.TimeoutExpired) as err:
        log.warning("tuning probe with %d thread(s) failed (%s)", threads, err)
        return {}


def probe_main(spec: dict) -> dict[str, float]:
    """In the probe subprocess: time each combination on synthetic data of the real shape."""
    mxenv.import_mxnet_or_exit()
    import mxnet as mx
    import numpy as np
    from mxnet import nd

    from bnexp.config import BNConfig, ModelConfig, PerfConfig, TrainerConfig
    from bnexp.train import build_net, make_trainer, train_step

    batch = int(spec["batch_per_device"])
    rng = np.random.default_rng(0)
    images = nd.array(rng.random((batch, 1, 28, 28), dtype=np.float32))
    labels = nd.array(rng.integers(0, 10, batch).astype(np.float32))
    steps = {}
    for combo in combos(spec["bn"]):
        pool, impl = combo.split("/")
        cfg = Config(bn=BNConfig(spec["bn"]), model=ModelConfig(bn_on_dense=spec["bn_on_dense"]),
                     trainer=TrainerConfig(batch_size=batch), ctx="cpu",
                     perf=PerfConfig(pool=pool, bn_impl=impl))
        net = build_net(cfg, [mx.cpu()])
        trainer = make_trainer(net, 0.01, [mx.cpu()])
        steps[combo] = lambda net=net, trainer=trainer: train_step(net, trainer, images, labels,
                                                                    [mx.cpu()])
    for step in steps.values():
        for _ in range(PROBE_WARMUP):
            step()
    elapsed = {combo: [] for combo in steps}
    for _ in range(PROBE_ROUNDS):
        for combo, step in steps.items():  # interleaved: drift hits every combination alike
            mx.nd.waitall()
            start = time.perf_counter()
            for _ in range(PROBE_STEPS):
                step()
            mx.nd.waitall()
            elapsed[combo].append((time.perf_counter() - start) / PROBE_STEPS * 1000)
    return {combo: round(min(times), 3) for combo, times in elapsed.items()}


# ----------------------------------------------------------------------------- choice
@dataclass
class Choice:
    """The speed settings of a run, where each came from, and the timings behind them."""
    threads: int | None          # None: left as it is (not chosen here)
    pool: str
    bn_impl: str
    source: dict[str, str] = field(default_factory=dict)  # setting -> config|environment|cache|probe|default
    ms_per_step: float | None = None                      # the chosen combination, as measured
    timings: dict[str, dict[str, float]] = field(default_factory=dict)  # threads -> combo -> ms

    def describe(self) -> str:
        """e.g. "threads=2 (measured now) pool=native (cached) [bn_impl: unused]"."""
        said = {"probe": "measured now", "cache": "cached", "config": "set in the config",
                "environment": "OMP_NUM_THREADS", "default": "default", "": "unchanged"}
        parts = []
        for key in ("threads", "pool", "bn_impl"):
            source = self.source.get(key, "")
            if source == "unused":
                continue
            value = getattr(self, key)
            parts.append(f"{key}={value if value is not None else 'unchanged'} "
                         f"({said.get(source, source)})")
        text = " ".join(parts)
        if self.ms_per_step is not None:
            text += f"; {self.ms_per_step:.1f} ms/step when measured"
        return text

    def to_json(self) -> dict:
        return asdict(self)


def fixed_threads(cfg: Config) -> tuple[int | None, str]:
    """A thread count the user fixed (perf.threads, else OMP_NUM_THREADS), and where from."""
    if str(cfg.perf.threads) != "auto":
        return int(cfg.perf.threads), "config"
    if mxenv.USER_THREADS is not None:
        return mxenv.USER_THREADS, "environment"
    return None, ""


def choose(cfg: Config, saved: dict | None = None) -> Choice:
    """The threads, pooling layout and BN formulation for this run (measured if needed)."""
    setting = setting_of(cfg, saved)
    scratch = setting["bn"] == "scratch"
    forced, forced_from = fixed_threads(cfg)
    pools = POOL_LAYOUTS if cfg.perf.pool == "auto" else (cfg.perf.pool,)
    impls = (BN_IMPLS if cfg.perf.bn_impl == "auto" else (cfg.perf.bn_impl,)) if scratch \
        else (DEFAULTS["bn_impl"],)
    # where each setting comes from unless measured: the config, the environment, or nowhere
    source = {"threads": forced_from or "probe",
              "pool": "probe" if len(pools) > 1 else "config",
              "bn_impl": ("probe" if len(impls) > 1 else "config") if scratch else "unused"}
    if setting["device"] == "gpu":  # nothing CPU-specific to choose
        return Choice(forced, pools[0] if len(pools) == 1 else DEFAULTS["pool"],
                      impls[0] if len(impls) == 1 else DEFAULTS["bn_impl"],
                      {k: ("default" if v == "probe" else v) for k, v in source.items()})
    wanted = [f"{p}/{i}" for p in pools for i in impls]
    candidates = [forced] if forced is not None else thread_candidates(mxenv.thread_budget())
    if len(wanted) == 1 and forced is not None:  # nothing to measure
        pool, impl = wanted[0].split("/")
        return Choice(forced, pool, impl, source)
    timings, measured_now = timings_for(setting, candidates, wanted, source)
    options = [(timings[str(t)][c], t, c) for t in candidates for c in wanted
               if c in timings.get(str(t), {})]
    if not options:  # the probe failed: fall back, say so, go on
        return Choice(forced, pools[0] if len(pools) == 1 else DEFAULTS["pool"],
                      impls[0] if len(impls) == 1 else DEFAULTS["bn_impl"],
                      {k: ("default" if v == "probe" else v) for k, v in source.items()})
    ms, threads, combo = min(options)
    pool, impl = combo.split("/")
    if not measured_now:
        source = {k: ("cache" if v == "probe" else v) for k, v in source.items()}
    return Choice(threads, pool, impl, source, ms, {t: dict(v) for t, v in timings.items()})


def timings_for(setting: dict, candidates: list[int], wanted: list[str],
                source: dict[str, str]) -> tuple[dict, bool]:
    """The cached timings of `setting`, with every candidate thread count x wanted
    combination measured now if missing (one process at a time); and whether any was."""
    key = setting_key(setting)

    def cached() -> dict:
        return (read_cache().get(key) or {}).get("timings", {})

    def missing(timings: dict) -> list[int]:
        return [t for t in candidates if not all(c in timings.get(str(t), {}) for c in wanted)]

    timings = cached()
    if not missing(timings):
        return timings, False
    measured_now = False
    with cache_lock() as locked:
        if locked:
            timings = cached()  # another process may have measured while we waited
        todo = missing(timings)
        if todo:
            log.info("tuning: measuring %s for this machine (%s thread(s); once, then cached in %s)",
                     ", ".join(k for k, v in source.items() if v == "probe"),
                     ",".join(map(str, todo)), cache_dir() / CACHE_FILE)
        for threads in todo:
            measured = probe(setting, threads)
            if measured:
                timings[str(threads)] = {**timings.get(str(threads), {}), **measured}
                measured_now = True
        if measured_now and locked:
            store(key, {"setting": setting, "timings": timings,
                        "updated": time.strftime("%Y-%m-%dT%H:%M:%S")})
    return timings, measured_now


def apply(cfg: Config, saved: dict | None = None) -> Choice:
    """Choose, and set the thread count if MXNet is not imported yet (else say it stays)."""
    choice = choose(cfg, saved)
    if choice.threads is not None:
        if not mxenv.mxnet_imported():
            mxenv.set_threads(choice.threads)
        elif choice.threads != mxenv.threads_in_effect():
            log.info("tuning: %d thread(s) would be fastest for this setting, but MXNet is "
                     "already running with %s in this process (a sweep's earlier job chose)",
                     choice.threads, mxenv.threads_in_effect())
    choice.threads = mxenv.threads_in_effect() if mxenv.mxnet_imported() else choice.threads
    return choice


# -------------------------------------------------------------------------------- CLI
def entries_for_this_machine() -> list[dict]:
    here = {**cpu_identity(), "cores": mxenv.available_cores(), "mxnet": mxnet_identity()}
    return [e for e in read_cache().values()
            if all(e["setting"].get(k) == v for k, v in here.items())]


def summaries(entries: list[dict]) -> list[str]:
    """One line per cached setting: the fastest combination and what it was measured at."""
    lines = []
    for entry in sorted(entries, key=lambda e: (e["setting"]["bn"], e["setting"]["batch_per_device"])):
        s = entry["setting"]
        ms, threads, combo = min((ms, int(t), c) for t, table in entry["timings"].items()
                                 for c, ms in table.items())
        pool, impl = combo.split("/")
        lines.append(f"bn={s['bn']} batch/device={s['batch_per_device']}: threads={threads} "
                     f"pool={pool}" + (f" bn_impl={impl}" if s["bn"] == "scratch" else "")
                     + f" ({ms:.1f} ms/step, measured {entry.get('updated', '?')})")
    return lines


def show() -> int:
    """Print the cached choices for this machine."""
    entries = entries_for_this_machine()
    ident = cpu_identity()
    print(f"{cache_dir() / CACHE_FILE}: {len(entries)} setting(s) measured on this machine "
          f"({ident['cpu']}, {mxenv.available_cores()} cores, {mxnet_identity()})")
    for line in summaries(entries):
        print("  " + line)
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["probe"] and len(argv) == 2:
        print(json.dumps(probe_main(json.loads(argv[1]))))
        return 0
    if argv[:1] in (["show"], []):
        return show()
    print("usage: python -m bnexp.tuning [show]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
