"""How the user started a command, for its usage lines. A module of its own (importing
nothing) so that the subcommands' modules need not import the `bnexp` dispatcher above them."""
from __future__ import annotations

import sys


def invoked_as(module_form: str) -> str:
    """`bnexp report` when started through the `bnexp` dispatcher (bnexp/cli.py sets
    sys.argv[0] so), else `module_form` (e.g. python -m bnexp.report)."""
    return sys.argv[0] if sys.argv[0].startswith("bnexp ") else module_form
