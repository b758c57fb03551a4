"""The questionnaire: one question at a time, answers kept, the recommendation (core.recommend) shown
live with reasons, 'instead' advice when not fine-tuning, and continuing anyway."""

from __future__ import annotations

import pytest

from ftwizard.tui.screens.questionnaire import QUESTIONS

SIZE = (80, 24)


async def answer(pilot, app, choices: dict[str, str]):
    """Answer every question with the choice ids in `choices` (keyed by question key)."""
    for q in QUESTIONS:
        screen = app.screen
        options = screen.query_one("#choices")
        idx = next(i for i in range(options.option_count) if options.get_option_at_index(i).id == choices[q.key])
        options.highlighted = idx
        await pilot.press("enter")
        await pilot.pause()


FINE_TUNE = dict(goal="behavior", facts_change_often="no", needs_citations="no", prompting_tried="inconsistent",
                 examples="1000", data_kind="pairs", latency_or_cost_critical="no")


async def test_one_question_at_a_time_and_next_blocked_until_done(make_app):
    app = make_app("24gb", pinned=True)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("g")
        await pilot.pause()
        screen = app.screen
        assert type(screen).__name__ == "QuestionnaireScreen"
        assert str(screen.query_one("#title-step").render()) == "step 2 of 9"
        assert "1/7 What should fine-tuning change?" in str(screen.query_one("#question").render())
        assert screen.check_action("next", ()) is None
        await pilot.press("enter")  # first choice: behavior
        await pilot.pause()
        assert "2/7" in str(screen.query_one("#question").render())
        assert "how it answers" in str(screen.query_one("#answers").render())
        assert "So far, assuming typical answers" in str(screen.query_one("#recommendation").render())
        await pilot.press("escape")  # un-answers, does not leave
        await pilot.pause()
        assert type(app.screen).__name__ == "QuestionnaireScreen"
        assert "1/7" in str(screen.query_one("#question").render())
        await pilot.press("escape")  # nothing answered: back to Welcome
        await pilot.pause()
        assert type(app.screen).__name__ == "WelcomeScreen"


async def test_fine_tune_recommendation_with_reasons(make_app):
    app = make_app("24gb", pinned=True)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("g")
        await pilot.pause()
        await answer(pilot, app, FINE_TUNE)
        screen = app.screen
        text = str(screen.query_one("#recommendation").render())
        assert text.startswith("Recommendation: fine-tune (SFT)")
        assert "input -> output examples -> SFT (Axolotl decision tree)" in text
        assert "1,000 examples meets" in text
        assert screen.check_action("next", ()) is True
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert type(app.screen).__name__ == "HardwareScreen"
        assert app.state.recommendation.approach == "fine-tune"
        assert app.state.training == "sft"
        assert dict(app.state.answers)["examples"] == "1000"


@pytest.mark.parametrize("changes, approach, instead", [
    (dict(prompting_tried="not-yet"), "prompting (no fine-tuning)", "system prompt with 3-5 worked examples"),
    (dict(goal="knowledge", facts_change_often="yes", prompting_tried="works"), "retrieval (RAG), not fine-tuning",
     "retrieval index"),
    (dict(examples="10"), "prompting (no fine-tuning)", "collect at least 100 good examples"),
])
async def test_not_fine_tuning_says_what_instead_and_allows_continuing(make_app, changes, approach, instead):
    app = make_app("8gb", pinned=True)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("g")
        await pilot.pause()
        await answer(pilot, app, {**FINE_TUNE, **changes})
        text = str(app.screen.query_one("#recommendation").render())
        assert f"Recommendation: {approach}" in text
        assert "Instead:" in text and instead in text
        assert "continues anyway" in text
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert type(app.screen).__name__ == "HardwareScreen"
        assert app.state.training == "sft"


async def test_preference_data_calls_for_dpo_and_the_wizard_trains_dpo(make_app):
    app = make_app("80gb", pinned=True)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("g")
        await pilot.pause()
        await answer(pilot, app, {**FINE_TUNE, "data_kind": "preferences", "goal": "alignment"})
        text = str(app.screen.query_one("#recommendation").render())
        assert "fine-tune (DPO)" in text and "is planned" not in text
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert app.state.recommendation.training == "dpo"
        assert app.state.training == "dpo"


async def test_changing_facts_with_inconsistent_format_gives_rag_plus_fine_tuning(make_app):
    app = make_app("24gb", pinned=True)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("g")
        await pilot.pause()
        await answer(pilot, app, {**FINE_TUNE, "goal": "knowledge", "facts_change_often": "yes"})
        text = str(app.screen.query_one("#recommendation").render())
        assert text.startswith("Recommendation: RAG plus fine-tuning (SFT)")
        assert "facts that change often belong in retrieval" in text
        assert "Instead:" not in text
