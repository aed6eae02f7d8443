"""The `bnexp` command: the Hydra app itself, plus a few subcommands.

    bnexp bn=gluon lr=0.1                    # one run (= python -m bnexp.run ...)
    bnexp --multirun bn=none,gluon seed=0,1  # a sweep
    bnexp report DIR [--targets 0.7,0.8]     # (re)build a sweep's report
    bnexp bench | doctor | tuning [show] | data {fetch|check [ROOT]}
    eval "$(bnexp -sc install=bash)"         # tab completion of the overrides

Anything that is not a subcommand goes to the Hydra app unchanged, so Hydra's shell
completion works: it asks the program named on the command line (`bnexp -sc
query=bash`) and completes the overrides after the program's name. A subcommand is a
plain word without `=`, which no override is, so the two never collide. The completion
query also offers the subcommand names for the first word, and leaves a subcommand's
arguments to the shell (file names).
"""
from __future__ import annotations

import importlib
import os
import sys

# name -> (module whose main(argv) runs it, one line for --help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "report": ("bnexp.report", "(re)build a sweep's report: bnexp report DIR [--targets 0.7,0.8]"),
    "bench": ("bnexp.bench", "training throughput against a textbook loop and the source loop"),
    "doctor": ("bnexp.doctor", "check the installation: versions, GPUs, dataset, threads"),
    "tuning": ("bnexp.tuning.__main__", "the speed settings measured on this machine"),
    "data": ("bnexp.data", "make Fashion-MNIST available and verify it: bnexp data {fetch|check}"),
}


def help_text() -> str:
    lines = ["bnexp: batch-normalization experiments (Hydra app; overrides below).",
             "subcommands:"]
    lines += [f"  bnexp {name:<8} {summary}" for name, (_, summary) in SUBCOMMANDS.items()]
    return "\n".join(lines) + "\n"


def completion_words() -> list[str] | None:
    """For `bnexp -sc query=bash`: the subcommand names the word being completed could
    start (first word only), or None when a subcommand's arguments are being completed
    (Hydra has nothing to say about those)."""
    line = os.environ.get("COMP_LINE", "")
    point = int(os.environ.get("COMP_POINT", len(line)) or len(line))
    words = line[:point].split(" ")[1:]  # after the program's name; "" = a word not begun
    if len(words) > 1 and words[0] in SUBCOMMANDS:
        return None
    if len(words) == 1 and "=" not in words[0]:
        return [name for name in SUBCOMMANDS if name.startswith(words[0])]
    return []


def main() -> None:
    argv = sys.argv[1:]
    if argv and argv[0] in SUBCOMMANDS:
        module, _ = SUBCOMMANDS[argv[0]]
        sys.argv[0] = f"bnexp {argv[0]}"  # their usage lines say so (bnexp/command_name.py)
        sys.exit(importlib.import_module(module).main(argv[1:]))
    if "-sc" in argv or "--shell-completion" in argv:
        if "query=bash" in argv or "query=zsh" in argv:  # fish's answer has another format
            words = completion_words()
            if words is None:
                return  # the shell completes file names (complete -o default)
            if words:
                print(" ".join(words), end=" ")
    elif argv[:1] in (["--help"], ["-h"]):
        print(help_text())
    from bnexp import run
    run.cli()


if __name__ == "__main__":
    main()
