"""Step 9: the training monitor. It follows a run; it never owns one.

Everything comes from the run directory: one thread worker tails `events.jsonl` in bounded chunks and
folds them into a `core.monitor.RunView`, asks `core.runs.run_info` (on that view) for the derived
state about once a second and as soon as the end event arrives, samples NVML (`core.hardware.GPUSampler`) about once a second and, while the log pane is open,
tails `train.log`. The screen repaints on a timer, only when the view's version moved, so a run writing
a thousand events a second costs a handful of repaints a second. Attaching to a run that ended long
ago is the same path: the whole history is read and every step is in the chart.

Beside the loss, the training kind's own numbers (`KindMetrics`: DPO's rewards and margin, GRPO's
rewards, ...; the kind is the run's config.yaml `training`), GRPO's latest completions on `c`, and in a
run of several processes every rank's memory and compute per step with the slowest rank named.

Keys: s stop (after a typed-y confirm; the run checkpoints and ends "stopped"), d detach (the run goes
on), l log, c completions (GRPO), w the doctor's warnings in full, ? help. Quitting asks: detach (default) or stop.
When the run ends, the Finished view opens on top (escape comes back to the chart).
"""

from __future__ import annotations

import gc
import threading
import time
from pathlib import Path
from typing import Any

from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import ProgressBar, Static
from textual.worker import Worker, WorkerState, get_current_worker

from ftwizard.core.monitor import KIND_TITLES, RunView, Series, diagnose_view, fmt_duration, fmt_num, kind_rows
from ftwizard.core.runs import LIVE_STATES, TERMINAL_STATES
from ftwizard.tui import MONITOR_CSS, STYLES
from ftwizard.tui.steps import step
from ftwizard.tui.widgets.footer import Footer
from ftwizard.tui.widgets.gpu_meter import GpuMeter
from ftwizard.tui.widgets.kind_metrics import KindMetrics, SamplesPanel
from ftwizard.tui.widgets.loss_chart import LossChart


HELP = """
**The training monitor** follows a run that trains in its own process: closing this screen, the
wizard or the SSH session never stops it.

- The chart shows the training loss (line) and the validation loss (dots) for every logged step.
- The line below: latest loss, validation loss, learning rate, grad norm, tokens/s and the trainer's
  peak memory. The bar shows the steps done and the time left at the recent step rate.
- Under the chart, the training kind's own numbers, each with its curve so far and its latest value:
  DPO/ORPO/SimPO the implicit rewards of the chosen and rejected answers, their margin and the share of
  pairs where chosen wins (accuracy: near 50% = nothing learned yet); KTO the same per label and the KL
  term; GRPO the reward's mean and spread, each reward function's mean, the completion length, the
  share of groups whose completions all scored the same (those teach nothing) and of completions cut at
  the maximum length; CPT the perplexity. `c` (GRPO) shows the latest completions with their rewards.
- The panels on the right: GPU memory from NVML (sampled once a second) and the trainer's own peak.
  With several processes: each rank's card, memory and compute seconds per step; when one rank takes
  clearly longer than the others (every rank waits for it at each step) it is named as the slowest.
- Warnings come from the *training doctor*: validation loss rising while training loss falls
  (overfitting), a loss that never moved (learning rate too low or a data problem), exploding grad
  norm or NaN (learning rate too high), training loss near 0 (memorising), throughput collapse.
  `w` shows them with their evidence and advice.
"""


class GpuSampled(Message):
    """NVML readings (one per GPU); only the newest one matters."""

    def __init__(self, gpus: list) -> None:
        super().__init__()
        self.gpus = gpus

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, GpuSampled)


class RunStateRead(Message):
    def __init__(self, info: Any) -> None:
        super().__init__()
        self.info = info

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, RunStateRead)


class LogRead(Message):
    def __init__(self, lines: list[str]) -> None:
        super().__init__()
        self.lines = lines


_NO_POINTS = Series(8)  # GRPO's chart has no validation dots (its evaluation has no reward)
CHUNK_BYTES = 1 << 20  # events.jsonl is folded in slices of at most this many bytes


class MonitorScreen(Screen):
    CSS_PATH = MONITOR_CSS
    APPLY_SLICE = 200  # events folded per lock hold
    DOCTOR_S = 1.0  # the doctor looks at most this often
    STEP_NAME = step("training").title
    HELP = HELP
    BINDINGS = [
        Binding("s", "stop", "Stop", id="monitor.stop",
                tooltip="stop the run: it saves a checkpoint and ends as stopped (asks first)"),
        Binding("d", "detach", "Detach", id="monitor.detach",
                tooltip="leave the run training; `ftwizard attach RUN` comes back"),
        Binding("l", "toggle_log", "Log", id="monitor.log", tooltip="show or hide the tail of train.log"),
        Binding("c", "toggle_samples", "Completions", id="monitor.samples",
                tooltip="GRPO: the latest completions with what each reward gave them (arrows scroll)"),
        Binding("w", "warnings", "Warnings", id="monitor.warnings",
                tooltip="the training doctor's warnings in full, with evidence and advice"),
        Binding("f", "finished", "Summary", show=False, id="monitor.summary",
                tooltip="the summary of the ended run"),
        Binding("question_mark", "help", "Help", key_display="?", id="monitor.help",
                tooltip="help for the monitor: what it shows and its keys"),
    ]

    def __init__(self, run_dir: str | Path, nvml_source: Any = None, *, poll_s: float = 0.25,
                 redraw_s: float = 0.5, nvml_s: float = 1.0, state_s: float = 1.0, show_finished: bool = True):
        super().__init__()
        self.run_dir = Path(run_dir)
        self.run_id = self.run_dir.name
        self.nvml_source = nvml_source
        self.poll_s, self.redraw_s, self.nvml_s, self.state_s = poll_s, redraw_s, nvml_s, state_s
        self._texts: dict[str, str] = {}  # what each Static shows: unchanged text is not re-rendered
        self.show_finished = show_finished
        self.view = RunView()
        self.lock = threading.Lock()
        self.info = None  # the latest core.runs.RunInfo
        self.run_state = "starting"
        self.loaded = False  # the whole file as it was at attach time has been read
        self.warnings: list = []
        self.stop_requested = False
        self._drawn_version = -1
        self._doctor_version = -1
        self._doctor_due = 0.0
        self._log_wanted = False
        self._finished_shown = False
        self._frozen_at = None  # (train, validation compactions) at the last gc.freeze
        self._samples_wanted = False
        self.kind: str | None = None  # the run's training kind (config.yaml), from the state poll
        self._chart_title = "loss · ⠤⠤ train · ● validation"
        self.refreshes = 0

    # ------------------------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        yield Static(f"run {self.run_id}", id="mon-title")
        with Horizontal(id="mon-body"):
            with Vertical(id="mon-main"):
                # the phase, the chart and the log's tail: one widget (a key swaps its content, no relayout)
                yield LossChart(self.view.train_loss, self.view.eval_series, id="mon-chart")
                yield SamplesPanel(id="mon-samples")
                yield KindMetrics(id="mon-kind")
            with VerticalScroll(id="mon-side"):
                yield Static("", id="mon-ranks")
        yield Static("", id="mon-numbers")
        with Horizontal(id="mon-progress-row"):
            yield ProgressBar(total=None, show_eta=False, show_percentage=True, id="mon-progress")
            yield Static("", id="mon-eta")
        yield Static("", id="mon-doctor")
        yield Footer()

    @property
    def chart(self) -> LossChart:
        return self.query_one("#mon-chart", LossChart)

    def on_mount(self) -> None:
        self.chart.lock = self.lock
        self.chart.set_phase("waiting for the training process to start")
        self.query_one("#mon-main").border_title = self._chart_title
        self.add_class("-waiting")
        self.follow()
        self.set_interval(self.redraw_s, self.refresh_view)

    # ------------------------------------------------------------------------------ the follower

    @work(thread=True, exclusive=True, group="monitor-follow", exit_on_error=False)
    def follow(self) -> None:
        """Tail events (bounded chunks), the run state, NVML and (when open) the log, until cancelled
        (Textual cancels a screen's workers when it is removed)."""
        from ftwizard.core.events import EVENTS, EventTail
        from ftwizard.core.hardware import GPUSampler
        from ftwizard.core.runs import LOG, run_info

        tail = EventTail(self.run_dir / EVENTS)
        source = self.nvml_source if self.nvml_source is not None else getattr(self.app, "nvml_source", None)
        sampler = GPUSampler(source) if source is not None else GPUSampler()
        next_state = next_nvml = 0.0
        last_end = None
        log_offset: int | None = None
        worker = get_current_worker()
        try:
            while not worker.is_cancelled:
                while True:  # all that is there now, a slice at a time
                    events = tail.read_new(CHUNK_BYTES)
                    if not events:
                        break
                    for i in range(0, len(events), self.APPLY_SLICE):
                        # short lock holds: the UI thread never waits long for the series
                        with self.lock:
                            self.view.apply(events[i:i + self.APPLY_SLICE])
                        time.sleep(0)  # hand the GIL to the UI thread between slices
                now = time.monotonic()
                if now >= next_state or self.view.end is not last_end:  # an end shows at once
                    next_state = now + self.state_s
                    last_end = self.view.end
                    # the state from the view's own fold: the file is not read twice (this thread
                    # alone writes the view)
                    self.post_message(RunStateRead(run_info(self.run_dir, fold=self.view)))
                self.loaded = True
                if now >= next_nvml:
                    next_nvml = now + self.nvml_s
                    self.post_message(GpuSampled(sampler.sample()))
                if self._log_wanted:
                    log_offset = self._read_log(self.run_dir / LOG, log_offset)
                time.sleep(self.poll_s)
        finally:
            sampler.close()

    def _read_log(self, path: Path, offset: int | None) -> int | None:
        try:
            with open(path, "rb") as fh:
                fh.seek(0, 2)
                size = fh.tell()
                if offset is None or offset > size:
                    offset = max(0, size - 32_000)
                fh.seek(offset)
                data = fh.read(256_000)
        except OSError:
            return offset
        if data:
            cut = data.rfind(b"\n") + 1
            if cut:
                text = data[:cut].decode("utf-8", "replace")
                self.post_message(LogRead(text.splitlines()))
                offset += cut
        return offset

    # ------------------------------------------------------------------------------ messages

    @on(RunStateRead)
    def _state_read(self, message: RunStateRead) -> None:
        self.info = message.info
        if self.info.state != self.run_state:
            self._drawn_version = -1  # the state is in the title: redraw at the next tick
        if self.info.training != self.kind:
            self.kind = self.info.training
            self._drawn_version = -1
            self.refresh_bindings()  # `c` is GRPO's

    @on(GpuSampled)
    def _gpu_sampled(self, message: GpuSampled) -> None:
        side = self.query_one("#mon-side", VerticalScroll)
        for gpu in message.gpus:
            meter_id = f"gpu-{gpu.index}"
            found = side.query(f"#{meter_id}")
            if found:
                meter = found.first(GpuMeter)
            else:
                meter = GpuMeter(f"cuda:{gpu.index}", id=meter_id)
                side.mount(meter, before="#mon-ranks")
            meter.add_sample(gpu)
        if not message.gpus and not side.query("#gpu-cpu"):
            side.mount(GpuMeter("cpu", id="gpu-cpu"), before="#mon-ranks")
        self._update_memory()

    @on(Worker.StateChanged)
    def _worker_failed(self, event: Worker.StateChanged) -> None:
        """The one place this screen's worker errors reach the user: a notification, never a freeze."""
        if event.state != WorkerState.ERROR:
            return
        event.stop()
        error = event.worker.error
        what = "following the run stopped" if event.worker.group == "monitor-follow" else "stopping the run failed"
        self.notify(f"{what}: {type(error).__name__}: {error}", title="Monitor", severity="error", timeout=10)

    @on(LogRead)
    def _log_read(self, message: LogRead) -> None:
        self.chart.add_log_lines(message.lines)

    # ------------------------------------------------------------------------------ drawing

    def _set_state(self) -> None:
        state = self.info.state if self.info is not None else "starting"  # core.runs.derive_state's
        if state != self.run_state:
            self.remove_class(f"-{self.run_state}")
            self.run_state = state
        self.add_class(f"-{state}")

    @property
    def up_to_date(self) -> bool:
        """Everything in the file at the last read is folded in and drawn (tests and snapshots wait on it)."""
        v = self.view.version
        return self.loaded and self._drawn_version == v and self._doctor_version == v and self.info is not None

    @property
    def finished(self) -> bool:
        return self.run_state in TERMINAL_STATES

    def refresh_view(self) -> None:
        """Timer: redraw what changed since the last tick (nothing when no event arrived)."""
        v = self.view
        if self.loaded:
            self._freeze_history()
        doctor_pending = v.version != self._doctor_version and time.monotonic() >= self._doctor_due
        if v.version == self._drawn_version and not doctor_pending \
                and not (self.finished and not self._finished_shown):
            return
        self._drawn_version = v.version
        self.refreshes += 1
        with self.lock:
            self._set_state()
            self._draw_title()
            self._draw_numbers()
            started = v.started_training
            self.set_class(not started, "-waiting")
            self.chart.set_phase(self._phase_text() if not started else None)
            self.chart.refresh_series(v.max_steps)
            self._draw_kind()
            now = time.monotonic()
            if v.version != self._doctor_version and (now >= self._doctor_due or self.finished):
                self._doctor_version, self._doctor_due = v.version, now + self.DOCTOR_S
                self.warnings = diagnose_view(v)
                self._draw_doctor()
        self._update_memory()
        if self.finished and self.loaded and not self._finished_shown and self.show_finished:
            self._finished_shown = True
            if self.is_current:
                self.action_finished()

    def _freeze_history(self) -> None:
        """Take the folded history out of the garbage collector's sight (gc.freeze), once the attach has
        read the file and again when the drawn series are compacted (new lists). A full collection walks
        every element of every list: with 100k events of history that was 0.1-0.2 s at load 9, landing
        on whatever key press or frame it interrupted. The points are floats, which form no cycles; the
        objects frozen with them (the app's, as the wizard's start-up does: tui/app.resume_gc) are
        long-lived."""
        v = self.view
        at = (v.train_loss.compactions, v.eval_series.compactions)
        if at != self._frozen_at:
            self._frozen_at = at
            gc.freeze()

    def _set_text(self, selector: str, text: str) -> Static:
        widget = self.query_one(selector, Static)
        if self._texts.get(selector) != text:
            self._texts[selector] = text
            widget.update(text)
        return widget

    def _draw_title(self) -> None:
        v = self.view
        bits = [f"run {self.run_id}", self.run_state]
        if v.started_training:
            bits.append(f"step {v.step:,}/{v.max_steps:,}" if v.max_steps else f"step {v.step:,}")
        elif v.phase:
            bits.append(v.phase.replace("_", " "))
        if self.run_state == "running" and v.eta_s() is not None:
            bits.append(f"ETA {fmt_duration(v.eta_s())}")
        self._set_text("#mon-title", " · ".join(bits))

    def _draw_numbers(self) -> None:
        v = self.view
        peak = v.peak_memory_gib
        parts = [f"loss {fmt_num(v.loss)}", f"val {fmt_num(v.eval_loss)}", f"lr {fmt_num(v.lr, 'lr')}",
                 f"grad {fmt_num(v.grad_norm, 'grad')}", f"{fmt_num(v.tokens_per_s, 'tps')} tok/s"]
        if peak is not None:
            parts.append(f"peak {peak:.1f} GB" if peak >= 1 else f"peak {peak * 1024:.0f} MB")
            if v.estimate_gib is not None:
                parts[-1] += f" (est. {v.estimate_gib:.1f})"
        self._set_text("#mon-numbers", "  ".join(parts))
        bar = self.query_one("#mon-progress", ProgressBar)
        if v.max_steps and (bar.total, bar.progress) != (v.max_steps, v.step):
            bar.update(total=v.max_steps, progress=v.step)
        eta = v.eta_s()
        if self.run_state == "running" and eta is not None:
            eta_text = f"{v.step:,}/{v.max_steps:,} · {fmt_duration(eta)} left"
        elif v.max_steps:
            eta_text = f"{v.step:,}/{v.max_steps:,}"
            if v.elapsed_s is not None:
                eta_text += f" · {fmt_duration(v.elapsed_s)}"
        else:
            eta_text = ""
        self._set_text("#mon-eta", eta_text)

    def _phase_text(self) -> str:
        v = self.view
        lines = [f"[b]{v.phase_text()}[/b]"]
        for phase, detail in v.phases[:-1]:
            lines.append(f"[dim]✓ {phase.replace('_', ' ')}{': ' + detail if detail else ''}[/dim]")
        facts = v.info.get("parameters")
        if isinstance(facts, dict) and facts.get("trainable"):
            lines.append(f"[dim]{facts['trainable']:,} trainable of {facts.get('total', 0):,} parameters[/dim]")
        tok = v.info.get("tokenized")
        if isinstance(tok, dict) and tok.get("rows") is not None:
            lines.append(f"[dim]{tok['rows']:,} training rows, {tok.get('tokens', 0):,} tokens[/dim]")
        if self.finished and self.info is not None and self.info.reason:
            lines.append(f"[b]{self.run_state}[/b]: {self.info.reason}")
        return "\n".join(lines)

    def _draw_doctor(self) -> None:
        from rich.markup import escape

        lines = []
        for w in self.warnings[:2]:
            mark = "✖" if w.severity == "error" else "⚠"
            line = f"{mark} {escape(w.message)}"
            if w.advice:
                line += f" [dim]→ {escape(w.advice[0])}[/dim]"
            lines.append(line)
        if len(self.warnings) > 2:
            lines.append(f"[dim]+{len(self.warnings) - 2} more (w)[/dim]")
        doctor = self._set_text("#mon-doctor", "\n".join(lines))
        doctor.set_class(bool(lines), "-shown")
        doctor.set_class(any(w.severity == "error" for w in self.warnings), "-error")

    def _draw_kind(self) -> None:
        """The kind's numbers under the chart, the completions pane when open, the ranks panel (under the lock)."""
        v = self.view
        panel = self.query_one("#mon-kind", KindMetrics)
        panel.set_rows(kind_rows(v, self.kind))
        title = KIND_TITLES.get(self.kind or "", "")
        panel.border_title = {"grpo": f"{title} · rewards and completions (c)", "cpt": f"{title} · exp(loss)",
                              "kto": f"{title} · implicit rewards per label",
                              }.get(self.kind or "", f"{title} · implicit rewards, chosen vs rejected")
        reward = v.kind_series.get("reward_mean")
        if self.kind == "grpo" and reward is not None and self.chart.train is not reward:
            # GRPO's loss sits near 0 by design: the chart shows what it optimises (the loss stays in the numbers)
            self.chart.set_series(reward, _NO_POINTS)
            self._chart_title = "reward mean · ⠤⠤ per logged step"
            if not (self._samples_wanted or self._log_wanted):
                self.query_one("#mon-main").border_title = self._chart_title
        if self._samples_wanted:
            self.query_one("#mon-samples", SamplesPanel).set_samples(v.samples)
        self._draw_ranks()

    def _draw_ranks(self) -> None:
        v = self.view
        ranks = self._set_text("#mon-ranks", ranks_text(v))
        ranks.set_class(v.slowest_rank() is not None, "-lagging")
        ranks.set_class(len(v.ranks) > 1, "-shown")

    def _update_memory(self) -> None:
        slow = self.view.slowest_rank()
        on_card = {st.device: st for st in self.view.ranks.values()}
        for meter in self.query(GpuMeter):
            mem = self.view.memory.get(meter.device)
            if mem is not None:
                meter.set_trainer_memory(mem.allocated_gib, mem.peak_gib)
            st = on_card.get(meter.device)
            if st is not None and meter.device != "cpu":
                meter.set_rank(st.rank, st.typical_s or st.compute_s, slow is not None and slow[0] == st.rank)

    # ------------------------------------------------------------------------------ actions

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        if action == "toggle_samples":
            return self.kind == "grpo" or bool(self.view.samples)  # hidden for the other kinds
        if action == "stop":
            return None if self.finished else True  # dimmed once the run has ended
        if action == "finished":
            return self.finished
        return True

    def action_stop(self) -> None:
        if self.finished:
            return
        from ftwizard.tui.dialogs.confirm import ConfirmDialog

        def answer(yes: bool | None) -> None:
            if yes:
                self.request_stop()

        self.app.push_screen(ConfirmDialog(
            "Stop training", f"Stop run {self.run_id}?", yes_label="stop it",
            detail="The run saves a checkpoint and its adapter/model, then ends as \"stopped\"; "
                   f"`ftwizard resume {self.run_id}` continues it."), answer)

    @work(thread=True, group="monitor-stop", exit_on_error=False)
    def request_stop(self) -> bool:
        from ftwizard.core.launch import stop

        ok = stop(self.run_dir)
        self.stop_requested = ok
        self.app.call_from_thread(
            self.notify, "Stop requested: the run saves a checkpoint and ends." if ok else
            f"The run is not running ({self.run_state}).", title="Stop")
        return ok

    def action_detach(self) -> None:
        self.app.notify(f"Detached: the run goes on. `ftwizard attach {self.run_id}` comes back.",
                        title="Detached")
        self._leave()

    def _leave(self) -> None:
        """Back to the screen below (the wizard, the runs list) or, when there is none, exit."""
        if len(self.app.screen_stack) > 2:
            self.dismiss()
        else:
            self.app.exit(0)

    def action_toggle_log(self) -> None:
        self._log_wanted = not self._log_wanted
        if self._log_wanted and self._samples_wanted:
            self._show_samples(False)
        # a content swap in the chart's widget: no class, no display change, so no restyle and no
        # relayout of the screen (README "The training monitor": 4.5 ms and 16-19 ms a key)
        self.chart.show_log(self._log_wanted)
        self.repaint_now(self.chart)

    def repaint_now(self, widget: Widget) -> None:
        """Composite and write the frame a key changed now, not at the next tick of Textual's frame
        clock. The clock (60 a second, `TEXTUAL_FPS`) holds any repaint asked within 1/60 s of the last
        frame until its next tick; while a run streams the chart, the meters and the numbers repaint a
        few times a second, so a key landing just after one of their frames waited up to 16.7 ms more
        (README "The training monitor": p95 25 ms where the work is 11). A key is a person's pace, so a
        frame of its own costs nothing the cap is there to prevent. Textual has no public call for this:
        what `Widget.refresh` leaves for the next idle (the widget marked for repaint, then added to the
        screen's dirty set) is done here, then the screen's frame callback runs.
        tests/tui/test_monitor.py fails if an upgrade renames these."""
        frame = getattr(self, "_on_timer_update", None)
        if frame is None or not self.is_current or not getattr(widget, "_repaint_required", False):
            return  # the next tick paints it, as before
        widget._repaint_required = False
        self._dirty_widgets.add(widget)
        frame()

    def action_toggle_samples(self) -> None:
        if self._log_wanted:
            self.action_toggle_log()
        self._show_samples(not self._samples_wanted)

    def _show_samples(self, on: bool) -> None:
        self._samples_wanted = on
        main = self.query_one("#mon-main")
        main.set_class(on, "-samples")
        panel = self.query_one("#mon-samples", SamplesPanel)
        main.border_title = "completions · newest first · ↑↓ · c back" if on else self._chart_title
        if on:
            with self.lock:
                panel.set_samples(self.view.samples)
            panel.focus()

    def action_warnings(self) -> None:
        from ftwizard.tui.dialogs.help import HelpDialog

        self.app.push_screen(HelpDialog("training doctor", warnings_markdown(self.warnings)))

    def action_help(self) -> None:
        from ftwizard.tui.dialogs.help import HelpDialog

        self.app.push_screen(HelpDialog.for_screen(self, "training monitor"))

    def action_finished(self) -> None:
        from ftwizard.tui.screens.finished import FinishedScreen

        self.app.push_screen(FinishedScreen(self.run_dir, view=self.view, info=self.info))

    # ------------------------------------------------------------------------------ quitting

    def handle_quit(self) -> bool:
        """Called by the App before it exits. True: a run is still going, the quit dialog decides."""
        if self.finished or self.run_state not in LIVE_STATES:
            return False
        from ftwizard.tui.dialogs.quit import QuitDialog

        def chosen(choice: str | None) -> None:
            if choice == "detach":
                self.app.exit(0)
            elif choice == "stop":
                self.stop_then_exit()

        self.app.push_screen(QuitDialog(self.run_id, self.run_state), chosen)
        return True

    @work(thread=True, group="monitor-stop", exit_on_error=False)
    def stop_then_exit(self) -> None:
        from ftwizard.core.launch import stop

        self.stop_requested = stop(self.run_dir)
        self.app.call_from_thread(self.app.exit, 0)


def ranks_text(v: RunView) -> str:
    """The ranks panel: each rank's card, compute seconds per step and memory; the slowest named."""
    if len(v.ranks) < 2:
        return ""
    slow = v.slowest_rank()
    lines = [f"[b]{len(v.ranks)} ranks[/b] [dim]s/step · mem[/dim]"]
    for rank in sorted(v.ranks):
        st = v.ranks[rank]
        typical = st.typical_s or st.compute_s  # the median of its recent reports once there are a few
        secs = f"{typical:.2f}s" if typical is not None else "-"
        mem = f"{st.memory_gib:.1f}G" if st.memory_gib is not None else "-"
        line = f"r{rank} {st.device:<6}{secs:>6}{mem:>6}"
        lines.append(f"[b]{line} ◀[/b]" if slow and slow[0] == rank else line)
    if slow:
        lines.append(f"[b]slowest: rank {slow[0]}[/b] {slow[1]:.1f}x")
    else:
        lines.append("[dim]no rank lags[/dim]")
    return "\n".join(lines)


def warnings_markdown(warnings: list) -> str:
    if not warnings:
        return "No warnings: the training doctor found nothing to worry about so far."
    out = []
    for w in warnings:
        out.append(f"### {'Error' if w.severity == 'error' else 'Warning'}: {w.code}\n\n{w.message}\n")
        if w.evidence:
            out.append("Evidence: " + ", ".join(f"`{k}` = {v}" for k, v in w.evidence.items()) + "\n")
        if w.advice:
            out.append("Try, in order:\n\n" + "\n".join(f"1. {a}" for a in w.advice) + "\n")
    return "\n".join(out)


class MonitorApp(App[int]):
    """A minimal host for `ftwizard attach`: the monitor, its dialogs, and quit that asks first."""

    TITLE = "ftwizard"
    CSS_PATH = STYLES / "app.tcss"  # the monitor screen adds monitor.tcss
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [Binding("ctrl+q", "quit", "Quit", key_display="^q", priority=True, id="app.quit",
                        tooltip="quit; a training run is never stopped by quitting (asks while one is followed)"),
                Binding("f1", "help", "Help", show=False, key_display="F1", id="app.help",
                        tooltip="help for this screen: what it shows and its keys")]

    def __init__(self, screen_factory, **kw):
        super().__init__(**kw)
        self._factory = screen_factory

    def on_mount(self) -> None:
        self.push_screen(self._factory())

    def action_help(self) -> None:
        handler = getattr(self.screen, "action_help", None)
        if handler:
            handler()

    async def action_quit(self) -> None:
        handler = getattr(self.screen, "handle_quit", None)
        if handler and handler():
            return
        self.exit(0)


def run_monitor_app(run_dir: Path, nvml_source: Any = None) -> int:
    """`ftwizard attach`: the monitor on one run, in its own small App."""
    return MonitorApp(lambda: MonitorScreen(run_dir, nvml_source=nvml_source)).run() or 0
