"""A sweep report built from crafted job folders (bnexp/report/html.py, jobs.py): text from
a job folder stays text, only the figures the report wrote are embedded, Hydra's YAML is
read without resolvers, and no file in a job folder can hang the report or make it write
elsewhere."""
from __future__ import annotations

import base64
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from bnexp.report import write_report
from test_report import broken_job, make_job

ROOT = Path(__file__).resolve().parents[1]
PNG = b"\x89PNG\r\n\x1a\n"


def set_error(job_dir: Path, error: str) -> None:
    data = json.loads((job_dir / "metrics.json").read_text())
    data.update(status="failed", error=error)
    (job_dir / "metrics.json").write_text(json.dumps(data))


def base_sweep(folder: Path) -> None:
    for bn in ("none", "gluon"):
        make_job(folder, bn, 0.2, 0, [0.5, 0.7, 0.8])


def test_text_from_job_folders_embeds_no_file(tmp_path):
    """An error message naming /etc/hostname, and a label naming a PNG someone put in the
    sweep folder: both stay text; the report embeds its own figures only."""
    base_sweep(tmp_path)
    set_error(make_job(tmp_path, "gluon", 0.2, 1, [0.5]), "boom ![x](/etc/hostname) <b>bold</b>")
    secret = tmp_path / "secret.png"
    secret.write_bytes(PNG + b"not the report's figure")
    make_job(tmp_path, "none", 0.2, 1, [0.5, 0.7, 0.8], extra=("note=![s](secret.png)",))
    write_report(tmp_path)
    page = (tmp_path / "report.html").read_text()
    assert base64.b64encode(secret.read_bytes()).decode() not in page
    hostname = Path("/etc/hostname")
    if hostname.is_file() and hostname.read_bytes():
        assert base64.b64encode(hostname.read_bytes()).decode() not in page
    assert "boom ![x](/etc/hostname) &lt;b&gt;bold&lt;/b&gt;" in page  # shown as text
    assert "![s](secret.png)" in page
    assert page.count("<img ") == page.count("data:image/png;base64,") >= 1
    assert "<b>bold</b>" not in page


def test_yaml_of_a_job_folder_is_read_without_resolvers(tmp_path, monkeypatch):
    """Hydra's overrides.yaml of a job without metrics.json: `${oc.env:...}` is a plain
    string, never the environment's value."""
    monkeypatch.setenv("BNEXP_TEST_SECRET", "hunter2-do-not-print")
    base_sweep(tmp_path)
    broken_job(tmp_path, "scratch", 0, None)
    job, = tmp_path.glob("bn=scratch*")
    (job / ".hydra" / "overrides.yaml").write_text(
        "- bn=scratch\n- lr=${oc.env:BNEXP_TEST_SECRET}\n- seed=0\n")
    write_report(tmp_path)
    for name in ("summary.md", "summary.csv", "report.html", "curves.csv"):
        assert "hunter2" not in (tmp_path / name).read_text(), name
    assert "lr=${oc.env:BNEXP_TEST_SECRET}" in (tmp_path / "summary.md").read_text()


HANG_SCRIPT = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))  # reading /dev/zero ends here
from bnexp.report import write_report
write_report(sys.argv[1])
print("report written")
"""


def test_dev_zero_and_fifos_in_a_job_folder_do_not_hang_the_report(tmp_path):
    """A figure reference to /dev/zero, a metrics.json that links to it, an overrides.yaml
    that is a FIFO nobody writes: the report is written in seconds (in a child process with
    a memory cap and a timeout, so that a report that reads them fails instead)."""
    base_sweep(tmp_path)
    set_error(make_job(tmp_path, "gluon", 0.2, 1, [0.5]), "![z](/dev/zero)")
    broken_job(tmp_path, "scratch", 0, None)
    broken_job(tmp_path, "scratch", 1, None)
    linked, fifo = sorted(tmp_path.glob("bn=scratch*"))
    (linked / "metrics.json").symlink_to("/dev/zero")
    (fifo / ".hydra" / "overrides.yaml").unlink()
    os.mkfifo(fifo / ".hydra" / "overrides.yaml")
    done = subprocess.run([sys.executable, "-c", HANG_SCRIPT, str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = (tmp_path / "summary.md").read_text()
    assert "metrics.json unreadable: not a regular file" in summary
    assert "![z](/dev/zero)" in (tmp_path / "report.html").read_text()


def test_a_link_planted_under_a_figure_name_is_replaced_not_written_through(tmp_path):
    base_sweep(tmp_path)
    victim = tmp_path.parent / f"{tmp_path.name}-victim.txt"
    victim.write_text("precious")
    (tmp_path / "convergence.png").symlink_to(victim)
    (tmp_path / "summary.md").symlink_to(victim)
    write_report(tmp_path)
    assert victim.read_text() == "precious"
    assert not (tmp_path / "convergence.png").is_symlink()
    assert (tmp_path / "convergence.png").read_bytes().startswith(PNG)
    assert "data:image/png;base64," in (tmp_path / "report.html").read_text()


@pytest.fixture(autouse=True)
def _no_core_dumps():
    """A child hitting its memory cap on unfixed code must not leave a core file."""
    soft, hard = resource.getrlimit(resource.RLIMIT_CORE)
    resource.setrlimit(resource.RLIMIT_CORE, (0, hard))
    yield
    resource.setrlimit(resource.RLIMIT_CORE, (soft, hard))
