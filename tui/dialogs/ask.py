"""Small typed dialogs: ask for a path (`PathPrompt` -> str | None) and yes/no (`Confirm` -> bool)."""

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

    BINDINGS = [Binding("escape", "cancel", "Cancel", key_display="esc")]

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


class Confirm(ModalScreen[bool]):
    """A yes/no question: y or enter says yes, n or escape says no."""

    BINDINGS = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n", "answer(False)", "No"),
        Binding("escape", "answer(False)", "No", show=False),
    ]

    def __init__(self, title: str, question: str):
        super().__init__()
        self._title, self._question = title, question

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog") as box:
            box.border_title = self._title
            box.border_subtitle = "y yes · n no"
            yield Label(self._question)

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)
