"""A real TensorBoard server on a loopback port, pointed at a small real sweep."""
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import REPO, run_cli


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    sweep = tmp_path_factory.mktemp("sweep")
    proc = run_cli("--multirun", "bn=none,gluon", "seed=0,1", "trainer.max_steps=4",
                   "trainer.eval_every_steps=2", "data.test_subset=256", f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    port = free_port()
    tb = subprocess.Popen([str(Path(sys.executable).parent / "tensorboard"), "--logdir", str(sweep),
                           "--host", "127.0.0.1", "--port", str(port), "--reload_interval", "1"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                if len(get(base + "/data/runs")) == 4:
                    break
            except OSError:
                pass
            assert time.time() < deadline, "TensorBoard did not list the 4 runs in time"
            time.sleep(0.5)
        yield base
    finally:
        tb.terminate()
        tb.wait(timeout=20)


@pytest.mark.slow
def test_one_run_per_job_named_by_overrides(server):
    runs = get(server + "/data/runs")
    assert sorted(r.split(",")[0] + "," + [p for p in r.split(",") if p.startswith("seed=")][0]
                  for r in runs) == ["bn=gluon,seed=0", "bn=gluon,seed=1", "bn=none,seed=0",
                                     "bn=none,seed=1"]


@pytest.mark.slow
def test_same_scalar_tags_in_every_run(server):
    tags = get(server + "/data/plugin/scalars/tags")
    assert len(tags) == 4
    for run_tags in tags.values():
        assert {"train/loss", "train/acc", "test/loss", "test/acc", "lr",
                "perf/images_per_sec"} <= set(run_tags)


@pytest.mark.slow
def test_hparams_list_each_job_once(server):
    experiment = get(server + "/data/plugin/hparams/experiment", {"experimentName": ""})
    names = {h["name"] for h in experiment["hparamInfos"]}
    # every run's settings: bn=none has no momentum, bn=gluon has
    assert {"bn", "model", "optimizer", "lr", "seed", "bn.momentum", "bn.eps",
            "data.test_subset", "trainer.eval_every_steps"} <= names
    metrics = {m["name"]["tag"] for m in experiment["metricInfos"]}
    assert {"hparams/final_test_acc", "hparams/steps_to_0.80"} <= metrics
    groups = get(server + "/data/plugin/hparams/session_groups",
                 {"experimentName": "", "allowedStatuses": ["STATUS_SUCCESS", "STATUS_UNKNOWN",
                                                            "STATUS_FAILURE", "STATUS_RUNNING"],
                  "colParams": [], "startIndex": 0, "sliceSize": 100})
    sessions = [s["name"] for g in groups["sessionGroups"] for s in g["sessions"]]
    assert len(sessions) == 4 and len(set(sessions)) == 4


@pytest.mark.slow
def test_custom_scalars_layout(server):
    layout = get(server + "/data/plugin/custom_scalars/layout")
    titles = {c["title"] for cat in layout["category"] for c in cat["chart"]}
    assert {"test accuracy", "training loss"} <= titles


def test_the_logger_does_not_import_torch(tmp_path: Path):
    """tensorboardX imports torch where it is installed (2 s of every run's start once the
    bench's optional PyTorch row is): bnexp's logger does not, and `import torch` works after."""
    fake = tmp_path / "torch"
    fake.mkdir()
    (fake / "__init__.py").write_text("class Tensor:\n    pass\n")
    code = ("import sys\nimport bnexp.training.tensorboard\nprint('torch' in sys.modules)\n"
            "import torch\nprint(torch.__file__)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["False", str(fake / "__init__.py")]
