"""The ftwizard App: the wizard's state, global keys, hardware detection and the step-to-step flow.

`run_app()` is what `ftwizard` with no arguments calls. The App owns one immutable `WizardState`
(tui/state.py) that every step replaces; screens watch it. Hardware is detected once in a worker
thread at start, so the first screen shows at once. Nothing on the way to the first screen imports
torch, transformers, trl, peft or datasets (tests/test_import_hygiene.py checks it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual import on, work
from textual.app import App
from textual.binding import Binding
from textual.reactive import var
from textual.worker import Worker, WorkerState

from . import STYLES
from .state import WizardState
from .steps import next_step, screen_class

class WizardApp(App[int]):
    """Fine-tune an LLM, step by step."""

    TITLE = "ftwizard"
    # The monitor, finished and runs screens bring monitor.tcss themselves (read when first shown):
    # the first screen does not pay for parsing and matching their rules.
    CSS_PATH = STYLES / "app.tcss"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [
        Binding("ctrl+q", "quit", "Quit", key_display="^q", priority=True, id="app.quit",
                tooltip="quit ftwizard; a training run is never stopped by quitting (asks while one is followed)"),
        Binding("f1", "help", "Help", key_display="F1", id="app.help", tooltip="help for this step: what it is for and its keys"),
        Binding("question_mark", "help", "Help", show=False, key_display="?", id="app.help-question",
                tooltip="help for this step: what it is for and its keys"),
    ]

    state: var[WizardState] = var(WizardState, always_update=True)

    def __init__(self, *, nvml_source: Any = None, runs_dir: str | Path | None = None,
                 config_dir: str | Path | None = None, state: WizardState | None = None,
                 detect_hardware: bool = True):
        super().__init__()
        self.nvml_source = nvml_source
        self.runs_dir = str(runs_dir) if runs_dir else None
        # Where "save config" proposes to write (the current directory unless a test says otherwise).
        self.config_dir = Path(config_dir) if config_dir else Path.cwd()
        self._detect = detect_hardware
        if state is not None:
            self.set_reactive(WizardApp.state, state)

    # ---------------------------------------------------------------------------------- state

    def set_state(self, state: WizardState) -> None:
        self.state = state

    # ---------------------------------------------------------------------------------- start

    def on_mount(self) -> None:
        self.push_screen(screen_class("welcome")())
        # `ftwizard` pauses the garbage collector while it starts (tui.cli.pause_gc_for_startup): resume
        # it once the first screen is painted, with the start-up objects frozen out of later collections.
        self.call_after_refresh(resume_gc)
        if self._detect:  # after the first paint: psutil/pynvml imports in a thread would delay it
            self.call_after_refresh(self.detect_hardware)

    @work(thread=True, exclusive=True, group="hardware", exit_on_error=False)
    def detect_hardware(self):
        from ftwizard.core.hardware import detect

        return detect(self.nvml_source)

    @on(Worker.StateChanged)
    def _worker_changed(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        if worker.group == "hardware" and event.state == WorkerState.SUCCESS:
            self.state = self.state.replace(hardware=worker.result)
        elif event.state == WorkerState.ERROR:
            self.show_error(worker.error)

    def show_error(self, error: BaseException | None) -> None:
        """The one place worker errors reach the user: a notification, never a traceback."""
        from ftwizard.core.errors import UserError

        if isinstance(error, UserError):
            text = "\n".join(str(p) for p in error.problems)
        else:
            text = f"{type(error).__name__}: {error}"
        self.notify(text, title="Problem", severity="error", timeout=8)

    # ---------------------------------------------------------------------------------- flow

    def go(self, name: str, **kwargs: Any) -> None:
        """Show the step called `name` (tui/steps.py) on top of the current one."""
        self.push_screen(screen_class(name)(**kwargs))

    def go_after(self, name: str) -> None:
        """Show the step that follows `name` in the guided flow of the kind being set up."""
        self.go(next_step(name, self.state.training))

    def open_monitor(self, run_dir: Path) -> None:
        from ftwizard.tui.screens.monitor import MonitorScreen

        self.push_screen(MonitorScreen(run_dir, nvml_source=self.nvml_source))

    def open_runs(self) -> None:
        from ftwizard.tui.screens.runs import RunsScreen

        self.push_screen(RunsScreen(runs_dir=self.runs_dir))

    # ---------------------------------------------------------------------------------- actions

    def action_help(self) -> None:
        from .dialogs.help import HelpDialog

        if isinstance(self.screen, HelpDialog):
            return
        self.push_screen(HelpDialog.for_screen(self.screen))

    async def action_quit(self) -> None:
        # A screen that follows a run (the monitor) asks first: detach or stop. Quitting never kills a run.
        handler = getattr(self.screen, "handle_quit", None)
        if handler and handler():
            return
        self.exit(0)


def resume_gc() -> None:
    import gc

    if not gc.isenabled():
        gc.freeze()
        gc.enable()


def run_app(**kwargs: Any) -> int | None:
    """Open the wizard (what `ftwizard` with no arguments does). Returns the exit code."""
    return WizardApp(**kwargs).run()
