"""Help for the current screen (`?` or F1): what it is for (its `HELP` text) and its keys, generated
from the bindings in force (each has an id, a label and a one-line description in its tooltip), so
the help never disagrees with the keys."""

from __future__ import annotations

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Markdown, Static

# Textual's own keys, bound without an id by every Screen.
FOCUS_KEYS = "`tab` / `shift+tab` move between fields."


def keys_markdown(screen: Screen) -> str:
    """The keys of `screen` and of its App as a Markdown table, one row per action (its keys together),
    the screen's first. Only bindings with an id (ftwizard's own) are listed; hidden ones too."""
    app = screen.app
    rows: dict[tuple[int, str], tuple[list[str], Binding]] = {}
    for active in screen.active_bindings.values():
        b, node = active.binding, active.node
        if not b.id or not isinstance(node, (App, Screen)):
            continue
        keys, _ = rows.setdefault((id(node), b.action), ([], b))
        shown = f"`{app.get_key_display(b)}`"
        if shown not in keys:
            keys.append(shown)
    ordered = sorted(rows.items(), key=lambda item: item[0][0] == id(app))  # stable: binding order kept
    lines = ["| keys | |", "|---|---|"]
    for _, (keys, b) in ordered:
        text = f"**{b.description}**" + (f": {b.tooltip}" if b.tooltip else "")
        lines.append(f"| {' '.join(keys)} | {text} |")
    return "\n".join(lines) + "\n\n" + FOCUS_KEYS


class HelpDialog(ModalScreen[None]):
    """A scrollable help text; escape, q, ? or F1 closes it."""

    BINDINGS = [
        Binding("escape", "close", "Close", key_display="esc", id="help.close", tooltip="close the help"),
        Binding("q", "close", "Close", show=False, id="help.close-q", tooltip="close the help"),
        Binding("f1", "close", "Close", show=False, id="help.close-f1", tooltip="close the help"),
        Binding("question_mark", "close", "Close", show=False, id="help.close-question", tooltip="close the help"),
    ]

    def __init__(self, title: str, text: str, keys: str = ""):
        super().__init__()
        self._title = title
        self._text = text
        self._keys = keys

    @classmethod
    def for_screen(cls, screen: Screen, title: str | None = None) -> "HelpDialog":
        """The help of `screen`: its HELP text and the keys in force on it."""
        title = title or getattr(screen, "STEP_NAME", "") or "ftwizard"
        text = getattr(screen, "HELP", "") or "No help for this screen."
        return cls(title, text, keys_markdown(screen))

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box") as box:
            box.border_title = f"Help · {self._title}"
            box.border_subtitle = "esc close"
            keys = f"\n\n## Keys\n\n{self._keys.strip()}" if self._keys else ""
            yield Markdown(self._text.strip() + keys)
        yield Static("", id="help-spacer")

    def action_close(self) -> None:
        self.dismiss(None)
