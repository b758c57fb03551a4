"""Ask for a path (`PathPrompt` -> str | None). Yes/no questions are `confirm.ConfirmDialog`."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static

from ..widgets.path_input import PathInput


class PathPrompt(ModalScreen[str | None]):
    """A path with completion; enter accepts, escape cancels."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", key_display="esc", id="path.cancel", tooltip="ask nothing")]

    def __init__(self, title: str, prompt: str, value: str = "", suffixes: tuple[str, ...] = ()):
        super().__init__()
        self._title, self._prompt_text, self._value, self._suffixes = title, prompt, value, suffixes

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog") as box:
            box.border_title = self._title
            box.border_subtitle = "enter ok · → complete · esc cancel"
            yield Label(self._prompt_text)
            yield PathInput(self._value, suffixes=self._suffixes, id="path")
            yield Static("", id="path-error", classes="error-text")

    @on(Input.Submitted, "#path")
    def _submit(self, event: Input.Submitted) -> None:
        value = event.value.strip()
        if not value:
            self.query_one("#path-error", Static).update("Type a path, or esc to cancel.")
            return
        self.dismiss(value)

    def action_cancel(self) -> None:
        self.dismiss(None)
