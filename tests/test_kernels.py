"""The compiled BN formulation (bnexp/nn/norm/kernels/): where it cannot be built, `auto`
goes on without it and asking for it by name is one clear line. (That it equals gluon's
BatchNorm, hybridized or not, is tests/test_bn.py's, with the other formulations.)"""
import os
import shutil
import subprocess
import sys

import pytest

from bnexp.nn.norm import kernels
from conftest import QUICK, REPO, run_cli

NO_COMPILER = {"CXX": "/nonexistent/g++"}
BROKEN_COMPILER = {"CXX": "/bin/false"}  # exists, fails on everything


@pytest.mark.parametrize("env, said", [
    (NO_COMPILER, "perf.bn_impl=compiled needs a C++ compiler (g++)"),
    (BROKEN_COMPILER, "perf.bn_impl=compiled: building batch_norm.cc with /bin/false failed"),
])
@pytest.mark.slow
def test_asking_for_it_where_it_cannot_be_built_is_one_clear_line(env, said, tmp_path):
    proc = run_cli("bn=scratch", "perf.bn_impl=compiled", "perf.threads=1", *QUICK,
                   f"hydra.run.dir={tmp_path / 'run'}",
                   env={**env, "BNEXP_KERNEL_DIR": str(tmp_path / "kernels")})
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert said in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not (tmp_path / "run").exists()  # stopped before any work, and left nothing


def test_auto_leaves_it_out_where_it_cannot_be_built(tmp_path):
    code = ("import logging; logging.basicConfig(level=logging.DEBUG); "
            "from bnexp.nn.norm.scratch import formulations; "
            "from bnexp.tuning.probe import layouts; "
            "print(sorted({f for _, f in layouts(formulations('cpu'))}))")
    env = {"PATH": "/usr/bin:/bin", "BNEXP_KERNEL_DIR": str(tmp_path), **NO_COMPILER}
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['centered', 'surrogate']"
    assert "the compiled BN formulation is left out: perf.bn_impl=compiled needs a C++ compiler" \
        in done.stderr


def test_a_library_built_for_this_cpu_is_used_without_a_compiler(tmp_path):
    """The cache key is the sources, the flags and the CPU: a node without g++ loads the
    library built for its kind of CPU (a shared home on a cluster)."""
    from bnexp.nn.norm import kernels

    built = kernels.library()  # this machine's (make install builds it)
    (tmp_path / built.name).write_bytes(built.read_bytes())
    code = "from bnexp.nn.norm import kernels; print(kernels.library())"
    env = {"PATH": "/usr/bin:/bin", "BNEXP_KERNEL_DIR": str(tmp_path), **NO_COMPILER}
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(tmp_path / built.name)


# A scratch layer with the compiled formulation, hybridized (mx.sym) and not (mx.nd): forward,
# backward and the moving statistics, with the operator's functions made by `loader`.
SAME_AS_MXNET = """
import sys
import mxnet as mx, numpy as np
from bnexp.nn.norm import kernels
from bnexp.nn.norm.scratch import scratch
if sys.argv[1] == "mxnet":
    kernels.load_library = lambda path: mx.library.load(str(path), verbose=False)
for hybrid in (False, True):
    x = mx.nd.array(np.random.default_rng(0).normal(2.0, 3.0, (8, 3, 5, 5)))
    layer = scratch(3, formulation="compiled")
    layer.initialize()
    if hybrid:
        layer.hybridize()
    layer(x)  # (inference mode: nothing updated) the deferred shapes
    x.attach_grad()
    with mx.autograd.record():
        y = layer(x)
        loss = (y * y).sum()
    loss.backward()
    for a in (y, x.grad, *(p.data() for p in layer.collect_params().values())):
        print(a.asnumpy().tobytes().hex())
for f in (mx.nd.bnexp_batch_norm, mx.sym.bnexp_batch_norm):
    print(f.__name__, f.__doc__)
"""


@pytest.mark.slow
@pytest.mark.skipif(kernels.unavailable_reason() is not None, reason="no compiled operator here")
def test_the_operator_is_loaded_as_mx_library_load_loads_it():
    """bnexp makes only the library's own operator function (kernels.load_library), not
    all of MXNet's again: the same functions, the same numbers, both ways."""
    runs = [subprocess.run([sys.executable, "-c", SAME_AS_MXNET, loader], cwd=REPO,
                           capture_output=True, text=True, timeout=120) for loader in ("bnexp", "mxnet")]
    assert all(run.returncode == 0 for run in runs), [run.stderr[-2000:] for run in runs]
    assert runs[0].stdout == runs[1].stdout and "bnexp_batch_norm" in runs[0].stdout


def test_on_a_gpu_the_compiled_formulation_is_never_chosen_and_refused_by_name():
    """It is a CPU operator: ctx=auto resolving to a GPU leaves it out, and asking for it
    there is one line (bnexp/validate.py refuses it already for an explicit ctx=gpu)."""
    from bnexp.errors import ConfigError
    from bnexp.nn.norm.scratch import formulations
    from bnexp.tuning.probe import layouts

    assert {f for _, f in layouts(formulations("gpu"))} == {"centered", "surrogate"}
    with pytest.raises(ConfigError, match="runs on CPU only, and ctx resolves to a GPU"):
        formulations("gpu", "compiled")


def test_doctor_says_whether_it_is_built(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "BNEXP_KERNEL_DIR": str(tmp_path), **NO_COMPILER}
    code = "from bnexp import doctor; [print(c.line()) for c in doctor.check_kernels()]"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("[warn] compiled BN") and "needs a C++ compiler" in done.stdout


PLANTED = r"""
#include <stdio.h>
__attribute__((constructor)) static void planted(void) {
    FILE *f = fopen(MARKER, "w");
    if (f) fclose(f);
}
"""


def plant(path, marker, tmp_path) -> None:
    """A shared library that creates `marker` as soon as it is loaded."""
    cc = shutil.which("gcc") or shutil.which("g++")
    if cc is None:
        pytest.skip("no C compiler to build the planted library with")
    source = tmp_path / "planted.c"
    source.write_text(PLANTED)
    subprocess.run([cc, "-x", "c", "-shared", "-fPIC", f'-DMARKER="{marker}"', str(source),
                    "-o", str(path)], check=True, capture_output=True, timeout=60)


@pytest.mark.slow
def test_a_library_planted_in_a_shared_folder_is_never_loaded(tmp_path):
    """BNEXP_KERNEL_DIR writable by others (the shared folder the docs once suggested): a
    library under the predictable name there is not loaded; the private folder's is."""
    from bnexp.nn.norm import kernels

    built = kernels.library()
    shared, private = tmp_path / "shared", tmp_path / "cache" / "bnexp" / "kernels"
    shared.mkdir()
    shared.chmod(0o777)
    marker = tmp_path / "planted-code-ran"
    plant(shared / built.name, marker, tmp_path)
    private.mkdir(parents=True)
    shutil.copy(built, private / built.name)  # this user's own build: nothing to compile
    code = "from bnexp.nn.norm import kernels; kernels.load(); print(kernels.library())"
    env = {**os.environ, "BNEXP_KERNEL_DIR": str(shared), "XDG_CACHE_HOME": str(tmp_path / "cache"),
           **NO_COMPILER}
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert not marker.exists()
    assert done.stdout.strip() == str(private / built.name)
    assert f"the kernel folder {shared} is writable by its group or by others" in done.stderr


@pytest.fixture
def fresh_library(monkeypatch):
    """kernels.library() computed again in this process (it is cached per process)."""
    from bnexp.nn.norm import kernels

    kernels.library.cache_clear()
    yield kernels
    monkeypatch.undo()
    kernels.library.cache_clear()


def test_a_cached_library_others_can_write_is_built_again(tmp_path, monkeypatch, fresh_library):
    """In a folder of this user's, a library file writable by others (or, for root, of
    another owner) is not used: it is built again -- here, without a compiler, refused."""
    kernels = fresh_library
    name = kernels.library().name
    own = tmp_path / "own"
    own.mkdir(mode=0o700)
    plant(own / name, tmp_path / "planted-code-ran", tmp_path)
    (own / name).chmod(0o777)
    monkeypatch.setenv("BNEXP_KERNEL_DIR", str(own))
    monkeypatch.setenv("CXX", NO_COMPILER["CXX"])
    kernels.library.cache_clear()
    with pytest.raises(kernels.KernelUnavailable, match="needs a C\\+\\+ compiler"):
        kernels.library()
    if os.geteuid() == 0:
        (own / name).chmod(0o755)
        os.chown(own / name, 65534, 65534)
        kernels.library.cache_clear()
        with pytest.raises(kernels.KernelUnavailable, match="needs a C\\+\\+ compiler"):
            kernels.library()
    assert not (tmp_path / "planted-code-ran").exists()
