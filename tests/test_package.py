"""bnexp as a package: the wheel carries the configs and the LICENSE, installs into a fresh
venv, and its `bnexp` command runs from a folder that is not the checkout."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import REPO


def run(*cmd, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kwargs)
    assert done.returncode == 0, f"{cmd}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel built from the checkout (pip's isolated build with setuptools, ~10 s)."""
    out = tmp_path_factory.mktemp("dist")
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", out, REPO, timeout=600)
    (found,) = out.glob("bnexp-*.whl")
    return found


@pytest.mark.slow
def test_wheel_holds_the_configs_and_license(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    configs = {n for n in names if n.startswith("bnexp/conf/") and n.endswith(".yaml")}
    in_checkout = {"bnexp/" + str(p.relative_to(REPO)) for p in (REPO / "conf").rglob("*.yaml")}
    assert configs == in_checkout  # the checkout's conf/ travels as the package bnexp.conf
    code = {n for n in names if n.endswith((".py", ".cc")) and n.startswith(("bnexp/", "hydra_plugins/"))}
    in_checkout = {str(p.relative_to(REPO)) for top in ("bnexp", "hydra_plugins")
                   for p in (REPO / top).rglob("*") if p.suffix in (".py", ".cc")}
    assert code == in_checkout
    assert any(n.endswith("licenses/LICENSE") or n.endswith("/LICENSE") for n in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "bnexp = bnexp.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


@pytest.mark.slow
def test_wheel_installs_and_trains_from_another_folder(wheel, tmp_path, fashion_root):
    """A fresh venv, the wheel with its [cpu] extra at the pinned versions (uv, from its cache
    after the first time: ~15 s; the first run downloads ~150 MB), then `bnexp` from an
    empty folder: the config, and 2 training steps on the real data."""
    uv = shutil.which("uv", path=str(Path(sys.executable).parent))
    if uv is None:
        pytest.skip("uv is not installed (pyproject.toml [dev]; `make install` installs it)")
    venv = tmp_path / "venv"
    run(uv, "venv", "-q", "--python", sys.executable, venv, timeout=300)
    python = venv / "bin" / "python"
    run(uv, "pip", "install", "-q", "--python", python, f"bnexp[cpu] @ {wheel.as_uri()}",
        "-c", REPO / "requirements" / "cpu.txt", timeout=900)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    bnexp = venv / "bin" / "bnexp"
    where = run(python, "-c", "import bnexp; print(bnexp.__file__)", cwd=work, env=env).stdout
    assert str(venv) in where  # the installed package, not the checkout

    cfg = run(bnexp, "--cfg", "job", "bn=gluon", cwd=work, env=env, timeout=120).stdout
    assert "_target_: bnexp.nn.norm.gluon_bn.gluon_bn" in cfg and "batch_size: 128" in cfg

    trained = run(bnexp, "trainer.max_steps=2", "trainer.eval_every_steps=2", "data.test_subset=256",
                  "trainer.progress=log", "perf.threads=1", f"data.root={fashion_root}",
                  "hydra.run.dir=run", cwd=work, env=env, timeout=300)
    assert (work / "run" / "metrics.json").exists(), trained.stderr[-2000:]
    assert '"status": "completed"' in (work / "run" / "metrics.json").read_text()
