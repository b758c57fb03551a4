"""Walks through the whole wizard with each fake NVML scenario, and once for real: a tiny model and
its data chosen step by step, launched from Review as a real detached training run, with loss points
arriving in the training monitor."""

from __future__ import annotations

import pytest

from test_wizard_questionnaire import FINE_TUNE, answer
from pilot import settle

SIZE = (100, 30)


async def pick(pilot, option_list, option_id: str):
    idx = next(i for i in range(option_list.option_count) if option_list.get_option_at_index(i).id == option_id)
    option_list.highlighted = idx
    await pilot.pause()


async def walk_to_method(app, pilot, model_id: str):
    await settle(app, pilot)
    await pilot.press("g")
    await pilot.pause()
    await answer(pilot, app, FINE_TUNE)
    await pilot.press("ctrl+n")  # -> hardware
    await settle(app, pilot)
    assert type(app.screen).__name__ == "HardwareScreen"
    await pilot.press("ctrl+n")  # -> model
    await settle(app, pilot)
    await pick(pilot, app.screen.query_one("#catalog"), model_id)
    await settle(app, pilot)
    await pilot.press("enter")  # choose -> method
    await settle(app, pilot)
    assert type(app.screen).__name__ == "MethodScreen"


@pytest.mark.parametrize("scenario", ["8gb", "24gb", "80gb", "two-gpus", "none"])
async def test_walk_every_hardware_scenario(make_app, tmp_path, tiny_work, scenario):
    from ftwizard.core.catalog import CATALOG
    from ftwizard.core.estimate import compare_methods
    from ftwizard.core.hardware import run_gpus, run_world_size

    app = make_app(scenario)
    async with app.run_test(size=SIZE) as pilot:
        await walk_to_method(app, pilot, "qwen2.5-7b")
        screen = app.screen
        hw = app.state.hardware
        assert app.state.model == "Qwen/Qwen2.5-7B"
        target = str(screen.query_one("#method-target").render())
        reason = str(screen.query_one("#method-reason").render())
        options = screen.query_one("#methods")
        prompts = [str(options.get_option_at_index(i).prompt) for i in range(options.option_count)]
        highlighted = options.get_option_at_index(options.highlighted).id
        if scenario == "none":
            assert "no GPU on this machine" in target
            assert not any(v in p for p in prompts for v in ("fits", "tight"))
            assert highlighted == "lora" and "No GPU" in reason
        else:
            # the figures are for the cards a run really trains on (one process per card, torchrun)
            used, world = run_gpus(hw), run_world_size(hw)
            vram = min(g.free_gib for g in used)
            expected = compare_methods(CATALOG["qwen2.5-7b"], vram, world, None)
            assert f"{world}x" in target and f"{vram:.1f} GiB free" in target
            if scenario == "two-gpus":
                assert world == 2 and "2x" in target and "trains on 1 of" not in target
            if expected.recommended:
                assert highlighted == expected.recommended
                assert reason.startswith(f"Why {expected.recommended}:")
                assert any("recommended" in p and p.startswith(expected.recommended) for p in prompts)
            else:
                assert "no method fits" in reason
            if scenario == "80gb":
                assert highlighted == "lora" and "fits" in prompts[1]
            if scenario == "8gb":
                assert "does not fit" in prompts[0]
        assert "breakdown (GiB)" in str(screen.query_one("#breakdown").render())
        # Choose QLoRA explicitly and go on.
        await pick(pilot, options, "qlora")
        await pilot.press("ctrl+n")
        await settle(app, pilot)
        assert app.state.method == "qlora"
        assert type(app.screen).__name__ == "DatasetScreen"
        assert app.screen.check_action("next", ()) is None  # no dataset yet: blocked
        app.screen.query_one("#dataset-path").value = str(tiny_work / "data" / "chat.jsonl")
        await settle(app, pilot)
        await settle(app, pilot)
        await pilot.press("ctrl+n")
        await settle(app, pilot)
        assert type(app.screen).__name__ == "HyperparamsScreen"
        await pilot.press("ctrl+n")
        await settle(app, pilot)
        assert type(app.screen).__name__ == "ReviewScreen"
        cfg = app.state.to_config()
        assert (cfg.model.name_or_path, cfg.method, cfg.training) == ("Qwen/Qwen2.5-7B", "qlora", "sft")
        assert "\nmethod: qlora\n" in app.screen.yaml_text
        # Back goes step by step.
        await pilot.press("escape")
        assert type(app.screen).__name__ == "HyperparamsScreen"


@pytest.mark.slow
async def test_full_walk_launches_a_real_run_and_the_monitor_charts_it(make_app, tiny_work, tmp_path, monkeypatch):
    from ftwizard.core.runs import TERMINAL_STATES, run_info

    monkeypatch.chdir(tmp_path)
    app = make_app("24gb")
    app.runs_dir = None  # as `ftwizard` starts it: the config's relative runs_dir ("runs") decides
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("g")
        await pilot.pause()
        await answer(pilot, app, FINE_TUNE)
        await pilot.press("ctrl+n")
        await settle(app, pilot)
        await pilot.press("ctrl+n")  # hardware -> model
        await settle(app, pilot)
        other = app.screen.query_one("#model-other")
        other.focus()
        other.value = str(tiny_work / "tiny-model")
        await settle(app, pilot)
        assert app.screen.check_action("next", ()) is True
        await pilot.press("ctrl+n")
        await settle(app, pilot)
        assert app.state.arch is not None and app.state.arch.layers == 2
        assert type(app.screen).__name__ == "MethodScreen"
        await pick(pilot, app.screen.query_one("#methods"), "lora")
        await pilot.press("ctrl+n")
        await settle(app, pilot)
        app.screen.query_one("#dataset-path").value = str(tiny_work / "data" / "chat.jsonl")
        await settle(app, pilot)
        await settle(app, pilot)
        assert "EOS trained" in app.screen.query_one("#rendered-box").border_subtitle
        await pilot.press("ctrl+n")
        await settle(app, pilot)
        hp = app.screen
        for key, value in (("learning_rate", "0.005"), ("max_steps", "12"), ("batch_size", "4"), ("max_length", "128")):
            hp.query_one(f"#hp-{key}").value = value
        await pilot.pause()
        assert hp.query_one("#row-learning_rate").has_class("-warning")  # outside LoRA's usual range
        await pilot.press("ctrl+n")
        await settle(app, pilot)
        assert type(app.screen).__name__ == "ReviewScreen"
        await pilot.press("ctrl+s")
        await pilot.pause()
        saved = app.state.config_path
        assert saved == "configs/ftwizard-tiny-model-lora.yaml"  # relative to where ftwizard started
        assert (tmp_path / saved).is_file()
        await pilot.press("ctrl+n")  # launch
        for _ in range(100):
            await pilot.pause(0.1)
            if type(app.screen).__name__ == "MonitorScreen":
                break
        monitor = app.screen
        assert type(monitor).__name__ == "MonitorScreen"
        run_dir = monitor.run_dir
        assert run_dir.is_absolute() and run_dir.parent == (tmp_path / "runs").resolve()
        # Loss points arrive in the chart while the run trains (a real subprocess).
        for _ in range(600):
            await pilot.pause(0.1)
            if monitor.chart.points_drawn > 0:
                break
        assert monitor.chart.points_drawn > 0
        assert len(monitor.view.train_loss) > 0
        for _ in range(600):
            if run_info(run_dir).state in TERMINAL_STATES:
                break
            await pilot.pause(0.1)
        assert run_info(run_dir).state == "completed", run_info(run_dir).reason
