"""Base vs tuned: the run's validation prompts (or one typed here) answered by the base model and the
tuned one, side by side with the reference answer. The model loads in a worker (see chat.ModelScreen);
answers come one prompt at a time, greedy, so they are reproducible."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from rich.markup import escape
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Input, Static

from ftwizard.tui.screens.chat import ModelScreen
from ftwizard.tui.widgets.footer import Footer

HELP = """
**Base vs tuned** answers the run's validation prompts with the base model (before training) and the
tuned one, beside the reference answer from the data: what training changed, at a glance. Type a prompt
of your own below and press enter to add it. Answers are greedy (the same every time), at most
`max new tokens` long.
"""

PROMPTS = 5
MAX_NEW_TOKENS = 96


class Compared(Message):
    def __init__(self, prompt: str, reference: str | None, base: str | None, tuned: str):
        super().__init__()
        self.prompt, self.reference, self.base, self.tuned = prompt, reference, base, tuned


class CompareScreen(ModelScreen):
    STEP_NAME = "Base vs tuned"
    HELP = HELP
    BINDINGS = [
        Binding("escape", "back", "Back", key_display="esc", id="compare.back", tooltip="back to the run"),
    ]

    def __init__(self, run_dir: str | Path, *, loader: Callable | None = None, prompts: int = PROMPTS,
                 max_new_tokens: int = MAX_NEW_TOKENS):
        super().__init__(run_dir, loader=loader)
        self.prompts, self.max_new_tokens = prompts, max_new_tokens
        self.rows: list[Compared] = []
        self._base_model = None  # a full fine-tune's base, loaded beside it

    def compose(self) -> ComposeResult:
        yield Static(f"base vs tuned · {self.run_id}", id="cmp-title", classes="after-title")
        yield Static(f"validation prompts, greedy, at most {self.max_new_tokens} new tokens", classes="after-line",
                     id="cmp-note")
        yield from self.loading_bar()
        yield VerticalScroll(id="cmp-body", classes="after-body")
        yield Input(placeholder="a prompt of your own, enter to compare", id="cmp-input")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#cmp-input", Input).focus()
        self.start_loading()

    def model_ready(self) -> None:
        self.answer_validation()

    def _answer(self, messages: list[dict]) -> tuple[str | None, str]:
        from ftwizard.core.afterwards import generate

        tuned = generate(self.tuned, messages, max_new_tokens=self.max_new_tokens)
        if self.tuned.is_adapter:
            base = generate(self.tuned, messages, max_new_tokens=self.max_new_tokens, base=True)
        else:  # a full fine-tune: the base model beside it
            from ftwizard.core.afterwards import Tuned

            if self._base_model is None:
                self._base_model = self.tuned.load_base()
            t = self.tuned
            base = generate(Tuned(self._base_model, t.tokenizer, False, t.cfg), messages,
                            max_new_tokens=self.max_new_tokens)
        return base, tuned

    @work(thread=True, exclusive=True, group="compare", exit_on_error=False)
    def answer_validation(self) -> int:
        from ftwizard.core.afterwards import prompt_and_reference, validation_rows

        n = 0
        for row in validation_rows(self.tuned.cfg, max_rows=self.prompts * 2):
            pr = prompt_and_reference(row)
            if pr is None:
                continue
            msgs, ref = pr
            base, tuned = self._answer(msgs)
            self.post_message(Compared(msgs[-1]["content"], ref, base, tuned))
            n += 1
            if n >= self.prompts:
                break
        return n

    @work(thread=True, group="compare-typed", exit_on_error=False)
    def answer_typed(self, prompt: str) -> None:
        base, tuned = self._answer([{"role": "user", "content": prompt}])
        self.post_message(Compared(prompt, None, base, tuned))

    @on(Input.Submitted, "#cmp-input")
    def _typed(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        if not text:
            return
        if self.tuned is None:
            self.notify("the model is still loading", title=self.STEP_NAME, severity="warning")
            return
        event.input.value = ""
        self.answer_typed(text)

    @on(Compared)
    def _compared(self, event: Compared) -> None:
        self.rows.append(event)
        body = self.query_one("#cmp-body", VerticalScroll)
        cols = []
        for title, text in (("reference", event.reference), ("base", event.base), ("tuned", event.tuned)):
            if title == "reference" and text is None:
                continue
            col = Static(escape(text) if text else "[dim](empty)[/dim]", classes="cmp-col")
            col.border_title = title
            cols.append(col)
        body.mount(Vertical(Static(f"› {escape(event.prompt)}", classes="cmp-prompt"),
                            Horizontal(*cols, classes="cmp-cols"), classes="cmp-row"))
