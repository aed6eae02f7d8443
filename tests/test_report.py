"""The sweep report (bnexp/report/) and its Hydra callback.

A synthetic sweep with hand-made curves checks the numbers exactly; a real
two-job multirun checks that the callback writes the report at the end of a sweep.
The interval's coverage is tested in test_stats.py.
"""
import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from bnexp.files import write_json_atomic
from bnexp.record import EvalPoint, RunRecord, TrainPoint, record_failure
from bnexp.report import write_report

ROOT = Path(__file__).resolve().parents[1]
EVERY = 50  # synthetic evaluation interval (steps)


def make_job(sweep: Path, bn: str, lr: float, seed: int, accs: list[float],
             status: str = "completed", diverged_at: int | None = None,
             extra: tuple[str, ...] = (), stopped_early: str | None = None) -> Path:
    """A job folder with a real RunRecord: evaluation every 50 steps, 0.1 s per step."""
    overrides = [f"bn={bn}", f"lr={lr}", f"seed={seed}", "trainer.max_steps=400"]
    job_dir = sweep / ",".join(sorted(overrides))
    job_dir.mkdir(parents=True)
    record = RunRecord(status=status, overrides=overrides + list(extra), choices={"bn": bn},
                       config={"lr": lr, "seed": seed, "trainer.batch_size": 128})
    for i, acc in enumerate(accs, start=1):
        step = i * EVERY
        record.eval_curve.append(EvalPoint(step, step * 128, step * 0.1, acc, 1.0 - acc))
        record.train_curve.append(TrainPoint(step, 2.0 - acc, acc))
    record.steps = len(accs) * EVERY
    record.final = {"test_acc": accs[-1], "test_loss": 1.0 - accs[-1]} if accs else {}
    record.diverged_at_step = diverged_at
    record.stopped_early = stopped_early
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


def test_runs_stopped_at_their_targets_are_counted_and_said(tmp_path: Path):
    """trainer.stop_at_targets: the outcome table gives the steps each run trained and how
    many stopped at the targets; their crossings count as any other."""
    make_job(tmp_path, "none", 0.2, 0, [0.1, 0.3, 0.5, 0.7, 0.75, 0.8, 0.82, 0.84])
    make_job(tmp_path, "gluon", 0.2, 0, [0.72, 0.81, 0.86], stopped_early="val accuracy 0.86")
    make_job(tmp_path, "gluon", 0.2, 1, [0.6, 0.75, 0.83, 0.87, 0.88], stopped_early="val accuracy 0.88")
    text = write_report(tmp_path).read_text()
    rows = read_rows(tmp_path)
    assert rows["bn=gluon"]["stopped_at_targets"] == "2"
    assert num(rows["bn=gluon"]["steps_run_mean"]) == pytest.approx(200)
    assert num(rows["bn=none"]["steps_run_mean"]) == pytest.approx(400)
    assert "| bn=gluon | 2 | 2 completed (2 stopped at the targets) | 200 ± 71 |" in text
    assert num(rows["bn=gluon"]["steps_to_0.85_mean"]) == pytest.approx(175)
    # a report asking for more than the runs stopped at: unknown, not "ran out at 150"
    higher = write_report(tmp_path, targets=(0.85, 0.90)).read_text()
    assert "seed 0: stopped at step 150 once it reached its own targets (up to 0.85" in higher
    assert read_rows(tmp_path)["bn=gluon"]["speedup_0.90_bound"] == "undetermined"


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
    assert none["not_reached_0.80_seeds"] == "seed 2: ran its 400 steps without reaching it"
    assert num(none["steps_to_0.70_mean"]) == pytest.approx(800 / 3, rel=1e-5)
    assert none["never_reached_0.85"] == "3" and none["steps_to_0.85_mean"] == ""

    # gluon: the diverged seed counts as diverged, reached 0.70 at step 50, never 0.80
    assert (gluon["seeds"], gluon["completed"], gluon["diverged"]) == ("3", "2", "1")
    assert num(gluon["final_test_acc_mean"]) == pytest.approx(0.88)  # completed seeds only
    assert num(gluon["final_test_acc_std"]) == pytest.approx(0.0141421, rel=1e-4)
    assert num(gluon["steps_to_0.70_mean"]) == pytest.approx(200 / 3, rel=1e-5)
    assert num(gluon["steps_to_0.80_mean"]) == pytest.approx(125)
    assert num(gluon["steps_to_0.80_std"]) == pytest.approx(35.3553, rel=1e-4)
    assert (gluon["reached_0.80"], gluon["never_reached_0.80"]) == ("2", "1")
    assert gluon["not_reached_0.80_seeds"] == "seed 2: diverged at step 80"
    # evaluations every 50 steps: gluon crossed 0.80 at 100 (after 50) and 150 (after 100)
    assert num(gluon["resolution_0.80"]) == pytest.approx(0.5)

    scratch = rows["bn=scratch,lr=0.2"]
    assert (scratch["seeds"], scratch["completed"], scratch["failed"],
            scratch["interrupted"]) == ("5", "1", "3", "1")
    assert num(scratch["steps_to_0.80_mean"]) == pytest.approx(100)
    assert scratch["steps_to_0.80_std"] == ""  # one seed: no spread
    assert (scratch["reached_0.80"], scratch["never_reached_0.80"]) == ("1", "4")
    assert "seed 3: interrupted at step 100" in scratch["not_reached_0.80_seeds"]

    # lr=1.6 rows match the lr=1.6 baseline, which diverged at step 3 (test below)
    assert rows["bn=none,lr=1.6"]["diverged"] == "1"
    assert rows["bn=none,lr=1.6"]["final_test_acc_mean"] == ""
    assert num(rows["bn=gluon,lr=1.6"]["steps_to_0.80_mean"]) == pytest.approx(200)

    md = md_path.read_text()
    assert md_path == sweep / "summary.md"
    assert "1 completed, 3 failed, 1 interrupted" in md
    assert "metrics.json unreadable" in md and "metrics.json missing" in md
    assert "'eval_curve' is not a list" in md
    assert "diverged at step 80" in md
    assert "`bn=gluon,lr=0.2`: not reached by seed 2: diverged at step 80" in md
    for png in ("convergence.png", "lr_robustness.png"):
        assert (sweep / png).stat().st_size > 10_000, png


def test_synthetic_sweep_speedups(sweep: Path):
    """Median per-seed speedups where seeds stopped short, never trained or are too few."""
    md = write_report(sweep).read_text()
    rows = read_rows(sweep)
    none, gluon, scratch = (rows[f"bn={bn},lr=0.2"] for bn in ("none", "gluon", "scratch"))
    assert num(none["speedup_steps_0.80"]) == pytest.approx(1.0)
    # 0.70: every seed of both reached it (gluon's seed 2 too, before diverging): the median
    # of the per-seed ratios 250/50, 250/100, 300/50, without interval (3 seeds: from 5)
    assert num(gluon["speedup_steps_0.70"]) == pytest.approx(5.0)
    assert gluon["speedup_0.70_bound"] == "" and gluon["speedup_0.70_ci_low"] == ""
    assert "3 seed(s)" in gluon["speedup_0.70_note"]
    # 0.80: seed 0 350/100, seed 1 400/150; seed 2 stopped in both (bn=none ran out at 400,
    # gluon diverged at 80): its ratio is unknown, so this sample puts the median between
    # the other two -- bounds on this sample, not a speedup from the seeds left over
    assert gluon["speedup_steps_0.80"] == "" and gluon["speedup_0.80_bound"] == "between"
    assert num(gluon["speedup_0.80_sample_low"]) == pytest.approx(400 / 150, rel=1e-5)
    assert num(gluon["speedup_0.80_sample_high"]) == pytest.approx(3.5)
    assert "seed 2 stopped before reaching it" in gluon["speedup_0.80_note"]
    # 0.85: no bn=none seed got there in 400 steps, gluon's seeds 0 and 1 at 200: ratios of
    # at least 2 (seed 2 unknown), so the median is at least 2 on this sample
    assert gluon["speedup_0.85_bound"] == "lower"
    assert num(gluon["speedup_0.85_sample_low"]) == pytest.approx(2.0)
    # three seeds never trained (corrupt or missing metrics.json): nothing is known of them
    assert scratch["speedup_0.80_bound"] == "undetermined"
    assert "`bn=scratch,lr=0.2` seeds 0, 2, 4 never trained" in scratch["speedup_0.80_note"]
    # lr=1.6: bn=none needed more than 3 steps, gluon 200 -- a lower bound, from that
    # baseline and not lr=0.2's
    assert num(rows["bn=gluon,lr=1.6"]["speedup_0.80_sample_low"]) == pytest.approx(3 / 200)
    assert rows["bn=gluon,lr=1.6"]["speedup_0.80_sample_high"] == "inf"
    assert rows["bn=gluon,lr=1.6"]["speedup_0.80_bound"] == "lower"
    assert "5.0× (no interval)" in md and "| undetermined |" in md
    assert "≥ 0.015× (bound on this sample, not a confidence bound)" in md
    assert "2.7× to 3.5× (bounds on this sample, not confidence bounds)" in md
    assert "order statistics of the per-seed log step ratios" in md  # the method, and why


# 5 paired seeds: bn=none reaches 0.80 at these steps, gluon at those (evaluations every 50)
NONE_STEPS = {0: 350, 1: 400, 2: 300, 3: 450, 4: 400}
GLUON_STEPS = {0: 100, 1: 150, 2: 100, 3: 100, 4: 150}


def reaching_at(step: int, length: int = 10) -> list[float]:
    """An accuracy curve (one point per 50 steps) that first reaches 0.80 at `step`."""
    return [0.81 if (i + 1) * EVERY >= step else 0.5 for i in range(length)]


def test_speedup_is_the_median_ratio_with_the_range_of_five_paired_seeds(tmp_path: Path):
    for seed in NONE_STEPS:
        make_job(tmp_path, "none", 0.2, seed, reaching_at(NONE_STEPS[seed]))
        make_job(tmp_path, "gluon", 0.2, seed, reaching_at(GLUON_STEPS[seed]))
    write_report(tmp_path)
    gluon = read_rows(tmp_path)["bn=gluon"]
    # per-seed ratios 3.5, 2.67, 3, 4.5, 2.67: median 3; with 5 seeds the interval is their
    # range, which covers the median with probability 1 - 2/2^5
    assert num(gluon["speedup_steps_0.80"]) == pytest.approx(3.0)
    assert num(gluon["speedup_0.80_ci_low"]) == pytest.approx(400 / 150, rel=1e-5)
    assert num(gluon["speedup_0.80_ci_high"]) == pytest.approx(4.5)
    assert num(gluon["speedup_0.80_coverage"]) == pytest.approx(0.9375)
    assert gluon["speedup_0.80_bound"] == "" and gluon["speedup_0.80_note"] == ""
    md = (tmp_path / "summary.md").read_text()
    assert "| 3.0× [2.7, 4.5] |" in md
    assert "5 seeds: order statistics 1 and 5, 93.8%" in md


def test_unpaired_seeds_get_the_median_over_every_pair_and_no_interval(tmp_path: Path):
    # bn=none ran seeds 0-4, gluon seeds 5-9: nothing to pair
    for seed in NONE_STEPS:
        make_job(tmp_path, "none", 0.2, seed, reaching_at(NONE_STEPS[seed]))
        make_job(tmp_path, "gluon", 0.2, seed + 5, reaching_at(GLUON_STEPS[seed]))
    write_report(tmp_path)
    gluon = read_rows(tmp_path)["bn=gluon"]
    ratios = sorted(a / b for a in NONE_STEPS.values() for b in GLUON_STEPS.values())
    assert num(gluon["speedup_steps_0.80"]) == pytest.approx(ratios[12], rel=1e-5)  # the 13th of 25
    assert gluon["speedup_0.80_ci_low"] == "" and "ran different seeds" in gluon["speedup_0.80_note"]


INF = math.inf


@pytest.mark.parametrize("case, config, why, bound, sample, interval", [
    # ratios of seeds 0-3: 3.5, 2.67, 3, 4.5; seed 4's is only known from one side
    ("baseline_never_reached", "bn=none", "seed 4: ran its 500 steps without reaching it",
     "between", (500 / 150, 3.5), (400 / 150, INF)),                      # seed 4: >= 3.33
    ("diverged", "bn=gluon", "seed 4: diverged at step 70",
     "between", (3.0, 3.5), (0.0, 400 / 70)),                              # <= 5.71
    ("interrupted", "bn=gluon", "seed 4: interrupted at step 100",
     "between", (3.0, 3.5), (0.0, 4.5)),                                   # <= 4
    ("never_reached", "bn=gluon", "seed 4: ran its 150 steps without reaching it",
     "", (3.0, 3.0), (0.0, 4.5)),                                          # <= 2.67
    ("failed_before_start", "bn=gluon", "seed 4: failed before training a step: out of memory",
     "between", (3.0, 3.5), None),                                         # unknown
])
def test_every_seed_counts(tmp_path: Path, case, config, why, bound, sample, interval):
    """Five paired seeds; seed 4 of one configuration does not reach 0.80. Its ratio is
    known from one side where it stopped, or not at all if it never trained a step; it
    counts with what is known. summary.csv and summary.md name the seed and why."""
    for seed in range(4):
        make_job(tmp_path, "none", 0.2, seed, reaching_at(NONE_STEPS[seed]))
        make_job(tmp_path, "gluon", 0.2, seed, reaching_at(GLUON_STEPS[seed]))
    if case == "baseline_never_reached":
        make_job(tmp_path, "gluon", 0.2, 4, reaching_at(GLUON_STEPS[4]))
        make_job(tmp_path, "none", 0.2, 4, [0.5] * 10)  # 500 steps, completed, never 0.80
    else:
        make_job(tmp_path, "none", 0.2, 4, reaching_at(NONE_STEPS[4]))
    if case == "diverged":
        make_job(tmp_path, "gluon", 0.2, 4, [0.5, 0.6], status="diverged", diverged_at=70)
    elif case == "interrupted":
        make_job(tmp_path, "gluon", 0.2, 4, [0.5, 0.6], status="interrupted")
    elif case == "never_reached":
        make_job(tmp_path, "gluon", 0.2, 4, [0.5, 0.6, 0.7])  # completed after 150 steps
    elif case == "failed_before_start":  # the record the sweep writes for such a job
        job_dir = tmp_path / "bn=gluon,lr=0.2,seed=4,trainer.max_steps=400"
        job_dir.mkdir()
        record_failure(job_dir, ["bn=gluon", "lr=0.2", "seed=4", "trainer.max_steps=400"],
                       RuntimeError("out of memory"))
    write_report(tmp_path)
    rows = read_rows(tmp_path)
    row = rows[config]
    assert row["seeds"] == "5" and row["never_reached_0.80"] == "1"
    assert row["not_reached_0.80_seeds"] == why
    gluon = rows["bn=gluon"]
    assert gluon["speedup_0.80_bound"] == bound
    assert num(gluon["speedup_0.80_sample_low"]) == pytest.approx(sample[0], rel=1e-5)
    assert num(gluon["speedup_0.80_sample_high"]) == pytest.approx(sample[1], rel=1e-5)
    if interval is None:
        assert gluon["speedup_0.80_ci_low"] == "" and "both sides" in gluon["speedup_0.80_note"]
    else:
        assert num(gluon["speedup_0.80_ci_low"]) == pytest.approx(interval[0], rel=1e-5)
        assert num(gluon["speedup_0.80_ci_high"]) == pytest.approx(interval[1], rel=1e-5)
    if bound:
        assert "a bound on this sample, not a confidence bound" in gluon["speedup_0.80_note"]
    md = (tmp_path / "summary.md").read_text()
    assert f"`{config}`: not reached by {why}" in md
    if case == "diverged":
        assert "| 3.0× to 3.5× (bounds on this sample, not confidence bounds) (0, 5.7] |" in md
    if case == "baseline_never_reached":
        assert "(bounds on this sample, not confidence bounds) [2.7, ∞) |" in md


@pytest.mark.slow
def test_targets_from_the_command_line_are_recomputed_from_the_curves(tmp_path: Path):
    make_job(tmp_path, "none", 0.2, 0, [0.5, 0.7, 0.76])
    make_job(tmp_path, "gluon", 0.2, 0, [0.74, 0.76, 0.9])
    done = subprocess.run([sys.executable, "-m", "bnexp.report", str(tmp_path), "--targets", "0.75"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rows = read_rows(tmp_path)
    # 0.75 is not among the targets the runs recorded (metrics.TARGETS): read from the curves
    assert num(rows["bn=none"]["steps_to_0.75_mean"]) == 150
    assert num(rows["bn=gluon"]["steps_to_0.75_mean"]) == 100
    assert num(rows["bn=gluon"]["speedup_steps_0.75"]) == pytest.approx(1.5)
    assert "steps_to_0.70_mean" not in rows["bn=none"]
    assert "## Time to test accuracy 0.75" in (tmp_path / "summary.md").read_text()
    bad = subprocess.run([sys.executable, "-m", "bnexp.report", str(tmp_path), "--targets", "0.7,high"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    assert "'0.7,high'" in bad.stderr


def test_old_metrics_files_still_read(tmp_path: Path):
    """metrics.json written before validation splits: test_acc/test_loss in eval points."""
    job_dir = make_job(tmp_path, "gluon", 0.2, 0, [0.6, 0.75])
    data = json.loads((job_dir / "metrics.json").read_text())
    for point in data["eval_curve"]:
        point["test_acc"], point["test_loss"] = point.pop("acc"), point.pop("loss")
        del point["split"], point["wall_seconds"]
    data.pop("to_accuracy")
    data["a_field_from_a_newer_bnexp"] = 1
    (job_dir / "metrics.json").write_text(json.dumps(data))
    write_report(tmp_path)
    row = read_rows(tmp_path)["default"]
    assert row["completed"] == "1" and num(row["steps_to_0.70_mean"]) == 100


@pytest.mark.slow
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
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "multirun.yaml").write_text("hydra: {}\n")
    no_runs = subprocess.run([sys.executable, "-m", "bnexp.report", str(empty)],
                             cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert no_runs.returncode == 2 and "no runs in" in no_runs.stderr
    assert len(no_runs.stderr.strip().splitlines()) == 1 and not (empty / "summary.md").exists()


@pytest.mark.slow
def test_help_lists_the_studies():
    from bnexp.report.studies import sections
    studies = sections()
    assert len({name for name, _, _ in studies}) == len(studies) >= 8
    assert all(summary for _, summary, _ in studies)
    done = subprocess.run([sys.executable, "-m", "bnexp.report", "--help"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0
    listed = [line.split()[0] for line in done.stdout.split("studies (")[1].splitlines()[1:] if line.strip()]
    assert listed == [name for name, _, _ in studies]


def test_init_table_asks_for_the_steps_the_schedule_evaluated(tmp_path: Path):
    """A dense schedule evaluates 91 and 101, not 100: the column is step 101, its value
    the accuracy evaluated there (not step 91's under the name of step 100)."""
    for init in ("standard", "source"):
        job_dir = tmp_path / f"bn.init={init}"
        job_dir.mkdir()
        record = RunRecord(status="completed", overrides=[f"bn.init={init}"], config={"bn.init": init})
        for step, acc in ((5, 0.1), (20, 0.2), (50, 0.3), (91, 0.4), (101, 0.8)):
            record.eval_curve.append(EvalPoint(step, step * 128, step * 0.1, acc, 1 - acc))
        record.steps, record.final = 101, {"test_acc": 0.8}
        write_json_atomic(job_dir / "metrics.json", record.to_json())
    md = write_report(tmp_path).read_text()
    assert "| acc, step 101 |" in md and "step 100" not in md and "step 91" not in md
    assert "| bn.init=source | 0.100 | 0.200 | 0.300 | 0.800 |" in md


def test_landscape_ratio_is_to_the_matching_baseline(tmp_path: Path):
    """Two learning rates, each with its bn=none: gluon's ratio is to its own lr's."""
    for lr, none_level in ((0.1, 8.0), (0.2, 4.0)):
        with_monitors(make_job(tmp_path, "none", lr, 0, [0.3, 0.6]), monitored(0.5, (2.0, 0.5), none_level))
        with_monitors(make_job(tmp_path, "gluon", lr, 0, [0.7, 0.8]), monitored(0.0, (3.0, 0.25), 1.0))
    md = write_report(tmp_path).read_text()
    # loss variation 1 against bn=none's 8 at lr=0.1 and 4 at lr=0.2, at the matched phase
    table = md.split("## Loss landscape")[1]
    assert "| bn=gluon,lr=0.1 | 1 | 1 (8) |" in table
    assert "| bn=gluon,lr=0.2 | 1 | 1 (4) |" in table


def test_batch_table_says_when_some_seeds_did_not_reach(tmp_path: Path):
    for b in (8, 128):
        for seed, accs in ((0, [0.5, 0.81]), (1, [0.5, 0.6])):
            job_dir = tmp_path / f"trainer.batch_size={b},seed={seed}"
            job_dir.mkdir()
            record = RunRecord(status="completed", config={"trainer.batch_size": b}, choices={"bn": "gluon"},
                               overrides=[f"trainer.batch_size={b}", f"seed={seed}"])
            for i, acc in enumerate(accs, start=1):
                record.eval_curve.append(EvalPoint(i * 10, i * 10 * b, i * 1.0, acc, 1 - acc))
            record.steps, record.final = 20, {"test_acc": accs[-1]}
            write_json_atomic(job_dir / "metrics.json", record.to_json())
    md = write_report(tmp_path, targets=(0.8,)).read_text()
    assert "| gluon | 8 | — | 20 (1/2) | 160 (1/2) | 2.0 (1/2) | 0.705 |" in md


def test_every_study_module_is_a_section():
    """Each module of bnexp/report/studies/ (one per figure) is a section of the report, in
    its ORDER, with its SUMMARY."""
    import importlib
    from bnexp.report.studies import sections
    found = sections()
    assert all(callable(section) for _, _, section in found)
    assert {name for name, _, _ in found} == {
        "activations", "batch", "claims", "convergence", "factorial", "ics", "init", "landscape",
        "lr", "lr_grid", "momentum", "small_batch", "trials"}
    modules = [importlib.import_module(f"bnexp.report.studies.{name}") for name, _, _ in found]
    assert [m.ORDER for m in modules] == sorted(m.ORDER for m in modules)
    assert [summary for _, summary, _ in found] == [m.SUMMARY for m in modules]
    assert [section for _, _, section in found] == [m.section for m in modules]


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
    assert (tmp_path / "report.html").stat().st_size > 10_000  # the figure inside
    with open(tmp_path / "curves.csv") as f:
        assert {r["metric"] for r in csv.DictReader(f)} == {"train_loss", "train_acc",
                                                            "test_loss", "test_acc"}


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
    landscape measures proportional to `landscape` (conv0 has nothing before it: ICS 0);
    ICS and landscape every 50 steps and twice where the training loss reached 1.0 (phase)."""
    l2, cos = conv1_ics
    at = [(0, None), (50, None), (61, 1.0), (62, 1.0)]
    return {"activations": activations_run(shift),
            "ics": [{"step": s, "phase": p, "layers": {"conv0": {"l2": 0.0, "cos": 1.0},
                                                       "conv1": {"l2": l2, "cos": cos}}}
                    for s, p in at],
            "landscape": [{"step": s, "phase": p, "loss_range": landscape,
                           "grad_change": landscape / 2, "beta_smoothness": 2 * landscape}
                          for s, p in at]}


def test_mechanism_figures_and_numbers(tmp_path: Path):
    for seed in (0, 1):
        with_monitors(make_job(tmp_path, "none", 0.2, seed, [0.3, 0.6]), monitored(0.5, (2.0, 0.5), 4.0))
        with_monitors(make_job(tmp_path, "gluon", 0.2, seed, [0.7, 0.8]), monitored(0.0, (3.0, 0.25), 1.0))
    md = write_report(tmp_path).read_text()
    for png in ("activations.png", "ics.png", "landscape.png"):
        assert (tmp_path / png).stat().st_size > 10_000, png
        assert f"({png})" in md
    from bnexp.report import jobs
    from bnexp.report.studies import activations
    drifts = activations.drifts_by_group(jobs.group_jobs(jobs.find_jobs(tmp_path)))
    # none: the median goes 0 -> 1 over a width of 2 -> drift 0.5; gluon: it stays -> 0
    assert drifts["bn=none"]["conv0"] == [0.5, 0.5] and drifts["bn=gluon"]["conv0"] == [0.0, 0.0]
    assert "| bn=none | 0.50 ± 0.00 (width 2.000 ± 0.000) |" in md
    assert "| bn=gluon | 0.00 ± 0.00 (width 2.000 ± 0.000) |" in md
    # at the phase: conv1's l2 3 against none's 2 (conv0, always 0, is left out); cosine 0.25
    # against 0.5; smoothness 2 against none's 8 (2 seeds: the ratio, no interval)
    assert "| bn=gluon | 1 | 3 (0.667) | 0.25 (2) |" in md
    assert "| bn=gluon | 1 | 1 (4) | 0.5 (4) | 2 (4) |" in md


def test_study_figures(tmp_path: Path):
    """momentum/eps, batch size and init sweeps each get their figure and table."""
    def job(name, overrides, config, accs, train_accs=None, choices=None):
        job_dir = tmp_path / name / ",".join(overrides)
        job_dir.mkdir(parents=True)
        record = RunRecord(status="completed", overrides=overrides, config=config, choices=choices or {})
        for i, acc in enumerate(accs, start=1):
            record.eval_curve.append(EvalPoint(i * 10, i * 10 * 128, i * 1.0, acc, 1 - acc, 0, "val"))
            record.train_curve.append(TrainPoint(i * 10, 2 - acc, (train_accs or accs)[i - 1]))
        record.steps = len(accs) * 10
        record.final = {"test_acc": accs[-1]}
        write_json_atomic(job_dir / "metrics.json", record.to_json())

    for m in (0.0, 0.99):
        for e in (1e-5, 0.1):
            job("momentum", [f"momentum={m}", f"eps={e}"], {"momentum": m, "eps": e},
                [0.2 if m == 0.99 else 0.7, 0.85], [0.7, 0.85], {"bn": "gluon"})
    md = write_report(tmp_path / "momentum").read_text()
    assert (tmp_path / "momentum" / "momentum_eps.png").exists() and "## BN momentum and epsilon" in md
    assert "| 0.99 | 1e-05 | 0.200 |" in md  # evaluated accuracy at step 10 lags with momentum 0.99

    for bn in ("none", "gluon"):
        for b in (8, 128):
            config = {"trainer.batch_size": b, "lr": 0.2,
                      "trainer.lr_scaling": "linear", "trainer.lr_reference_batch": 128}
            job("batch", [f"bn={bn}", f"trainer.batch_size={b}"], config,
                [0.5, 0.81] if bn == "gluon" else [0.5, 0.6], choices={"bn": bn})
    md = write_report(tmp_path / "batch").read_text()
    assert (tmp_path / "batch" / "batch_size.png").exists() and "## Batch size" in md
    # steps/images/seconds to each report target (0.70, 0.80, 0.85)
    assert "| gluon | 8 | 0.0125 | 20 | 2560 | 2.0 | 20 | 2560 | 2.0 | never | never | never | 0.810 |" in md
    assert "| none | 128 | 0.2 |" + " never |" * 9 + " 0.600 |" in md

    for init in ("standard", "source"):
        for seed in (0, 1):
            job("init", [f"bn.init={init}", f"seed={seed}"], {"bn.init": init, "seed": seed},
                [0.1 if init == "source" else 0.6, 0.75, 0.82])
    md = write_report(tmp_path / "init").read_text()
    assert (tmp_path / "init" / "init.png").exists()
    # evaluated at 10, 20, 30: the columns are the evaluated steps nearest 5, 20, 50, 100
    assert "| config | acc, step 10 | acc, step 20 | acc, step 30 | steps to 0.70 |" in md
    assert "| bn.init=source | 0.100 ± 0.000 | 0.750 ± 0.000 | 0.820 ± 0.000 | 20 ± 0 |" in md


def test_factorial_pairs_each_cell_across_its_own_learning_rates(tmp_path: Path):
    """experiment=convergence: arms differ in bn *and* lr; each (init, optimizer) cell pairs
    its bn=none arm with its BN arm by seed. Known answer: at the source's init none needs 4x
    BN's steps (per seed 3.5x-4.5x), at Xavier with momentum 2x."""
    cells = {("normal", "sgd"): (0.4, 0.8, 4.0), ("xavier", "momentum"): (0.04, 0.08, 2.0)}
    for (init, optimizer), (none_lr, bn_lr, ratio) in cells.items():
        for seed, jitter in enumerate((0.875, 0.95, 1.0, 1.05, 1.125)):
            for bn, lr, steps in (("none", none_lr, 100 * ratio * jitter), ("gluon", bn_lr, 100)):
                arm = f"{bn}_{init}_{optimizer}"
                job_dir = tmp_path / f"arm={arm},seed={seed}"
                job_dir.mkdir()
                record = RunRecord(status="completed", overrides=[f"arm={arm}", f"seed={seed}"],
                                   choices={"bn": bn, "optimizer": optimizer},
                                   config={"lr": lr, "seed": seed, "model.init": init})
                for step, acc in ((int(steps) - 1, 0.5), (int(steps), 0.75)):
                    record.eval_curve.append(EvalPoint(step, step * 128, step * 0.1, acc, 1 - acc))
                record.steps, record.final = int(steps), {"test_acc": 0.75}
                write_json_atomic(job_dir / "metrics.json", record.to_json())
    md = write_report(tmp_path, targets=(0.7,)).read_text()
    table = md.split("## BN's speedup per cell")[1]
    assert "| normal | sgd | none | 0.4 | 5 | 400 | baseline |" in table
    assert "| normal | sgd | gluon | 0.8 | 5 | 100 | 4.0× [3.5, 4.5] |" in table
    assert "| xavier | momentum | gluon | 0.08 | 5 | 100 | 2.0× [1.8, 2.2] |" in table


@pytest.mark.parametrize("split", ["val", "test"])
def test_lr_grid_chooses_each_arms_lr_at_the_deepest_target_its_median_seed_reached(
        tmp_path: Path, split: str):
    """experiment=lr_grid: per arm (bn here), the lr with the fewest median steps at the last
    target; an arm whose median seed reaches it at no lr is judged at the first target.
    Known answer: gluon reaches 0.80 fastest at lr 0.4 (0.8 ties on 0.70 but misses 0.80
    with one seed); none never reaches 0.80 and is fastest to 0.70 at lr 0.2. Chosen on
    the test set (no validation split), the table says so and what to do instead."""
    curves = {  # (bn, lr) -> per seed: step where 0.70 is reached, step where 0.80 is (None: never)
        ("gluon", 0.2): [(100, 300), (100, 300)], ("gluon", 0.4): [(50, 150), (50, 200)],
        ("gluon", 0.8): [(50, 100), (50, None)],
        ("none", 0.2): [(400, None), (450, None)], ("none", 0.4): [(500, None), (None, None)],
        ("none", 0.8): [(None, None), (None, None)]}
    for (bn, lr), seeds in curves.items():
        for seed, (at70, at80) in zip((100, 101), seeds):
            points = [(s, a) for s, a in ((at70, 0.7), (at80, 0.8)) if s is not None] or [(700, 0.5)]
            record = RunRecord(status="completed", overrides=[f"bn={bn}", f"lr={lr}", f"seed={seed}"],
                               choices={"bn": bn}, config={"lr": lr, "seed": seed})
            record.eval_curve = [EvalPoint(s, s * 128, s * 0.1, a, 1 - a, split=split)
                                 for s, a in points]
            record.steps = 700
            job_dir = tmp_path / f"bn={bn},lr={lr},seed={seed}"
            job_dir.mkdir()
            write_json_atomic(job_dir / "metrics.json", record.to_json())
    md = write_report(tmp_path, targets=(0.7, 0.8)).read_text()
    table = md.split("## Each arm's best learning rate")[1]
    assert "| bn=gluon | 100 / 300 | 50 / 175 | 50 / — | lr 0.4 (by 0.80) |" in table
    assert "| bn=none | 425 / — | — / — | — / — | lr 0.2 (by 0.70) |" in table
    name = {"val": "validation", "test": "test"}[split]
    assert table.startswith(f" (steps to {name} accuracy 0.70 / 0.80)")
    assert ("hold out a validation split (data.val_size=5000)" in table) == (split == "test")
