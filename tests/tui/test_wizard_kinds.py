"""The wizard trains every kind it recommends: the questionnaire's answer picks the kind and the user can
change it; the dataset step checks and shows the rows as that kind sees them; the hyperparameter step
shows the kind's own settings; GRPO's rewards step checks each reward on a real row; and two walks from
the questionnaire to a launched run on the tiny model (DPO from "preferred vs rejected answers", GRPO
from "a program that scores answers") whose config.yaml and events say they trained that kind."""

from __future__ import annotations

import json

import pytest
import yaml

from pilot import settle, until
from test_preference import kto_rows, pair_rows
from test_wizard_questionnaire import FINE_TUNE, answer

from ftwizard.core.tiny import write_jsonl

SIZE = (80, 24)

GOOD_REWARD = '''
def longer(prompts, completions, **kwargs):
    return [len(str(c)) / 50.0 for c in completions]
'''
BAD_SIGNATURE = '''
def score(completion):
    return 1.0
'''
WRONG_LENGTH = '''
def score(prompts, completions, **kwargs):
    return [1.0]
'''


def prompt_rows(n: int = 24) -> list[dict]:
    words = ["one", "two", "three", "four", "five", "six"]
    return [{"prompt": f"what is {words[i % 6]} plus {words[(i * 5) % 6]}",
             "answer": str(i % 6 + 1 + (i * 5) % 6 + 1)} for i in range(n)]


def options(screen) -> list[str]:
    ol = screen.query_one("#choices")
    return [ol.get_option_at_index(i).id for i in range(ol.option_count)]


async def highlight(pilot, option_list, option_id: str) -> None:
    option_list.highlighted = next(i for i in range(option_list.option_count)
                                   if option_list.get_option_at_index(i).id == option_id)
    await pilot.pause()


async def open_dataset(app, pilot, path) -> None:
    app.go("dataset")
    await settle(app, pilot)
    app.screen.query_one("#dataset-path").value = str(path)
    screen = app.screen
    await until(pilot, lambda: screen._kind_view is not None or screen._kind_error or
                (screen._kind == "cpt" and screen._tok_done and screen._preview is not None))
    await settle(app, pilot)


# ------------------------------------------------------------------------------- questionnaire


@pytest.mark.parametrize("data_kind, kind", [("preferences", "dpo"), ("binary-feedback", "kto"),
                                             ("reward-function", "grpo"), ("raw-text", "cpt")])
async def test_the_answer_picks_the_kind_offered_first_and_enter_trains_it(make_app, data_kind, kind):
    goal = "domain" if kind == "cpt" else "alignment"
    app = make_app("24gb", pinned=True)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("g")
        await pilot.pause()
        await answer(pilot, app, {**FINE_TUNE, "data_kind": data_kind, "goal": goal})
        screen = app.screen
        offered = options(screen)
        assert offered[0] == f"kind-{kind}"  # the recommended kind first, every kind offered, GRPO included
        assert sorted(offered) == sorted(f"kind-{k}" for k in ("sft", "dpo", "orpo", "simpo", "kto", "grpo", "cpt"))
        assert str(screen.query_one("#choices").get_option_at_index(0).prompt).endswith(" ★")  # recommended
        assert "★ recommended" in str(screen.query_one("#question").render())
        await pilot.press("enter")
        await pilot.pause()
        assert type(app.screen).__name__ == "HardwareScreen"
        assert app.state.training == kind


async def test_the_user_can_train_another_kind_than_the_recommended_one(make_app):
    app = make_app("24gb", pinned=True)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("g")
        await pilot.pause()
        await answer(pilot, app, {**FINE_TUNE, "data_kind": "preferences", "goal": "alignment"})
        await pilot.press("down", "down")  # dpo -> sft -> orpo, with the keyboard
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert app.state.recommendation.training == "dpo"
        assert app.state.training == "orpo"
        # the flow follows the kind: no rewards step for ORPO, step numbers of its own flow
        assert str(app.screen.query_one("#title-step").render()) == "step 3 of 9"


# ------------------------------------------------------------------------------------ dataset


async def test_dpo_dataset_step_refuses_sft_data_and_shows_chosen_and_rejected_trained(make_app, tiny_work, tmp_path):
    from ftwizard.tui.state import WizardState

    pairs = write_jsonl(pair_rows(12), tmp_path / "pairs.jsonl")
    app = make_app("24gb", pinned=True, state=WizardState(training="dpo", model=str(tiny_work / "tiny-model")))
    async with app.run_test(size=SIZE) as pilot:
        await open_dataset(app, pilot, tiny_work / "data" / "chat.jsonl")
        screen = app.screen
        assert screen.check_action("next", ()) is None  # SFT data cannot train as DPO
        assert "no rejected column" in str(screen.query_one("#dataset-problems").render())
        await open_dataset(app, pilot, pairs)
        screen = app.screen
        assert screen.check_action("next", ()) is True
        assert "12 pairs as DPO" in str(screen.query_one("#stats-text").render())
        box = screen.query_one("#rendered-box")
        assert box.border_title.startswith("line 1 as DPO sees it") and "prompt 15 tokens" in box.border_title
        assert "What is six plus six?" in screen.query_one("#rendered").render().plain
        chosen, rejected = screen.query_one("#side-a"), screen.query_one("#side-b")
        assert chosen.display and rejected.display
        assert chosen.border_title == "chosen · 11 tokens" and rejected.border_title == "rejected · 11 tokens"
        for side, text in ((chosen, "six plus six equals twelve."), (rejected, "six plus six equals thirteen.")):
            rendered = side.render()
            assert text in rendered.plain and "<|im_end|>" in rendered.plain  # the end of turn is trained
            assert all(str(span.style) == "bold" for span in rendered.spans)  # bright: trained
        screen.query_one("#preview-table").focus()
        await pilot.press("down")
        await settle(app, pilot)
        assert box.border_title.startswith("line 2 as DPO sees it")
        assert "four plus eight" in chosen.render().plain
        await pilot.press("ctrl+n")
        await settle(app, pilot)
        assert type(app.screen).__name__ == "HyperparamsScreen"
        assert app.state.dataset_path == str(pairs)


async def test_dpo_dataset_step_lists_pairs_that_teach_nothing_and_sides_cut_at_max_length(make_app, tiny_work, tmp_path):
    from ftwizard.core.config import TrainConfig
    from ftwizard.tui.state import WizardState

    rows = pair_rows(8)
    rows[2]["rejected"] = rows[2]["chosen"]
    data = write_jsonl(rows, tmp_path / "pairs.jsonl")
    state = WizardState(training="dpo", model=str(tiny_work / "tiny-model"), train=TrainConfig(max_length=20))
    app = make_app("24gb", pinned=True, state=state)
    async with app.run_test(size=(100, 30)) as pilot:
        await open_dataset(app, pilot, data)
        screen = app.screen
        problems = str(screen.query_one("#dataset-problems").render())
        assert "1 row has the same chosen and rejected answer (line 3)" in problems
        assert "8 rows are cut at max_length 20 on both sides (lines 1, 2, 3, 4, 5, ...)" in problems
        assert "✂ cut by max_length" in screen.query_one("#side-a").render().plain


async def test_kto_dataset_step_shows_the_label_balance_and_refuses_one_label(make_app, tiny_work, tmp_path):
    from ftwizard.tui.state import WizardState

    state = WizardState(training="kto", model=str(tiny_work / "tiny-model"))
    app = make_app("24gb", pinned=True, state=state)
    async with app.run_test(size=(100, 30)) as pilot:
        await open_dataset(app, pilot, write_jsonl(kto_rows(12, labels=(True, True, False)), tmp_path / "kto.jsonl"))
        screen = app.screen
        stats = str(screen.query_one("#stats-text").render())
        assert "labels: 8 desirable (67%) · 4 undesirable (33%)" in stats
        assert "fix: set kto.desirable_weight: 0.58" in str(screen.query_one("#dataset-problems").render())
        assert screen.query_one("#side-a").border_title.startswith("desirable")
        assert screen.check_action("next", ()) is True
        await open_dataset(app, pilot, write_jsonl(kto_rows(12, labels=(True,)), tmp_path / "one.jsonl"))
        assert app.screen.check_action("next", ()) is None
        assert "needs both labels" in str(app.screen.query_one("#dataset-problems").render())


async def test_grpo_dataset_step_shows_the_rendered_prompt_and_the_columns_a_reward_sees(make_app, tiny_work, tmp_path):
    from ftwizard.tui.state import WizardState

    rows = [{"prompt": [{"role": "user", "content": r["prompt"]}], "answer": r["answer"]} for r in prompt_rows(6)]
    state = WizardState(training="grpo", model=str(tiny_work / "tiny-model"))
    app = make_app("24gb", pinned=True, state=state)
    async with app.run_test(size=(100, 30)) as pilot:
        await open_dataset(app, pilot, write_jsonl(rows, tmp_path / "prompts.jsonl"))
        screen = app.screen
        text = screen.query_one("#rendered").render().plain
        # the prompt through the chat template with the generation prompt: what the model answers
        assert "<|im_start|>user\nwhat is one plus one<|im_end|>\n<|im_start|>assistant" in text
        assert "columns a reward sees: answer=2" in text
        assert "/ 896 prompt tokens" in screen.query_one("#rendered-box").border_title  # 1024 - 128
        assert "6 prompts" in str(screen.query_one("#stats-text").render())
        assert screen.check_action("next", ()) is True
        # prompt-only rows with a column no chat format has (a code reward's tests) are GRPO data too
        only = write_jsonl([{"prompt": f"write f{i}", "tests": "assert True"} for i in range(4)], tmp_path / "only.jsonl")
        await open_dataset(app, pilot, only)
        screen = app.screen
        assert "columns a reward sees: tests=assert True" in screen.query_one("#rendered").render().plain
        # rows without a prompt cannot train as GRPO: the recipe's own reader refuses them, Next is blocked
        await open_dataset(app, pilot, write_jsonl([{"question": "q", "answer": "1"}] * 4, tmp_path / "noprompt.jsonl"))
        assert app.screen.check_action("next", ()) is None
        assert "GRPO needs a prompt on every row" in str(app.screen.query_one("#dataset-problems").render())
        await open_dataset(app, pilot, only)
        assert app.screen.check_action("next", ()) is True
        await pilot.press("ctrl+n")
        await settle(app, pilot)
        assert type(app.screen).__name__ == "RewardsScreen"  # GRPO's flow has the rewards step


async def test_cpt_dataset_step_shows_the_first_block_and_refuses_chat_data(make_app, tiny_work, tmp_path):
    from ftwizard.core.config import TrainConfig
    from ftwizard.core.tiny import corpus
    from ftwizard.tui.state import WizardState

    state = WizardState(training="cpt", model=str(tiny_work / "tiny-model"), train=TrainConfig(max_length=48))
    app = make_app("24gb", pinned=True, state=state)
    async with app.run_test(size=(100, 30)) as pilot:
        await open_dataset(app, pilot, write_jsonl([{"text": t} for t in corpus(30)], tmp_path / "corpus.jsonl"))
        screen = app.screen
        assert "the first CPT block · 48 tokens, all trained" in screen.query_one("#rendered-box").border_title
        assert " ‖ " in screen.query_one("#rendered").render().plain
        assert screen.check_action("next", ()) is True
        await open_dataset(app, pilot, tiny_work / "data" / "chat.jsonl")
        assert app.screen.check_action("next", ()) is None
        assert "training: cpt needs raw text" in str(app.screen.query_one("#dataset-problems").render())


# ------------------------------------------------------------------------------- hyperparameters


async def test_hyperparams_show_the_kinds_settings_with_ranges_and_whole_config_refusals(make_app, tmp_path):
    from ftwizard.core.config import GrpoConfig
    from ftwizard.tui.state import WizardState

    app = make_app("24gb", pinned=True, state=WizardState(training="dpo"))
    async with app.run_test(size=SIZE) as pilot:
        app.go("hyperparams")
        await settle(app, pilot)
        hp = app.screen
        assert "DPO's own settings" in str(hp.query_one("#hp-kind-title").render())
        assert hp.query_one("#hp-beta").value == "0.1" and hp.query_one("#hp-loss_type").value == "sigmoid"
        assert str(hp.query_one("#row-beta .hp-help").render()).endswith("· usual 0.01-0.5")
        # the whole first sentence: an ellipsis inside it does not end it
        assert str(hp.query_one("#row-loss_type .hp-help").render()).endswith("(TRL's DPOConfig.loss_type names)")
        hp.query_one("#hp-beta").value = "0.9"
        await pilot.pause()
        assert hp.query_one("#row-beta").has_class("-warning")
        assert "0.01-0.5 is usual" in str(hp.query_one("#row-beta .hp-help").render())
        hp.query_one("#hp-loss_type").value = "ipo, sft"
        await pilot.pause()
        assert hp.check_action("next", ()) is True
        await pilot.press("ctrl+n")
        await settle(app, pilot)
        assert app.state.kind_section().beta == 0.9 and app.state.kind_section().loss_type == ["ipo", "sft"]
        assert type(app.screen).__name__ == "ReviewScreen"
        assert "dpo:\n  beta: 0.9\n  loss_type:\n  - ipo\n  - sft\n" in app.screen.yaml_text
        assert "dpo: beta 0.9, loss_type ipo, sft" in str(app.screen.query_one("#review-summary").render())

    grpo = GrpoConfig(rewards=["numeric_match"])
    app = make_app("24gb", pinned=True, state=WizardState(training="grpo").with_kind_section(grpo))
    async with app.run_test(size=SIZE) as pilot:
        app.go("hyperparams")
        await settle(app, pilot)
        hp = app.screen
        assert "numeric_match x1" in str(hp.query_one("#hp-rewards").render())
        assert hp.query_one("#hp-form").border_title.startswith("Settings for GRPO with lora")
        hp.query_one("#hp-num_generations").value = "3"  # does not divide batch 4 x accumulation 1
        await pilot.pause()
        assert hp.check_action("next", ()) is None
        assert "must divide train.batch_size" in str(hp.query_one("#row-num_generations .hp-help").render())
        hp.query_one("#hp-num_generations").value = "2"
        await pilot.pause()
        assert hp.check_action("next", ()) is True
        assert hp.query_one("#row-num_generations").has_class("-warning")  # 4-16 is usual


def test_the_cli_warns_about_a_kinds_settings_as_the_wizard_does(tiny_config):
    """core/guidance.py is the one home of the kinds' usual ranges: the pre-flight's warnings carry them too."""
    import json as _json

    from ftwizard.core.config import parse_config
    from ftwizard.core.guidance import config_guidance

    data = _json.loads(tiny_config().model_dump_json())
    data.update(training="dpo", dpo={"beta": 0.9})
    assert ("dpo.beta", "beta 0.9: 0.01-0.5 is usual (the DPO paper's 0.1; higher keeps the model closer to the "
            "reference)") in config_guidance(parse_config(data))
    data.update(training="grpo", dpo={}, grpo={"rewards": ["format"], "num_generations": 2, "temperature": 0.3})
    warned = dict(config_guidance(parse_config(data)))
    assert set(warned) >= {"grpo.num_generations", "grpo.temperature"}
    data.update(grpo={"rewards": ["format"], "max_completion_length": 12})  # 128 would leave no room for prompts
    assert not [k for k, _ in config_guidance(parse_config(data)) if k.startswith("grpo.")]


# ------------------------------------------------------------------------------------ rewards


async def test_rewards_step_checks_each_reward_on_a_real_row_before_next(make_app, tmp_path, monkeypatch):
    from ftwizard.tui.state import WizardState

    monkeypatch.chdir(tmp_path)
    data = write_jsonl(prompt_rows(8), tmp_path / "prompts.jsonl")
    (tmp_path / "good.py").write_text(GOOD_REWARD)
    (tmp_path / "bad.py").write_text(BAD_SIGNATURE)
    (tmp_path / "short.py").write_text(WRONG_LENGTH)
    app = make_app("24gb", pinned=True, state=WizardState(training="grpo", dataset_path=str(data)))
    async with app.run_test(size=SIZE) as pilot:
        app.go("rewards")
        await settle(app, pilot)
        screen = app.screen
        check = screen.query_one("#rw-check")
        assert screen.check_action("next", ()) is None
        assert "tick at least one reward" in str(check.render())
        assert "rw-code" not in {w.id for w in screen.query("Checkbox")}  # code: only when typed
        await pilot.press("space")  # exact_match, focused first
        await settle(app, pilot)
        assert screen.check_action("next", ()) is True
        assert "columns a reward sees: answer" in str(check.render())
        screen.query_one("#rw-answer_column").value = "solution"  # no such column
        await settle(app, pilot)
        assert screen.check_action("next", ()) is None
        assert "reads the column 'solution'" in str(check.render())
        screen.query_one("#rw-answer_column").value = "answer"
        for ref, error in (("bad.py:score", "has the signature"), ("short.py:score", "returned 1 values"),
                           ("missing.py:score", "no such reward file"), ("good.py", "FILE.py:FUNCTION")):
            screen.query_one("#rw-own").value = ref
            await settle(app, pilot)
            assert screen.check_action("next", ()) is None, ref
            assert error in str(check.render()), (ref, str(check.render()))
        screen.query_one("#rw-own").value = "good.py:longer"
        screen.query_one("#rw-weight-own").value = "0.5"
        await settle(app, pilot)
        assert screen.check_action("next", ()) is True, str(check.render())
        await pilot.press("ctrl+n")
        await settle(app, pilot)
        g = app.state.kind_section("grpo")
        assert g.rewards == ["exact_match", f"{tmp_path.resolve()}/good.py:longer"]  # absolute: runs from anywhere
        assert g.reward_weights == [1.0, 0.5]
        assert type(app.screen).__name__ == "HyperparamsScreen"


# ------------------------------------------------------------------------------- walks to a run


async def walk_to_dataset(app, pilot, tiny_work, data_kind: str) -> None:
    await settle(app, pilot)
    await pilot.press("g")
    await pilot.pause()
    await answer(pilot, app, {**FINE_TUNE, "data_kind": data_kind, "goal": "alignment"})
    await pilot.press("enter")  # the recommended kind, first in the list
    await settle(app, pilot)
    await pilot.press("ctrl+n")  # hardware -> model
    await settle(app, pilot)
    other = app.screen.query_one("#model-other")
    other.focus()
    other.value = str(tiny_work / "tiny-model")
    await settle(app, pilot)
    await pilot.press("ctrl+n")
    await settle(app, pilot)
    assert type(app.screen).__name__ == "MethodScreen"
    await highlight(pilot, app.screen.query_one("#methods"), "lora")
    await pilot.press("ctrl+n")
    await settle(app, pilot)
    assert type(app.screen).__name__ == "DatasetScreen"


async def set_fields(app, pilot, values: dict[str, str]) -> None:
    for key, value in values.items():
        app.screen.query_one(f"#hp-{key}").value = value
    await pilot.pause()
    assert app.screen.check_action("next", ()) is True, app.screen.why_invalid()


async def launch_and_wait(app, pilot):
    from ftwizard.core.runs import TERMINAL_STATES, run_info

    assert type(app.screen).__name__ == "ReviewScreen"
    await pilot.press("ctrl+n")
    await until(pilot, lambda: type(app.screen).__name__ == "MonitorScreen", timeout=120)
    run_dir = app.screen.run_dir
    try:
        await until(pilot, lambda: run_info(run_dir).state in TERMINAL_STATES, timeout=600, step=0.2)
    finally:  # a test that gives up leaves no training process behind
        if run_info(run_dir).state not in TERMINAL_STATES:
            from ftwizard.core.launch import stop
            from ftwizard.core.selftest import wait_for_end

            stop(run_dir)
            wait_for_end(run_dir, timeout=120)
    info = run_info(run_dir)
    assert info.state == "completed", (info.reason, (run_dir / "train.log").read_text()[-2000:])
    return run_dir


def train_events(run_dir) -> list[dict]:
    from ftwizard.core.events import read_events

    return [e for e in read_events(run_dir) if e["type"] == "train"]


@pytest.mark.slow
async def test_walk_from_preference_pairs_to_a_launched_dpo_run(make_app, tiny_work, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = write_jsonl(pair_rows(24), tmp_path / "pairs.jsonl")
    app = make_app("24gb")
    async with app.run_test(size=SIZE) as pilot:
        await walk_to_dataset(app, pilot, tiny_work, "preferences")
        assert app.state.training == "dpo"
        screen = app.screen
        screen.query_one("#dataset-path").value = str(data)
        await until(pilot, lambda: screen.check_action("next", ()) is True)
        assert screen.query_one("#side-b").border_title.startswith("rejected")
        await pilot.press("ctrl+n")
        await settle(app, pilot)
        assert type(app.screen).__name__ == "HyperparamsScreen"
        await set_fields(app, pilot, {"learning_rate": "0.005", "max_steps": "4", "batch_size": "4",
                                      "max_length": "64", "beta": "0.2"})
        await pilot.press("ctrl+n")
        await settle(app, pilot)
        assert "training: dpo\n" in app.screen.yaml_text and "dpo:\n  beta: 0.2\n" in app.screen.yaml_text
        run_dir = await launch_and_wait(app, pilot)
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert cfg["training"] == "dpo" and cfg["dpo"]["beta"] == 0.2 and cfg["dataset"]["path"] == str(data)
    events = train_events(run_dir)
    assert [e["step"] for e in events] == [1, 2, 3, 4]
    assert all("reward_margin" in e and "reward_accuracy" in e for e in events)
    assert (run_dir / "output" / "adapter_config.json").exists()


@pytest.mark.slow
async def test_walk_from_a_scoring_program_to_a_launched_grpo_run(make_app, tiny_work, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = write_jsonl(prompt_rows(24), tmp_path / "prompts.jsonl")
    (tmp_path / "my_reward.py").write_text(GOOD_REWARD)
    app = make_app("24gb")
    async with app.run_test(size=SIZE) as pilot:
        await walk_to_dataset(app, pilot, tiny_work, "reward-function")
        assert app.state.training == "grpo"
        screen = app.screen
        screen.query_one("#dataset-path").value = str(data)
        await until(pilot, lambda: screen.check_action("next", ()) is True)
        await pilot.press("ctrl+n")
        await settle(app, pilot)
        rewards = app.screen
        assert type(rewards).__name__ == "RewardsScreen"
        # by keyboard: the first tick box has focus; tab twice to numeric_match, space ticks it, tab to
        # "your own" past the other rows' tick box and weight, type the file and function
        await pilot.press("tab", "tab", "space", *["tab"] * 8)
        assert rewards.focused.id == "rw-own"
        await pilot.press(*"my_reward.py:longer")
        await until(pilot, lambda: rewards.check_action("next", ()) is True)
        await pilot.press("ctrl+n")
        await settle(app, pilot)
        assert type(app.screen).__name__ == "HyperparamsScreen"
        await set_fields(app, pilot, {"learning_rate": "0.005", "max_steps": "3", "batch_size": "4",
                                      "max_length": "64", "max_completion_length": "12"})
        await pilot.press("ctrl+n")
        await settle(app, pilot)
        assert "training: grpo\n" in app.screen.yaml_text
        run_dir = await launch_and_wait(app, pilot)
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert cfg["training"] == "grpo"
    assert cfg["grpo"]["rewards"] == ["numeric_match", f"{tmp_path.resolve()}/my_reward.py:longer"]
    assert cfg["grpo"]["max_completion_length"] == 12
    events = train_events(run_dir)
    assert [e["step"] for e in events] == [1, 2, 3]
    assert all(set(e["rewards"]) == {"numeric_match", "longer"} for e in events)
    assert any(e["type"] == "sample" for e in map(json.loads, (run_dir / "events.jsonl").read_text().splitlines()))
