"""Pilot tests of the runs screen: it lists runs with state, model, method, progress, last loss and
disk usage; enter opens one in the monitor; x deletes only after a typed y, never a running run."""

from __future__ import annotations

from pathlib import Path

from fakes import FakeNvml, RTX_3090_24GB
from recorded_runs import loss_at, make_run
from pilot import until

from ftwizard.tui.dialogs.confirm import ConfirmDialog
from ftwizard.tui.screens.monitor import MonitorApp, MonitorScreen
from ftwizard.core.runs import disk_usage as dir_size
from ftwizard.tui.screens.runs import RunsScreen, fmt_bytes


def make_runs(root: Path) -> dict[str, Path]:
    return {
        "done": make_run(root, "20261124-010000-llama-lora", state="completed", steps=200, max_steps=200),
        "live": make_run(root, "20261124-020000-qwen-qlora", state="running", steps=40, max_steps=300,
                         model="/models/Qwen2.5-7B-Instruct", method="qlora"),
        "killed": make_run(root, "20261124-030000-smol-full", state="killed", steps=12, max_steps=100,
                           model="HuggingFaceTB/SmolLM2-135M", method="full"),
    }


def runs_app(root: Path) -> MonitorApp:
    return MonitorApp(lambda: RunsScreen(runs_dir=root, nvml_source=FakeNvml([RTX_3090_24GB])))


def cells(screen: RunsScreen) -> dict[str, list[str]]:
    from textual.widgets import DataTable

    table = screen.query_one(DataTable)
    return {str(row.value): [str(c) for c in table.get_row(row.value)] for row in table.rows}


async def test_lists_runs_with_state_progress_loss_and_disk(tmp_path):
    runs = make_runs(tmp_path)
    app = runs_app(tmp_path)
    async with app.run_test(size=(100, 24)) as pilot:
        screen = app.screen
        await until(pilot, lambda: screen.loaded and len(screen.sizes) == 3)
        rows = cells(screen)
        assert list(rows) == [runs["killed"].name, runs["live"].name, runs["done"].name]  # newest first
        done = rows[runs["done"].name]
        assert done[1:3] == ["completed", "200/200"] and done[5:] == ["Llama-3.1-8B", "lora"]
        assert done[3] == f"{loss_at(200):.4f}"
        live = rows[runs["live"].name]
        assert live[1:3] == ["running", "40/300"] and live[5:] == ["Qwen2.5-7B-Instruct", "qlora"]
        assert rows[runs["killed"].name][1] == "failed"  # the process vanished: derived, not "running"
        for name, row in rows.items():
            assert row[4] == fmt_bytes(dir_size(tmp_path / name)) and row[4].endswith("KB")
        assert "3 (1 completed, 1 failed, 1 running)" in str(screen.query_one("#runs-title").render())


async def test_enter_opens_the_run_in_the_monitor_and_escape_comes_back(tmp_path):
    runs = make_runs(tmp_path)
    app = runs_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        await until(pilot, lambda: screen.loaded)
        await pilot.press("down")  # the running one
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, MonitorScreen) and app.screen.loaded
                    and app.screen.refreshes > 0)
        mon = app.screen
        assert mon.run_dir == runs["live"]
        assert mon.view.train_loss.xs == list(range(1, 41)) and mon.run_state == "running"
        await pilot.press("d")  # detach: back to the list, the run untouched
        await until(pilot, lambda: app.screen is screen)


async def test_delete_needs_a_typed_y(tmp_path):
    runs = make_runs(tmp_path)
    app = runs_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        await until(pilot, lambda: screen.loaded and len(screen.sizes) == 3)
        await pilot.press("down", "down")  # the completed one
        assert screen.selected().id == runs["done"].name
        await pilot.press("x")
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.press("enter")  # not a yes
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.press("n")
        await pilot.pause()
        assert app.screen is screen and runs["done"].is_dir()
        await pilot.press("x")
        await pilot.press("escape")
        await pilot.pause()
        assert runs["done"].is_dir()
        await pilot.press("x")
        await pilot.press("y")
        await until(pilot, lambda: not runs["done"].exists() and len(screen.runs) == 2)
        assert runs["done"].name not in cells(screen)
        assert runs["live"].is_dir() and runs["killed"].is_dir()


async def test_a_running_run_cannot_be_deleted(tmp_path):
    runs = make_runs(tmp_path)
    app = runs_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        await until(pilot, lambda: screen.loaded)
        await pilot.press("down")
        assert screen.selected().state == "running"
        await pilot.press("x")
        await pilot.pause()
        assert app.screen is screen  # no dialog: told to stop it first
        assert runs["live"].is_dir()


async def test_empty_runs_dir(tmp_path):
    app = runs_app(tmp_path / "nothing-here")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        await until(pilot, lambda: screen.loaded)
        assert screen.has_class("-empty")
        await pilot.press("enter", "x")  # nothing to open or delete: no crash, no dialog
        assert app.screen is screen


async def test_the_wizard_opens_the_runs_screen(tmp_path):
    from ftwizard.tui.app import WizardApp

    make_runs(tmp_path / "runs")
    app = WizardApp(nvml_source=FakeNvml([RTX_3090_24GB]), runs_dir=tmp_path / "runs", config_dir=tmp_path,
                    detect_hardware=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        app.open_runs()
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, RunsScreen)
        await until(pilot, lambda: screen.loaded)
        assert len(screen.runs) == 3
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, RunsScreen)


async def test_a_run_that_started_again_meanwhile_is_not_deleted(tmp_path):
    """Between the list and the y, the run was resumed: the delete refuses and says why."""
    runs = make_runs(tmp_path)
    app = runs_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        await until(pilot, lambda: screen.loaded)
        await pilot.press("down", "down")
        assert screen.selected().id == runs["done"].name
        await pilot.press("x")
        assert isinstance(app.screen, ConfirmDialog)
        # resumed from elsewhere: a live process and no end event after its new start
        make_run(tmp_path, runs["done"].name, state="running", steps=10, max_steps=200)
        await pilot.press("y")
        await until(pilot, lambda: any("stop it first" in n.message for n in app._notifications))
        assert runs["done"].is_dir() and (runs["done"] / "config.yaml").exists()
