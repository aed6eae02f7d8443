"""report.html rendered in a real headless Chromium (figures decoded, tables there, not a
blank page), and curves.csv checked against the records it came from."""
from __future__ import annotations

import csv
import os
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from bnexp.record import RunRecord
from bnexp.report import write_report
from bnexp.report.jobs import find_jobs
from test_report import make_job

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--hide-scrollbars"]


@pytest.fixture(scope="module")
def chromium() -> str:
    """Debian's chromium: installed here when missing, as root (Debian package `chromium`)."""
    found = shutil.which("chromium")
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("Chromium is not installed and cannot be installed here (needs root and "
                    "apt-get): apt-get install -y chromium")
    install = ["apt-get", "install", "-y", "-q", "chromium"]
    if subprocess.run(install, capture_output=True, timeout=900).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, timeout=600)
        done = subprocess.run(install, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            pytest.skip(f"apt-get install chromium failed: {done.stderr.strip()[-300:]}")
    return shutil.which("chromium") or pytest.skip("chromium installed but not on PATH")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """Two configurations x 2 seeds with known curves, the report built."""
    folder = tmp_path_factory.mktemp("sweep")
    for bn, accs in (("none", [0.1, 0.3, 0.6, 0.75, 0.81]), ("gluon", [0.7, 0.8, 0.84, 0.86, 0.87])):
        for seed in (0, 1):
            make_job(folder, bn, 0.2, seed, [a - 0.01 * seed for a in accs])
    write_report(folder)
    return folder


def run_chromium(chromium: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=180)


@pytest.mark.slow
def test_report_html_renders_in_chromium(chromium, sweep, tmp_path):
    """~5 s. The page is the report itself plus, in a copy, a script that writes what the
    browser decoded into the DOM (the report carries no script)."""
    page = (sweep / "report.html").read_text()
    assert "<script" not in page and "http://" not in page and "https://" not in page  # offline
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("</body>", """<script>
        window.addEventListener("load", () => {
          const sizes = [...document.images].map(i => i.complete ? i.naturalWidth : 0);
          document.body.setAttribute("data-image-widths", sizes.join(","));
          document.body.setAttribute("data-tables", document.querySelectorAll("table").length);
        });</script></body>"""))
    dom = run_chromium(chromium, tmp_path / "profile", "--virtual-time-budget=5000",
                       "--dump-dom", probe.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    widths = dom.stdout.split('data-image-widths="')[1].split('"')[0].split(",")
    assert len(widths) >= 1 and all(int(w) > 100 for w in widths), widths  # every figure decoded
    assert int(dom.stdout.split('data-tables="')[1].split('"')[0]) >= 4
    for text in ("Outcome", "Time to test accuracy 0.70", "Configuration", "Versions and machine",
                 "bn=gluon", "mxnet"):
        assert text in dom.stdout, text

    shot = tmp_path / "report.png"
    done = run_chromium(chromium, tmp_path / "profile2", f"--screenshot={shot}",
                        "--window-size=1200,2400", (sweep / "report.html").as_uri())
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    import matplotlib.image
    pixels = matplotlib.image.imread(shot)
    assert pixels.std() > 0.05  # text, tables and a figure; a blank page is one color


def test_curves_csv_is_every_point_of_every_job(sweep):
    with open(sweep / "curves.csv") as f:
        rows = list(csv.DictReader(f))
    records: dict[str, RunRecord] = {j.name: j.record for j in find_jobs(sweep)}
    expected = sum(2 * len(r.train_curve) + 2 * len(r.eval_curve) for r in records.values())
    assert len(rows) == expected
    keys = Counter((r["job"], r["step"], r["metric"]) for r in rows)
    assert max(keys.values()) == 1  # one row per job, step and metric
    assert {r["metric"] for r in rows} == {"train_loss", "train_acc", "test_loss", "test_acc"}
    assert list(rows[0])[:4] == ["job", "config", "bn", "seed"]
    for row in rows:
        record = records[row["job"]]
        if row["metric"] == "test_acc":
            point = next(p for p in record.eval_curve if p.step == int(row["step"]))
            assert float(row["value"]) == pytest.approx(point.acc)
            assert int(row["images"]) == point.images
        assert row["bn"] == record.choices["bn"] and row["seed"] == str(record.config["seed"])
