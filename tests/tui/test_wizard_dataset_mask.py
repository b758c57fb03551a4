"""The Dataset step shows the mask fallback: prompt/completion rows whose prompt is not a token prefix
of the whole row (the tiny tokenizer merges "wor" + "ld") are listed as a `mask-fallback` problem with
the row count, from the whole-file scan."""

from __future__ import annotations

import json

from pilot import settle

SIZE = (100, 30)


async def test_dataset_step_lists_the_mask_fallback(make_app, tiny_work, tmp_path):
    from ftwizard.tui.state import WizardState

    rows = [{"prompt": "What is two plus two?\nAnswer:", "completion": " four"},
            {"prompt": "say hello wor", "completion": "ld"}, {"prompt": "hello wor", "completion": "ld python"}]
    data = tmp_path / "merge.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    app = make_app("none", pinned=True, state=WizardState(model=str(tiny_work / "tiny-model")))
    async with app.run_test(size=SIZE) as pilot:
        app.go("dataset")
        await settle(app, pilot)
        app.screen.query_one("#dataset-path").value = str(data)
        await settle(app, pilot)
        problems = str(app.screen.query_one("#dataset-problems").render())
        assert f"⚠ {data}:2: dataset.assistant_only_loss: 2 rows: the prompt's last token merges" in problems, \
            problems
