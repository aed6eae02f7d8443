"""The `bnexp` console script: the Hydra app (same output as `python -m bnexp.run`), its
subcommands, and Hydra's bash completion run for real in bash (the function that
`bnexp -sc install=bash` installs, called as the shell calls it on <TAB>)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, run_cli

BNEXP = Path(sys.executable).parent / "bnexp"  # installed by `pip install -e .` (make install)
pytestmark = [pytest.mark.slow,  # every test runs the command
              pytest.mark.skipif(not BNEXP.exists(), reason=f"no console script {BNEXP}: "
                                 "reinstall with `make install` (pyproject.toml [project.scripts])")]


def bnexp(*args: str, cwd: Path = REPO, **env) -> subprocess.CompletedProcess:
    return subprocess.run([str(BNEXP), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env={**os.environ, **env})


def complete(line: str, cwd: Path = REPO) -> list[str]:
    """What bash offers for `line` + <TAB>: COMPREPLY of Hydra's installed completion function."""
    script = f'''
        eval "$(bnexp -sc install=bash)"
        COMP_LINE={line!r}; COMP_POINT=${{#COMP_LINE}}
        words=($COMP_LINE); COMP_CWORD=$(( ${{#words[@]}} - 1 ))
        [[ "$COMP_LINE" == *" " ]] && COMP_CWORD=${{#words[@]}}
        hydra_bash_completion
        printf '%s\\n' "${{COMPREPLY[@]}}"
    '''
    env = {**os.environ, "PATH": f"{BNEXP.parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120,
                          env=env, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def test_same_config_as_python_m_bnexp_run(tmp_path):
    """Also from a folder outside the checkout: the configs come with the package."""
    mine = bnexp("--cfg", "job", "bn=gluon", "lr=0.1", cwd=tmp_path)
    theirs = run_cli("--cfg", "job", "bn=gluon", "lr=0.1", cwd=tmp_path)
    assert mine.returncode == 0 and theirs.returncode == 0, mine.stderr + theirs.stderr
    assert mine.stdout == theirs.stdout and "_target_: bnexp.nn.norm.gluon_bn.gluon_bn" in mine.stdout


def test_mistake_is_one_line_through_the_command():
    proc = bnexp("trainer.batch_sze=64")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: trainer.batch_sze=64: no such key. Did you mean trainer.batch_size? "
        "(`--cfg job` lists every key and its value)"]


def test_help_lists_the_subcommands_and_hydra_help():
    proc = bnexp("--help")
    assert proc.returncode == 0, proc.stderr
    for name in ("report", "bench", "doctor", "tuning", "data"):
        assert f"bnexp {name}" in proc.stdout
    assert "== Config ==" in proc.stdout or "Override anything" in proc.stdout  # Hydra's part


def test_subcommands_run_their_module(tmp_path):
    report = bnexp("report", str(tmp_path))  # a folder without runs is an error
    assert report.returncode == 2 and "no runs in" in report.stderr, report.stderr
    tuning = bnexp("tuning", "show")
    assert tuning.returncode == 0 and "measured on this machine" in tuning.stdout, tuning.stderr


@pytest.mark.parametrize("line,offered", [
    ("bnexp bn=gl", ["bn=gluon"]),
    ("bnexp bn=gr", ["bn=group", "bn=group_gluon"]),
    ("bnexp trainer.batch_s", ["trainer.batch_size="]),
    ("bnexp monitor=", ["monitor=activations", "monitor=ics", "monitor=landscape"]),
    ("bnexp --multirun hydra/launcher=jo", ["hydra/launcher=joblib", "hydra/launcher=joblib_2"]),
    ("bnexp rep", ["report", "report.", "report="]),  # the subcommand, and report.targets
])
def test_bash_completion(line, offered):
    assert complete(line) == offered


def test_bash_completion_of_a_subcommand_argument_is_left_to_the_shell(tmp_path):
    """`bnexp report <TAB>`: Hydra's overrides make no sense there; bash's default (file
    names, `complete -o default`) takes over."""
    (tmp_path / "sweep_a").mkdir()
    assert complete("bnexp report swe", cwd=tmp_path) == ["sweep_a"]
