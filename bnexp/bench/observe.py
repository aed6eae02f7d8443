"""Measuring a real `python -m bnexp.run` from outside: wall seconds to a test accuracy
(its log lines, timestamped as they arrive) and peak memory (`/usr/bin/time -v`)."""
from __future__ import annotations

import json
import os
import re
import resource
import shutil
import signal
import subprocess
import threading
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable


_EVAL_LINE = re.compile(r"step (\d+)/\d+ (?:test|val)_loss=\S+ (?:test|val)_acc=([0-9.eE+-]+|nan)")


def parse_eval_line(line: str) -> tuple[int, float] | None:
    """`step 351/2340 test_loss=0.41 test_acc=0.8512` (the progress log line, bnexp/training/progress.py; val_ during
    training with a validation split) -> (351, 0.8512)."""
    m = _EVAL_LINE.search(line)
    return (int(m.group(1)), float(m.group(2))) if m else None


def time_tool() -> str | None:
    path = "/usr/bin/time"
    if not os.access(path, os.X_OK):
        return None
    try:  # BusyBox's time has no -v
        ok = subprocess.run([path, "-v", "true"], capture_output=True).returncode == 0
    except OSError:
        ok = False
    return path if ok else None


def parse_time_v(text: str) -> int | None:
    m = re.search(r"Maximum resident set size \(kbytes\):\s*(\d+)", text)
    return int(m.group(1)) if m else None


def observe_run(overrides: list[str], target: float | None, stop_at_target: bool,
                measure_memory: bool, echo: Callable[[str], None] = print,
                command: list[str] | None = None, timeout: float = 3600.0) -> dict:
    """Run `python -m bnexp.run` in a temporary run dir, timestamping its log lines: the
    wall seconds from launching it to the log line of the first evaluation at or above
    `target` (exact up to pipe latency), its milestones from metrics.json, and peak RSS if
    asked. With `stop_at_target` the run gets SIGINT (a graceful stop) at the target. A run
    still going after `timeout` seconds (a hung child, a run that never reaches the target)
    is killed with its process group, and the result says so (`timed_out`)."""
    tmp = Path(tempfile.mkdtemp(prefix="bnexp-bench-"))
    run_dir = tmp / "run"
    cmd = command or [sys.executable, "-m", "bnexp.run", f"hydra.run.dir={run_dir}",
                      "trainer.progress=log", *overrides]
    timer = time_tool() if measure_memory else None
    time_out = tmp / "time.txt"
    if timer:
        cmd = [timer, "-v", "-o", str(time_out), *cmd]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    result: dict = {"command": cmd, "overrides": overrides, "target": target}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, start_new_session=True)
    # the loop below blocks on the child's output: a timer ends a child that never ends
    watchdog = threading.Timer(timeout, os.killpg, (proc.pid, signal.SIGKILL))
    watchdog.daemon = True
    watchdog.start()
    try:
        evals, hit, tail = follow(proc, start, target, stop_at_target, echo)
        returncode = proc.wait()
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    finally:
        watchdog.cancel()
    hit_wall, hit_step, hit_acc = hit
    result["process_seconds"] = round(time.perf_counter() - start, 3)
    result["returncode"] = returncode
    result["timed_out"] = result["process_seconds"] >= timeout and returncode == -signal.SIGKILL
    if result["timed_out"]:
        echo(f"  bnexp.run still running after {timeout:g} s: killed (bench --run-timeout)")
    result["stopped_at_target"] = bool(stop_at_target and hit_wall is not None)
    result["eval_log"] = evals
    if returncode != 0 and not result["stopped_at_target"]:
        result["output_tail"] = tail
        echo(f"  bnexp.run exited with code {returncode}:\n    " + "\n    ".join(tail[-8:]))
    result["wall_seconds_to_target"] = round(hit_wall, 3) if hit_wall is not None else None
    result["step_at_target"] = hit_step
    result["test_acc_at_target"] = hit_acc
    result.update(run_record(run_dir, target))
    if measure_memory:
        result.update(peak_memory(timer, time_out))
    shutil.rmtree(tmp, ignore_errors=True)
    return result


def follow(proc: subprocess.Popen, start: float, target: float | None, stop_at_target: bool,
           echo: Callable[[str], None]) -> tuple[list[dict], tuple, list[str]]:
    """Read the child's output to its end: its evaluations with the wall seconds since
    `start`, the (wall, step, accuracy) of the first at or above `target` (Nones if
    none), and its last 20 lines (to show why a run failed). With `stop_at_target` the
    child's group gets SIGINT, a graceful stop, at the target."""
    hit: tuple = (None, None, None)
    evals: list[dict] = []
    tail: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        now = time.perf_counter() - start
        tail = (tail + [line.rstrip()])[-20:]
        parsed = parse_eval_line(line)
        if parsed is None:
            continue
        step, acc = parsed
        evals.append({"step": step, "test_acc": acc, "wall_seconds": round(now, 3)})
        echo(f"  [{now:7.1f} s] step {step}: test acc {acc:.4f}")
        if target is not None and hit[0] is None and acc >= target:
            hit = (now, step, acc)
            if stop_at_target:
                os.killpg(proc.pid, signal.SIGINT)  # our own child's group only
    return evals, hit, tail


def run_record(run_dir: Path, target: float | None) -> dict:
    """What the run's metrics.json says about its length and the target."""
    result: dict = {}
    metrics_path = run_dir / "metrics.json"
    if metrics_path.is_file():
        m = json.loads(metrics_path.read_text())
        key = f"{target:.2f}" if target is not None else None
        result["metrics_json"] = {
            "status": m.get("status"), "steps": m.get("steps"),
            "train_seconds": m.get("train_seconds"), "wall_seconds": m.get("wall_seconds"),
            "to_accuracy": (m.get("to_accuracy") or {}).get(key) if key else None,
            "eval_every_steps": m.get("config", {}).get("trainer.eval_every_steps"),
        }
    return result


def peak_memory(timer: str | None, time_out: Path) -> dict:
    """Peak RSS of the run: /usr/bin/time's, else the largest of this process's children."""
    if timer and time_out.is_file():
        return {"peak_rss_mb": round(parse_time_v(time_out.read_text()) / 1024, 1),
                "peak_rss_source": "/usr/bin/time -v (Maximum resident set size)"}
    return {"peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
            "peak_rss_source": "resource.getrusage(RUSAGE_CHILDREN).ru_maxrss"}
