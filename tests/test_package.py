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


def test_every_pin_of_the_locks_carries_a_hash():
    """`make install` installs with --require-hashes: a pin without its sha256 would stop
    it, and a lock without hashes would not protect anything."""
    import re
    for lock in ("build.txt", "cpu.txt", "gpu.txt"):
        text = (REPO / "requirements" / lock).read_text()
        entries = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 2)[2].strip())
        assert len(entries) >= 3, lock
        for entry in entries:
            assert "==" in entry.split()[0] and "--hash=sha256:" in entry, f"{lock}: {entry[:80]}"
    makefile = (REPO / "Makefile").read_text()
    assert "PIP_INSTALL = $(PY) -m pip install -q --require-hashes --no-build-isolation" in makefile


def test_make_removes_the_venv_only_if_it_is_one(tmp_path):
    """VENV pointing at a folder that is not a virtual environment (here one whose
    bin/python answers another Python version, which makes `make install` recreate it):
    the folder is left alone, one line says why, and make fails."""
    if shutil.which("make") is None:
        pytest.skip("no make")
    folder = tmp_path / "notavenv"
    (folder / "bin").mkdir(parents=True)
    (folder / "bin" / "python").write_text("#!/bin/sh\necho 3.12\n")
    (folder / "bin" / "python").chmod(0o755)
    (folder / "precious.txt").write_text("keep me")
    done = subprocess.run(["make", "--no-print-directory", "install", f"VENV={folder}", "GPU=0",
                           f"PYTHON={sys.executable}"], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode != 0
    assert f"not removing {folder}: it is not a virtual environment (no pyvenv.cfg)" in done.stdout
    assert (folder / "precious.txt").read_text() == "keep me"
