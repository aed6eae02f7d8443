"""The sweep report (bnexp/report.py) and its Hydra callback.

A synthetic sweep with hand-made curves checks the numbers exactly; a real
two-job multirun checks that the callback writes the report at the end of a sweep.
"""
import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from bnexp.files import write_json_atomic
from bnexp.record import EvalPoint, RunRecord, TrainPoint
from bnexp.report import write_report

ROOT = Path(__file__).resolve().parents[1]
EVERY = 50  # synthetic evaluation interval (steps)


def make_job(sweep: Path, bn: str, lr: float, seed: int, accs: list[float],
             status: str = "completed", diverged_at: int | None = None,
             extra: tuple[str, ...] = ()) -> Path:
    """A job folder with a real RunRecord: evaluation every 50 steps, 0.1 s per step."""
    overrides = [f"bn={bn}", f"lr={lr}", f"seed={seed}", "trainer.max_steps=400"]
    job_dir = sweep / ",".join(sorted(overrides))
    job_dir.mkdir(parents=True)
    record = RunRecord(status=status, overrides=overrides + list(extra),
                       config={"bn.variant": bn, "lr": lr, "seed": seed, "trainer.batch_size": 128})
    for i, acc in enumerate(accs, start=1):
        step = i * EVERY
        record.eval_curve.append(EvalPoint(step, step * 128, step * 0.1, acc, 1.0 - acc))
        record.train_curve.append(TrainPoint(step, 2.0 - acc, acc))
    record.steps = len(accs) * EVERY
    record.final = {"test_acc": accs[-1], "test_loss": 1.0 - accs[-1]} if accs else {}
    record.diverged_at_step = diverged_at
    write_json_atomic(job_dir / "metrics.json", record.to_json())
    return job_dir


def broken_job(sweep: Path, bn: str, seed: int, content: str | None) -> None:
    """A job folder Hydra created whose metrics.json is corrupt (content) or missing (None)."""
    overrides = [f"bn={bn}", "lr=0.2", f"seed={seed}", "trainer.max_steps=400"]
    job_dir = sweep / ",".join(sorted(overrides))
    (job_dir / ".hydra").mkdir(parents=True)
    (job_dir / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    if content is not None:
        (job_dir / "metrics.json").write_text(content)


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """bn x lr sweep with known curves, diverged, interrupted and broken jobs."""
    # bn=none, lr=0.2: 0.80 at steps 350 and 400, never in seed 2; 0.85 never.
    make_job(tmp_path, "none", 0.2, 0, [0.1, 0.1, 0.3, 0.5, 0.7, 0.75, 0.81, 0.82])
    make_job(tmp_path, "none", 0.2, 1, [0.1, 0.2, 0.4, 0.6, 0.72, 0.79, 0.79, 0.80])
    make_job(tmp_path, "none", 0.2, 2, [0.1, 0.1, 0.1, 0.4, 0.65, 0.71, 0.75, 0.78],
             extra=("resume=auto",))  # continued after an interruption: same configuration
    # bn=gluon, lr=0.2: 0.80 at steps 100 and 150; seed 2 diverges after reaching 0.71.
    make_job(tmp_path, "gluon", 0.2, 0, [0.72, 0.81, 0.84, 0.86, 0.87, 0.88, 0.88, 0.89])
    make_job(tmp_path, "gluon", 0.2, 1, [0.65, 0.78, 0.82, 0.85, 0.86, 0.87, 0.87, 0.87])
    make_job(tmp_path, "gluon", 0.2, 2, [0.71], status="diverged", diverged_at=80)
    # bn=scratch, lr=0.2: one good seed, one interrupted, two corrupt files, one missing file.
    make_job(tmp_path, "scratch", 0.2, 1, [0.75, 0.80, 0.86, 0.87, 0.88, 0.88, 0.88, 0.88])
    make_job(tmp_path, "scratch", 0.2, 3, [0.5, 0.6], status="interrupted")
    broken_job(tmp_path, "scratch", 0, '{"status": "completed", "ste')
    broken_job(tmp_path, "scratch", 2, None)
    broken_job(tmp_path, "scratch", 4, '{"status": "completed", "eval_curve": "0.9"}')
    # lr=1.6: bn=none diverges at once, gluon trains.
    make_job(tmp_path, "none", 1.6, 0, [], status="diverged", diverged_at=3)
    make_job(tmp_path, "gluon", 1.6, 0, [0.6, 0.7, 0.75, 0.8, 0.8, 0.8, 0.8, 0.8])
    (tmp_path / "multirun.yaml").write_text("hydra: {}\n")  # not a job
    (tmp_path / ".submitit").mkdir()                       # hidden: not a job
    return tmp_path


def read_rows(sweep: Path) -> dict[str, dict[str, str]]:
    with open(sweep / "summary.csv", newline="") as f:
        return {row["config"]: row for row in csv.DictReader(f)}


def num(value: str) -> float:
    return float(value)


def test_synthetic_sweep_numbers(sweep: Path):
    md_path = write_report(sweep)
    rows = read_rows(sweep)
    assert set(rows) == {"bn=none,lr=0.2", "bn=gluon,lr=0.2", "bn=scratch,lr=0.2",
                         "bn=none,lr=1.6", "bn=gluon,lr=1.6"}

    none, gluon = rows["bn=none,lr=0.2"], rows["bn=gluon,lr=0.2"]
    assert (none["seeds"], none["completed"], none["diverged"]) == ("3", "3", "0")
    assert num(none["final_test_acc_mean"]) == pytest.approx(0.80)
    assert num(none["final_test_acc_std"]) == pytest.approx(0.02)
    assert num(none["steps_to_0.80_mean"]) == pytest.approx(375)
    assert num(none["steps_to_0.80_std"]) == pytest.approx(35.3553, rel=1e-4)
    assert num(none["images_to_0.80_mean"]) == pytest.approx(375 * 128)
    assert num(none["seconds_to_0.80_mean"]) == pytest.approx(37.5)
    assert (none["reached_0.80"], none["never_reached_0.80"]) == ("2", "1")
    assert num(none["steps_to_0.70_mean"]) == pytest.approx(800 / 3, rel=1e-5)
    assert none["never_reached_0.85"] == "3" and none["steps_to_0.85_mean"] == ""
    assert num(none["speedup_steps_0.80"]) == pytest.approx(1.0)

    # gluon: the diverged seed counts as diverged, reached 0.70 at step 50, never 0.80
    assert (gluon["seeds"], gluon["completed"], gluon["diverged"]) == ("3", "2", "1")
    assert num(gluon["final_test_acc_mean"]) == pytest.approx(0.88)  # completed seeds only
    assert num(gluon["final_test_acc_std"]) == pytest.approx(0.0141421, rel=1e-4)
    assert num(gluon["steps_to_0.70_mean"]) == pytest.approx(200 / 3, rel=1e-5)
    assert num(gluon["steps_to_0.80_mean"]) == pytest.approx(125)
    assert num(gluon["steps_to_0.80_std"]) == pytest.approx(35.3553, rel=1e-4)
    assert (gluon["reached_0.80"], gluon["never_reached_0.80"]) == ("2", "1")
    assert num(gluon["speedup_steps_0.70"]) == pytest.approx(4.0)
    # bn=none seed 2 ran its 400 steps without reaching 0.80: it counts as 400 (it needed
    # more), so the speedup (350 + 400 + 400) / 3 / 125 is a lower bound, without interval
    assert num(gluon["speedup_steps_0.80"]) == pytest.approx(1150 / 3 / 125, rel=1e-5)
    assert gluon["speedup_0.80_bound"] == "lower" and gluon["speedup_0.80_ci_low"] == ""
    # evaluations every 50 steps: gluon crossed 0.80 at 100 (after 50) and 150 (after 100)
    assert num(gluon["resolution_0.80"]) == pytest.approx(0.5)
    # bn=none never reached 0.85 within its 400 steps: gluon's 200 steps are >= 2x faster
    assert num(gluon["speedup_steps_0.85"]) == pytest.approx(2.0)
    assert gluon["speedup_0.85_bound"] == "lower"
    # 0.70: every seed reached it (gluon's diverged seed 2 too, before diverging)
    assert gluon["speedup_0.70_bound"] == "" and gluon["speedup_0.70_ci_low"] != ""

    scratch = rows["bn=scratch,lr=0.2"]
    assert (scratch["seeds"], scratch["completed"], scratch["failed"],
            scratch["interrupted"]) == ("5", "1", "3", "1")
    assert num(scratch["steps_to_0.80_mean"]) == pytest.approx(100)
    assert scratch["steps_to_0.80_std"] == ""  # one seed: no spread
    assert (scratch["reached_0.80"], scratch["never_reached_0.80"]) == ("1", "4")
    assert num(scratch["speedup_steps_0.80"]) == pytest.approx(1150 / 3 / 100, rel=1e-5)

    # lr=1.6 rows match the lr=1.6 baseline, which diverged: no speedup, not lr=0.2's
    assert rows["bn=none,lr=1.6"]["diverged"] == "1"
    assert rows["bn=none,lr=1.6"]["final_test_acc_mean"] == ""
    assert rows["bn=gluon,lr=1.6"]["speedup_steps_0.80"] == ""
    assert num(rows["bn=gluon,lr=1.6"]["steps_to_0.80_mean"]) == pytest.approx(200)

    md = md_path.read_text()
    assert md_path == sweep / "summary.md"
    assert "1 completed, 3 failed, 1 interrupted" in md
    assert "metrics.json unreadable" in md and "metrics.json missing" in md
    assert "'eval_curve' is not a list" in md
    assert "diverged at step 80" in md
    assert "4.0× [" in md and "≥ 3.1×" in md and "≥ 2.0×" in md
    for png in ("convergence.png", "lr_robustness.png"):
        assert (sweep / png).stat().st_size > 10_000, png


def test_speedup_interval_and_censored_seeds(tmp_path: Path):
    # every seed reached 0.80: bn=none at 350 and 400, gluon at 100 and 150 (paired by seed)
    make_job(tmp_path, "none", 0.2, 0, [0.1, 0.1, 0.3, 0.5, 0.7, 0.75, 0.81, 0.82])
    make_job(tmp_path, "none", 0.2, 1, [0.1, 0.2, 0.4, 0.6, 0.72, 0.79, 0.79, 0.80])
    make_job(tmp_path, "gluon", 0.2, 0, [0.72, 0.81, 0.84, 0.86])
    make_job(tmp_path, "gluon", 0.2, 1, [0.65, 0.78, 0.82, 0.85])
    # scratch: seed 0 reached 0.80 at 100, seed 1 ran 200 steps without: needs more than 200
    make_job(tmp_path, "scratch", 0.2, 0, [0.72, 0.81, 0.84, 0.86])
    make_job(tmp_path, "scratch", 0.2, 1, [0.65, 0.75, 0.78, 0.79])
    write_report(tmp_path)
    rows = read_rows(tmp_path)
    gluon, scratch = rows["bn=gluon"], rows["bn=scratch"]
    assert num(gluon["speedup_steps_0.80"]) == pytest.approx(3.0) and gluon["speedup_0.80_bound"] == ""
    # paired bootstrap over the two seeds: resampling {0,0} gives 350/100, {1,1} 400/150,
    # mixed 375/125 -- the interval spans the two pure cases
    assert num(gluon["speedup_0.80_ci_low"]) == pytest.approx(400 / 150, rel=1e-5)  # CSV: 6 digits
    assert num(gluon["speedup_0.80_ci_high"]) == pytest.approx(3.5)
    # scratch's censored seed counts as 200: 375 / 150 is an upper bound on its speedup
    assert num(scratch["speedup_steps_0.80"]) == pytest.approx(2.5)
    assert scratch["speedup_0.80_bound"] == "upper"
    md = (tmp_path / "summary.md").read_text()
    assert "3.0× [2.7, 3.5]" in md and "≤ 2.5×" in md


def test_report_without_lr_sweep_and_cli(tmp_path: Path):
    make_job(tmp_path, "none", 0.2, 0, [0.5, 0.7])
    make_job(tmp_path, "gluon", 0.2, 0, [0.8, 0.9])
    done = subprocess.run([sys.executable, "-m", "bnexp.report", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "summary.md" in done.stdout
    rows = read_rows(tmp_path)
    assert list(rows) == ["bn=none", "bn=gluon"]  # baseline first
    assert num(rows["bn=gluon"]["speedup_steps_0.70"]) == pytest.approx(2.0)
    assert (tmp_path / "convergence.png").exists()
    assert not (tmp_path / "lr_robustness.png").exists()  # lr was not swept

    missing = subprocess.run([sys.executable, "-m", "bnexp.report", str(tmp_path / "nope")],
                             cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "no sweep directory" in missing.stderr


@pytest.mark.slow
def test_real_multirun_writes_report(tmp_path: Path):
    cmd = [sys.executable, "-m", "bnexp.run", "--multirun", "bn=none,gluon", "seed=0",
           "trainer.max_steps=8", "trainer.eval_every_steps=4", "data.test_subset=256",
           f"hydra.sweep.dir={tmp_path}"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "sweep report:" in done.stdout + done.stderr  # logged by the callback
    rows = read_rows(tmp_path)
    assert list(rows) == ["bn=none", "bn=gluon"]
    for row in rows.values():
        assert (row["seeds"], row["completed"]) == ("1", "1")
        assert 0.0 <= num(row["final_test_acc_mean"]) <= 1.0
    assert (tmp_path / "summary.md").exists()
    assert (tmp_path / "convergence.png").stat().st_size > 10_000


def with_monitors(job_dir: Path, monitors: dict) -> None:
    path = job_dir / "metrics.json"
    record = json.loads(path.read_text())
    record["monitors"] = monitors
    path.write_text(json.dumps(record))


def activations_run(shift: float) -> list[dict]:
    """Two channels of conv0; the median moves by `shift` per measurement, width 2."""
    return [{"step": step, "layers": {"conv0": {
        str(c): {"p15": shift * i - 1.0, "p50": shift * i, "p85": shift * i + 1.0} for c in (3, 7)}}}
        for i, step in enumerate((0, 50, 100))]


def monitored(shift: float, conv1_ics: tuple[float, float], landscape: float) -> dict:
    """Monitor records of one run: activations drifting by `shift`, conv1's (l2, cos) ICS,
    landscape measures proportional to `landscape` (conv0 has nothing before it: ICS 0)."""
    l2, cos = conv1_ics
    return {"activations": activations_run(shift),
            "ics": [{"step": s, "layers": {"conv0": {"l2": 0.0, "cos": 1.0},
                                           "conv1": {"l2": l2, "cos": cos}}} for s in (0, 50)],
            "landscape": [{"step": s, "loss_range": landscape, "grad_change": landscape / 2,
                           "beta_smoothness": 2 * landscape} for s in (0, 50)]}


def test_mechanism_figures_and_numbers(tmp_path: Path):
    for seed in (0, 1):
        with_monitors(make_job(tmp_path, "none", 0.2, seed, [0.3, 0.6]), monitored(0.5, (2.0, 0.5), 4.0))
        with_monitors(make_job(tmp_path, "gluon", 0.2, seed, [0.7, 0.8]), monitored(0.0, (3.0, 0.25), 1.0))
    md = write_report(tmp_path).read_text()
    for png in ("activations.png", "ics.png", "landscape.png"):
        assert (tmp_path / png).stat().st_size > 10_000, png
        assert f"({png})" in md
    from bnexp.report import activations, jobs
    drifts = activations.drifts_by_group(jobs.group_jobs(jobs.find_jobs(tmp_path)))
    # none: the median goes 0 -> 1 over a width of 2 -> drift 0.5; gluon: it stays -> 0
    assert drifts["bn=none"]["conv0"] == [0.5, 0.5] and drifts["bn=gluon"]["conv0"] == [0.0, 0.0]
    assert "| bn=none | 0.50 ± 0.00 |" in md and "| bn=gluon | 0.00 ± 0.00 |" in md
    assert "| bn=gluon | 3 / 0.25 |" in md           # conv0 (always 0) is left out
    assert "2 ± 0 (0.25×)" in md                      # smoothness 2 against bn=none's 8


def test_study_figures(tmp_path: Path):
    """momentum/eps, batch size and init sweeps each get their figure and table."""
    def job(name, overrides, config, accs, train_accs=None):
        job_dir = tmp_path / name / ",".join(overrides)
        job_dir.mkdir(parents=True)
        record = RunRecord(status="completed", overrides=overrides, config=config)
        for i, acc in enumerate(accs, start=1):
            record.eval_curve.append(EvalPoint(i * 10, i * 10 * 128, i * 1.0, acc, 1 - acc, 0, "val"))
            record.train_curve.append(TrainPoint(i * 10, 2 - acc, (train_accs or accs)[i - 1]))
        record.steps = len(accs) * 10
        record.final = {"test_acc": accs[-1]}
        write_json_atomic(job_dir / "metrics.json", record.to_json())

    for m in (0.0, 0.99):
        for e in (1e-5, 0.1):
            job("momentum", [f"momentum={m}", f"eps={e}"], {"momentum": m, "eps": e, "bn.variant": "gluon"},
                [0.2 if m == 0.99 else 0.7, 0.85], [0.7, 0.85])
    md = write_report(tmp_path / "momentum").read_text()
    assert (tmp_path / "momentum" / "momentum_eps.png").exists() and "## BN momentum and epsilon" in md
    assert "| 0.99 | 1e-05 | 0.200 |" in md  # evaluated accuracy at step 10 lags with momentum 0.99

    for bn in ("none", "gluon"):
        for b in (8, 128):
            config = {"bn.variant": bn, "trainer.batch_size": b, "lr": 0.2,
                      "trainer.lr_scaling": "linear", "trainer.lr_reference_batch": 128}
            job("batch", [f"bn={bn}", f"trainer.batch_size={b}"], config,
                [0.5, 0.81] if bn == "gluon" else [0.5, 0.6])
    md = write_report(tmp_path / "batch").read_text()
    assert (tmp_path / "batch" / "batch_size.png").exists() and "## Batch size" in md
    assert "| gluon | 8 | 0.0125 | 20 | 2560 | 2.0 | 20 | 2560 | 2.0 | 0.810 |" in md
    assert "| none | 128 | 0.2 | never | never | never | never | never | never | 0.600 |" in md

    for init in ("standard", "source"):
        for seed in (0, 1):
            job("init", [f"bn.init={init}", f"seed={seed}"], {"bn.init": init, "seed": seed},
                [0.1 if init == "source" else 0.6, 0.75, 0.82])
    md = write_report(tmp_path / "init").read_text()
    assert (tmp_path / "init" / "init.png").exists()
    assert "| bn.init=source | — | 0.750 ± 0.000 |" in md  # nothing evaluated by step 5
