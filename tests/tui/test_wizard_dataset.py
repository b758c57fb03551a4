"""The Dataset step with real data and the tiny model's real tokenizer: live preview, detected format,
the highlighted row rendered with trained tokens, background statistics, blocked Next on a bad path."""

from __future__ import annotations

from pilot import settle

import json

SIZE = (100, 30)


async def test_dataset_preview_render_and_stats(make_app, tiny_work):
    from ftwizard.tui.state import WizardState

    data = tiny_work / "data" / "chat.jsonl"
    app = make_app("24gb", pinned=True, state=WizardState(model=str(tiny_work / "tiny-model")))
    async with app.run_test(size=SIZE) as pilot:
        app.go("dataset")
        await settle(app, pilot)
        screen = app.screen
        assert screen.check_action("next", ()) is None  # nothing chosen yet
        path = screen.query_one("#dataset-path")
        path.value = str(tiny_work / "data" / "nope.jsonl")
        await settle(app, pilot)
        assert "no such file" in str(screen.query_one("#dataset-info").render())
        assert screen.check_action("next", ()) is None
        path.value = str(data)
        await settle(app, pilot)
        info = str(screen.query_one("#dataset-info").render())
        assert info.startswith("messages"), info
        n_rows = sum(1 for _ in data.open())
        assert f"{n_rows:,} rows" in info
        table = screen.query_one("#preview-table")
        assert table.row_count == min(50, n_rows)
        # The highlighted row, rendered by the training path: some trained (bright) text, EOS trained.
        rendered = screen.query_one("#rendered").render()
        styles = {str(span.style) for span in rendered.spans}
        assert "bold" in styles and "dim" in styles
        box = screen.query_one("#rendered-box")
        assert "trained" in box.border_title and "EOS trained ✓" in box.border_subtitle
        first = json.loads(data.open().readline())
        assert first["messages"][-1]["content"][:10] in rendered.plain
        # Moving the cursor renders another row.
        table.focus()
        await pilot.press("down")
        await settle(app, pilot)
        assert "line 2 as the model sees it" in box.border_title
        stats = str(screen.query_one("#stats-text").render())
        assert f"{n_rows:,} rows" in stats and "tokens min" in stats
        assert screen.check_action("next", ()) is True
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert app.state.dataset_path == str(data)
        assert app.state.detected_format == "messages"
        assert type(app.screen).__name__ == "HyperparamsScreen"


async def test_dataset_problems_are_shown_with_lines(make_app, tiny_work, tmp_path):
    from ftwizard.tui.state import WizardState

    bad = tmp_path / "bad.jsonl"
    good = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    bad.write_text(json.dumps(good) + "\n{not json\n" + json.dumps(good) + "\n")
    app = make_app("none", pinned=True, state=WizardState(model=str(tiny_work / "tiny-model")))
    async with app.run_test(size=SIZE) as pilot:
        app.go("dataset")
        await settle(app, pilot)
        app.screen.query_one("#dataset-path").value = str(bad)
        await settle(app, pilot)
        problems = str(app.screen.query_one("#dataset-problems").render())
        assert ":2:" in problems, problems
