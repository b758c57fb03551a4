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
