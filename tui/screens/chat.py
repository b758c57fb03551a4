"""Chat with a run's tuned model: multi-turn, tokens shown as they are generated, the generation settings
on screen, and the model (base + adapter, or the full model) loaded in a thread worker with its progress,
so keys work while it loads. ctrl+b answers with the base model instead (adapter off).

`ModelScreen` is the shared part of the screens that need the model (chat, base vs tuned): the loading
worker and its progress line; `loader` is `core.afterwards.load_tuned` (tests may hold it back)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from rich.markup import escape
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.widgets import Input, ProgressBar, Static
from textual.worker import Worker, WorkerState

from ftwizard.tui import AFTER_CSS
from ftwizard.tui.widgets.footer import Footer
from ftwizard.tui.screens.page import PageScreen

HELP = """
**Chat** with the tuned model of this run. Type a message and press enter; the answer appears token by
token. The conversation is kept (multi-turn) until ctrl+r starts a new one.

The settings line shows how answers are generated: ctrl+t cycles the temperature (0 = greedy, always
the same answer), ctrl+n the longest answer in new tokens. ctrl+b answers with the **base** model (the
adapter switched off) to see what training changed; for a full fine-tune the base is not loaded here
(use the base-vs-tuned screen).

The model loads in the background: the screen answers keys meanwhile.
"""

TEMPERATURES = (0.0, 0.3, 0.7, 1.0)
MAX_NEW_TOKENS = (64, 128, 256, 512)


class ModelLoading(Message):
    def __init__(self, what: str, fraction: float):
        super().__init__()
        self.what, self.fraction = what, fraction


class ModelReady(Message):
    def __init__(self, tuned: Any):
        super().__init__()
        self.tuned = tuned


class ModelScreen(PageScreen):
    """A screen that loads the run's model in a worker (group "model") and shows the progress."""

    CSS_PATH = AFTER_CSS

    def __init__(self, run_dir: str | Path, *, loader: Callable | None = None):
        super().__init__()
        self.run_dir = Path(run_dir)
        self.run_id = self.run_dir.name
        self.loader = loader
        self.tuned: Any = None
        self.load_steps: list[str] = []  # what the loader reported, in order

    def loading_bar(self) -> ComposeResult:
        with Horizontal(classes="after-loading"):
            yield ProgressBar(total=100, show_eta=False, id="model-progress")
            yield Static("loading the model…", id="model-status")

    def start_loading(self) -> None:
        self.load_model()

    @work(thread=True, exclusive=True, group="model", exit_on_error=False)
    def load_model(self):
        from ftwizard.core.afterwards import load_tuned

        load = self.loader or load_tuned
        tuned = load(self.run_dir, progress=lambda what, frac: self.post_message(ModelLoading(what, frac)))
        self.post_message(ModelReady(tuned))
        return tuned

    @on(ModelLoading)
    def _loading(self, event: ModelLoading) -> None:
        self.load_steps.append(event.what)
        self.query_one("#model-progress", ProgressBar).update(progress=round(event.fraction * 100))
        self.query_one("#model-status", Static).update(f"{escape(event.what)}…")

    @on(ModelReady)
    def _ready(self, event: ModelReady) -> None:
        self.tuned = event.tuned
        self.add_class("-ready")
        self.model_ready()

    def model_ready(self) -> None:
        """Called once the model is in memory."""

    @on(Worker.StateChanged)
    def _worker_failed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR:
            event.stop()
            err = event.worker.error
            self.worker_failed(event.worker, err)

    def worker_failed(self, worker: Worker, err: BaseException) -> None:
        from ftwizard.core.errors import UserError

        text = str(err) if isinstance(err, UserError) else f"{type(err).__name__}: {err}"
        if worker.group == "model":
            self.query_one("#model-status", Static).update(f"[b]cannot load the model:[/b] {escape(text)}")
        self.notify(text, title=self.STEP_NAME, severity="error")



class Piece(Message):
    """A piece of the answer being generated (high rate: one per word or so)."""

    def __init__(self, text: str):
        super().__init__()
        self.text = text


class Answered(Message):
    def __init__(self, text: str):
        super().__init__()
        self.text = text


class ChatScreen(ModelScreen):
    STEP_NAME = "Chat"
    HELP = HELP
    BINDINGS = [
        Binding("escape", "back", "Back", key_display="esc", id="chat.back", tooltip="back to the run"),
        Binding("ctrl+t", "temperature", "Temp", key_display="^t", id="chat.temperature",
                tooltip="cycle the temperature: 0 (greedy), 0.3, 0.7, 1.0"),
        Binding("ctrl+n", "max_tokens", "Length", key_display="^n", id="chat.length",
                tooltip="cycle the longest answer: 64, 128, 256, 512 new tokens"),
        Binding("ctrl+b", "toggle_base", "Base", key_display="^b", id="chat.base",
                tooltip="answer with the base model (adapter off) or the tuned one"),
        Binding("ctrl+r", "reset", "New chat", key_display="^r", id="chat.reset",
                tooltip="forget the conversation and start again"),
    ]

    def __init__(self, run_dir: str | Path, *, loader: Callable | None = None, system: str | None = None):
        super().__init__(run_dir, loader=loader)
        from ftwizard.core.afterwards import GenSettings

        self.settings = GenSettings(max_new_tokens=MAX_NEW_TOKENS[1])
        self.use_base = False
        self.system = system
        self.history: list[dict] = []
        self.pieces: list[str] = []  # the pieces of the last answer, as they arrived
        self.generating = False
        self._answer: Static | None = None
        self._answer_text = ""

    def compose(self) -> ComposeResult:
        yield Static(f"chat · {self.run_id}", id="chat-title", classes="after-title")
        yield Static(self._settings_text(), id="chat-settings", classes="after-line")
        yield from self.loading_bar()
        yield VerticalScroll(id="chat-log", classes="after-body")
        yield Input(placeholder="type a message, enter to send", id="chat-input")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#chat-input", Input).focus()
        self.start_loading()

    def _settings_text(self) -> str:
        who = "base model (adapter off)" if self.use_base else "tuned model"
        return f"{who} · {self.settings.describe()} · {len(self.history) // 2} turns"

    def _refresh_settings(self) -> None:
        self.query_one("#chat-settings", Static).update(self._settings_text())

    def model_ready(self) -> None:
        kind = "adapter" if self.tuned.is_adapter else "full fine-tune"
        self.query_one("#chat-title", Static).update(f"chat · {self.run_id} · {kind}")

    # ------------------------------------------------------------------------------ keys

    def action_temperature(self) -> None:
        i = TEMPERATURES.index(self.settings.temperature) if self.settings.temperature in TEMPERATURES else -1
        self.settings.temperature = TEMPERATURES[(i + 1) % len(TEMPERATURES)]
        self._refresh_settings()

    def action_max_tokens(self) -> None:
        n = self.settings.max_new_tokens
        i = MAX_NEW_TOKENS.index(n) if n in MAX_NEW_TOKENS else -1
        self.settings.max_new_tokens = MAX_NEW_TOKENS[(i + 1) % len(MAX_NEW_TOKENS)]
        self._refresh_settings()

    def action_toggle_base(self) -> None:
        if self.tuned is not None and not self.tuned.is_adapter:
            self.notify("a full fine-tune: the base model is not loaded here (use base vs tuned)", title="Chat")
            return
        self.use_base = not self.use_base
        self._refresh_settings()

    def action_reset(self) -> None:
        if self.generating:
            return
        self.history.clear()
        self.query_one("#chat-log").remove_children()
        self._refresh_settings()

    # ------------------------------------------------------------------------------ talking

    @on(Input.Submitted, "#chat-input")
    def _send(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        if not text:
            return
        if self.tuned is None:
            self.notify("the model is still loading", title="Chat", severity="warning")
            return
        if self.generating:
            return
        event.input.value = ""
        log = self.query_one("#chat-log", VerticalScroll)
        log.mount(Static(f"[b]you[/b]  {escape(text)}", classes="chat-user"))
        self._answer = Static("…", classes="chat-assistant -streaming")
        log.mount(self._answer)
        log.scroll_end(animate=False)
        messages = ([{"role": "system", "content": self.system}] if self.system else []) + self.history + [
            {"role": "user", "content": text}]
        self.history.append({"role": "user", "content": text})
        self.pieces, self._answer_text, self.generating = [], "", True
        self.reply(messages, self.use_base)

    @work(thread=True, exclusive=True, group="generate", exit_on_error=False)
    def reply(self, messages: list[dict], base: bool) -> str:
        from dataclasses import replace

        from ftwizard.core.afterwards import stream_generate

        out = []
        for piece in stream_generate(self.tuned, messages, replace(self.settings), base=base):
            out.append(piece)
            self.post_message(Piece(piece))
        text = "".join(out).strip()
        self.post_message(Answered(text))
        return text

    @on(Piece)
    def _piece(self, event: Piece) -> None:
        self.pieces.append(event.text)
        self._answer_text += event.text
        if self._answer is not None:
            self._answer.update(f"[b]{'base' if self.use_base else 'model'}[/b]  {escape(self._answer_text)}")
            self.query_one("#chat-log", VerticalScroll).scroll_end(animate=False)

    @on(Answered)
    def _answered(self, event: Answered) -> None:
        self.generating = False
        self.history.append({"role": "assistant", "content": event.text})
        if self._answer is not None:
            self._answer.remove_class("-streaming")
            if not event.text:
                self._answer.update("[dim](an empty answer)[/dim]")
        self._refresh_settings()

    def worker_failed(self, worker: Worker, err: BaseException) -> None:
        if worker.group == "generate":
            self.generating = False
            if self.history and self.history[-1]["role"] == "user":
                self.history.pop()
        super().worker_failed(worker, err)
