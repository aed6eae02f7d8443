"""GPU detection (fake nvidia-smi scripts on PATH), the GPU/CPU choice of `ctx`,
and the CUDA library loader. Tests marked `gpu` need a GPU MXNet can use."""
from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys
from pathlib import Path

import mxnet as mx
import pytest

from bnexp.runtime import context, cuda, gpu
from bnexp.errors import ConfigError
from conftest import REPO, run_cli

HAS_GPU = mx.context.num_gpus() > 0
requires_gpu = pytest.mark.skipif(not HAS_GPU, reason="no GPU visible to MXNet")

A100 = "NVIDIA A100-SXM4-40GB, 8.0, 535.129.03"
H100 = "NVIDIA H100 80GB HBM3, 9.0, 550.54.15"
L4 = "NVIDIA L4, 8.9, 550.54.15"


def fake_smi(folder: Path, stdout: str = "", exit_code: int = 0, knows_cc: bool = True) -> Path:
    """An `nvidia-smi` that prints `stdout` for the GPU query (or fails like an old driver
    asked for compute_cap, or like a driver that is not loaded)."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "nvidia-smi"
    lines = ["#!/bin/sh"]
    if not knows_cc:
        lines += ['case "$*" in *compute_cap*) echo \'Field "compute_cap" is not a valid field to query.\'; exit 2;; esac',
                  # the fallback query prints name, driver_version
                  f"printf '%s\\n' '{stdout}' | sed 's/, [0-9.]*, /, /'", "exit 0"]
    else:
        lines += [f"printf '%s' '{stdout}'", f"exit {exit_code}"]
    script.write_text("\n".join(lines) + "\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return folder


def detect(path_dirs: list[Path]) -> subprocess.CompletedProcess:
    """scripts/detect_gpu.py under the system python3, isolated from the venv and bnexp."""
    python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
    env = {"PATH": os.pathsep.join(str(p) for p in path_dirs) + os.pathsep + "/usr/bin:/bin"}
    if not any((p / "nvidia-smi").exists() for p in path_dirs):
        env["PATH"] = os.pathsep.join(str(p) for p in path_dirs) or "/nonexistent"
    return subprocess.run([python, "-I", str(REPO / "scripts" / "detect_gpu.py")], env=env,
                          capture_output=True, text=True, timeout=60)


# --- compute capability rules -------------------------------------------------------------

@pytest.mark.parametrize("cc", [(5, 0), (5, 2), (6, 1), (7, 0), (7, 5), (8, 0), (8, 6), (8, 7), (8, 9)])
def test_supported_compute_capabilities(cc):
    ok, why = gpu.supported(cc)
    assert ok, why


@pytest.mark.parametrize("cc", [(3, 5), (3, 7), (9, 0), (10, 0), (12, 0)])
def test_unsupported_compute_capabilities(cc):
    ok, why = gpu.supported(cc)
    assert not ok
    assert "%d.%d" % cc in why and "5.0 to 8.9" in why


def test_ada_runs_the_86_kernels():
    assert "sm_86" in gpu.supported((8, 9))[1]
    assert "sm_70" in gpu.supported((7, 5))[1]


def test_parse_query_output():
    gpus = gpu.parse_query(f"{A100}\n{H100}\n\n")
    assert [(g.index, g.name, g.compute_cap, g.driver) for g in gpus] == [
        (0, "NVIDIA A100-SXM4-40GB", (8, 0), "535.129.03"),
        (1, "NVIDIA H100 80GB HBM3", (9, 0), "550.54.15")]
    assert gpu.choose_build(gpus)[0] == "gpu"
    assert gpu.choose_build(gpus[1:])[0] == "cpu"
    assert gpu.choose_build([])[0] == "cpu"


# --- scripts/detect_gpu.py with fake nvidia-smi ----------------------------------------------

def test_detect_no_nvidia_smi(tmp_path):
    result = detect([tmp_path / "empty"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "cpu"
    assert "no nvidia-smi" in result.stderr


def test_detect_supported_gpu(tmp_path):
    result = detect([fake_smi(tmp_path / "bin", f"{A100}\n")])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "gpu"
    assert "A100" in result.stderr and "compute capability 8.0" in result.stderr


def test_detect_ada(tmp_path):
    assert detect([fake_smi(tmp_path / "bin", f"{L4}\n")]).stdout.strip() == "gpu"


def test_detect_hopper_only_installs_cpu_build(tmp_path):
    result = detect([fake_smi(tmp_path / "bin", f"{H100}\n{H100}\n")])
    assert result.stdout.strip() == "cpu"
    assert "9.0" in result.stderr and "newer than MXNet 1.9.1 supports" in result.stderr


def test_detect_mixed_gpus(tmp_path):
    assert detect([fake_smi(tmp_path / "bin", f"{H100}\n{A100}\n")]).stdout.strip() == "gpu"


def test_detect_driver_not_loaded(tmp_path):
    smi = fake_smi(tmp_path / "bin", "NVIDIA-SMI has failed because it couldn't communicate "
                                     "with the NVIDIA driver.\n", exit_code=9)
    result = detect([smi])
    assert result.stdout.strip() == "cpu"
    assert "nvidia-smi failed" in result.stderr


def test_detect_lists_no_gpu(tmp_path):
    assert detect([fake_smi(tmp_path / "bin", "")]).stdout.strip() == "cpu"


def test_detect_old_driver_without_compute_cap(tmp_path):
    result = detect([fake_smi(tmp_path / "bin", A100, knows_cc=False)])
    assert result.stdout.strip() == "gpu", result.stderr
    assert "unknown" in result.stderr


def test_make_install_gpu_path_dry_run():
    """`make -n install GPU=1` shows the GPU requirements and the removal of the CPU build
    (-B: show the recipe even when the venv already holds the asked-for build)."""
    result = subprocess.run(["make", "-n", "-B", "install", "GPU=1"], cwd=REPO, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "requirements/gpu.txt" in result.stdout
    assert "pip uninstall -y -q mxnet" in result.stdout
    result = subprocess.run(["make", "-n", "-B", "install", "GPU=0"], cwd=REPO, capture_output=True,
                            text=True, timeout=60)
    assert "requirements/cpu.txt" in result.stdout and "mxnet-cu112" in result.stdout


def test_gpu_requirements_pin_cuda11_wheels():
    # `make lock` writes `name==version ; marker \` lines (a marker may hold == itself), each
    # followed by its `--hash=...` lines
    pins = dict(line.split(";")[0].rstrip(" \\").strip().split("==", 1)
                for line in (REPO / "requirements" / "gpu.txt").read_text().splitlines()
                if "==" in line and not line.lstrip().startswith(("#", "--hash")))
    assert pins["mxnet-cu112"] == "1.9.1"
    assert int(pins["nvidia-cudnn-cu11"].split(".")[0]) == 8  # libcudnn.so.8, never 9
    for name in ("cuda-runtime", "cublas", "cufft", "curand", "cusolver", "cuda-nvrtc", "nvtx", "nccl"):
        assert f"nvidia-{name}-cu11" in pins
    assert "mxnet" not in pins


# --- ctx resolution (GPUs faked) --------------------------------------------------------------

@pytest.fixture
def fake_gpus(monkeypatch):
    def install(*devices: tuple[str, tuple[int, int]]):
        gpus = [gpu.GPU(i, name, cc) for i, (name, cc) in enumerate(devices)]
        monkeypatch.setattr(mx.context, "num_gpus", lambda: len(gpus))
        monkeypatch.setattr(gpu, "cuda_devices", lambda: gpus)
    return install


def test_auto_takes_a_supported_gpu(fake_gpus, caplog):
    fake_gpus(("NVIDIA A100", (8, 0)))
    with caplog.at_level(logging.INFO, logger="bnexp.runtime.context"):
        assert context.resolve("auto") == [mx.gpu(0)]
    assert "NVIDIA A100" in caplog.text


def test_auto_skips_hopper(fake_gpus, caplog):
    fake_gpus(("NVIDIA H100", (9, 0)))
    with caplog.at_level(logging.INFO, logger="bnexp.runtime.context"):
        assert context.resolve("auto") == [mx.cpu()]
    assert "CPU" in caplog.text and "H100" in caplog.text and "9.0" in caplog.text


def test_auto_on_this_machine_logs_why(caplog):
    if HAS_GPU:
        pytest.skip("this machine has a GPU")
    with caplog.at_level(logging.INFO, logger="bnexp.runtime.context"):
        assert context.resolve("auto") == [mx.cpu()]
    assert "training on the CPU" in caplog.text


def test_explicit_gpu_on_hopper_fails_clearly(fake_gpus):
    fake_gpus(("NVIDIA H100 80GB HBM3", (9, 0)))
    with pytest.raises(ConfigError) as err:
        context.resolve("gpu")
    message = str(err.value)
    assert "NVIDIA H100 80GB HBM3" in message and "9.0" in message and "5.0 to 8.9" in message


def test_explicit_gpu_list(fake_gpus):
    fake_gpus(("A", (8, 6)), ("B", (7, 5)))
    assert context.resolve("gpu:0,1") == [mx.gpu(0), mx.gpu(1)]
    with pytest.raises(ConfigError, match="gpu:2 requested but MXNet sees 2 GPU"):
        context.resolve("gpu:0,2")


def test_gpu_without_gpu_says_why():
    if HAS_GPU:
        pytest.skip("this machine has a GPU")
    with pytest.raises(ConfigError, match="no GPU .*CPU build"):
        context.resolve("gpu")


def test_cpu_build_sees_no_gpu():
    if cuda.mxnet_build() != "cpu":
        pytest.skip("not the CPU build")
    assert mx.context.num_gpus() == 0
    assert not mx.runtime.Features().is_enabled("CUDA")


def test_parse_and_resolve_cpu_lists():
    assert context.parse("gpu:0,1") == [("gpu", 0), ("gpu", 1)]
    assert context.resolve("cpu:0,cpu:1") == [mx.cpu(0), mx.cpu(1)]


# --- CUDA library loading ---------------------------------------------------------------------

def test_cpu_build_loads_no_cuda_library():
    if cuda.mxnet_build() != "cpu":
        pytest.skip("not the CPU build")
    assert cuda.CUDA.build == "cpu" and cuda.CUDA.libraries is None


def test_find_cuda_libraries_in_wheel_layout(tmp_path):
    """site-packages/nvidia/<wheel>/lib/<soname>, in dependency order; absent ones reported."""
    for folder, name in cuda.CUDA_LIBRARIES:
        if name != "libnccl.so.2":
            (tmp_path / folder / "lib").mkdir(parents=True, exist_ok=True)
            (tmp_path / folder / "lib" / name).write_bytes(b"")
    found = cuda.find_cuda_libraries([tmp_path / "missing", tmp_path])
    names = [lib.name for lib in found]
    assert names.index("libcudart.so.11.0") < names.index("libcublas.so.11") < names.index("libcudnn.so.8")
    assert names.index("libcublasLt.so.11") < names.index("libcublas.so.11")
    assert names.index("libnvrtc-builtins.so.11.8") < names.index("libnvrtc.so.11.2")
    by_name = {lib.name: lib for lib in found}
    assert by_name["libcudart.so.11.0"].path == tmp_path / "cuda_runtime" / "lib" / "libcudart.so.11.0"
    assert by_name["libnccl.so.2"].path is None
    setup = cuda.CudaSetup(build="gpu", libraries=found)
    assert [lib.name for lib in setup.missing] == ["libnccl.so.2"]
    assert cuda.REQUIRED <= set(names)


def test_loader_records_unloadable_library(tmp_path):
    bad = tmp_path / "libcudart.so.11.0"
    bad.write_bytes(b"not an ELF file")
    libs = [cuda.LibraryStatus("libcudart.so.11.0", bad)]
    cuda.load_cuda_libraries(libs)
    assert not libs[0].loaded and libs[0].error


# --- on a real GPU ----------------------------------------------------------------------------

@pytest.mark.gpu
@requires_gpu
def test_gpu_build_loaded_its_cuda_libraries():
    assert cuda.CUDA.build == "gpu"
    assert not cuda.CUDA.missing, cuda.CUDA.missing
    assert mx.runtime.Features().is_enabled("CUDA")


@pytest.mark.gpu
@requires_gpu
def test_gpu_computes():
    x = mx.nd.ones((64, 64), ctx=mx.gpu(0))
    assert float(mx.nd.dot(x, x).sum().asscalar()) == 64 ** 3


@pytest.mark.gpu
@requires_gpu
@pytest.mark.parametrize("variant", ["none", "scratch", "gluon"])
def test_gpu_training_run(tmp_path, variant):
    result = run_cli(f"bn={variant}", "ctx=gpu", "trainer.max_steps=5", "data.test_subset=256",
                     "trainer.progress=log", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "on gpu(0)" in result.stdout + result.stderr


@pytest.mark.gpu
@pytest.mark.skipif(mx.context.num_gpus() < 2, reason="needs two GPUs")
def test_two_gpus_train(tmp_path):
    result = run_cli("bn=gluon", "ctx='gpu:0,1'", "trainer.max_steps=5", "data.test_subset=256",
                     "trainer.progress=log", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "on gpu(0),gpu(1)" in result.stdout + result.stderr


@pytest.mark.slow
def test_gpu_build_without_driver_fails_in_one_line(tmp_path):
    """`make install GPU=1` on a machine without an NVIDIA driver: `import mxnet` fails
    with OSError (libcuda.so.1). Stand-ins on PYTHONPATH: the mxnet-cu112 distribution's
    metadata and an `mxnet` package failing as the GPU build does there."""
    fake = tmp_path / "site"
    (fake / "mxnet").mkdir(parents=True)
    (fake / "mxnet" / "__init__.py").write_text(
        'raise OSError("libcuda.so.1: cannot open shared object file: No such file or directory")\n')
    info = fake / "mxnet_cu112-1.9.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mxnet-cu112\nVersion: 1.9.1\n")
    # speed settings fixed: no probe (whose log lines would depend on this machine's cache)
    result = run_cli("trainer.max_steps=1", "perf.threads=1", "perf.pool=native",
                     "perf.bn_impl=centered", "perf.engine=naive", f"hydra.run.dir={tmp_path / 'run'}",
                     env={"PYTHONPATH": str(fake)})
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert len(lines) == 1, lines
    assert "cannot import mxnet" in lines[0] and "GPU=0" in lines[0], lines[0]
    assert not (tmp_path / "run").exists()
