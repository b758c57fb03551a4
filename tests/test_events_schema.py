"""core/events.py: the typed event schema, its tolerant parser, the writer, and the one fold (RunFold)
that runs.run_info, the monitor's RunView and follow share; core/runs.derive_state, the one place a
run's state is decided."""

from __future__ import annotations

import json
import math
import os

import psutil

from ftwizard.core.events import (EVENT_TYPES, EndEvent, EvalEvent, EventWriter, InfoEvent, PhaseEvent, RunFold,
                                  TrainEvent, UnknownEvent, WarningEvent, parse_event, read_events)
from ftwizard.core.monitor import RunView
from ftwizard.core.runs import LAUNCH, LIVE_STATES, STATUS, TERMINAL_STATES, run_info, write_json_atomic


def test_each_event_type_parses_into_its_dataclass():
    raw = [{"type": "phase", "t": 1.0, "phase": "training", "detail": "9 steps", "max_steps": 9, "start_step": 0},
           {"type": "train", "t": 2.0, "step": 1, "loss": 2.5, "mem": {"rss_gib": 0.5}},
           {"type": "eval", "t": 3.0, "step": 1, "eval_loss": 2.7},
           {"type": "info", "t": 4.0, "key": "parameters", "value": {"total": 10}},
           {"type": "warning", "t": 5.0, "code": "early-stop", "message": "stopping", "evidence": {"best": 1.0}},
           {"type": "checkpoint", "t": 6.0, "step": 1, "path": "/r/checkpoints/checkpoint-1"},
           {"type": "end", "t": 7.0, "state": "completed", "output": "/r/output", "elapsed_s": 6.0, "step": 1},
           {"type": "sample", "t": 8.0, "step": 1, "prompt": "2+2?", "completion": "4", "rewards": {"exact_match": 1.0}}]
    evs = [parse_event(r) for r in raw]
    assert [type(e).__name__ for e in evs] == ["PhaseEvent", "TrainEvent", "EvalEvent", "InfoEvent", "WarningEvent",
                                               "CheckpointEvent", "EndEvent", "SampleEvent"]
    assert set(EVENT_TYPES) == {r["type"] for r in raw}
    assert evs[1].loss == 2.5 and evs[1].mem == {"rss_gib": 0.5} and evs[1].grad_norm is None
    assert evs[6].state == "completed" and evs[6].reason is None
    assert all(not e.extra for e in evs)
    # the on-disk object comes back as written (None fields are simply absent)
    assert [e.to_json() for e in evs] == raw


def test_old_and_newer_files_still_load():
    """A field the schema does not name is kept aside, a missing one is None, an unknown type or a line
    that is not an object is counted and otherwise ignored: old runs and newer writers both load."""
    newer = parse_event({"type": "train", "t": 1.0, "step": 3, "loss": 1.0, "flops": 12})
    assert isinstance(newer, TrainEvent) and newer.extra == {"flops": 12} and newer.to_json()["flops"] == 12
    old = parse_event({"type": "end", "t": 2.0, "state": "stopped"})  # no output, no elapsed_s
    assert isinstance(old, EndEvent) and old.output is None and old.elapsed_s is None
    unknown, junk = parse_event({"type": "gpu", "t": 3.0, "util": 0.9}), parse_event([1, 2])
    assert isinstance(unknown, UnknownEvent) and unknown.type == "gpu" and isinstance(junk, UnknownEvent)
    fold = RunFold()
    fold.apply([{"type": "gpu", "t": 3.0}, [1, 2], {"type": "train", "t": 4.0, "step": 1, "loss": 2.0}])
    assert fold.n_events == 3 and fold.step == 1 and fold.loss == 2.0 and fold.first_t == 3.0


def test_writer_keeps_the_emit_call_shape_and_writes_typed_events(tmp_path):
    w = EventWriter(tmp_path)
    emitted = w.emit("train", step=1, loss=2.0, lr=1e-3)
    w.write(EvalEvent(step=1, eval_loss=2.2))
    w.write(WarningEvent(code="x", message="careful", evidence={"n": 1}))
    w.close()
    lines = (tmp_path / "events.jsonl").read_text().splitlines()
    assert json.loads(lines[0]) == emitted and emitted["type"] == "train" and emitted["t"] > 0
    assert json.loads(lines[1])["eval_loss"] == 2.2 and "advice" not in json.loads(lines[2])
    evs = [parse_event(e) for e in read_events(tmp_path)]
    assert isinstance(evs[1], EvalEvent) and evs[2].message == "careful" and evs[1].t >= emitted["t"]


def resumed_run():
    """Ten steps, evals at 5 and 10, stopped; resumed from the step-5 checkpoint, on to step 12."""
    evs = [PhaseEvent(t=0.0, phase="started"), PhaseEvent(t=0.5, phase="training", max_steps=12, start_step=0)]
    evs += [TrainEvent(t=float(s), step=s, max_steps=12, loss=3.0 - s / 10) for s in range(1, 11)]
    evs.insert(7, EvalEvent(t=5.5, step=5, eval_loss=2.0))
    evs.append(EvalEvent(t=10.5, step=10, eval_loss=1.5))
    evs.append(EndEvent(t=11.0, state="stopped", reason="stop requested"))
    resume = [PhaseEvent(t=20.0, phase="started", detail="pid 2 (resume)"),
              PhaseEvent(t=21.0, phase="training", max_steps=12, start_step=5)]
    after = [TrainEvent(t=21.0 + s, step=s, max_steps=12, loss=9.0) for s in range(6, 13)]
    return evs, resume, after


def test_fold_of_a_resumed_run_rewinds_to_its_checkpoint():
    before, resume, after = resumed_run()
    fold = RunFold()
    fold.apply(before)
    assert fold.end.state == "stopped" and fold.step == 10 and fold.best_eval == (10, 1.5)
    fold.apply(resume)
    # the earlier end is history, the steps after the checkpoint (and their eval) are forgotten
    assert fold.end is None and fold.step == 5 and fold.start_step == 5 and fold.best_eval == (5, 2.0)
    fold.apply(after)
    assert fold.step == 12 and fold.loss == 9.0 and fold.progress == 1.0


def test_monitor_view_is_the_same_fold_with_curves():
    before, resume, after = resumed_run()
    fold, view = RunFold(), RunView()
    for f in (fold, view):
        f.apply(before + resume + after)
    shared = ("phase", "step", "max_steps", "start_step", "loss", "best_eval", "eval_loss", "first_t", "last_t",
              "n_events", "end")
    assert {k: getattr(view, k) for k in shared} == {k: getattr(fold, k) for k in shared}
    assert view.train_loss.xs == list(range(1, 13)) and view.eval_series.xs == [5]


def write_run(run_dir, events, *, status=None, launch=None):
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text("model:\n  name_or_path: tiny\nmethod: lora\n")
    (run_dir / "events.jsonl").write_text("".join(json.dumps(e.to_json()) + "\n" for e in events))
    if status is not None:
        write_json_atomic(run_dir / STATUS, status)
    if launch is not None:
        write_json_atomic(run_dir / LAUNCH, launch)
    return run_dir


def test_run_info_takes_the_callers_fold_or_reads_the_file_to_the_same_result(tmp_path):
    before, _, _ = resumed_run()
    run_dir = write_run(tmp_path / "r", before, launch={"pid": None, "launched_at": 0.0})
    view = RunView()
    view.apply(read_events(run_dir))
    a, b = run_info(run_dir), run_info(run_dir, fold=view)
    assert a.to_json() == b.to_json()
    assert (a.state, a.reason, a.step, a.best_eval_loss, a.elapsed_s) == ("stopped", "stop requested", 10, 1.5, 11.0)


def test_state_an_end_written_before_the_latest_launch_is_history(tmp_path):
    """A resume relaunched the run: its earlier end and terminal status.json no longer decide; the live
    new process (this test process stands in for it) makes it live again."""
    before, resume, after = resumed_run()
    me = psutil.Process()
    launch = {"pid": os.getpid(), "create_time": me.create_time(), "launched_at": 15.0}
    status = {"state": "stopped", "updated": 11.0}
    run_dir = write_run(tmp_path / "r", before, status=status, launch=launch)
    assert run_info(run_dir).state in LIVE_STATES  # no longer "stopped"
    write_run(run_dir, before + resume + after, status={"state": "running", "updated": 30.0}, launch=launch)
    assert run_info(run_dir).state == "running"
    # the new process ends: its own end event decides, whatever status.json says
    write_run(run_dir, before + resume + after + [EndEvent(t=40.0, state="completed", output="/o")],
              status={"state": "running", "updated": 30.0}, launch=launch)
    info = run_info(run_dir)
    assert (info.state, info.output) == ("completed", "/o") and info.state in TERMINAL_STATES


def test_state_of_a_process_gone_without_an_end_is_failed_with_the_reason(tmp_path):
    _, _, after = resumed_run()
    dead = psutil.Popen(["true"])
    dead.wait()
    run_dir = write_run(tmp_path / "r", after, status={"state": "running", "updated": 30.0},
                        launch={"pid": dead.pid, "create_time": 1.0, "launched_at": 1.0})
    info = run_info(run_dir)
    assert info.state == "failed" and info.reason.startswith("killed") and info.diagnosis["kind"] == "killed"
    # a terminal status.json written after the launch decides when no end event came
    write_json_atomic(run_dir / STATUS, {"state": "failed", "updated": 50.0, "reason": "out of memory"})
    assert (run_info(run_dir).state, run_info(run_dir).reason) == ("failed", "out of memory")


def test_nonfinite_metrics_are_kept_as_news():
    fold = RunFold()
    fold.apply([{"type": "train", "t": 1.0, "step": 1, "loss": float("nan")},
                {"type": "train", "t": 2.0, "step": 2, "loss": "Infinity"},
                {"type": "eval", "t": 3.0, "step": 2, "eval_loss": float("nan")},
                InfoEvent(t=4.0, key="device", value={"kind": "cpu"})])
    assert math.isinf(fold.loss) and fold.best_eval is None and fold.info["device"] == {"kind": "cpu"}


def test_follow_prints_a_real_run_from_the_one_fold_to_its_end(tiny_config, tmp_path):
    """`ftwizard train CONFIG` (no --detach) follows the run it started: phases, validation losses and
    the end as run_info derives it, exit 0 on completed."""
    import subprocess
    import sys

    from ftwizard.core.config import save_config

    save_config(tiny_config(steps=4, eval_steps=2), tmp_path / "tiny.yaml")
    r = subprocess.run([sys.executable, "-m", "ftwizard.core.cli", "train", str(tmp_path / "tiny.yaml")],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert "loading_model: " in out and "step 2: validation loss " in out and "step 4: validation loss " in out
    assert "\ncompleted" in out and "output: " in out
