"""Pilot tests of the screens after a run (issue 15, item 1): chat streams the answer in order while the
UI keeps answering keys, also while the model loads; base vs tuned side by side; evaluate; export and
push refusals; compare runs. On a real tiny run (trained once per module); nothing is mocked: a test
that needs the model to still be loading holds the real loader back with an Event."""

from __future__ import annotations

import threading

import pytest

from pilot import until

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_work):
    from ftwizard.core.launch import create_run, start
    from ftwizard.core.selftest import make_tiny_setup, wait_for_end

    cfg = make_tiny_setup(tiny_work, steps=12, learning_rate=1e-2)
    cfg.runs_dir = str(tmp_path_factory.mktemp("after-tui") / "runs")
    run_dir = create_run(cfg)
    start(run_dir)
    assert wait_for_end(run_dir, 240).state == "completed"
    return run_dir


def host(factory):
    from ftwizard.tui.screens.monitor import MonitorApp

    return MonitorApp(factory)


async def test_chat_answers_keys_while_the_model_loads_then_streams_the_answer_in_order(finished_run):
    from ftwizard.core.afterwards import generate, load_tuned
    from ftwizard.tui.screens.chat import ChatScreen

    gate = threading.Event()

    def held_loader(run_dir, progress):
        progress("waiting for the test", 0.1)
        gate.wait(120)
        return load_tuned(run_dir, progress=progress)

    app = host(lambda: ChatScreen(finished_run, loader=held_loader))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        await until(pilot, lambda: screen.load_steps == ["waiting for the test"])
        # the model is loading: keys still work
        await pilot.press("ctrl+t", "ctrl+n")
        assert screen.tuned is None and screen.settings.temperature == 0.3 and screen.settings.max_new_tokens == 256
        assert "temperature 0.3" in str(screen.query_one("#chat-settings").render())
        await pilot.press("h", "i")
        assert screen.query_one("#chat-input").value == "hi"
        await pilot.press("enter")  # refused politely: still loading
        assert screen.history == [] and screen.query_one("#chat-input").value == "hi"
        gate.set()
        await until(pilot, lambda: screen.tuned is not None, timeout=120)
        assert screen.load_steps[-1] == "ready" and "loading the adapter" in screen.load_steps
        await pilot.press("ctrl+t", "ctrl+t", "ctrl+t", "ctrl+n", "ctrl+n", "ctrl+b")  # greedy, 64, base
        assert screen.settings.temperature == 0.0 and screen.settings.max_new_tokens == 64 and screen.use_base
        screen.query_one("#chat-input").value = "What is two plus three?"
        await pilot.press("enter")
        await until(pilot, lambda: not screen.generating, timeout=120)
        pieces = list(screen.pieces)
        expected = generate(screen.tuned, [{"role": "user", "content": "What is two plus three?"}],
                            max_new_tokens=64, base=True)
        assert len(pieces) > 1 and "".join(pieces).strip() == expected  # streamed, in order, all of it
        assert screen.history[-1] == {"role": "assistant", "content": expected}
        # a second turn carries the first one (multi-turn)
        await pilot.press("ctrl+b")
        screen.query_one("#chat-input").value = "And four plus one?"
        await pilot.press("enter")
        await until(pilot, lambda: not screen.generating and len(screen.history) == 4, timeout=120)
        assert [m["role"] for m in screen.history] == ["user", "assistant", "user", "assistant"]
        assert "2 turns" in str(screen.query_one("#chat-settings").render())


async def test_base_vs_tuned_shows_validation_prompts_with_reference_base_and_tuned(finished_run):
    from ftwizard.core.afterwards import generate
    from ftwizard.tui.screens.compare import CompareScreen

    app = host(lambda: CompareScreen(finished_run, prompts=2, max_new_tokens=8))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        await until(pilot, lambda: len(screen.rows) == 2, timeout=180)
        first = screen.rows[0]
        assert first.prompt.startswith("What is") and "equals" in first.reference
        msgs = [{"role": "system", "content": "You answer arithmetic in words."},
                {"role": "user", "content": first.prompt}]
        assert first.tuned == generate(screen.tuned, msgs, max_new_tokens=8)
        assert first.base == generate(screen.tuned, msgs, max_new_tokens=8, base=True)
        titles = [c.border_title for c in screen.query(".cmp-col")]
        assert titles[:3] == ["reference", "base", "tuned"]
        screen.query_one("#cmp-input").value = "What is one plus one?"  # a typed prompt: no reference
        await pilot.press("enter")
        await until(pilot, lambda: len(screen.rows) == 3, timeout=120)
        assert screen.rows[2].reference is None and screen.rows[2].prompt == "What is one plus one?"


async def test_evaluate_screen_runs_the_evaluation_in_a_worker_and_shows_the_report(finished_run):
    import json

    from ftwizard.tui.screens.evaluate import EvaluateScreen

    (finished_run / "evaluation.json").unlink(missing_ok=True)
    app = host(lambda: EvaluateScreen(finished_run, generations=2))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        await pilot.press("ctrl+e")
        await until(pilot, lambda: screen.result is not None, timeout=240)
        assert screen.progress[:2] == ["loading the model", "loss on held-out data"]
        report = str(screen.query_one("#eval-report").render())
        assert "tuned: loss" in report and "base : loss" in report and "general-text perplexity" in report
        assert json.loads((finished_run / "evaluation.json").read_text())["rows"] == screen.result["rows"]


async def test_export_screen_exports_once_and_then_refuses_to_overwrite(finished_run, tmp_path):
    from ftwizard.tui.screens.export import ExportScreen

    out = tmp_path / "export"
    app = host(lambda: ExportScreen(finished_run, out=out))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        await pilot.press("ctrl+e")
        await until(pilot, lambda: screen.result is not None, timeout=240)
        assert (out / "merged" / "config.json").is_file()
        assert any(line.startswith("merging into a standalone") for line in screen.lines)
        await pilot.press("ctrl+e")
        status = screen.query_one("#exp-status")
        await until(pilot, lambda: "refused" in str(status.render()), timeout=120)
        assert "already exists" in str(status.render()) and status.has_class("-error")


async def test_push_screen_dry_run_lists_the_files_and_the_card_and_refuses_a_bad_repo(finished_run):
    from ftwizard.tui.screens.push import PushScreen

    app = host(lambda: PushScreen(finished_run))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        screen.query_one("#push-repo").value = "not a repo"
        await pilot.press("ctrl+d")
        status = screen.query_one("#push-status")
        await until(pilot, lambda: "refused" in str(status.render()))
        assert "not a hub repository id" in str(status.render()) and screen.plan is None
        screen.query_one("#push-repo").value = "someone/tiny-arith"
        await pilot.press("ctrl+d")
        await until(pilot, lambda: screen.plan is not None)
        plan = str(screen.query_one("#push-plan").render())
        assert "adapter_config.json" in plan and "README.md" in plan and "someone/tiny-arith" in plan
        assert "dry run: nothing uploaded" in str(status.render())
