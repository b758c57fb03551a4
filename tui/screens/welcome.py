"""Step 1, Welcome: start the guided flow, pick a preset (one keypress to a runnable config: it opens
Review with that config loaded), open an existing run, or load a config file."""

from __future__ import annotations

from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from ..state import WizardState
from .step import WizardStep

HELP = """
# Welcome

ftwizard walks you from *should I fine-tune at all?* to a running, monitored training run.

- **Guide me**: a few questions decide whether fine-tuning is the right tool, then hardware, model,
  method, dataset and settings, one step at a time.
- **Presets**: ready configs (the header of each file says who it is for). Choosing one opens the
  Review step with it loaded: one more key launches it.
- **Open a run**: follow a running run or look at a finished one. Runs live in `runs/` and keep
  training when the wizard, the terminal or the SSH connection closes.
- **Load a config file**: a YAML file written by this wizard or by hand (`ftwizard config-reference`
  lists every key).
"""


INTRO = ("New here? Guide me asks whether fine-tuning is the right tool at all, then finds what fits "
         "your GPU and shows your data as the model will see it.\n\nIn a hurry? A preset is one key "
         "away from a runnable config. Runs keep training when the wizard or SSH closes.")


class WelcomeScreen(WizardStep):
    NAME = "welcome"
    HELP = HELP
    BINDINGS = [
        Binding("escape", "back", "Back", show=False, id="step.back", tooltip="the previous step"),
        Binding("g", "guide", "Guide me", id="welcome.guide",
                tooltip="a few questions, then hardware, model, method, data and settings step by step"),
        Binding("p", "presets", "Presets", id="welcome.presets",
                tooltip="choose a ready config: it opens Review, one key from a run"),
        Binding("r", "runs", "Runs", id="welcome.runs", tooltip="follow a running run or look at a finished one"),
        Binding("l", "load", "Load config", id="welcome.load", tooltip="open a YAML config written by the wizard or by hand"),
        Binding("ctrl+n", "next", "Next", key_display="^n", priority=True, show=False, id="step.next",
                tooltip="start the guided flow"),
    ]

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="welcome-body"):
            with Vertical(id="start-box", classes="box") as box:
                box.border_title = "Start"
                yield OptionList(
                    Option("Guide me (questionnaire)", id="guide"),
                    Option("Use a preset", id="presets"),
                    Option("Open a run", id="runs"),
                    Option("Load a config file", id="load"),
                    id="start",
                )
                yield Static(INTRO, id="welcome-intro", classes="dim")
            with Vertical(id="presets-box", classes="box") as box:
                box.border_title = "Presets for a quick start"
                yield OptionList(id="presets")
                yield Static("", id="preset-header", classes="dim")
        yield Static("Detecting hardware…", id="hw-line")

    def on_mount(self) -> None:
        self._fill_presets()
        self.on_state(self.state)
        self.count_runs()

    def _fill_presets(self) -> None:
        from ftwizard.core.presets import list_presets

        options = self.query_one("#presets", OptionList)
        self._presets = {p.name: p for p in list_presets()}
        for p in self._presets.values():
            options.add_option(Option(p.name, id=p.name))
        if not self._presets:
            options.add_option(Option("(no presets installed)", id="-none", disabled=True))
        else:
            options.highlighted = 0

    def on_state(self, state: WizardState) -> None:
        hw = state.hardware
        self.query_one("#hw-line", Static).update(
            "Detecting hardware…" if hw is None else f"This machine: {hw.summary()}")

    @work(thread=True, exclusive=True, group="welcome-runs", exit_on_error=False)
    def count_runs(self) -> str:
        from ftwizard.core.runs import LIVE_STATES, list_runs

        runs = list_runs(self.wizard.runs_dir)
        live = sum(r.state in LIVE_STATES for r in runs)
        return f"Open a run ({live} running, {len(runs) - live} done)" if runs else "Open a run (none yet)"

    def on_worker_state_changed(self, event) -> None:
        from textual.worker import WorkerState

        if event.worker.group == "welcome-runs" and event.state == WorkerState.SUCCESS:
            self.query_one("#start", OptionList).replace_option_prompt("runs", event.worker.result)

    @on(OptionList.OptionHighlighted, "#presets")
    def _preview_preset(self, event: OptionList.OptionHighlighted) -> None:
        p = self._presets.get(event.option.id or "")
        if p is not None:
            lines = [line for line in p.header.splitlines() if line.strip()]
            self.query_one("#preset-header", Static).update("\n".join(lines[:4]))

    @on(OptionList.OptionSelected, "#start")
    def _start_choice(self, event: OptionList.OptionSelected) -> None:
        {"guide": self.action_guide, "presets": self.action_presets, "runs": self.action_runs,
         "load": self.action_load}[event.option.id]()

    @on(OptionList.OptionSelected, "#presets")
    def _preset_chosen(self, event: OptionList.OptionSelected) -> None:
        if event.option.id in self._presets:
            self.use_preset(event.option.id)

    # ------------------------------------------------------------------------------- actions

    def action_next(self) -> None:
        self.action_guide()

    def action_guide(self) -> None:
        self.wizard.go("questionnaire")

    def action_presets(self) -> None:
        self.query_one("#presets", OptionList).focus()

    def action_runs(self) -> None:
        self.wizard.open_runs()

    def use_preset(self, name: str) -> None:
        from ftwizard.core.config import load_config
        from ftwizard.core.errors import UserError

        path = self._presets[name].path
        try:
            cfg = load_config(path)
        except UserError as exc:
            self.wizard.show_error(exc)
            return
        self.wizard.set_state(WizardState.from_config(cfg, preset=name, previous=self.state))
        self.wizard.go("review")

    def action_load(self) -> None:
        from ..dialogs.ask import PathPrompt

        self.app.push_screen(PathPrompt("Load a config file", "Path to a YAML config:", "",
                                        suffixes=(".yaml", ".yml")), self._load)

    def _load(self, path: str | None) -> None:
        from ftwizard.core.config import load_config
        from ftwizard.core.errors import UserError

        if not path:
            return
        try:
            cfg = load_config(Path(path).expanduser())
        except UserError as exc:
            self.wizard.show_error(exc)
            return
        self.wizard.set_state(WizardState.from_config(cfg, config_path=str(Path(path).expanduser()),
                                                      previous=self.state))
        self.wizard.go("review")
