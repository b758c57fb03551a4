"""Snapshots of the after-training screens that need no model loaded (issue 15): compare runs with two
recorded runs ticked, export before it starts, push after a dry run (the files and the model card),
evaluate showing a saved evaluation. Recorded run directories, relative paths, no clock. Review the
SVG diff before `--snapshot-update`."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
from recorded_runs import make_run
from pilot import until as wait_until

from ftwizard.tui.screens.monitor import MonitorApp

until = functools.partial(wait_until, timeout=30.0)


@pytest.fixture
def runs(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)  # paths on screen are relative: the same in every test run
    return Path("runs")


def test_compare_runs_two_runs(snap_compare, runs):
    from ftwizard.tui.screens.compare_runs import CompareRunsScreen

    a = make_run(runs, "20261124-0900-llama8b-lora", steps=300, max_steps=300, eval_every=50)
    b = make_run(runs, "20261124-1000-llama8b-qlora", steps=200, max_steps=300, method="qlora",
                 state="stopped", eval_every=50)

    async def ready(pilot):
        await until(pilot, lambda: pilot.app.screen.result is not None)

    app = MonitorApp(lambda: CompareRunsScreen([a, b], runs_dir=runs))
    assert snap_compare(app, terminal_size=(80, 24), run_before=ready)


def test_export_screen(snap_compare, runs):
    from ftwizard.tui.screens.export import ExportScreen

    run = make_run(runs, "20261124-0900-llama8b-lora", steps=300, max_steps=300)
    assert snap_compare(MonitorApp(lambda: ExportScreen(run)), terminal_size=(80, 24))


def test_push_screen_dry_run(snap_compare, runs):
    from ftwizard.tui.screens.push import PushScreen

    run = make_run(runs, "20261124-0900-llama8b-lora", steps=300, max_steps=300, eval_every=50)
    (run / "output" / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 16}))

    async def ready(pilot):
        pilot.app.screen.query_one("#push-repo").value = "someone/llama8b-support"
        await pilot.press("ctrl+d")
        await until(pilot, lambda: pilot.app.screen.plan is not None)
        # the plan is shown and the card's pane focused in the same handler: wait for both to be painted
        await until(pilot, lambda: pilot.app.focused is not None and pilot.app.focused.id == "push-body")
        await pilot.pause()
        await pilot.pause()

    assert snap_compare(MonitorApp(lambda: PushScreen(run)), terminal_size=(80, 24), run_before=ready)


def test_evaluate_screen_with_a_saved_evaluation(snap_compare, runs):
    from ftwizard.tui.screens.evaluate import EvaluateScreen

    run = make_run(runs, "20261124-0900-llama8b-lora", steps=300, max_steps=300)
    (run / "evaluation.json").write_text(json.dumps(EVALUATION))
    assert snap_compare(MonitorApp(lambda: EvaluateScreen(run)), terminal_size=(80, 24))


EVALUATION = {
    "rows": 40, "data": "data/support.jsonl (validation)", "tuned_loss": 1.2034, "tuned_ppl": 3.33,
    "base_loss": 1.9521, "base_ppl": 7.04,
    "generation": {"mode": "side_by_side", "rows": [
        {"prompt": "My order arrived damaged, what do I do?",
         "reference": "Sorry about that! Reply with a photo and we send a replacement within 2 days.",
         "base": "I am an AI and cannot see your order.",
         "tuned": "Sorry to hear that! Send us a photo of the damage and we ship a replacement."}]},
    "forgetting": {"base_ppl": 12.41, "tuned_ppl": 13.02, "tokens": 3104, "threshold": 0.2, "rise": 0.0492,
                   "warning": None},
    "lm_eval": {"arc_easy": {"acc,none": {"base": 0.6512, "tuned": 0.6431}}},
}
