"""The code and docs stay small and true: no function over 60 lines, no module over 300,
and every repository path a comment or a document names exists."""
from __future__ import annotations

import ast
import io
import re
import subprocess
import tokenize

import pytest

from conftest import REPO

MAX_FUNCTION, MAX_MODULE = 60, 300
# bnexp/nn/norm/scratch.py, conf/bn/, docs/results/convergence.md, tests/test_bn.py ...
PATH = re.compile(r"(?<![\w/.~-])((?:bnexp|conf|docs|tests|scripts|requirements|hydra_plugins|\.ci)"
                  r"/[\w./-]*[\w/])")


def tracked(*suffixes: str) -> list:
    names = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True).stdout.split()
    return [REPO / n for n in names if n.endswith(suffixes) and (REPO / n).is_file()]


def python_files() -> list:
    return [p for p in tracked(".py") if p.relative_to(REPO).parts[0] in ("bnexp", "hydra_plugins", "scripts")]


@pytest.mark.parametrize("path", python_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_small_modules_and_functions(path):
    text = path.read_text()
    assert len(text.splitlines()) <= MAX_MODULE, f"{path.name}: over {MAX_MODULE} lines"
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            assert length <= MAX_FUNCTION, f"{path.name}: {node.name} is {length} lines"


def prose(path) -> list[tuple[int, str]]:
    """(line number, text) of what a file says to its reader: a Python file's comments and
    docstrings (its strings are data), every line of any other file."""
    text = path.read_text(errors="replace")
    if path.suffix != ".py":
        return list(enumerate(text.splitlines(), 1))
    out, previous = [], tokenize.NEWLINE
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        docstring = token.type == tokenize.STRING and previous in (tokenize.NEWLINE, tokenize.INDENT,
                                                                  tokenize.DEDENT, tokenize.NL)
        if token.type == tokenize.COMMENT or docstring:
            out += [(token.start[0] + i, line) for i, line in enumerate(token.string.splitlines())]
        if token.type not in (tokenize.COMMENT, tokenize.NL):
            previous = token.type
    return out


def test_every_path_named_exists():
    missing = []
    for path in tracked(".py", ".md", ".yaml", ".sh", "Makefile", ".toml", ".cc", "run"):
        for number, line in prose(path):
            for found in PATH.findall(line):
                target = found.rstrip("/.")
                if "*" not in target and "<" not in target and not (REPO / target).exists():
                    missing.append(f"{path.relative_to(REPO)}:{number}: {found}")
    assert not missing, "\n".join(missing)
