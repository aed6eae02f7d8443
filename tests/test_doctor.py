"""`python -m bnexp.doctor`: one verdict line per item, exit status 1 on a FAIL."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest

from bnexp import doctor
from conftest import REPO

LINE = re.compile(r"^\[\s*(ok|warn|FAIL)\] (\S.*)$")


@pytest.mark.slow
def test_doctor_passes_here():
    result = subprocess.run([sys.executable, "-m", "bnexp.doctor"], cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[-1].startswith("doctor: ready to train")
    verdicts = {}
    for line in lines[:-1]:
        match = LINE.match(line)
        assert match, f"not a verdict line: {line!r}"
        item = match.group(2).split("  ")[0].strip()
        verdicts[item] = match.group(1)
    for item in ("python", "numpy", "hydra-core", "omegaconf", "tensorboardX", "tensorboard",
                 "mxnet build", "mxnet import", "nvidia driver", "cuda libraries", "mxnet gpus",
                 "ctx=auto", "dataset", "threads"):
        assert item in verdicts, f"{item} missing from:\n{result.stdout}"
    assert "FAIL" not in verdicts.values()
    out = result.stdout
    assert re.search(r"mxnet 1\.9\.1 .*CUDA=(on|off) CUDNN=(on|off) .*MKLDNN=(on|off) OPENMP=(on|off)", out)
    assert "OMP_NUM_THREADS=" in out and "usable core(s)" in out
    assert "Fashion-MNIST verified in" in out


def test_dataset_check_fails_on_a_bad_root(tmp_path):
    checks = list(doctor.check_dataset(str(tmp_path)))
    assert [c.verdict for c in checks] == ["FAIL"]
    assert "file not found" in checks[0].detail


def test_dataset_check_fails_on_a_corrupt_file(tmp_path, fashion_root):
    import shutil
    from bnexp import data
    for spec in data.FILES.values():
        shutil.copy(fashion_root / spec.name, tmp_path / spec.name)
    (tmp_path / data.FILES["test_labels"].name).write_bytes(b"garbage")
    (check,) = doctor.check_dataset(str(tmp_path))
    assert check.verdict == "FAIL" and "t10k-labels" in check.detail


def test_a_failure_makes_the_exit_status_nonzero(monkeypatch, capsys):
    monkeypatch.setattr(doctor, "CHECKS", (doctor.check_python,
                                           lambda: doctor.check_dataset("/nonexistent-bnexp")))
    assert doctor.main([]) == 1
    out = capsys.readouterr().out
    assert "[FAIL] dataset" in out and "doctor: 1 problem(s): dataset" in out


def test_a_crashing_check_is_reported(monkeypatch, capsys):
    def broken():
        raise RuntimeError("boom")
        yield
    monkeypatch.setattr(doctor, "CHECKS", (broken,))
    assert doctor.main([]) == 1
    assert "the check crashed: RuntimeError: boom" in capsys.readouterr().out


@pytest.mark.parametrize("numpy,verdict", [("1.23.5", "ok"), ("1.26.4", "ok"), ("2.1.0", "FAIL")])
def test_numpy_must_be_1x(monkeypatch, numpy, verdict):
    monkeypatch.setattr(doctor, "_version", lambda name: numpy if name == "numpy" else "1.0")
    checks = {c.item: c for c in doctor.check_packages()}
    assert checks["numpy"].verdict == verdict
    if verdict == "FAIL":
        assert "numpy 1.x" in checks["numpy"].detail


def test_make_doctor_target_is_listed():
    result = subprocess.run(["make", "help"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert re.search(r"make doctor\s+check the installation", result.stdout)
