"""Pilot tests of the training monitor with real tiny runs (and recorded run dirs where the point is the
screen, not the training): attach to a finished run, live points, stop via the dialog, the quit
dialog (detach leaves the process running), the doctor and the diagnosis on screen."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
from fakes import FakeNvml, L4_24GB, TWO_A6000
from recorded_runs import OOM, make_run
from pilot import until as wait_until

from ftwizard.core.runs import run_info
from ftwizard.tui.dialogs.confirm import ConfirmDialog
from ftwizard.tui.dialogs.quit import QuitDialog
from ftwizard.tui.screens.finished import FinishedScreen
from ftwizard.tui.screens.monitor import MonitorApp, MonitorScreen


def monitor_app(run_dir: Path, nvml=None, **kw) -> MonitorApp:
    return MonitorApp(lambda: MonitorScreen(run_dir, nvml_source=nvml or FakeNvml([L4_24GB]), **kw))


until = functools.partial(wait_until, timeout=120.0, step=0.1)


def the_monitor(app) -> MonitorScreen:
    return next(s for s in app.screen_stack if isinstance(s, MonitorScreen))


@pytest.fixture
def stop_after(wait_run):
    """Stops (and waits for) any run a test leaves running."""
    runs: list[Path] = []
    yield runs.append
    from ftwizard.core.launch import stop

    for run_dir in runs:
        if run_info(run_dir).state in ("running", "starting"):
            stop(run_dir)
            wait_run(run_dir, timeout=120)


# ----------------------------------------------------------------------------------- real runs


async def test_attach_to_a_completed_run_shows_every_step(tiny_config, start_run, wait_run):
    run_dir = start_run(tiny_config(steps=12))
    assert wait_run(run_dir).state == "completed"
    app = monitor_app(run_dir)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, FinishedScreen))
        mon = the_monitor(app)
        assert mon.run_state == "completed"
        assert mon.view.train_loss.xs == list(range(1, 13))
        assert mon.view.eval_series.xs == [6, 12]
        fin = app.screen
        text = str(fin.query_one("#fin-result").render())
        assert "final loss" in text and "at step 12 of 12" in text and "adapter:" in text
        await pilot.press("escape")  # back to the chart
        await until(pilot, lambda: mon.chart.draws > 0)
        assert app.screen is mon and mon.chart.points_drawn == 12 + 2
        assert "completed · step 12/12" in str(mon.query_one("#mon-title").render())


async def test_live_points_then_stop_via_the_dialog(tiny_config, start_run, wait_run, stop_after):
    """Points arrive while the run trains; s + y stops it; it ends as 'stopped' with a checkpoint."""
    run_dir = start_run(tiny_config(steps=2000, logging_steps=1, eval_steps=500))
    stop_after(run_dir)
    app = monitor_app(run_dir)
    async with app.run_test(size=(80, 24)) as pilot:
        mon = the_monitor(app)
        await until(pilot, lambda: mon.loaded)
        # before step 1 the screen says what the process is doing, never a blank
        if not mon.view.started_training:
            assert mon.has_class("-waiting")
            assert str(mon.chart.render()).strip()
        await until(pilot, lambda: len(mon.view.train_loss) >= 3)
        first = len(mon.view.train_loss)
        await until(pilot, lambda: len(mon.view.train_loss) >= first + 5)
        assert mon.view.train_loss.xs == list(range(1, len(mon.view.train_loss) + 1))
        # the screen redraws on a 0.5 s timer: the class follows the view within a tick
        await until(pilot, lambda: not mon.has_class("-waiting"))
        assert mon.run_state == "running"
        await until(pilot, lambda: mon.chart.draws > 0)
        assert "step" in str(mon.query_one("#mon-title").render())
        assert "tok/s" in str(mon.query_one("#mon-numbers").render())

        await pilot.press("s")
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.press("enter")  # a stray enter does not stop anything
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.press("y")
        await until(pilot, lambda: mon.stop_requested)
        await until(pilot, lambda: isinstance(app.screen, FinishedScreen), timeout=180)
        assert mon.run_state == "stopped"
        assert "Stopped" in app.screen.query_one("#fin-result").border_title
    info = wait_run(run_dir)
    assert info.state == "stopped"
    assert list((run_dir / "checkpoints").glob("checkpoint-*"))
    assert info.step < 2000


async def test_quit_dialog_cancel_then_detach_leaves_the_run_running(tiny_config, start_run, stop_after, tmp_path):
    """Inside the wizard's own App: ^q asks; esc cancels; enter (detach, the default) exits the UI
    and the training process goes on."""
    from ftwizard.tui.app import WizardApp

    run_dir = start_run(tiny_config(steps=3000, eval_steps=1000))
    stop_after(run_dir)
    app = WizardApp(nvml_source=FakeNvml([L4_24GB]), runs_dir=tmp_path / "runs", config_dir=tmp_path,
                    detect_hardware=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        app.open_monitor(run_dir)
        await pilot.pause()
        mon = the_monitor(app)
        await until(pilot, lambda: mon.run_state in ("running", "starting") and mon.loaded)
        await pilot.press("ctrl+q")
        assert isinstance(app.screen, QuitDialog)
        await pilot.press("escape")
        assert app.screen is mon and app.is_running
        await pilot.press("ctrl+q")
        assert isinstance(app.screen, QuitDialog)
        await pilot.press("enter")
        await pilot.pause()
    assert app.return_code == 0
    assert run_info(run_dir).state in ("running", "starting")


async def test_quit_dialog_stop_ends_the_run(tiny_config, start_run, wait_run, stop_after):
    run_dir = start_run(tiny_config(steps=3000, eval_steps=1000))
    stop_after(run_dir)
    app = monitor_app(run_dir)
    async with app.run_test(size=(80, 24)) as pilot:
        mon = the_monitor(app)
        await until(pilot, lambda: mon.loaded and mon.run_state in ("running", "starting"))
        await pilot.press("ctrl+q")
        assert isinstance(app.screen, QuitDialog)
        await pilot.press("s")
        await until(pilot, lambda: not app.is_running)
    assert mon.stop_requested
    assert wait_run(run_dir).state == "stopped"


# ------------------------------------------------------------------------------- recorded runs


async def test_detach_pops_back_and_quit_after_the_end_does_not_ask(tmp_path):
    done = make_run(tmp_path, "20261124-010000-done", state="completed", steps=50, max_steps=50)
    app = monitor_app(done)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, FinishedScreen))
        await pilot.press("ctrl+q")  # nothing to ask: the run has ended
        await pilot.pause()
    assert app.return_code == 0


async def test_the_attached_history_is_left_out_of_garbage_collections(tmp_path):
    """A full collection walks every element of every tracked list; once the attach has folded the
    file, the curves are frozen (gc.freeze), so that walk, which lands on whatever key press or frame
    it interrupts, does not grow with the history (0.1-0.2 s for 100k events at load 9 before)."""
    import gc

    run = make_run(tmp_path, "20261124-010000-long", state="running", steps=3000, max_steps=6000, eval_every=300)
    app = monitor_app(run)
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            mon = the_monitor(app)
            await until(pilot, lambda: mon.up_to_date and mon.view.step == 3000)
            v = mon.view
            curves = [v.train_loss.xs, v.train_loss.ys, v.eval_series.xs, v.eval_series.ys]
            assert len(v.train_loss.xs) == 3000 and len(v.eval_series.xs) == 10
            walked = {id(o) for o in gc.get_objects()}  # what a collection of any generation visits
            assert [id(c) in walked for c in curves] == [False] * 4
            assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


async def test_before_the_first_step_it_says_what_happens(tmp_path):
    run = make_run(tmp_path, "20261124-010000-loading", state="running", steps=0, max_steps=0)
    app = monitor_app(run)
    async with app.run_test(size=(80, 24)) as pilot:
        mon = the_monitor(app)
        await until(pilot, lambda: mon.up_to_date)
        assert mon.run_state == "running" and mon.has_class("-waiting")
        phase = str(mon.chart.render())
        assert "tokenizing: 1204 rows, max_length 2048" in phase
        assert "loading model" in phase and "20,971,520 trainable" in phase
        assert "tokenizing" in str(mon.query_one("#mon-title").render())
        await pilot.press("d")  # detach with nothing below: the app exits, the "run" is untouched
        await pilot.pause()
    assert app.return_code == 0


async def test_doctor_warning_with_evidence_and_gpu_panels(tmp_path):
    run = make_run(tmp_path, "20261124-010000-overfit", state="running", steps=400, max_steps=1200,
                   overfit_from=200)
    app = monitor_app(run, nvml=FakeNvml(TWO_A6000))
    async with app.run_test(size=(100, 30)) as pilot:
        mon = the_monitor(app)
        await until(pilot, lambda: mon.loaded and mon.warnings and len(mon.query("GpuMeter")) == 2)
        assert [w.code for w in mon.warnings] == ["overfitting"]
        doctor = str(mon.query_one("#mon-doctor").render())
        assert "steps 300-400" in doctor and "overfitting" in doctor
        meters = {m.id: m for m in mon.query("GpuMeter")}
        assert set(meters) == {"gpu-0", "gpu-1"}
        assert "0.6 / 48.0 GB" in str(meters["gpu-0"].render()) or "0.5 / 48.0" in str(meters["gpu-0"].render())
        assert "trainer peak" in str(meters["gpu-0"].render())  # cuda:0 peak from the events
        # ETA from the events' own time stamps: 800 steps left at 1.5 s/step = 20 min (the title shows
        # it once the state poll, once a second, has seen the run running)
        await until(pilot, lambda: mon.run_state == "running", timeout=10)
        await until(pilot, lambda: "ETA" in str(mon.query_one("#mon-title").render()), timeout=10)
        assert "ETA 20 min" in str(mon.query_one("#mon-title").render())
        await pilot.press("w")
        assert "Evidence" in app.screen._text and "eval_steps" in app.screen._text
        await pilot.press("escape")
        draws = mon.chart.draws
        await pilot.press("l")
        assert mon.chart.showing_log
        await until(pilot, lambda: len(mon.chart.log_lines) > 0)
        assert "loss" in mon.chart.log_lines[-1]
        await pilot.pause()
        assert "loss" in str(mon.chart.render())  # the tail drawn in the chart's place, not the chart
        assert mon.chart.draws == draws
        await pilot.press("d")
        await pilot.pause()


async def test_the_log_key_writes_its_frame_at_once_not_at_the_next_clock_tick(tmp_path):
    """`l` composites and writes its frame inside the action (MonitorScreen.repaint_now), so a key that
    lands just after a streamed frame does not wait up to 1/60 s for Textual's frame clock. Fails if a
    Textual upgrade renames the internals repaint_now uses (then no frame is written in the action)."""
    run = make_run(tmp_path, "20261124-010000-keys", state="running", steps=200, max_steps=1200)
    app = monitor_app(run)
    async with app.run_test(size=(80, 24)) as pilot:
        mon = the_monitor(app)
        await until(pilot, lambda: mon.up_to_date and mon.chart.draws > 0)
        await pilot.pause()
        frames: list[bool] = []  # per frame written: was the log already swapped in
        written = app._display

        def display(screen, update):
            frames.append(mon.chart.showing_log)
            return written(screen, update)

        app._display = display
        for want_log in (True, False):
            frames.clear()
            mon.action_toggle_log()  # as the `l` binding calls it
            assert frames == [want_log]  # one frame, in the action, with the swap in it
            assert not mon.chart._repaint_required and not mon._dirty_widgets  # nothing left for a tick


async def test_killed_run_shows_the_reason(tmp_path):
    run = make_run(tmp_path, "20261124-010000-killed", state="killed", steps=30, max_steps=200)
    app = monitor_app(run)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, FinishedScreen))
        fin = app.screen
        assert fin.state == "failed"
        fixes = str(fin.query_one("#fin-fixes").render())
        assert "killed" in fixes


async def test_failed_oom_run_shows_ranked_fixes(tmp_path):
    run = make_run(tmp_path, "20261124-010000-oom", state="failed", steps=0, max_steps=200,
                   reason=OOM["message"], diagnosis=OOM)
    app = monitor_app(run)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, FinishedScreen))
        fixes = str(app.screen.query_one("#fin-fixes").render())
        assert "1. halve train.batch_size" in fixes and "5. use train.optim: adamw_8bit" in fixes
        assert fixes.index("1. halve") < fixes.index("2. lower train.max_length")


# ------------------------------------------------------------------------ the terminal goes away


def test_killing_the_attached_terminal_never_stops_the_run(tiny_config, start_run, wait_run, stop_after):
    """`ftwizard attach` in a real pseudo-terminal; the terminal is closed (SIGHUP, as when an SSH
    session drops) and the monitor process killed: the run trains on and completes."""
    import os
    import pty
    import select
    import signal
    import subprocess
    import sys
    import time

    run_dir = start_run(tiny_config(steps=20))
    stop_after(run_dir)
    master, slave = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "80", "LINES": "24"}
    proc = subprocess.Popen([sys.executable, "-m", "ftwizard.tui.cli", "attach", str(run_dir)],
                            stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True)
    os.close(slave)
    seen = b""
    deadline = time.time() + 60
    while b"run " not in seen and time.time() < deadline:  # the monitor has drawn its title
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                seen += os.read(master, 65536)
            except OSError:
                break
    assert b"run " in seen, seen[-500:]
    os.close(master)  # the terminal is gone: the session leader gets SIGHUP
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    info = wait_run(run_dir)
    assert info.state == "completed", info.reason
    assert info.step == 20
