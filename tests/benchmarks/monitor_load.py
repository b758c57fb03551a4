"""The monitor under load (run by hand; numbers go into README, "The training monitor"):

    /work/venv/bin/python tests/benchmarks/monitor_load.py [--events 100000] [--rate 1000] [--seconds 20]

A run directory is pre-filled with `--events` train events (the history an attach has to rebuild);
then a writer process appends `--rate` events per second to it while the monitor follows it under
`App.run_test` (headless, the real compositor). Measured:

- attach: time from mount until the whole history is folded;
- key press -> repaint: `l` toggles the log pane and the chart (a relayout and, every other press,
  a chart redraw). The key event goes to the driver as a terminal key would; the time runs until
  the first screen update (`App._display`, which the headless driver calls after compositing the
  frame, as a real terminal driver would before writing it) after the action ran. p50 / p95 / max.
  (`pilot.press` + `pilot.pause()` is no use as a clock here: it waits for the process to look idle,
  and a process folding 1,000 events/s never looks idle.);
- the UI thread's CPU time over the same interval (`time.thread_time`): the work a repaint costs
  this process, which the machine's load does not stretch (the wall time above waits for the CPU,
  shared with other processes, and for the GIL, shared with the follower thread); and the garbage
  collections per generation during the key presses;
- chart redraw: `LossChart.render` time (downsampling the series to two points per column plus
  drawing the braille canvas) over every redraw during the load; p50 / p95 / max; and the same
  from a cold cache (the whole 100k+ series downsampled from scratch), 20 times;
- RSS of this process (the UI process) at the end, with the whole history in memory;
- whether the monitor kept up (its step equals the writer's last step at the end).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/fakes.py

WRITER = r"""
import json, sys, time, math
path, start, rate, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
fh = open(path, "a", buffering=1)
t0 = time.time(); step = start; sent = 0
while time.time() - t0 < seconds:
    due = int((time.time() - t0) * rate)
    while sent < due:
        step += 1; sent += 1
        fh.write(json.dumps({"type": "train", "t": round(time.time(), 3), "step": step, "max_steps": 10_000_000,
                             "loss": 1.0 + 0.5 * math.sin(step / 500) + 1.0 / (1 + step / 1000), "lr": 2e-4,
                             "grad_norm": 0.5, "tokens_per_s": 2300.0, "tokens": step * 100, "elapsed_s": 1.0,
                             "mem": {"cuda": [{"device": 0, "allocated_gib": 17.0, "reserved_gib": 19.0, "peak_gib": 18.6}]}}) + "\n")
    time.sleep(0.005)
print(step, flush=True)
"""


def prefill(run_dir: Path, n: int) -> None:
    import psutil

    (run_dir / "config.yaml").write_text("model:\n  name_or_path: bench\nmethod: lora\n")
    with open(run_dir / "events.jsonl", "w") as fh:
        fh.write(json.dumps({"type": "phase", "t": 1.0, "phase": "training", "max_steps": 10_000_000,
                             "start_step": 0}) + "\n")
        for s in range(1, n + 1):
            fh.write(json.dumps({"type": "train", "t": 1.0 + s * 0.001, "step": s, "max_steps": 10_000_000,
                                 "loss": 1.0 + 0.5 * math.sin(s / 500) + 1.0 / (1 + s / 1000), "lr": 2e-4,
                                 "grad_norm": 0.5, "tokens_per_s": 2300.0, "tokens": s * 100, "elapsed_s": 1.0,
                                 "mem": {"cuda": [{"device": 0, "allocated_gib": 17.0, "reserved_gib": 19.0,
                                                   "peak_gib": 18.6}]}}) + "\n")
            if s % 1000 == 0:
                fh.write(json.dumps({"type": "eval", "t": 1.0 + s * 0.001, "step": s, "eval_loss": 1.2}) + "\n")
    (run_dir / "status.json").write_text(json.dumps({"state": "running", "pid": os.getpid()}))
    (run_dir / "launch.json").write_text(json.dumps({"pid": os.getpid(), "create_time": psutil.Process().create_time()}))


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(math.ceil(p / 100 * len(values))) - 1)]


async def bench(args) -> dict:
    import psutil
    from fakes import FakeNvml, L4_24GB

    from ftwizard.tui.screens.monitor import MonitorApp, MonitorScreen

    work = Path(tempfile.mkdtemp(prefix="ftwizard-bench-"))
    run_dir = work / "20261124-000000-bench"
    run_dir.mkdir()
    prefill(run_dir, args.events)
    size_mb = (run_dir / "events.jsonl").stat().st_size / 1e6
    rss_before = psutil.Process().memory_info().rss / 2**20

    app = MonitorApp(lambda: MonitorScreen(run_dir, nvml_source=FakeNvml([L4_24GB]), show_finished=False))
    out: dict = {"events_prefilled": args.events, "events_file_mb": round(size_mb, 1), "rate": args.rate,
                 "seconds": args.seconds, "size": args.size}
    async with app.run_test(size=tuple(args.size)) as pilot:
        mon = app.screen
        t0 = time.perf_counter()
        while not (mon.loaded and mon.view.step >= args.events):
            await pilot.pause(0.02)
        out["attach_s"] = round(time.perf_counter() - t0, 2)
        while mon.chart.draws == 0:
            await pilot.pause(0.02)
        draws_before = len(getattr(mon.chart, "_times", []))
        times: list[float] = []
        orig_render = mon.chart.render

        def timed_render():
            r = orig_render()
            if mon.chart.last_draw_ms is not None:
                times.append(mon.chart.last_draw_ms)
            return r

        mon.chart.render = timed_render
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(run_dir / "events.jsonl"), str(args.events),
                                   str(args.rate), str(args.seconds)], stdout=subprocess.PIPE, text=True)
        from textual import events

        displays: list[float] = []
        display_cpu: list[float] = []
        orig_display = app._display

        def hooked_display(screen, renderable):
            displays.append(time.perf_counter())
            display_cpu.append(time.thread_time())
            return orig_display(screen, renderable)

        app._display = hooked_display
        acted: list[float] = []
        orig_toggle = mon.action_toggle_log

        def hooked_toggle():  # the time the action began: a frame after it shows it (the action may paint)
            acted.append(time.perf_counter())
            orig_toggle()

        mon.action_toggle_log = hooked_toggle
        keys: list[float] = []
        keys_cpu: list[float] = []
        since_frame: list[float | None] = []  # ms from the frame before each key press to the press
        to_action: list[float] = []  # ms from the key press to its action (started)
        n_displays_before = len(displays)
        t_keys = time.perf_counter()
        gc_before = [st["collections"] for st in gc.get_stats()]
        t_end = time.perf_counter() + args.seconds
        while time.perf_counter() < t_end:
            n_acted = len(acted)
            key = events.Key("l", "l")
            key.set_sender(app)
            k0 = time.perf_counter()
            c0 = time.thread_time()
            app._driver.send_message(key)
            while True:
                await asyncio.sleep(0.001)
                if len(acted) > n_acted and displays and displays[-1] > acted[-1]:
                    break
                if time.perf_counter() - k0 > 5:
                    raise RuntimeError("no repaint within 5 s of a key press")
            i_paint = next(i for i, t in enumerate(displays) if t > acted[-1])
            before = [t for t in displays if t < k0]
            since_frame.append((k0 - before[-1]) * 1000 if before else None)
            to_action.append((acted[-1] - k0) * 1000)
            keys.append((displays[i_paint] - k0) * 1000)
            keys_cpu.append((display_cpu[i_paint] - c0) * 1000)
            await asyncio.sleep(0.2)
        last_step = int(writer.communicate()[0].strip() or 0)
        # let the follower catch up with the last events
        deadline = time.perf_counter() + 10
        while mon.view.step < last_step and time.perf_counter() < deadline:
            await pilot.pause(0.05)
        if mon.chart.showing_log:
            await pilot.press("l")
        mon.refresh_view()
        await pilot.pause(0.3)
        out["writer_last_step"] = last_step
        out["monitor_step"] = mon.view.step
        out["points_in_series"] = len(mon.view.train_loss)
        out["points_drawn"] = mon.chart.points_drawn
        out["key_repaint_ms"] = {"n": len(keys), "p50": round(statistics.median(keys), 1),
                                 "p95": round(pct(keys, 95), 1), "max": round(max(keys), 1)}
        out["key_repaint_ui_cpu_ms"] = {"p50": round(statistics.median(keys_cpu), 1),
                                        "p95": round(pct(keys_cpu, 95), 1), "max": round(max(keys_cpu), 1)}
        slow = [(round(k, 1), round(a, 1), round(f, 1))
                for k, a, f in zip(keys, to_action, since_frame) if k > 16 and f is not None]
        out["frames_per_s"] = round((len(displays) - n_displays_before) / (time.perf_counter() - t_keys), 1)
        out["slow_keys_ms_to_repaint_to_action_since_previous_frame"] = sorted(slow, reverse=True)[:12]
        out["gc_collections_during_keys"] = [st["collections"] - b for st, b in zip(gc.get_stats(), gc_before)]
        out["chart_redraw_ms"] = {"n": len(times), "p50": round(statistics.median(times), 1) if times else None,
                                  "p95": round(pct(times, 95), 1) if times else None,
                                  "max": round(max(times), 1) if times else None}
        # a cold redraw: the whole series downsampled from scratch (as after a resize or a resume)
        from ftwizard.core.monitor import Downsampler

        cold = []
        for _ in range(20):
            mon.chart._sampler = Downsampler()
            c0 = time.perf_counter()
            mon.chart.render()
            cold.append((time.perf_counter() - c0) * 1000)
        out["chart_cold_redraw_ms"] = {"points": len(mon.view.train_loss), "p50": round(statistics.median(cold), 1),
                                       "p95": round(pct(cold, 95), 1), "max": round(max(cold), 1)}
        out["rss_mb"] = round(psutil.Process().memory_info().rss / 2**20, 1)
        out["rss_before_app_mb"] = round(rss_before, 1)
        del draws_before
    out["load_avg"] = [round(x, 2) for x in os.getloadavg()]
    out["cpus"] = os.cpu_count()
    import shutil

    shutil.rmtree(work, ignore_errors=True)
    return out


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--events", type=int, default=100_000)
    p.add_argument("--rate", type=int, default=1000)
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--size", type=int, nargs=2, default=(80, 24))
    args = p.parse_args()
    print(json.dumps(asyncio.run(bench(args)), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
