"""Write or check golden runs: the curves of short runs with fixed speed settings."""
import json, subprocess, sys, tempfile
from pathlib import Path
REPO = Path("/work/main")
COMMON = ["trainer.max_steps=30", "trainer.eval_every_steps=10", "data.test_subset=500",
          "trainer.progress=log", "perf.threads=1", "perf.pool=native", "seed=3", "data.val_size=500"]
CASES = {
    "none": ["bn=none"], "scratch": ["bn=scratch", "perf.bn_impl=centered"],
    "scratch_surrogate": ["bn=scratch", "perf.bn_impl=surrogate"],
    "scratch_compiled": ["bn=scratch", "perf.bn_impl=compiled"],
    "gluon": ["bn=gluon", "momentum=0.5", "eps=1e-3"], "group": ["bn=group", "bn.groups=5"],
    "group_gluon": ["bn=group_gluon"], "layer": ["bn=layer"], "instance": ["bn=instance"],
    "renorm": ["bn=renorm", "bn.relax_begin=5", "bn.relax_end=20"], "ghost": ["bn=ghost", "bn.virtual_batch=16"],
    "noisy": ["bn=noisy"], "source_init": ["bn=scratch", "perf.bn_impl=centered", "bn.init=source"],
    "mlp": ["model=mlp", "bn=gluon"], "dense": ["bn=gluon", "model.bn_on_dense=true", "model.init=xavier"],
    "lr_scaled": ["bn=gluon", "trainer.batch_size=64", "trainer.lr_scaling=linear"],
}
def curves(run_dir):
    m = json.loads((run_dir / "metrics.json").read_text())
    strip = lambda p: {k: v for k, v in p.items() if "seconds" not in k}
    return {"status": m["status"], "steps": m["steps"], "eval_curve": [strip(p) for p in m["eval_curve"]],
            "train_curve": m["train_curve"], "final": m["final"]}
def run(name, args, extra):
    with tempfile.TemporaryDirectory() as d:
        p = subprocess.run([sys.executable, "-m", "bnexp.run", *COMMON, *args, *extra, f"hydra.run.dir={d}"],
                           cwd=REPO, capture_output=True, text=True)
        assert p.returncode == 0, (name, p.stderr[-2000:])
        return curves(Path(d))
mode, out = sys.argv[1], Path(sys.argv[2])
extra = sys.argv[3:]
bad = 0
for name, args in CASES.items():
    got = run(name, args, extra)
    path = out / f"{name}.json"
    if mode == "write":
        path.write_text(json.dumps({"args": args, **got}, indent=1))
    else:
        want = json.loads(path.read_text()); want.pop("args")
        same = want == got
        bad += not same
        print(name, "same" if same else "DIFFERENT")
print("done", bad)
