"""`python -m bnexp.tuning show`: the speed settings measured on this machine.
(`... probe SPEC` is a measuring worker, started by bnexp/tuning/probe.py.)"""
from __future__ import annotations

import json
import sys

from bnexp.command_name import invoked_as
from bnexp.runtime.threads import ThreadPolicy, available_cores
from bnexp.tuning import cache
from bnexp.tuning.choice import summaries
from bnexp.tuning.machine import cpu_identity, mxnet_identity


def show() -> int:
    """Print the cached choices for this machine."""
    entries = cache.entries_for_this_machine()
    ident = cpu_identity()
    print(f"{cache.cache_dir() / cache.CACHE_FILE}: {len(entries)} setting(s) measured on this "
          f"machine ({ident['cpu']}, {available_cores()} cores, {mxnet_identity()})")
    for line in summaries(entries):
        print("  " + line)
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["probe"] and len(argv) == 2:
        from bnexp.tuning.probe import serve
        policy = ThreadPolicy.resolve()  # the parent fixed the count in this process's environment
        serve(json.loads(argv[1]), policy.default())
        return 0
    if argv[:1] in (["show"], []):
        return show()
    print(f"usage: {invoked_as('python -m bnexp.tuning')} [show]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
