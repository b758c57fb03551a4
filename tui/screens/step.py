"""What every wizard step shares: the title line ("step k of n"), Back (escape), Next (ctrl+n, blocked
while the step is invalid) and the Footer. A step says what it needs with `is_valid()` and calls
`validity_changed()` when that may have changed; Next is then enabled or dimmed in the Footer."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Static

from ..state import WizardState
from ..steps import step, step_title
from ..widgets.footer import Footer

if TYPE_CHECKING:
    from ..app import WizardApp


class TitleBar(Horizontal):
    """' ftwizard · <what this step is>            step k of n '"""

    def __init__(self, name: str, training: str):
        super().__init__(id="title-bar")
        self._name, self._training = name, training

    def compose(self) -> ComposeResult:
        yield Static(f"ftwizard · {step(self._name).title}", id="title-text")
        yield Static(step_title(self._name, self._training), id="title-step")


class WizardStep(Screen):
    """A wizard step. Subclasses set NAME (their row in tui/steps.py), HELP and implement compose_body();
    the title, the step number and the step that Next opens come from the step table."""

    NAME: str = ""
    HELP: str = ""
    # The key for Next. ctrl+n is safe over SSH/tmux and is not eaten by text inputs.
    BINDINGS = [
        Binding("escape", "back", "Back", key_display="esc", id="step.back", tooltip="the previous step"),
        Binding("ctrl+n", "next", "Next", key_display="^n", priority=True, id="step.next",
                tooltip="the next step (dimmed while this one is incomplete: the line above the keys says why)"),
    ]

    @property
    def wizard(self) -> "WizardApp":
        return self.app  # type: ignore[return-value]

    @property
    def state(self) -> WizardState:
        return self.wizard.state

    def compose(self) -> ComposeResult:
        yield TitleBar(self.NAME, self.state.training)
        yield from self.compose_body()
        yield Static("", id="step-problem")
        yield Footer()

    def compose_body(self) -> ComposeResult:
        yield from ()

    def on_mount(self) -> None:
        # Textual calls the on_mount of every class in the MRO, the subclass's first: a step's own
        # on_mount must not call super().on_mount() (that ran this twice per step: the state watch set
        # up twice, validity and the Footer refreshed twice).
        self.watch(self.app, "state", self.on_state, init=False)
        self.validity_changed()

    def on_state(self, state: WizardState) -> None:
        """The wizard state changed (e.g. hardware detected). Override to refresh."""

    # ------------------------------------------------------------------------- validity / Next

    def is_valid(self) -> bool:
        return True

    def why_invalid(self) -> str:
        return ""

    _last_valid: bool | None = None

    def validity_changed(self) -> None:
        """Show why Next is blocked, and refresh the Footer when validity flips (not on every call)."""
        valid = self.is_valid()
        try:
            self.query_one("#step-problem", Static).update("" if valid else f"Next is blocked: {self.why_invalid()}")
        except Exception:  # not composed yet
            pass
        if valid == self._last_valid:
            return
        first = self._last_valid is None
        self._last_valid = valid
        self.set_class(not valid, "-invalid")
        if not (first and valid):  # the Footer asks check_action itself when it is first drawn
            self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "next":
            return True if self.is_valid() else None  # None: shown dimmed, not runnable
        return True

    def action_back(self) -> None:
        if len(self.app.screen_stack) > 2:  # never pop the default screen
            self.app.pop_screen()

    def action_next(self) -> None:
        if not self.is_valid():
            self.notify(self.why_invalid() or "This step is not complete yet.", severity="warning")
            return
        self.commit()
        self.advance()

    def commit(self) -> None:
        """Write this step's choices into the wizard state."""

    def advance(self) -> None:
        self.wizard.go_after(self.NAME)

    @property
    def STEP_NAME(self) -> str:  # the help dialog's title
        return step(self.NAME).title
