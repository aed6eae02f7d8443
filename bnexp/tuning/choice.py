"""The speed settings of a run: the thread count, pooling layout and the normalization's
formulation, each fixed by the user, read from the cache, or measured now
(bnexp/tuning/probe.py)."""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field

from bnexp.config import POOL_LAYOUTS, Config, PerfConfig
from bnexp.runtime import mxnet_import
from bnexp.runtime.threads import ThreadPolicy
from bnexp.tuning import cache
from bnexp.tuning.machine import formulations_of, setting_key, setting_of
from bnexp.tuning.probe import Layout, decide, layouts, measure
from bnexp.validate import label

log = logging.getLogger(__name__)


@dataclass
class Choice:
    """The speed settings of a run, where each came from, and the timings behind them."""
    threads: int | None          # None: left as it is (not chosen here)
    pool: str = POOL_LAYOUTS[0]
    bn_impl: str = ""            # the normalization's formulation ("": it has only one)
    source: dict[str, str] = field(default_factory=dict)  # setting -> config|environment|cache|probe|default
    ms_per_step: float | None = None                      # the chosen combination, as measured
    timings: dict[str, dict[str, float]] = field(default_factory=dict)  # threads -> layout key -> ms
    cache_key: str | None = None                          # the cache entry the timings came from

    @property
    def layout(self) -> Layout:
        return Layout(self.pool, self.bn_impl)

    @property
    def formulation(self) -> str:
        """What the normalization is built with (its reference where it has one only)."""
        return self.bn_impl or "reference"

    @classmethod
    def resumed(cls, perf: dict, configured: PerfConfig, policy: ThreadPolicy) -> Choice:
        """The speed settings a resumed run recorded (`perf`, its metrics.json's), but for
        those the resuming command fixes again (perf.*, OMP_NUM_THREADS)."""
        fixed = {"pool": configured.pool != "auto", "bn_impl": configured.bn_impl != "auto"}
        source = {"threads": policy.fixed_from or "resumed",
                  **{key: "config" if fixed[key] else "resumed" for key in fixed}}
        if not (perf.get("bn_impl") or fixed["bn_impl"]):
            source["bn_impl"] = "unused"   # the normalization has one formulation
        return cls(policy.fixed if policy.fixed is not None else perf.get("threads"),
                   configured.pool if fixed["pool"] else perf.get("pool", POOL_LAYOUTS[0]),
                   configured.bn_impl if fixed["bn_impl"] else perf.get("bn_impl", ""), source)

    def describe(self) -> str:
        """e.g. "threads=2 (measured now) pool=native (cached)" (bn_impl where there are several)."""
        said = {"probe": "measured now", "cache": "cached", "config": "set in the config",
                "resumed": "as the resumed run had it",
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


def choose(cfg: Config, policy: ThreadPolicy) -> Choice:
    """The threads, pooling layout and formulation for this run (measured if needed)."""
    setting = setting_of(cfg)
    formulations = formulations_of(cfg.bn)
    offered = formulations(setting["device"], cfg.perf.bn_impl) if formulations else ()
    wanted = layouts(offered, cfg.perf.pool)
    # where each setting comes from unless measured: the config, the environment, or nowhere
    source = {"threads": policy.fixed_from or "probe",
              "pool": "probe" if cfg.perf.pool == "auto" else "config",
              "bn_impl": ("probe" if cfg.perf.bn_impl == "auto" else "config")
              if formulations else "unused"}

    def unmeasured() -> Choice:  # the user's values, else the defaults
        return Choice(policy.default() if setting["device"] == "cpu" else policy.fixed,
                      *wanted[0], {k: ("default" if v == "probe" else v) for k, v in source.items()})

    if setting["device"] == "gpu":  # nothing CPU-specific to choose
        return unmeasured()
    candidates = policy.candidates()
    if len(wanted) == 1 and len(candidates) == 1:  # nothing to measure
        return Choice(candidates[0], *wanted[0],
                      {k: ("default" if v == "probe" else v) for k, v in source.items()})
    timings, measured_now = timings_for(setting, candidates, wanted, source, cfg.perf.probe_seconds)
    usable = {t: {layout.key: timings[str(t)][layout.key] for layout in wanted
                  if layout.key in timings.get(str(t), {})} for t in candidates}
    usable = {t: table for t, table in usable.items() if table}
    if not usable:  # the probe failed: fall back, say so, go on
        return unmeasured()
    threads, key = decide(usable)
    layout, ms = Layout.from_key(key), usable[threads][key]
    if not measured_now:
        source = {k: ("cache" if v == "probe" else v) for k, v in source.items()}
    return Choice(threads, *layout, source, ms, {t: dict(v) for t, v in timings.items()},
                  setting_key(setting))


def import_with(choice: Choice, cpu_temp_copies: int | None = None) -> str | None:
    """Import MXNet with the chosen thread count (bnexp.runtime.mxnet_import); None if that
    worked, else why not. In a sweep's later jobs MXNet is already running with the first
    job's count, which stays (and is what `choice` then records)."""
    problem = mxnet_import.import_mxnet(choice.threads, cpu_temp_copies)
    in_effect = mxnet_import.threads_in_effect()
    if not problem and choice.threads is not None and in_effect not in (None, choice.threads):
        log.info("tuning: %d thread(s) would be fastest for this setting, but MXNet is already "
                 "running with %d in this process (a sweep's earlier job chose)",
                 choice.threads, in_effect)
        choice.threads = in_effect
    return problem


def timings_for(setting: dict, candidates: list[int], wanted: list[Layout],
                source: dict[str, str], seconds: float) -> tuple[dict, bool]:
    """The cached timings of `setting`, with every candidate thread count x wanted layout
    measured now if missing (one process at a time); and whether any was."""
    key = setting_key(setting)

    def cached() -> dict:
        return (cache.read_cache().get(key) or {}).get("timings", {})

    def missing(timings: dict) -> list[int]:
        return [t for t in candidates
                if not all(layout.key in timings.get(str(t), {}) for layout in wanted)]

    timings = cached()
    if not missing(timings) or failed_lately(key):
        return timings, False
    measured_now = False
    with cache.cache_lock() as locked:
        if locked:
            timings = cached()  # another process may have measured while we waited
        todo = missing(timings)
        if todo and locked and failed_lately(key):  # ...or failed to
            return timings, False
        if todo:
            log.info("tuning: measuring %s for this machine (%s thread(s); once, then cached in %s)",
                     ", ".join(k for k, v in source.items() if v == "probe"),
                     ",".join(map(str, todo)), cache.cache_dir() / cache.CACHE_FILE)
        measured = measure(setting, todo, wanted, seconds) if todo else {}
        for threads, table in measured.items():
            timings[threads] = {**timings.get(threads, {}), **table}
            measured_now = True
        if measured_now and locked:
            cache.store(key, {"setting": setting, "timings": timings,
                              "updated": time.strftime("%Y-%m-%dT%H:%M:%S")})
        elif todo and locked:
            cache.remember_failure(key)
    return timings, measured_now


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
        s = entry["setting"]
        threads, key = decide({int(t): table for t, table in entry["timings"].items()})
        ms, layout = entry["timings"][str(threads)][key], Layout.from_key(key)
        lines.append(f"bn {label('bn', s['bn'])}, model {label('model', s['model'])}, batch/device "
                     f"{s['batch_per_device']}: threads={threads} pool={layout.pool}"
                     + (f" bn_impl={layout.formulation}" if layout.formulation else "")
                     + f" ({ms:.1f} ms/step, measured {entry.get('updated', '?')})")
    return lines

