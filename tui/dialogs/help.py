"""Help for the current step (`?` or F1): what the step is for, its keys, and where the advice comes from."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown, Static

GLOBAL_KEYS = """
**Keys everywhere:** `^n` next step (dimmed while the step is incomplete) · `esc` back ·
`tab` / `shift+tab` move between fields · `F1` or `?` this help · `^q` quit (a running training
run is never stopped by quitting).
"""


class HelpDialog(ModalScreen[None]):
    """A scrollable help text; escape, q, ? or F1 closes it."""

    BINDINGS = [
        Binding("escape", "close", "Close", key_display="esc"),
        Binding("q", "close", "Close", show=False),
        Binding("f1", "close", "Close", show=False),
        Binding("question_mark", "close", "Close", show=False),
    ]

    def __init__(self, title: str, text: str):
        super().__init__()
        self._title = title
        self._text = text

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box") as box:
            box.border_title = f"Help · {self._title}"
            box.border_subtitle = "esc close"
            yield Markdown(self._text.strip() + "\n\n" + GLOBAL_KEYS.strip())
        yield Static("", id="help-spacer")

    def action_close(self) -> None:
        self.dismiss(None)
