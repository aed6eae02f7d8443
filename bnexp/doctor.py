"""`python -m bnexp.doctor` (or `make doctor`): is this installation able to train?

One line per item, with a verdict: `ok`, `warn` (works, but worth knowing) or
`FAIL` (something required is missing). The exit status is 1 if any line
failed, else 0. Required: an importable MXNet (exactly one build), numpy 1.x, hydra-core / omegaconf / tensorboardX, and a verified Fashion-MNIST.
"""
from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
from dataclasses import dataclass
from typing import Callable, Iterator

from bnexp.runtime import cuda, mxnet_import
from bnexp.runtime import gpu as gpuinfo
from bnexp.runtime.threads import ThreadPolicy, available_cores

OK, WARN, FAIL = "ok", "warn", "FAIL"
SUPPORTED_PYTHONS = ((3, 11), (3, 12), (3, 13))  # the Makefile's range


@dataclass
class Check:
    item: str
    verdict: str   # ok | warn | FAIL
    detail: str

    def line(self) -> str:
        return f"[{self.verdict:>4}] {self.item:<18} {self.detail}"


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def check_python() -> Iterator[Check]:
    version = platform.python_version()
    good = sys.version_info[:2] in SUPPORTED_PYTHONS
    supported = ", ".join("%d.%d" % v for v in SUPPORTED_PYTHONS)
    yield Check("python", OK if good else WARN,
                f"{version} ({sys.executable})" + ("" if good else f"; bnexp is tested on Python {supported}"))


def check_packages() -> Iterator[Check]:
    numpy = _version("numpy")
    if numpy is None:
        yield Check("numpy", FAIL, "not installed; run `make install`")
    else:
        major = int(numpy.split(".")[0])
        yield (Check("numpy", OK, numpy) if major < 2 else
               Check("numpy", FAIL, f"{numpy}: mxnet 1.9.1 needs numpy 1.x (it reads np.PZERO, "
                                    f"gone in numpy 2); run `make install`"))
    for name, required in (("hydra-core", True), ("omegaconf", True), ("tensorboardX", True),
                           ("tensorboard", False)):
        version = _version(name)
        if version is not None:
            yield Check(name, OK, version)
        else:
            yield Check(name, FAIL if required else WARN,
                        "not installed; run `make install`"
                        + ("" if required else ' (needed only to view the curves: '
                                               'pip install "bnexp[tensorboard]")'))


def check_mxnet() -> Iterator[Check]:
    build = cuda.mxnet_build()
    versions = {d: _version(d) for d in (cuda.CPU_DISTRIBUTION, cuda.GPU_DISTRIBUTION)}
    if build == "none":
        yield Check("mxnet build", FAIL, 'no MXNet installed; pip install "bnexp[cpu]" (or '
                                         '"bnexp[gpu]"), or `make install` in a checkout')
        return
    if build == "both":
        yield Check("mxnet build", FAIL, "both mxnet and mxnet-cu112 are installed; they overwrite "
                                         "each other: run `make install GPU=0` or `GPU=1`")
    else:
        dist = cuda.GPU_DISTRIBUTION if build == "gpu" else cuda.CPU_DISTRIBUTION
        yield Check("mxnet build", OK, f"{dist}=={versions[dist]} ({build.upper()} build)")
    policy = ThreadPolicy.resolve()
    problem = mxnet_import.import_mxnet(policy.default())
    if problem:  # a missing libcuda/CUDA library, ...
        hint = ""
        if build == "gpu":
            hint = " (the GPU build needs the NVIDIA driver and the CUDA wheels, see below)"
        yield Check("mxnet import", FAIL, f"{problem}{hint}")
        return
    import mxnet as mx
    features = mx.runtime.Features()
    shown = " ".join(f"{name}={'on' if features.is_enabled(name) else 'off'}"
                     for name in ("CUDA", "CUDNN", "NCCL", "MKLDNN", "OPENMP"))
    yield Check("mxnet import", OK, f"mxnet {mx.__version__} from {os.path.dirname(mx.__file__)}; {shown}")


def check_gpus() -> Iterator[Check]:
    gpus, summary = gpuinfo.query()
    build = cuda.mxnet_build()
    if not gpus:
        verdict = WARN if build == "gpu" else OK
        yield Check("nvidia driver", verdict, summary + ("; the GPU build of MXNet cannot work without "
                                                         "one: `make install GPU=0`" if verdict == WARN
                                                         else "; training runs on the CPU"))
        return
    driver = cuda.CUDA.driver or gpuinfo.driver_cuda_version()
    supports = f", supports CUDA {driver[0]}.{driver[1]}" if driver else ""
    old = driver is not None and driver < cuda.FUSION_MIN_DRIVER
    yield Check("nvidia driver", WARN if old else OK,
                f"{gpus[0].driver}{supports}" + ("; older than CUDA 11.8 (R520): MXNet runs with "
                                             "MXNET_USE_FUSION=0" if old else ""))
    for g in gpus:
        ok, why = gpuinfo.supported(g.compute_cap)
        if not ok:
            yield Check(f"gpu {g.index}", WARN, f"{g.name}, compute capability {g.cc}: NOT usable: {why}")
        elif build != "gpu":
            yield Check(f"gpu {g.index}", WARN, f"{g.name}, compute capability {g.cc}: usable, but the "
                                                f"CPU build of MXNet is installed: `make install GPU=1`")
        else:
            yield Check(f"gpu {g.index}", OK, f"{g.name}, compute capability {g.cc}: usable ({why})")


def check_cuda_libraries() -> Iterator[Check]:
    setup = cuda.setup_cuda()
    if setup.libraries is None:
        yield Check("cuda libraries", OK, "not needed (CPU build of MXNet)")
        return
    loaded = [lib for lib in setup.libraries if lib.loaded]
    folders = sorted({str(lib.path.parent.parent.parent) for lib in loaded})
    missing = setup.missing
    optional = [lib for lib in setup.libraries if not lib.loaded and lib not in missing]
    detail = f"{len(loaded)}/{len(setup.libraries)} loaded from {', '.join(folders) or '(nowhere)'}"
    if missing:
        detail += "; missing: " + ", ".join(f"{lib.name} ({lib.error})" for lib in missing)
        detail += "; run `make install GPU=1`"
    elif optional:
        detail += "; not loaded (optional): " + ", ".join(lib.name for lib in optional)
    yield Check("cuda libraries", FAIL if missing else (WARN if optional else OK), detail)
    for lib in setup.libraries:
        if lib.loaded:
            yield Check("  " + lib.name, OK, str(lib.path))
    if setup.driver_error:
        yield Check("libcuda.so.1", FAIL, setup.driver_error)
    for note in setup.notes or []:
        yield Check("cuda note", WARN, note)


def check_devices() -> Iterator[Check]:
    """What ctx=auto would train on (needs an importable MXNet)."""
    try:
        import mxnet as mx
        from bnexp.runtime import context
    except Exception:
        return  # already reported by check_mxnet
    count = mx.context.num_gpus()
    visible = context.visible_gpus()
    seen = ", ".join(g.describe() for g in visible) or "none"
    yield Check("mxnet gpus", OK, f"{count} ({seen})")
    try:
        import logging
        logging.getLogger("bnexp.context").disabled = True  # the verdict says it already
        chosen = context.resolve("auto")[0]
    finally:
        logging.getLogger("bnexp.context").disabled = False
    reason = "" if chosen.device_type == "gpu" else f" ({context.why_no_gpu()})" if not visible else \
        " (no GPU this MXNet can run)"
    yield Check("ctx=auto", OK, f"trains on {chosen}{reason}")


def check_dataset(root: str | None = None) -> Iterator[Check]:
    """Find and verify Fashion-MNIST (every byte, as a training run does)."""
    from bnexp import data
    from bnexp.errors import DataError
    try:
        dataset = data.load(root)
    except DataError as err:
        yield Check("dataset", FAIL, f"{err}")
        return
    yield Check("dataset", OK, f"Fashion-MNIST verified in {dataset.root} "
                               f"({len(dataset.train.labels)} train / {len(dataset.test.labels)} test)")


def check_threads() -> Iterator[Check]:
    policy = ThreadPolicy.resolve()
    cores, total = available_cores(), os.cpu_count() or 1
    chosen = ("fixed by OMP_NUM_THREADS" if policy.fixed is not None
              else "bnexp's tuning measures per setting and chooses per run")
    detail = (f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '')} ({chosen}); "
              f"{policy.describe()} of {cores} usable core(s) of {total}")
    extra = {k: v for k, v in os.environ.items() if k.startswith("MXNET_")}
    if extra:
        detail += "; " + " ".join(f"{k}={v}" for k, v in sorted(extra.items()))
    verdict = OK
    if policy.fixed is not None and policy.fixed > cores:
        verdict, detail = WARN, detail + "; more threads than usable cores slows training"
    yield Check("threads", verdict, detail)


def check_tuning() -> Iterator[Check]:
    """The speed settings measured on this machine (bnexp/tuning/), if any yet."""
    from bnexp.tuning import cache, choice
    entries = cache.entries_for_this_machine()
    if not entries:
        yield Check("speed settings", OK, "none measured on this machine yet: the first run of "
                                          f"each setting measures them ({cache.cache_dir()})")
        return
    for line in choice.summaries(entries):
        yield Check("speed settings", OK, line)


def check_kernels() -> Iterator[Check]:
    """bn=scratch's compiled formulation (bnexp/nn/norm/kernels/): built for this CPU, or why not."""
    from bnexp.nn.norm import kernels
    reason = kernels.unavailable_reason()
    yield (Check("compiled BN", OK, f"built for this CPU: {kernels.library()}") if reason is None
           else Check("compiled BN", WARN, f"unavailable, bn=scratch uses its other formulations: "
                                          f"{reason}"))


CHECKS: tuple[Callable[[], Iterator[Check]], ...] = (
    check_python, check_packages, check_mxnet, check_gpus, check_cuda_libraries, check_devices,
    check_dataset, check_threads, check_kernels, check_tuning)


def run_checks() -> list[Check]:
    results = []
    for check in CHECKS:
        try:
            results.extend(check())
        except Exception as err:  # a check that crashes is itself a finding
            results.append(Check(check.__name__.removeprefix("check_"), FAIL,
                                 f"the check crashed: {type(err).__name__}: {err}"))
    return results


def main(argv: list[str] | None = None) -> int:
    results = run_checks()
    for result in results:
        print(result.line(), flush=True)
    failed = [r for r in results if r.verdict == FAIL]
    warned = [r for r in results if r.verdict == WARN]
    if failed:
        print(f"doctor: {len(failed)} problem(s): " + ", ".join(r.item.strip() for r in failed))
        return 1
    print("doctor: ready to train" + (f" ({len(warned)} warning(s))" if warned else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
