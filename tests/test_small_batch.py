"""The small_batch study (bnexp/report/studies/small_batch.py) on a synthetic sweep whose
numbers are known, with the options conf/experiment/small_batch.yaml sweeps: final
validation error per (model, normalization option, batch), mean ± 95% t half width over
the seeds, a line per normalization option, a panel per model option."""
from __future__ import annotations

from pathlib import Path

from scipy.stats import t

from bnexp.files import write_json_atomic
from bnexp.record import EvalPoint, RunRecord
from bnexp.report import write_report


def job(sweep: Path, model: str, bn: str, batch: int, seed: int, final_acc: float) -> None:
    overrides = [f"model={model}", f"bn={bn}", f"trainer.batch_size={batch}", f"seed={seed}"]
    job_dir = sweep / ",".join(overrides)
    job_dir.mkdir(parents=True)
    own = {"group": {"bn.groups": 10}, "ghost_2": {"bn.virtual_batch": 2}}.get(bn, {})
    config = {**own, "trainer.batch_size": batch, "seed": seed, "lr": 0.2,
              "trainer.lr_scaling": "linear", "trainer.lr_reference_batch": 128}
    record = RunRecord(status="completed", overrides=overrides, config=config,
                       choices={"model": model, "bn": bn})
    for i, acc in enumerate([0.5, 0.75, final_acc], start=1):
        step = i * 1000 // batch
        record.eval_curve.append(EvalPoint(step, step * batch, i * 1.0, acc, 1 - acc, 0, "val"))
    record.steps = 3000 // batch
    record.final = {"test_acc": final_acc}
    write_json_atomic(job_dir / "metrics.json", record.to_json())


def test_error_against_batch_size_per_variant_and_model(tmp_path: Path):
    accs = {("lenet", "gluon", 2): (0.70, 0.74), ("lenet", "gluon", 64): (0.85, 0.87),
            ("lenet", "group", 2): (0.84, 0.86), ("lenet", "group", 64): (0.84, 0.86),
            ("mlp_relu", "gluon", 2): (0.40, 0.50), ("mlp_relu", "gluon", 64): (0.80, 0.82),
            ("mlp_relu", "ghost_2", 2): (0.40, 0.50), ("mlp_relu", "ghost_2", 64): (0.60, 0.62),
            ("mlp_relu", "renorm", 2): (0.62, 0.64), ("mlp_relu", "renorm", 64): (0.80, 0.82)}
    for (model, bn, batch), pair in accs.items():
        for seed, acc in enumerate(pair):
            job(tmp_path, model, bn, batch, seed, acc)
    md = write_report(tmp_path).read_text()
    assert (tmp_path / "small_batch.png").exists()
    assert "## Small batches: the normalization family" in md
    half = t.ppf(0.975, 1) * 0.04 / 2 ** 0.5 / 2 ** 0.5  # sd of (0.30, 0.26) = 0.02 * sqrt(2)
    assert f"| lenet | gluon | 2 | 0.003125 | 0.280 ± {half:.3f} |" in md
    # a line per option, named as the sweep names it (conf/bn/ghost_2.yaml: 2-image ghost batches)
    assert "| lenet | group | 64 | 0.1 |" in md
    assert "| mlp_relu | ghost_2 | 2 |" in md
    # the study states no verdict of its own: the papers' claims are decided by the claims study
    assert "Wu & He:" not in md.split("## Small batches")[1].split("\n## ")[0]
