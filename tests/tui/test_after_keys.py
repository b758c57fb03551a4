"""The after-training keys of the finished and runs screens, and the compare-runs screen, on recorded
run directories (issue 15, items 1 and 8)."""

from __future__ import annotations

from recorded_runs import OOM, make_run
from pilot import until

from ftwizard.tui.screens.monitor import MonitorApp


async def test_compare_runs_overlays_the_ticked_runs_and_lists_config_differences(tmp_path):
    from ftwizard.tui.screens.compare_runs import CompareRunsScreen
    from ftwizard.tui.widgets.overlay_chart import OverlayChart

    a = make_run(tmp_path, "20261124-010000-a", steps=200, max_steps=200)
    b = make_run(tmp_path, "20261124-020000-b", steps=120, max_steps=300, method="qlora", state="stopped")
    app = MonitorApp(lambda: CompareRunsScreen([a, b], runs_dir=tmp_path))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        await until(pilot, lambda: screen.result is not None)
        chart = screen.query_one(OverlayChart)
        assert len(chart.runs) == 2 and len(chart.runs[0][0][0]) == 200 and len(chart.runs[1][1][0]) == 2
        table = str(screen.query_one("#cruns-table").render())
        assert "method" in table and "qlora" in table and "train.max_steps" in table
        # untick b: one run left, nothing to compare
        pick = screen.query_one("#cruns-pick")
        pick.deselect(str(b))
        await until(pilot, lambda: screen.result is None)
        assert len(chart.runs) == 1 and "tick another run" in str(screen.query_one("#cruns-table").render())


async def test_finished_screen_offers_the_after_keys_only_with_a_trained_model(tmp_path):
    from ftwizard.tui.screens.compare_runs import CompareRunsScreen
    from ftwizard.tui.screens.finished import FinishedScreen

    done = make_run(tmp_path, "20261124-010000-done", steps=200, max_steps=200)
    failed = make_run(tmp_path, "20261124-020000-oom", state="failed", steps=0, diagnosis=OOM, reason="oom")
    app = MonitorApp(lambda: FinishedScreen(failed))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        assert screen.check_action("after", ("chat",)) is False  # no model: the keys are not offered
        assert screen.check_action("after", ("compare_runs",)) is True
        await pilot.press("c")
        assert app.screen is screen
    app = MonitorApp(lambda: FinishedScreen(done))
    async with app.run_test(size=(80, 24)) as pilot:
        assert app.screen.check_action("after", ("export",)) is True
        await pilot.press("m")
        await until(pilot, lambda: isinstance(app.screen, CompareRunsScreen))
        assert app.screen.initial == [str(done.resolve())]


async def test_finished_screen_shows_the_forgetting_warning_above_the_threshold(tmp_path):
    import json

    from ftwizard.tui.screens.finished import FinishedScreen

    run = make_run(tmp_path, "20261124-010000-forgot", steps=200, max_steps=200)
    (run / "forgetting.json").write_text(json.dumps({"base_ppl": 10.0, "tuned_ppl": 14.0, "tokens": 3000}))
    app = MonitorApp(lambda: FinishedScreen(run))
    async with app.run_test(size=(80, 24)):
        box = app.screen.query_one("#fin-forgetting")
        text = str(box.render())
        assert box.has_class("-warning") and "rose 40%" in text and "dataset.replay" in text
    (run / "forgetting.json").write_text(json.dumps({"base_ppl": 10.0, "tuned_ppl": 10.5, "tokens": 3000}))
    app = MonitorApp(lambda: FinishedScreen(run))
    async with app.run_test(size=(80, 24)):
        box = app.screen.query_one("#fin-forgetting")
        assert not box.has_class("-warning") and "no sign of forgetting" in str(box.render())


async def test_runs_screen_marks_runs_and_m_compares_the_marked_ones(tmp_path):
    from ftwizard.tui.screens.compare_runs import CompareRunsScreen
    from ftwizard.tui.screens.runs import RunsScreen

    a = make_run(tmp_path, "20261124-010000-a", steps=200, max_steps=200)
    b = make_run(tmp_path, "20261124-020000-b", steps=100, max_steps=100, method="full")
    app = MonitorApp(lambda: RunsScreen(runs_dir=tmp_path))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        await until(pilot, lambda: screen.loaded)
        await pilot.press("space", "down", "space")
        assert screen.marked == [str(b), str(a)]  # newest first in the list
        await pilot.press("m")
        await until(pilot, lambda: isinstance(app.screen, CompareRunsScreen) and app.screen.result is not None)
        assert {d["key"] for d in app.screen.result["config_diff"]} == {"method", "train.max_steps"}


async def test_runs_screen_opens_the_after_screens_for_the_selected_run_only_with_a_model(tmp_path):
    from ftwizard.tui.screens.export import ExportScreen
    from ftwizard.tui.screens.runs import RunsScreen

    done = make_run(tmp_path, "20261124-010000-done", steps=200, max_steps=200)
    make_run(tmp_path, "20261124-020000-oom", state="failed", steps=0, diagnosis=OOM, reason="oom")
    app = MonitorApp(lambda: RunsScreen(runs_dir=tmp_path))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        await until(pilot, lambda: screen.loaded)
        assert "no trained model" in str(screen.query_one("#runs-keys").render())  # the failed run, newest
        await pilot.press("e")
        assert app.screen is screen
        await pilot.press("down")
        assert "e export" in str(screen.query_one("#runs-keys").render())
        await pilot.press("e")
        await until(pilot, lambda: isinstance(app.screen, ExportScreen))
        assert app.screen.run_dir == done
