"""The speed settings of a run -- OpenMP threads, MXNet's engine, the pooling layout and the
normalization's formulation -- each fixed by the user, read from the cache, or measured now
(bnexp/tuning/probe.py), and only where the run is long enough to earn the measurement."""
from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass, field

from bnexp.config import POOL_LAYOUTS, Config, PerfConfig, run_steps
from bnexp.runtime import mxnet_import
from bnexp.runtime.threads import ENGINE_VAR, ENGINES, ThreadPolicy, available_cores
from bnexp.tuning import cache
from bnexp.tuning.machine import formulations_of, setting_key, setting_of
from bnexp.tuning.probe import SHARE, Option, decide, layouts, measure, races_processes
from bnexp.validate import label

log = logging.getLogger(__name__)

SETTINGS = ("threads", "engine", "pool", "bn_impl")
# What a probe costs before it measures anything: starting a worker (importing MXNet,
# building a network), in CPU seconds; and what a training step is assumed to cost before
# this machine has measured one: a fast CPU's LeNet step, so that a run is never thought
# longer than it is (a probe skipped is cheap, one that outlasts its run is not).
WORKER_START_SECONDS = 3.0
PRIOR_MS_PER_IMAGE = 0.1


@dataclass
class Choice:
    """The speed settings of a run, where each came from, and the timings behind them."""
    threads: int | None = None   # None: left as it is (not chosen here)
    engine: str | None = None    # a name of bnexp.runtime.threads.ENGINES; None: MXNet's default
    pool: str = POOL_LAYOUTS[0]
    bn_impl: str = ""            # the normalization's formulation ("": it has only one)
    source: dict[str, str] = field(default_factory=dict)  # setting -> config|environment|cache|probe|default|resumed
    ms_per_step: float | None = None                      # the chosen option, as measured
    timings: dict[str, float] = field(default_factory=dict)  # option key -> ms per step
    cache_key: str | None = None                          # the cache entry the timings came from

    @property
    def formulation(self) -> str:
        """What the normalization is built with (its reference where it has one only)."""
        return self.bn_impl or "reference"

    @classmethod
    def resumed(cls, perf: dict, configured: PerfConfig, policy: ThreadPolicy) -> Choice:
        """The speed settings a resumed run recorded (`perf`, its metrics.json's), but for
        those the resuming command fixes again (perf.*, OMP_NUM_THREADS)."""
        fixed = {"engine": configured.engine != "auto", "pool": configured.pool != "auto",
                 "bn_impl": configured.bn_impl != "auto"}
        source = {"threads": policy.fixed_from or "resumed",
                  **{key: "config" if fixed[key] else "resumed" for key in fixed}}
        if not (perf.get("bn_impl") or fixed["bn_impl"]):
            source["bn_impl"] = "unused"   # the normalization has one formulation
        values = {key: getattr(configured, key) if fixed[key] else perf.get(key) for key in fixed}
        return cls(policy.fixed if policy.fixed is not None else perf.get("threads"),
                   values["engine"], values["pool"] or POOL_LAYOUTS[0], values["bn_impl"] or "", source)

    def describe(self) -> str:
        """e.g. "threads=2 (measured now) engine=naive (measured now) pool=native (cached)"."""
        said = {"probe": "measured now", "cache": "cached", "config": "set in the config",
                "resumed": "as the resumed run had it", "environment": "from the environment",
                "default": "default", "": "unchanged"}
        parts = [f"{key}={getattr(self, key) if getattr(self, key) is not None else 'unchanged'} "
                 f"({said.get(self.source.get(key, ''), self.source.get(key))})"
                 for key in SETTINGS if self.source.get(key) != "unused"]
        text = " ".join(parts)
        if self.ms_per_step is not None:
            text += f"; {self.ms_per_step:.1f} ms/step when measured"
        return text

    def to_json(self) -> dict:
        return asdict(self)


def engines(cfg: Config, device: str, devices: int) -> tuple[list[str], str]:
    """The engines to choose among, and where that comes from (docs/speed.md). The naive
    engine runs every operation in the calling thread, synchronously: never chosen for GPUs
    (it would wait for each kernel). On several CPU devices it is the only one: there the
    threaded engine ran gluon's BatchNorm hybridized with other moving statistics than the
    same network op by op (stale updates; tests/test_multidevice.py), the naive one with
    the same."""
    if cfg.perf.engine != "auto":
        return [cfg.perf.engine], "config"
    users = {value: name for name, value in ENGINES.items()}.get(os.environ.get(ENGINE_VAR, ""))
    if users:
        return [users], "environment"
    if device == "gpu":
        return ["threaded"], "default"
    if devices > 1:
        return ["naive"], "default"
    return ["naive", "threaded"], "probe"


def choose(cfg: Config, policy: ThreadPolicy) -> Choice:
    """The threads, engine, pooling layout and formulation for this run (measured if needed
    and worth it)."""
    setting = setting_of(cfg)
    formulations = formulations_of(cfg.bn)
    wanted = layouts(formulations(setting["device"], cfg.perf.bn_impl) if formulations else (),
                     cfg.perf.pool)
    candidates, engine_source = engines(cfg, setting["device"], setting["devices"])
    source = {"threads": policy.fixed_from or "probe", "engine": engine_source,
              "pool": "probe" if cfg.perf.pool == "auto" else "config",
              "bn_impl": ("probe" if cfg.perf.bn_impl == "auto" else "config")
              if formulations else "unused"}
    cpu = setting["device"] == "cpu"
    processes = [(t, e) for t in policy.candidates() for e in candidates] if cpu else []
    if len(processes) * len(wanted) <= 1:  # nothing to measure
        return default_choice(policy, candidates, wanted, source, cpu)
    steps = run_steps(cfg)
    reason = too_short(setting, processes, wanted, cfg.perf.probe_seconds, steps,
                       cfg.trainer.log_every_steps)
    if reason:
        log.info("tuning: %s; default speed settings (a longer run measures them)", reason)
        return default_choice(policy, candidates, wanted, source, cpu)
    timings, measured_now = timings_for(setting, processes, wanted, cfg.perf.probe_seconds, steps)
    usable = {key: ms for key, ms in timings.items()
              if (Option.from_key(key).threads, Option.from_key(key).engine) in processes
              and Option.from_key(key).layout in {f"{p}/{f}" for p, f in wanted}}
    if not usable:  # the probe failed: fall back, go on
        return default_choice(policy, candidates, wanted, source, cpu)
    best = decide(usable)
    if not measured_now:
        source = {k: ("cache" if v == "probe" else v) for k, v in source.items()}
    return Choice(best.threads, best.engine, best.pool, best.formulation, source,
                  usable[best.key], dict(timings), setting_key(setting))


def default_choice(policy: ThreadPolicy, engines_: list[str], wanted: list[tuple[str, str]],
                   source: dict[str, str], cpu: bool) -> Choice:
    """Without a measurement: the user's values, else the defaults -- every thread the
    budget allows, the first engine (naive on one CPU device), the first layout (native
    pooling, the formulation its module lists first: compiled where it builds)."""
    pool, formulation = wanted[0]
    return Choice(policy.default() if cpu else policy.fixed, engines_[0], pool, formulation,
                  {k: ("default" if v == "probe" else v) for k, v in source.items()})


def too_short(setting: dict, processes: list, wanted: list, seconds: float, steps: int,
              chunk: int) -> str | None:
    """Why this run cannot earn a probe, or None: the probe's least cost (starting its
    workers, a warm-up and a counted block of every option it times, a block being whole
    chunks of `chunk` steps) against SHARE of the run's expected length (its steps at the
    fastest step this machine measured or trained for this model and batch, else at
    PRIOR_MS_PER_IMAGE)."""
    measured = cache.fastest_step(setting)
    ms = measured or PRIOR_MS_PER_IMAGE * setting["batch_per_device"]
    layout_options = sum(n for n in (len({layout[i] for layout in wanted}) for i in (0, 1)) if n > 1)
    options = races_processes(processes, wanted) * len(processes) + layout_options
    least = (len(processes) * WORKER_START_SECONDS / available_cores()
             + 2 * options * max(seconds, chunk * ms / 1000))
    expected = steps * ms / 1000
    if least <= SHARE * expected:
        return None
    length = (f"about {expected:.0f} s at the {ms:.1f} ms per step measured here" if measured else
              f"at least {expected:.0f} s: nothing of this model and batch measured here yet, "
              f"assumed {PRIOR_MS_PER_IMAGE} ms per image as on a fast CPU; the run measures it")
    return (f"a run of {steps} steps ({length}) cannot earn a speed probe "
            f"(at least {least:.0f} s: more than {SHARE:.0%} of it)")


def import_with(choice: Choice, cpu_temp_copies: int | None = None) -> str | None:
    """Import MXNet with the chosen thread count and engine (bnexp.runtime.mxnet_import); None
    if that worked, else why not. In a sweep's later jobs MXNet is already running with the
    first job's settings, which stay (and are what `choice` then records)."""
    problem = mxnet_import.import_mxnet(choice.threads, cpu_temp_copies, choice.engine)
    in_effect = (mxnet_import.threads_in_effect(), mxnet_import.engine_in_effect())
    if not problem and (choice.threads, choice.engine) != in_effect and choice.threads is not None:
        log.info("tuning: threads=%s engine=%s would be fastest for this setting, but MXNet is "
                 "already running with threads=%s engine=%s in this process (a sweep's earlier "
                 "job chose)", choice.threads, choice.engine, *in_effect)
        choice.threads, choice.engine = in_effect
    return problem


def timings_for(setting: dict, processes: list[tuple[int, str]], wanted: list[tuple[str, str]],
                seconds: float, steps: int) -> tuple[dict[str, float], bool]:
    """The cached timings of `setting`, measured now if it has none (one process at a time,
    under the cache's lock), and whether they were."""
    key = setting_key(setting)
    timings = cache.timings(key)
    if covers(timings, processes, wanted) or failed_lately(key):
        return timings, False
    with cache.cache_lock() as locked:
        timings = cache.timings(key) if locked else {}  # another process may have measured
        if covers(timings, processes, wanted) or (locked and failed_lately(key)):
            return timings, False
        log.info("tuning: measuring the speed settings for this machine (threads x engine %s, "
                 "then %d layout(s); at most %.0f%% of the run; once, then cached in %s)",
                 ",".join(f"{t}x{e}" for t, e in processes), len(wanted), SHARE * 100,
                 cache.cache_dir() / cache.CACHE_FILE)
        load = os.getloadavg()[0]
        measured = measure(setting, processes, wanted, seconds, steps)
        timings = {**timings, **measured} if measured else {}
        if timings and locked:
            cache.store(key, {"setting": setting, "timings": timings, "load": round(load, 2),
                              "updated": time.strftime("%Y-%m-%dT%H:%M:%S")})
        elif locked:
            cache.remember_failure(key)
        if timings and load > available_cores() / 2:
            log.warning("tuning: measured while the machine was busy (load average %.1f on %d "
                        "cores): the choice may be off; the next run on a quieter machine "
                        "measures again", load, available_cores())
    return timings, bool(timings)


def covers(timings: dict[str, float], processes: list[tuple[int, str]],
           wanted: list[tuple[str, str]]) -> bool:
    """Whether cached timings answer this run's question: every process it may choose was
    timed with the first layout, and every formulation and pooling layout somewhere (an
    entry measured for a fixed thread count does not say which count is fastest)."""
    options = [Option.from_key(key) for key in timings]
    timed = {(o.threads, o.engine) for o in options if (o.pool, o.formulation) == wanted[0]}
    return (set(processes) <= timed and {f for _, f in wanted} <= {o.formulation for o in options}
            and {p for p, _ in wanted} <= {o.pool for o in options})


def failed_lately(key: str) -> bool:
    """Whether probing `key` failed within cache.FAILED_PROBE_SECONDS (then not again yet)."""
    ago = cache.recent_failure(key)
    if ago is not None:
        log.info("tuning: the probe for this setting failed %.0f min ago; the defaults until it "
                 "is retried in %.0f min (or delete %s to retry now)", ago / 60,
                 (cache.FAILED_PROBE_SECONDS - ago) / 60, cache.cache_dir() / cache.CACHE_FILE)
    return ago is not None


def summaries(entries: list[dict]) -> list[str]:
    """One line per cached setting: what it chooses and how fast that was measured."""
    lines = []
    for entry in sorted(entries, key=lambda e: (str(e["setting"]["bn"]), e["setting"]["batch_per_device"])):
        s, best = entry["setting"], decide(entry["timings"])
        lines.append(f"bn {label('bn', s['bn'])}, model {label('model', s['model'])}, batch/device "
                     f"{s['batch_per_device']}: threads={best.threads} engine={best.engine} "
                     f"pool={best.pool}" + (f" bn_impl={best.formulation}" if best.formulation else "")
                     + f" ({entry['timings'][best.key]:.1f} ms/step, measured "
                     f"{entry.get('updated', '?')}, load {entry.get('load', '?')})")
    return lines
