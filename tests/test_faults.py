"""Faults during training: divergence, interruption and resume, atomic checkpoints,
resumable sweeps. Driven through the real CLI where a user would meet them."""
import csv
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import REPO, run_cli

SHORT = ["trainer.eval_every_steps=20", "trainer.log_every_steps=5", "data.test_subset=512",
         "trainer.progress=log", "bn=gluon"]


def metrics(run_dir):
    return json.loads((run_dir / "metrics.json").read_text())


def start_and_signal(run_dir, signum, after_line="step 10/", args=None, times=1, command=None):
    """Start a 40-step run (or `args`), deliver `signum` (`times` times in a row) once
    training is under way. `command` replaces `python -m bnexp.run`."""
    args = args or ["trainer.max_steps=40", *SHORT, f"hydra.run.dir={run_dir}"]
    command = command or [sys.executable, "-m", "bnexp.run"]
    proc = subprocess.Popen([*command, *args], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if after_line in line:
            for _ in range(times):
                proc.send_signal(signum)
            break
    lines += proc.stdout.readlines()
    return proc.wait(timeout=120), "".join(lines)


@pytest.mark.slow
def test_sigint_then_resume_matches_uninterrupted_run(tmp_path):
    interrupted, straight = tmp_path / "interrupted", tmp_path / "straight"
    code, output = start_and_signal(interrupted, signal.SIGINT)
    assert code == 130, output
    assert "Traceback" not in output
    assert "SIGINT received: stopped after step" in output  # said by the loop, not the handler
    m = metrics(interrupted)
    assert m["status"] == "interrupted" and 10 <= m["steps"] < 40
    assert (interrupted / "checkpoint.params").is_file()
    assert f"resume={interrupted}" in output  # tells the user how to continue

    resumed = run_cli(f"resume={interrupted}")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    done = run_cli("trainer.max_steps=40", *SHORT, f"hydra.run.dir={straight}")
    assert done.returncode == 0
    a, b = metrics(interrupted), metrics(straight)
    assert a["status"] == b["status"] == "completed" and a["steps"] == b["steps"] == 40
    assert [(p["step"], p["acc"], p["loss"]) for p in a["eval_curve"]] == \
           [(p["step"], p["acc"], p["loss"]) for p in b["eval_curve"]]
    assert a["final"]["test_acc"] == b["final"]["test_acc"]
    assert a["final"]["train_loss"] == pytest.approx(b["final"]["train_loss"], rel=1e-6)

    # one TensorBoard run, no duplicated or missing points
    acc = EventAccumulator(str(interrupted), size_guidance={"scalars": 0})
    acc.Reload()
    steps = [e.step for e in acc.Scalars("train/loss")]
    assert steps == sorted(set(steps)) and steps[-1] == 40
    assert [e.step for e in acc.Scalars("test/acc")] == [20, 40]
    assert (interrupted / ".hydra" / "config.yaml").read_text().count("resume: null") == 1


@pytest.mark.slow
def test_second_ctrl_c_aborts_at_once_without_a_traceback(tmp_path):
    code, output = start_and_signal(tmp_path, signal.SIGINT, after_line="step 5/", times=2)
    assert code == 130, output
    assert "Traceback" not in output and "reentrant" not in output, output
    assert metrics(tmp_path)["status"] == "interrupted"


# Stands in for submitit, whose SIGUSR2 handler ("time is nearly up: checkpoint and
# requeue") logs and pickles from inside the signal.
LIBRARY_HANDLER = """
import json, pathlib, runpy, signal, sys
marker = pathlib.Path(sys.argv[1]); del sys.argv[1]
def requeue(signum, frame):
    status = json.loads((marker.parent / "run" / "metrics.json").read_text())["status"]
    marker.write_text(f"{signal.Signals(signum).name} handled, run {status}")
    sys.exit(3)
signal.signal(signal.SIGUSR2, requeue)
sys.argv[0] = "bnexp.run"
runpy.run_module("bnexp.run", run_name="__main__")
"""


@pytest.mark.slow
def test_a_library_signal_handler_runs_after_the_clean_stop(tmp_path):
    run_dir, marker = tmp_path / "run", tmp_path / "handled.txt"
    code, output = start_and_signal(
        run_dir, signal.SIGUSR2, command=[sys.executable, "-c", LIBRARY_HANDLER, str(marker)])
    assert code == 3, output  # the library's handler had the last word, as it would have
    assert marker.read_text() == "SIGUSR2 handled, run interrupted"  # ...after metrics.json
    assert (run_dir / "checkpoint.params").is_file()
    assert "Traceback" not in output


def test_signal_handler_only_records(caplog, capsys):
    """No I/O inside the handler: a signal can land while the main thread is writing to
    the same stream, and a write from the handler would raise "reentrant call"."""
    from bnexp.training.signals import graceful_stop

    with caplog.at_level("DEBUG"), graceful_stop() as stop:
        assert stop() == ""
        os.kill(os.getpid(), signal.SIGINT)
        assert stop() == "SIGINT"
        os.kill(os.getpid(), signal.SIGTERM)  # recorded too; the first one names the stop
        assert stop() == "SIGINT"
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C after a stop request: abort now
    assert caplog.records == [] and capsys.readouterr() == ("", "")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored


@pytest.mark.slow
def test_sigterm_stops_cleanly_with_a_checkpoint(tmp_path):
    code, output = start_and_signal(tmp_path, signal.SIGTERM, after_line="step 5/")
    assert code == 130, output
    assert metrics(tmp_path)["status"] == "interrupted"
    assert (tmp_path / "checkpoint.params").is_file()


@pytest.mark.slow
def test_divergent_lr_inside_a_sweep(tmp_path):
    proc = run_cli("--multirun", "bn=gluon", "lr=0.2,1000", "trainer.max_steps=20",
                   "trainer.eval_every_steps=10", "data.test_subset=256", f"hydra.sweep.dir={tmp_path}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    job = {d.name.split("lr=")[1].split(",")[0]: d for d in tmp_path.glob("*lr=*")}
    bad, good = metrics(job["1000"]), metrics(job["0.2"])
    assert bad["status"] == "diverged" and 1 <= bad["diverged_at_step"] <= 20
    assert good["status"] == "completed" and good["steps"] == 20
    rows = {r["lr"]: r for r in csv.DictReader(open(tmp_path / "summary.csv"))}
    assert rows["1000"]["diverged"] == "1" and rows["0.2"]["completed"] == "1"
    # TensorBoard's HParams tab shows the diverged session as a failure
    acc = EventAccumulator(str(job["1000"]))
    acc.Reload()
    from tensorboard.plugins.hparams import plugin_data_pb2
    end = plugin_data_pb2.HParamsPluginData.FromString(
        acc.PluginTagToContent("hparams")["_hparams_/session_end_info"])
    assert end.session_end_info.status == 2  # STATUS_FAILURE


@pytest.mark.slow
def test_rerun_sweep_with_resume_auto_skips_completed_jobs(tmp_path):
    args = ["--multirun", "bn=none,gluon", "trainer.max_steps=5", "trainer.eval_every_steps=5",
            "data.test_subset=256", f"hydra.sweep.dir={tmp_path}"]
    assert run_cli(*args).returncode == 0
    kept, = tmp_path.glob("bn=gluon")
    redo, = tmp_path.glob("bn=none")
    kept_stamp = (kept / "metrics.json").stat().st_mtime_ns
    (redo / "metrics.json").unlink()
    again = run_cli(*args, "resume=auto")
    assert again.returncode == 0, again.stdout + again.stderr
    assert (again.stdout + again.stderr).count("already completed; skipping") == 1
    assert (kept / "metrics.json").stat().st_mtime_ns == kept_stamp
    assert metrics(redo)["status"] == "completed"


@pytest.mark.slow
def test_interrupted_sweep_continues_with_resume_auto(tmp_path):
    args = ["--multirun", "bn=none,gluon", "trainer.max_steps=30", "trainer.eval_every_steps=15",
            "trainer.log_every_steps=5", "data.test_subset=256", "trainer.progress=log",
            f"hydra.sweep.dir={tmp_path}"]
    code, output = start_and_signal(None, signal.SIGINT, after_line="step 10/", args=args)
    assert code == 130, output  # Ctrl-C stops the whole sweep...
    first, = tmp_path.glob("bn=none")
    assert metrics(first)["status"] == "interrupted"
    assert not list(tmp_path.glob("bn=gluon/metrics.json"))  # ...before the second job
    again = run_cli(*args, "resume=auto")
    out = again.stdout + again.stderr
    assert again.returncode == 0, out
    assert "resumed from" in out
    for job in tmp_path.glob("bn=*"):
        m = metrics(job)
        assert m["status"] == "completed" and m["steps"] == 30, job.name
    assert (tmp_path / "summary.csv").is_file()


@pytest.mark.slow
def test_resume_errors_are_clear(tmp_path):
    proc = run_cli(f"resume={tmp_path / 'never-ran'}")
    assert proc.returncode == 2 and "no such run folder" in proc.stdout + proc.stderr
    assert not (tmp_path / "never-ran").exists()  # a failed resume leaves nothing behind
    (tmp_path / "empty").mkdir()
    proc = run_cli(f"resume={tmp_path / 'empty'}")
    assert proc.returncode == 2 and "no checkpoint.params" in proc.stdout + proc.stderr
    # found before the run starts: no log written into the folder, no speed probe run
    assert not list((tmp_path / "empty").iterdir())
    code, _ = start_and_signal(tmp_path / "r", signal.SIGINT, after_line="step 5/")
    assert code == 130
    proc = run_cli(f"resume={tmp_path / 'r'}", "lr=0.1")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2 and "lr=0.1 differs from the run being continued (lr=0.2)" in out
    assert "Traceback" not in out


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    from dataclasses import replace

    import mxnet as mx
    from bnexp.training import checkpoint
    from bnexp.nn.build import build_net
    from bnexp.training.optimizers import sgd
    from bnexp.training.step import make_optimizer
    from conftest import config

    cfg = config()
    net = build_net(cfg, [mx.cpu()])
    trainer = make_optimizer(net, sgd(0.1), [mx.cpu()])
    checkpoint.save(tmp_path, net, trainer, {"step": 1})
    before = (tmp_path / "checkpoint.params").read_bytes()

    def crash(path, arrays):  # dies half-way through writing the new checkpoint
        with open(path, "wb") as f:
            f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint.nd, "save", crash)
    from bnexp.errors import UserError
    with pytest.raises(UserError, match="cannot write the checkpoint .* \\(disk full\\); the previous"):
        checkpoint.save(tmp_path, net, trainer, {"step": 2})
    assert (tmp_path / "checkpoint.params").read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.params"]
    monkeypatch.undo()

    first = {k: p.data().asnumpy() for k, p in net.collect_params().items()}
    fresh = build_net(replace(cfg, seed=1), [mx.cpu()])
    state = checkpoint.restore(tmp_path, fresh, make_optimizer(fresh, sgd(0.1), [mx.cpu()]))
    assert state == {"step": 1}
    for (name, p), (_, q) in zip(net.collect_params().items(), fresh.collect_params().items()):
        np.testing.assert_array_equal(p.data().asnumpy(), q.data().asnumpy(), err_msg=name)
    assert first  # parameters include the BN moving statistics
    assert any("running_var" in k for k in first)
