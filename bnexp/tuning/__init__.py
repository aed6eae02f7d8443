"""Speed settings that depend on the machine, chosen by measuring the machine.

Three settings change how fast bnexp trains, never what it computes:

  threads  OpenMP threads (fixed when MXNet is imported: once per process)
  pool     max-pooling layout: `native` (nn.MaxPool2D) or `folded` (channels
           folded into the batch axis; bnexp/nn/pooling.py)
  bn_impl  the formulation of a normalization that has several (its module's
           `formulations`): bn=scratch's `centered`, `surrogate` or `compiled`
           (bnexp/nn/norm/formulations.py; compiled only where its C++ operator
           builds, bnexp/nn/norm/kernels/), or its readable `reference` by name

Which is fastest differs between CPUs: folded pooling was 3x faster than native on
one AMD EPYC and 1.35x slower on another (AVX-512); 1 thread beat 2 there, 2 beat 1
on a third. So with `perf.<setting>=auto` bnexp measures: a probe times training
steps of the run's own network (its normalization and model options) and batch size -- through the Trainer's
own step (bnexp/training/trainer.py) -- for every layout, interleaved, in one
subprocess per candidate thread count (the count must be set before MXNet is
imported). The timings are cached per machine and setting in
~/.cache/bnexp/tuning.json (or $BNEXP_CACHE_DIR) and reused; each choice is the
fastest measured combination. A corrupt or outdated cache is ignored and rebuilt, a
failed probe falls back to the defaults; neither stops a run.

  machine.py  what the timings depend on (CPU, cores, MXNet build, model, batch)
  cache.py    the cache file and its lock
  probe.py    the measurement, in a subprocess per thread count
  choice.py   the choice for a run, and where each setting came from

    python -m bnexp.tuning show        # what is cached for this machine
"""
from bnexp.tuning.choice import Choice, choose  # noqa: F401
