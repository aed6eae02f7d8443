"""`python -m bnexp.bench.worker '<spec>'`: one benchmark process with a fixed OpenMP
thread count (bnexp/bench/compare.py starts one per count). It builds every loop of
`spec["variants"]` once, prints `{"ready": true}`, then answers each request line
"<variant> <warmup> <steps>" with one block's images/s and ms per step."""
from __future__ import annotations

import json
import math
import sys


def serve(spec: dict) -> None:
    from bnexp.runtime import mxnet_import
    from bnexp.runtime.threads import ThreadPolicy
    threads = ThreadPolicy.resolve().default()   # child_env fixed it, and the engine
    mxnet_import.import_mxnet_or_exit(threads)

    from bnexp.bench.measure import make_runners, timed_block
    from bnexp.runtime import context

    ctx = context.resolve(spec["ctx"])[0]
    runners = make_runners(spec["variants"], spec["batch_size"], ctx,
                           {v: tuple(layout) for v, layout in spec["layouts"].items()},
                           spec.get("data_root"), spec.get("source_workers", 0), threads)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        variant, warmup, steps = line.split()
        runner = runners[variant]
        images_per_sec, ms = timed_block(runner, int(steps), int(warmup))
        print(json.dumps({"images_per_sec": images_per_sec, "ms_per_step": ms,
                          "loss_finite": math.isfinite(runner.last_loss)}), flush=True)


if __name__ == "__main__":
    serve(json.loads(sys.argv[1]))
