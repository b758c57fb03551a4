"""Stop and resume: same step numbering and the same loss curve as an uninterrupted run."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from ftwizard.core.events import read_events
from ftwizard.core.launch import stop
from ftwizard.core.runs import run_info

pytestmark = pytest.mark.slow
CLI = [sys.executable, "-m", "ftwizard.core.cli"]


def train_losses(run_dir):
    return [(e["step"], e["loss"]) for e in read_events(run_dir) if e["type"] == "train"]


STOP_AT = """
from pathlib import Path
from transformers import TrainerCallback


class StopAt(TrainerCallback):
    # Asks the run to stop (as `ftwizard stop` does) once, at a fixed step: a deterministic interruption.
    def on_step_end(self, args, state, control, **kw):
        if state.global_step == 7:
            Path("stop.request").write_text("test")
"""


def test_resume_continues_the_same_curve(tiny_config, start_run, wait_run, tmp_path, monkeypatch):
    # 24 steps over 57 rows at batch 4 crosses an epoch boundary (15 steps/epoch): data order,
    # the cosine schedule and the optimizer state all have to come back right.
    (tmp_path / "stop_at.py").write_text(STOP_AT)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    # One thread each: multi-threaded CPU reductions are not bit-reproducible, and Adam turns their
    # last-bit differences on near-zero gradients into visible ones. Resume itself must add nothing.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    kw = dict(steps=24, lr_scheduler="cosine", warmup_ratio=0.1)
    ref_dir = start_run(tiny_config(**kw))
    run_dir = start_run(tiny_config(callbacks=["stop_at:StopAt"], **kw))
    assert wait_run(ref_dir, 240).state == "completed"
    info = wait_run(run_dir, 240)
    assert info.state == "stopped" and info.step == 8, (info.state, info.step, info.reason)

    r = subprocess.run(CLI + ["resume", str(run_dir), "--detach"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    info = wait_run(run_dir, 240)
    assert info.state == "completed", info.reason

    got = train_losses(run_dir)
    steps = [s for s, _ in got]
    assert steps == sorted(set(steps)) and steps[0] == 1 and steps[-1] == 24, steps  # no repeats, no gaps
    assert steps == list(range(1, 25))
    ref = dict(train_losses(ref_dir))
    for s, loss in got:
        assert loss == pytest.approx(ref[s], rel=1e-4, abs=1e-5), (s, loss, ref[s])
    phases = [e["phase"] for e in read_events(run_dir) if e["type"] == "phase"]
    assert phases.count("started") == 2


def test_resume_refuses_a_running_or_checkpointless_run(tiny_config, start_run, wait_run, tmp_path):
    run_dir = start_run(tiny_config(steps=5000))
    r = subprocess.run(CLI + ["resume", str(run_dir)], capture_output=True, text=True)
    assert r.returncode == 2 and "still" in r.stderr and "Traceback" not in r.stderr
    stop(run_dir)
    wait_run(run_dir, 120)
    assert run_info(run_dir).state == "stopped"

    # A run that ended without a checkpoint (failed before its first save) has nothing to resume from.
    from recorded_runs import make_run

    failed = make_run(tmp_path, "failed-early", state="failed", steps=3, max_steps=24)
    assert not (failed / "checkpoints").exists()
    launch_before = (failed / "launch.json").read_text()
    r = subprocess.run(CLI + ["resume", str(failed)], capture_output=True, text=True)
    assert r.returncode == 2 and "no checkpoint to resume from" in r.stderr and "Traceback" not in r.stderr
    assert r.stderr.count("\n") == 1
    assert (failed / "launch.json").read_text() == launch_before  # nothing was started


def test_a_resume_started_right_after_the_end_is_not_taken_for_that_end(tmp_path):
    """psutil's create_time comes from the boot time in whole seconds and can read up to a second early:
    an end written just before a resume looked like the resumed process's own end, and `resume` then
    `wait` saw "stopped" at once (seen in CI). The launch time recorded before the process starts decides."""
    import json

    import psutil

    from recorded_runs import make_run

    run = make_run(tmp_path, "r1", state="stopped", steps=8, max_steps=24)
    end_t = time.time()
    lines = (run / "events.jsonl").read_text().splitlines()
    end = json.loads(lines[-1])
    assert end["type"] == "end"
    end["t"] = end_t
    (run / "events.jsonl").write_text("\n".join(lines[:-1] + [json.dumps(end)]) + "\n")
    status = json.loads((run / "status.json").read_text())
    (run / "status.json").write_text(json.dumps({**status, "updated": end_t}))
    me = psutil.Process()  # stands for the resumed process: alive, its create_time earlier than the end
    assert me.create_time() < end_t
    launch = {"pid": me.pid, "create_time": me.create_time(), "command": [], "history": []}

    (run / "launch.json").write_text(json.dumps(launch))  # as written before this fix
    assert run_info(run).state == "stopped"
    (run / "launch.json").write_text(json.dumps({**launch, "launched_at": end_t + 0.05}))
    assert run_info(run).state in ("starting", "running")
