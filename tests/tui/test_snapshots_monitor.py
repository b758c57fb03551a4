"""Snapshots of the monitor, finished and runs screens, drawn from recorded run directories (fixed
events, relative paths, fake NVML sampled once, no clock). Review the SVG diff before
`--snapshot-update`."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
from fakes import FakeNvml, L4_24GB, TWO_A6000
from recorded_runs import OOM, make_run
from pilot import until as wait_until

from ftwizard.tui.screens.finished import FinishedScreen
from ftwizard.tui.screens.monitor import MonitorApp, MonitorScreen
from ftwizard.tui.screens.runs import RunsScreen


@pytest.fixture
def runs(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)  # paths on screen are relative: the same in every test run
    return Path("runs")


until = functools.partial(wait_until, timeout=30.0)


def monitor(run_dir: Path, gpus) -> MonitorApp:
    # nvml_s large: one NVML sample, so the memory history is the same in every snapshot
    return MonitorApp(lambda: MonitorScreen(run_dir, nvml_source=FakeNvml(gpus), nvml_s=3600, state_s=3600))


async def monitor_ready(pilot) -> None:
    mon = pilot.app.screen
    await until(pilot, lambda: isinstance(mon, MonitorScreen) and mon.up_to_date and mon.query("GpuMeter"))
    await until(pilot, lambda: mon.chart.draws > 0)


def test_monitor_running_with_a_doctor_warning(snap_compare, runs):
    run = make_run(runs, "20261124-1412-llama8b-lora", state="running", steps=400, max_steps=1200,
                   overfit_from=200)
    assert snap_compare(monitor(run, [L4_24GB]), terminal_size=(80, 24), run_before=monitor_ready)


def test_monitor_two_gpus_wide(snap_compare, runs):
    run = make_run(runs, "20261124-1412-llama70b-qlora", state="running", steps=300, max_steps=1200,
                   method="qlora", model="meta-llama/Llama-3.1-70B")
    assert snap_compare(monitor(run, TWO_A6000), terminal_size=(120, 40), run_before=monitor_ready)


def test_monitor_dpo_rewards_beside_the_loss(snap_compare, runs):
    run = make_run(runs, "20261124-1412-smol-dpo", state="running", steps=300, max_steps=1200, kind="dpo",
                   model="HuggingFaceTB/SmolLM2-1.7B-Instruct")
    assert snap_compare(monitor(run, [L4_24GB]), terminal_size=(80, 24), run_before=kind_ready)


def test_monitor_grpo_rewards_and_reward_chart(snap_compare, runs):
    run = make_run(runs, "20261124-1412-qwen-grpo", state="running", steps=300, max_steps=1200, kind="grpo",
                   model="Qwen/Qwen2.5-1.5B-Instruct")
    assert snap_compare(monitor(run, [L4_24GB]), terminal_size=(80, 24), run_before=kind_ready)


def test_monitor_grpo_latest_completions(snap_compare, runs):
    run = make_run(runs, "20261124-1412-qwen-grpo", state="running", steps=300, max_steps=1200, kind="grpo",
                   model="Qwen/Qwen2.5-1.5B-Instruct")

    async def ready(pilot):
        await kind_ready(pilot)
        await pilot.press("c")
        await pilot.pause()

    assert snap_compare(monitor(run, [L4_24GB]), terminal_size=(80, 24), run_before=ready)


def test_monitor_two_gpus_one_rank_lagging(snap_compare, runs):
    run = make_run(runs, "20261124-1412-llama8b-dpo", state="running", steps=300, max_steps=1200, kind="dpo",
                   world_size=2, slow_rank=1)
    assert snap_compare(monitor(run, TWO_A6000), terminal_size=(80, 24), run_before=kind_ready)


async def kind_ready(pilot) -> None:
    await monitor_ready(pilot)
    mon = pilot.app.screen
    await until(pilot, lambda: mon.kind is not None and mon._drawn_version == mon.view.version)
    await pilot.pause()


def test_monitor_before_the_first_step(snap_compare, runs):
    run = make_run(runs, "20261124-1412-llama8b-lora", state="running", steps=0, max_steps=0)

    async def ready(pilot):
        mon = pilot.app.screen
        await until(pilot, lambda: mon.up_to_date and mon.query("GpuMeter"))

    assert snap_compare(monitor(run, [L4_24GB]), terminal_size=(80, 24), run_before=ready)


def _finished(run_dir: Path) -> MonitorApp:
    return MonitorApp(lambda: FinishedScreen(run_dir))


def test_finished_completed(snap_compare, runs):
    run = make_run(runs, "20261124-1412-llama8b-lora", state="completed", steps=1200, max_steps=1200,
                   eval_every=100)
    assert snap_compare(_finished(run), terminal_size=(80, 24))


def test_finished_failed_oom(snap_compare, runs):
    run = make_run(runs, "20261124-1412-llama8b-full", state="failed", steps=0, max_steps=1200, method="full",
                   reason=OOM["message"], diagnosis=OOM)
    assert snap_compare(_finished(run), terminal_size=(80, 24))


def test_runs_screen(snap_compare, runs):
    make_run(runs, "20261124-0900-llama8b-lora", state="completed", steps=1200, max_steps=1200)
    make_run(runs, "20261124-1000-qwen7b-qlora", state="stopped", steps=450, max_steps=1200,
             model="Qwen/Qwen2.5-7B-Instruct", method="qlora", reason="stopped on request (checkpoint saved)")
    make_run(runs, "20261124-1100-smol-full", state="killed", steps=12, max_steps=100,
             model="HuggingFaceTB/SmolLM2-135M", method="full")
    make_run(runs, "20261124-1200-llama8b-full", state="failed", steps=0, max_steps=1200, method="full",
             reason=OOM["message"], diagnosis=OOM)

    async def ready(pilot):
        screen = pilot.app.screen
        await until(pilot, lambda: isinstance(screen, RunsScreen) and screen.loaded and len(screen.sizes) == 4)

    app = MonitorApp(lambda: RunsScreen(runs_dir=runs))
    assert snap_compare(app, terminal_size=(80, 24), run_before=ready)
