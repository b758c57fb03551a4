"""Quitting while a run is attached: detach (the default: the run goes on), stop it, or cancel.

`QuitDialog` -> "detach" | "stop" | "cancel". Enter or d detaches, s stops (the run saves a checkpoint
and ends as "stopped"), escape or c cancels. Quitting never kills a run unasked."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static


class QuitDialog(ModalScreen[str]):
    DEFAULT_CSS = """
    #quit-buttons { height: auto; margin-top: 1; }
    #quit-buttons Button { margin-right: 1; }
    """
    BINDINGS = [
        Binding("d", "choose('detach')", "Detach", id="quit.detach",
                tooltip="leave the run training and quit; `ftwizard attach RUN` comes back"),
        Binding("s", "choose('stop')", "Stop run", id="quit.stop",
                tooltip="the run saves a checkpoint and ends as stopped, then quit"),
        Binding("c", "choose('cancel')", "Cancel", id="quit.cancel", tooltip="do not quit"),
        Binding("escape", "choose('cancel')", "Cancel", show=False, id="quit.cancel-esc", tooltip="do not quit"),
    ]

    def __init__(self, run_id: str, state: str = "running"):
        super().__init__()
        self.run_id, self.state = run_id, state

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="quit-box") as box:
            box.border_title = "Quit ftwizard"
            box.border_subtitle = "enter/d detach · s stop · esc cancel"
            yield Label(f"Run {self.run_id} is still {self.state}.")
            yield Static("Detach: the run keeps training; come back with "
                         f"`ftwizard attach {self.run_id}`.\nStop: the run saves a checkpoint and ends.",
                         classes="dim")
            with Horizontal(id="quit-buttons"):
                yield Button("Detach", id="detach", variant="primary")
                yield Button("Stop run", id="stop", variant="error")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#detach", Button).focus()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id or "cancel")

    def action_choose(self, choice: str) -> None:
        self.dismiss(choice)
