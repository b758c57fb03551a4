"""The one yes/no question of the app (`ConfirmDialog` -> bool): only a typed `y` says yes.

Every question asked is about something that cannot be undone (delete a run, stop a run, overwrite
a file): every other key that is bound (n, escape) says no, enter does nothing, so a stray enter
never deletes anything. The three-way quit question (detach / stop / cancel) is `quit.QuitDialog`."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, Static


class ConfirmDialog(ModalScreen[bool]):
    BINDINGS = [
        Binding("y", "answer(True)", "Yes", id="confirm.yes", tooltip="yes: the only key that says yes"),
        Binding("n", "answer(False)", "No", id="confirm.no", tooltip="no: keep things as they are"),
        Binding("escape", "answer(False)", "No", show=False, key_display="esc", id="confirm.no-esc",
                tooltip="no: keep things as they are"),
    ]

    def __init__(self, title: str, question: str, *, yes_label: str = "yes", detail: str = ""):
        super().__init__()
        self._title, self._question, self._yes, self._detail = title, question, yes_label, detail

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="confirm-box") as box:
            box.border_title = self._title
            box.border_subtitle = f"y {self._yes} · n / esc no"
            yield Label(self._question, id="confirm-question")
            if self._detail:
                yield Static(self._detail, id="confirm-detail", classes="dim")
            yield Label(f"Type y to {self._yes}, n or esc to keep things as they are.", classes="dim")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)
