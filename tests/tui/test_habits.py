"""The TUI's house habits: one step table, bindings with ids from which help is generated, typed worker
messages, Textual's own worker cancellation, and one yes/no dialog."""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil

from textual.app import App
from textual.screen import Screen
from textual.worker import WorkerState

from pilot import settle, until

SIZE = (100, 30)


def tui_classes():
    """Every App and Screen class defined in ftwizard.tui (walked: a new screen is covered)."""
    import ftwizard.tui

    for m in pkgutil.walk_packages(ftwizard.tui.__path__, "ftwizard.tui."):
        mod = importlib.import_module(m.name)
        for _, cls in inspect.getmembers(mod, inspect.isclass):
            if cls.__module__ == mod.__name__ and issubclass(cls, (App, Screen)):
                yield cls


# ------------------------------------------------------------------------------------- step table

def test_step_table_gives_numbers_titles_and_the_flow():
    from ftwizard.tui.steps import STEPS, flow, next_step, screen_class, step_title

    names = [s.name for s in STEPS]
    assert names[0] == "welcome" and names[-1] == "training"
    assert step_title("questionnaire") == f"step 2 of {len(flow('sft'))}"
    assert next_step("dataset") == "hyperparams"
    # the rewards step is GRPO's only: in its flow, counted in its numbers, skipped by every other kind
    assert next_step("dataset", "grpo") == "rewards" and next_step("rewards", "grpo") == "hyperparams"
    assert len(flow("grpo")) == len(flow("dpo")) + 1 == len(STEPS)
    assert step_title("hyperparams", "grpo") == f"step 8 of {len(STEPS)}"
    for s in STEPS:
        cls = screen_class(s.name)
        if s.name != "training":  # the monitor is opened with a run directory, not by name
            assert cls.NAME == s.name  # a screen names its own row, nothing else


async def test_the_title_bar_comes_from_the_step_table(make_app):
    from ftwizard.tui.steps import flow, step

    app = make_app("24gb", pinned=True)
    async with app.run_test(size=SIZE) as pilot:
        app.go("method")
        await pilot.pause()
        assert str(app.screen.query_one("#title-text").render()) == f"ftwizard · {step('method').title}"
        assert str(app.screen.query_one("#title-step").render()) == f"step 5 of {len(flow('sft'))}"


# ------------------------------------------------------------------------------------- bindings, help

def test_every_binding_has_an_id_and_a_description():
    classes = list(tui_classes())
    assert {"WizardApp", "MonitorApp", "HyperparamsScreen", "ConfirmDialog", "HelpDialog"} <= {
        c.__name__ for c in classes}
    for cls in classes:
        for b in cls.__dict__.get("BINDINGS", []):
            assert b.id and b.description and b.tooltip, (cls.__name__, b)


async def test_help_lists_the_keys_in_force_from_the_bindings(make_app):
    from ftwizard.tui.dialogs.help import HelpDialog, keys_markdown

    app = make_app("24gb", pinned=True)
    async with app.run_test(size=SIZE) as pilot:
        app.go("review")
        await settle(app, pilot)
        review = app.screen
        keys = keys_markdown(review)
        assert "| `^s` | **Save**: save the config" in keys          # the screen's own
        assert "| `^n` | **Launch**: create the run directory" in keys  # overrides the step's Next
        assert "**Next**" not in keys
        assert "| `^q` | **Quit**" in keys and "| `F1` `?` | **Help**" in keys  # the App's, one row
        assert keys.index("**Save**") < keys.index("**Quit**")         # the screen's first
        await pilot.press("f1")
        await pilot.pause()
        assert isinstance(app.screen, HelpDialog)
        assert app.screen._keys == keys
        await pilot.press("escape")
        app.go("hardware")
        await pilot.pause()
        keys = keys_markdown(app.screen)
        assert "**Detect again**" in keys and "**Save**" not in keys


# ------------------------------------------------------------------------------------- dataset workers

async def test_dataset_workers_report_with_typed_messages_and_stale_previews_are_dropped(make_app, tiny_work):
    from ftwizard.tui.screens.dataset import PreviewRead, StatsProgress, StatsScanned, TokenizerLoaded
    from ftwizard.tui.state import WizardState

    app = make_app("24gb", pinned=True, state=WizardState(model=str(tiny_work / "tiny-model")))
    seen: list[type] = []
    async with app.run_test(size=SIZE, message_hook=lambda m: seen.append(type(m))) as pilot:
        app.go("dataset")
        await settle(app, pilot)
        screen = app.screen
        screen.query_one("#dataset-path").value = str(tiny_work / "data" / "chat.jsonl")
        await settle(app, pilot)
        assert {PreviewRead, TokenizerLoaded, StatsScanned} <= set(seen)
        assert "rows" in str(screen.query_one("#stats-text").render())
        good = screen._preview
        # a preview read for an earlier value of the path arrives late: ignored
        screen.post_message(PreviewRead(screen._preview_seq - 1, error="stale"))
        await pilot.pause()
        assert screen._preview is good and screen._error == ""
    assert StatsProgress(0.5).can_replace(StatsProgress(0.4))


async def test_changing_the_path_cancels_the_scan_through_the_worker(make_app, tmp_path, monkeypatch):
    import threading

    from ftwizard.core.data import stats

    rows = [{"messages": [{"role": "user", "content": f"question {i} " * 20},
                          {"role": "assistant", "content": f"answer {i} " * 20}]} for i in range(100_000)]
    big = tmp_path / "big.jsonl"
    big.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert big.stat().st_size > 2 * stats.CHUNK_BYTES  # the scan has chunks left after its first report
    # The real scan, held at its first progress report until the path has changed: the scan reads at
    # Arrow speed now, so without the gate it could end before the change (CI saw it happen).
    real, gate, reports = stats.scan_dataset, threading.Event(), []

    def gated(*args, progress, **kwargs):
        def held(fraction):
            gate.wait(30)
            progress(fraction)
        reports.append(real(*args, progress=held, **kwargs))
        return reports[-1]

    monkeypatch.setattr(stats, "scan_dataset", gated)
    app = make_app("none", pinned=True)  # no model: the scan counts characters
    async with app.run_test(size=SIZE) as pilot:
        app.go("dataset")
        await pilot.pause()
        screen = app.screen
        screen.query_one("#dataset-path").value = str(big)
        await until(pilot, lambda: screen._scan_worker is not None and screen._scan_worker.is_running)
        worker = screen._scan_worker
        screen.query_one("#dataset-path").value = str(tmp_path / "elsewhere")
        await pilot.pause()
        assert worker.is_cancelled
        gate.set()
        await app.workers.wait_for_complete()
        assert worker.state == WorkerState.CANCELLED
        await until(pilot, lambda: reports)
        assert not reports[0].stats.complete  # core's loop stopped between chunks, not at the end
        await pilot.pause()
        assert "rows" not in str(screen.query_one("#stats-text").render())  # its report was never shown


async def test_leaving_the_monitor_cancels_its_follower(tmp_path):
    from fakes import L4_24GB, FakeNvml

    from ftwizard.tui.screens.monitor import MonitorApp, MonitorScreen

    run_dir = tmp_path / "run-1"
    run_dir.mkdir()
    (run_dir / "events.jsonl").write_text("")
    app = MonitorApp(lambda: MonitorScreen(run_dir, nvml_source=FakeNvml([L4_24GB])))
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: isinstance(app.screen, MonitorScreen) and app.screen.loaded)
        screen = app.screen
        follower = next(w for w in app.workers if w.node is screen)
        assert follower.is_running
        await app.pop_screen()  # the monitor is removed: Textual cancels its workers
        await app.workers.wait_for_complete()
        assert follower.is_cancelled and follower.state == WorkerState.CANCELLED


# ------------------------------------------------------------------------------------- yes/no

def test_one_yes_no_dialog():
    """Every ModalScreen[bool] in the TUI is the one ConfirmDialog."""
    from textual.screen import ModalScreen

    from ftwizard.tui.dialogs.confirm import ConfirmDialog

    yes_no = [c for c in tui_classes() if issubclass(c, ModalScreen)
              and any(getattr(b, "action", "").startswith("answer(") for b in c.__dict__.get("BINDINGS", []))]
    assert yes_no == [ConfirmDialog]


async def test_overwriting_a_saved_config_needs_a_typed_y(make_app, tmp_path):
    from ftwizard.tui.dialogs.confirm import ConfirmDialog

    app = make_app("none")
    target = tmp_path / "configs" / "ftwizard-cpu-demo.yaml"
    target.write_text("# mine\n")
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("p", "enter")
        await settle(app, pilot)
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.press("enter")  # a stray enter says nothing
        await pilot.pause()
        assert isinstance(app.screen, ConfirmDialog) and target.read_text() == "# mine\n"
        await pilot.press("escape")
        await pilot.pause()
        assert target.read_text() == "# mine\n"
