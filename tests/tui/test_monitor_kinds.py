"""Pilot tests of the monitor per training kind and per card: a real tiny DPO run and a real GRPO run
attached after they end (their own events), recorded KTO/CPT runs, and a recorded two-card run (fake
NVML) with every rank's memory and a lagging rank, all at 80x24 by keyboard."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
from fakes import FakeNvml, L4_24GB, TWO_A6000
from recorded_runs import make_run
from pilot import until as wait_until

import test_grpo
from test_grpo import run_dir_of

from ftwizard.core.events import read_events
from ftwizard.tui.screens.monitor import MonitorApp, MonitorScreen

until = functools.partial(wait_until, timeout=120.0, step=0.1)
grpo_config = test_grpo.grpo_config  # the GRPO run fixture, used here as in test_grpo.py


def monitor_app(run_dir: Path, nvml=None) -> MonitorApp:
    return MonitorApp(lambda: MonitorScreen(run_dir, nvml_source=nvml or FakeNvml([L4_24GB]), show_finished=False))


def mon_of(app) -> MonitorScreen:
    return next(s for s in app.screen_stack if isinstance(s, MonitorScreen))


def kind_text(mon) -> str:
    return mon.query_one("#mon-kind").render().plain


async def ready(pilot, mon) -> None:
    await until(pilot, lambda: mon.up_to_date and mon.kind is not None and mon.query("GpuMeter"))
    await pilot.pause()


# ------------------------------------------------------------------------------------- real runs


@pytest.mark.slow
async def test_real_dpo_run_shows_rewards_margin_and_accuracy_beside_the_loss(tiny_config, tmp_path, start_run,
                                                                              wait_run):
    from ftwizard.core.tiny import write_jsonl
    from test_preference import pair_rows

    cfg = tiny_config(steps=6)
    cfg = cfg.model_copy(update={"training": "dpo"})
    cfg.dataset.path = str(write_jsonl(pair_rows(24), tmp_path / "dpo.jsonl"))
    run_dir = start_run(cfg)
    assert wait_run(run_dir).state == "completed"
    last = [e for e in read_events(run_dir) if e["type"] == "train"][-1]
    app = monitor_app(run_dir)
    async with app.run_test(size=(80, 24)) as pilot:
        mon = mon_of(app)
        await ready(pilot, mon)
        assert mon.kind == "dpo" and mon.chart.points_drawn >= 6  # the loss chart stays
        lines = kind_text(mon).splitlines()
        assert [ln.split("  ")[0] for ln in lines] == ["chosen reward", "rejected reward", "margin", "accuracy"]
        assert lines[2].endswith(f"{last['reward_margin']:.3f}") and lines[3].endswith(f"{last['reward_accuracy']:.0%}")
        assert "DPO" in mon.query_one("#mon-kind").border_title
        assert not mon.check_action("toggle_samples", ())  # completions are GRPO's


@pytest.mark.slow
async def test_real_grpo_run_shows_rewards_and_scrollable_completions(grpo_config, wait_run):
    import subprocess
    import sys

    run_dir = run_dir_of(subprocess.run([sys.executable, "-m", "ftwizard.core.cli", "train", str(grpo_config(
        rewards=["numeric_match", "length_penalty"], steps=4)), "--detach"], capture_output=True, text=True))
    assert wait_run(run_dir).state == "completed"
    evs = read_events(run_dir)
    last = [e for e in evs if e["type"] == "train"][-1]
    samples = [e for e in evs if e["type"] == "sample"]
    app = monitor_app(run_dir)
    async with app.run_test(size=(80, 24)) as pilot:
        mon = mon_of(app)
        await ready(pilot, mon)
        text = kind_text(mon)
        assert "reward mean" in text and "reward std" in text and "completion len" in text
        assert "· numeric_match" in text and "· length_penalty" in text and "no-spread groups" in text
        row = next(ln for ln in text.splitlines() if ln.startswith("reward mean"))
        assert row.endswith(f"{last['reward_mean']:.3f}")
        assert mon.chart.train is mon.view.kind_series["reward_mean"]  # GRPO charts what it optimises
        assert "training loss is near 0" not in str(mon.query_one("#mon-doctor").render())
        await pilot.press("c")
        panel = mon.query_one("#mon-samples")
        assert panel.display and mon.query_one("#mon-main").has_class("-samples") and app.focused is panel
        shown = panel.query_one("#samples-text").render().plain
        assert panel.count == len(samples) and f"step {samples[-1]['step']}" in shown
        assert "numeric_match" in shown and "\x1b" not in shown  # control characters never reach the terminal
        await pilot.press("pagedown")
        await pilot.press("c")
        assert not mon.query_one("#mon-main").has_class("-samples")


# -------------------------------------------------------------------------------- recorded runs


async def test_recorded_kto_and_cpt_runs_show_their_own_numbers(tmp_path):
    kto = make_run(tmp_path, "20261124-1412-kto", state="completed", steps=120, max_steps=120, kind="kto")
    app = monitor_app(kto)
    async with app.run_test(size=(80, 24)) as pilot:
        mon = mon_of(app)
        await ready(pilot, mon)
        labels = [ln[:17].strip() for ln in kind_text(mon).splitlines()]
        assert labels == ["desirable reward", "undesirable rew.", "margin", "KL to reference"]
        assert "per label" in mon.query_one("#mon-kind").border_title
    cpt = make_run(tmp_path, "20261124-1412-cpt", state="completed", steps=120, max_steps=120, kind="cpt")
    app = monitor_app(cpt)
    async with app.run_test(size=(80, 24)) as pilot:
        mon = mon_of(app)
        await ready(pilot, mon)
        (line,) = kind_text(mon).splitlines()
        assert line.startswith("perplexity") and mon.view.kind_series["perplexity"].xs[-1] == 120


async def test_an_sft_run_has_no_kind_panel(tmp_path):
    run = make_run(tmp_path, "20261124-1412-sft", state="completed", steps=50, max_steps=50)
    app = monitor_app(run)
    async with app.run_test(size=(80, 24)) as pilot:
        mon = mon_of(app)
        await ready(pilot, mon)
        panel = mon.query_one("#mon-kind")
        assert panel.has_class("-empty") and panel.region.height == 0 and mon.chart.points_drawn > 0


async def test_two_fake_cards_two_meters_each_ranks_memory_and_the_slowest_rank(tmp_path):
    run = make_run(tmp_path, "20261124-1412-two", state="running", steps=200, max_steps=1200, kind="dpo",
                   world_size=2, slow_rank=1)
    app = monitor_app(run, nvml=FakeNvml(TWO_A6000))
    async with app.run_test(size=(80, 24)) as pilot:
        mon = mon_of(app)
        await until(pilot, lambda: mon.up_to_date and len(mon.query("GpuMeter")) == 2)
        await pilot.pause()
        meters = {m.id: m for m in mon.query("GpuMeter")}
        assert set(meters) == {"gpu-0", "gpu-1"}
        g0, g1 = (str(meters[k].render()) for k in ("gpu-0", "gpu-1"))
        assert "/ 48.0 GB" in g0 and "util 0%" in g0 and "rank 0 · 0.41 s/step" in g0
        assert "rank 1 · 0.62 s/step" in g1 and "slowest" in g1 and meters["gpu-1"].has_class("-slow")
        assert not meters["gpu-0"].has_class("-slow")
        # each card's trainer peak is its own rank's (recorded: rank 1 peaks 0.4 GB higher)
        assert mon.view.memory["cuda:1"].peak_gib > mon.view.memory["cuda:0"].peak_gib
        ranks = str(mon.query_one("#mon-ranks").render())
        assert "2 ranks" in ranks and "slowest: rank 1" in ranks and mon.query_one("#mon-ranks").display
        assert "rank 1 (cuda:1) is the slowest" in str(mon.query_one("#mon-doctor").render())


async def test_even_ranks_name_no_slowest(tmp_path):
    run = make_run(tmp_path, "20261124-1412-even", state="completed", steps=50, max_steps=50, gpu=False,
                   world_size=2, slow_rank=None)
    app = monitor_app(run, nvml=FakeNvml.none())
    async with app.run_test(size=(80, 24)) as pilot:
        mon = mon_of(app)
        await ready(pilot, mon)
        ranks = str(mon.query_one("#mon-ranks").render())
        assert "no rank lags" in ranks and "r1 cpu" in ranks and mon.view.slowest_rank() is None


def test_status_json_carries_the_kinds_last_metrics(tmp_path):
    import subprocess
    import sys

    run = make_run(tmp_path, "20261124-1412-dpo", state="completed", steps=40, max_steps=40, kind="dpo")
    last = [e for e in read_events(run) if e["type"] == "train"][-1]
    out = subprocess.run([sys.executable, "-m", "ftwizard.core.cli", "status", str(run), "--json"],
                         capture_output=True, text=True, check=True)
    info = json.loads(out.stdout)
    assert info["training"] == "dpo"
    assert {k: info["extra"]["metrics"][k] for k in ("reward_margin", "reward_accuracy")} == \
        {k: last[k] for k in ("reward_margin", "reward_accuracy")}


def test_status_text_prints_the_kinds_numbers_on_one_line(tmp_path):
    import subprocess
    import sys

    run = make_run(tmp_path, "20261124-1412-grpo", state="completed", steps=40, max_steps=40, kind="grpo")
    out = subprocess.run([sys.executable, "-m", "ftwizard.core.cli", "status", str(run)],
                         capture_output=True, text=True, check=True).stdout
    line = next(ln for ln in out.splitlines() if ln.strip().startswith("grpo:"))
    assert "reward mean" in line and "numeric_match" in line and "no-spread groups" in line


async def test_completions_scroll_by_keyboard_at_80x24(tmp_path):
    run = make_run(tmp_path, "20261124-1412-grpo", state="running", steps=60, max_steps=600, kind="grpo")
    app = monitor_app(run)
    async with app.run_test(size=(80, 24)) as pilot:
        mon = mon_of(app)
        await ready(pilot, mon)
        await pilot.press("c")
        await pilot.pause()
        panel = mon.query_one("#mon-samples")
        assert panel.count == 50 and app.focused is panel  # the fold keeps the latest 50
        assert panel.scroll_y == 0 and panel.max_scroll_y > 0
        await pilot.press("pagedown")
        await pilot.pause()
        assert panel.scroll_y > 0
        await pilot.press("l")  # the log replaces the completions; c comes back to them
        assert mon.chart.showing_log and not mon.query_one("#mon-main").has_class("-samples")
        await pilot.press("c")
        assert mon.query_one("#mon-main").has_class("-samples") and not mon.chart.showing_log
