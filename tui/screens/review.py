"""Step 8, Review: the YAML that will run, the equivalent `ftwizard train` command, save it, launch it.

Launching creates the run directory and starts the training process detached (core.launch) in a
worker, then opens the training monitor. The wizard never trains in its own process.
"""

from __future__ import annotations

import re
from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Input, Label, Static
from textual.worker import Worker, WorkerState

from ..state import WizardState
from .step import WizardStep

HELP = """
# Review

This is exactly what will run: the YAML on the left is the run's `config.yaml` (the training
process's only input). Nothing is hidden; `ftwizard config-reference` explains every key.

- `^s` saves it to the path below (edit the path first if you like; an existing file is never
  overwritten without asking). Then `ftwizard train PATH` runs the same thing from any shell, or
  from a script on a GPU server.
- `^n` launches: a run directory is created under `runs/`, training starts as its own process, and
  the monitor opens. Closing the wizard or the terminal does not stop the run.
- `e` edits the training settings; `esc` goes back.
"""


def _slug(text: str) -> str:
    text = text.rstrip("/").rsplit("/", 1)[-1]
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()[:40] or "run"


def kind_line(cfg) -> str:
    """The trained kind's own settings in one line (its section of the YAML), '' for sft."""
    if cfg.training == "cpt":
        return f"\ncpt: raw text packed into blocks of {cfg.train.max_length} tokens"
    section = getattr(cfg, cfg.training, None) if cfg.training != "sft" else None
    if section is None:
        return ""
    if cfg.training == "grpo":
        names = [r.rpartition("/")[2] for r in section.rewards]
        return (f"\ngrpo: rewards {', '.join(names) or 'none'}; {section.num_generations} answers per prompt, "
                f"up to {section.max_completion_length} tokens")
    values = section.model_dump()
    return f"\n{cfg.training}: " + ", ".join(
        f"{k} {', '.join(v) if isinstance(v, list) else v}" for k, v in values.items())


class ReviewScreen(WizardStep):
    NAME = "review"
    HELP = HELP
    BINDINGS = [
        Binding("ctrl+n", "next", "Launch", key_display="^n", priority=True, id="review.launch",
                tooltip="create the run directory, start training as its own process, open the monitor"),
        Binding("ctrl+s", "save", "Save", key_display="^s", priority=True, id="review.save",
                tooltip="save the config to the path below (never overwrites a file without asking)"),
        Binding("e", "edit", "Edit settings", id="review.edit", tooltip="back to the training settings"),
    ]

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="review-body"):
            with VerticalScroll(id="yaml-box", classes="box") as box:
                box.border_title = "config.yaml"
                yield Static("", id="yaml")
            with Vertical(id="review-side", classes="box") as box:
                box.border_title = "Run it"
                yield Static("", id="review-summary")
                yield Label("Save as:")
                yield Input(id="save-path", compact=True)
                yield Label("Same thing from a shell:")
                yield Static("", id="command")
                yield Static("", id="review-status")

    def on_mount(self) -> None:
        self._cfg = None
        self._problem = ""
        self.query_one("#save-path", Input).value = self._default_path()
        self._refresh_view()
        self.query_one("#yaml-box").focus()

    def on_screen_resume(self) -> None:
        self._refresh_view()

    def on_state(self, state: WizardState) -> None:
        self._refresh_view()

    def _default_path(self) -> str:
        s = self.state
        if s.config_path:
            return s.config_path
        label = s.preset or _slug(Path(s.gguf_file).stem if s.gguf_file else s.model or "run") + f"-{s.method}"
        path = self.wizard.config_dir / f"ftwizard-{label}.yaml"
        try:  # shorter, and what a user types: relative to where ftwizard was started
            return str(path.resolve().relative_to(Path.cwd().resolve()))
        except ValueError:
            return str(path)

    def _refresh_view(self) -> None:
        from rich.syntax import Syntax

        from ftwizard.core.config import dump_config
        from ftwizard.core.errors import UserError

        try:
            self._cfg = self.state.to_config()
            self._problem = ""
        except UserError as exc:
            self._cfg = None
            self._problem = "; ".join(str(p) for p in exc.problems)
        self.yaml_text = dump_config(self._cfg) if self._cfg is not None else ""
        if self._cfg is not None:
            self.query_one("#yaml", Static).update(
                Syntax(self.yaml_text, "yaml", theme="ansi_dark", background_color="default"))
            c = self._cfg
            where = f"preset {self.state.preset}" if self.state.preset else "your choices"
            self.query_one("#review-summary", Static).update(
                f"From {where}: {c.method} {c.training} of {c.model.gguf_file or c.model.name_or_path} "
                f"on {c.dataset.path}" + kind_line(c))
        else:
            self.query_one("#yaml", Static).update(f"The config is not valid yet:\n{self._problem}")
            self.query_one("#review-summary", Static).update("")
        self._update_command()
        self.validity_changed()

    def _update_command(self) -> None:
        path = self.query_one("#save-path", Input).value.strip() or "config.yaml"
        saved = self.state.config_path == path and Path(path).exists()
        self.query_one("#command", Static).update(
            f"ftwizard train {path}" + ("" if saved else "\n(not saved yet: ^s)"))

    @on(Input.Changed, "#save-path")
    def _path_changed(self) -> None:
        self._update_command()

    def is_valid(self) -> bool:
        return getattr(self, "_cfg", None) is not None and not self._launching()

    def why_invalid(self) -> str:
        if self._launching():
            return "launching…"
        return getattr(self, "_problem", "") or "the config is not complete"

    def _launching(self) -> bool:
        return any(w.group == "launch" and w.is_running for w in self.workers)

    def _status(self, text: str, kind: str = "") -> None:
        status = self.query_one("#review-status", Static)
        status.update(text)
        status.set_classes(kind)

    # ------------------------------------------------------------------------------- save

    def action_save(self) -> None:
        if self._cfg is None:
            self._status(f"Cannot save: {self._problem}", "error-text")
            return
        path = Path(self.query_one("#save-path", Input).value.strip()).expanduser()
        if not path.name:
            self._status("Type a file name to save to.", "error-text")
            return
        if path.exists() and str(path) != self.state.config_path:
            from ..dialogs.confirm import ConfirmDialog

            self.app.push_screen(ConfirmDialog("File exists", f"{path} exists. Overwrite it?",
                                               yes_label="overwrite it"),
                                 lambda yes: self._write(path) if yes else self._status("Not saved."))
            return
        self._write(path)

    def _write(self, path: Path) -> None:
        from ftwizard.core.config import save_config

        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            save_config(self._cfg, path)
        except OSError as exc:
            self._status(f"Cannot save: {exc}", "error-text")
            return
        self.wizard.set_state(self.state.replace(config_path=str(path)))
        self._status(f"Saved {path}", "ok-text")
        self._update_command()

    # ------------------------------------------------------------------------------- launch

    def action_edit(self) -> None:
        self.wizard.go("hyperparams")

    def action_next(self) -> None:
        if self._cfg is None:
            return
        self._status("Creating the run and starting training…")
        self.launch(self._cfg)
        self.refresh_bindings()

    @work(thread=True, exclusive=True, group="launch", exit_on_error=False)
    def launch(self, cfg) -> Path:
        from ftwizard.core.launch import create_run, start

        # Absolute: the training process runs with the run directory as its working directory.
        run_dir = create_run(cfg, runs_dir=self.wizard.runs_dir).resolve()
        start(run_dir)
        return run_dir

    @on(Worker.StateChanged)
    def _launched(self, event: Worker.StateChanged) -> None:
        if event.worker.group != "launch":
            return
        if event.state == WorkerState.SUCCESS:
            run_dir = event.worker.result
            self.wizard.set_state(self.state.replace(run_dir=str(run_dir)))
            self._status(f"Started {run_dir.name}", "ok-text")
            try:
                self.wizard.open_monitor(run_dir)
            except ImportError:
                self.notify(f"Run started in {run_dir}; follow it with `ftwizard status {run_dir.name}`.")
        elif event.state == WorkerState.ERROR:
            self._status("Not launched: see the message.", "error-text")
        self.validity_changed()
