"""Evaluate a run from the wizard: the same `core.afterwards.evaluate` as `ftwizard evaluate` (loss and
perplexity base vs tuned, answers to validation prompts, the forgetting check, optional lm-eval tasks),
in a worker with its progress; the report is the command's own text (`commands.evaluate.report_lines`).
A run evaluated before shows its last report (evaluation.json) at once."""

from __future__ import annotations

import json
from pathlib import Path

from rich.markup import escape
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.message import Message
from textual.widgets import Input, Static
from textual.worker import Worker, WorkerState

from ftwizard.tui import AFTER_CSS
from ftwizard.tui.widgets.footer import Footer
from ftwizard.tui.screens.page import PageScreen

HELP = """
**Evaluate** compares the base and the tuned model on the run's validation rows: loss and perplexity
(lower is better), answers to a few validation prompts beside the reference (exact match when the
answers are labels), and the forgetting check (perplexity on general text). Type lm-evaluation-harness
tasks (names, or local task .yaml files) to run them too (needs `pip install 'ftwizard[lm-eval]'`).
ctrl+e starts; the result is saved in the run (evaluation.json).
"""


class EvalProgress(Message):
    def __init__(self, text: str):
        super().__init__()
        self.text = text


class EvaluateScreen(PageScreen):
    CSS_PATH = AFTER_CSS
    STEP_NAME = "Evaluate"
    HELP = HELP
    BINDINGS = [
        Binding("escape", "back", "Back", key_display="esc", id="evaluate.back", tooltip="back to the run"),
        Binding("ctrl+e", "run", "Evaluate", key_display="^e", priority=True, id="evaluate.run",
                tooltip="evaluate base and tuned now (the lm-eval tasks typed below too)"),
    ]

    def __init__(self, run_dir: str | Path, *, generations: int = 5):
        super().__init__()
        self.run_dir = Path(run_dir)
        self.generations = generations
        self.result: dict | None = None
        self.progress: list[str] = []

    def compose(self) -> ComposeResult:
        yield Static(f"evaluate · {self.run_dir.name}", classes="after-title")
        yield Static("ctrl+e evaluates base and tuned on the validation rows", id="eval-status",
                     classes="after-line")
        with VerticalScroll(id="eval-body", classes="after-body"):
            yield Static("", id="eval-report")
        yield Input(placeholder="lm-eval tasks (optional): names or task .yaml files, comma-separated",
                    id="eval-tasks")
        yield Footer()

    def on_mount(self) -> None:
        from ftwizard.core.afterwards import EVALUATION

        saved = self.run_dir / EVALUATION
        if saved.is_file():
            try:
                self.show(json.loads(saved.read_text(encoding="utf-8")), "the last evaluation (ctrl+e again)")
                self.query_one("#eval-body").focus()  # read the report with the arrow keys
            except ValueError:
                pass

    def show(self, res: dict, status: str) -> None:
        from ftwizard.core.commands.evaluate import report_lines

        self.result = res
        self.query_one("#eval-report", Static).update(escape("\n".join(report_lines(res, width=76))))
        self.query_one("#eval-status", Static).update(status)

    def action_run(self) -> None:
        tasks = self.query_one("#eval-tasks", Input).value.strip() or None
        self.query_one("#eval-status", Static).update("starting…")
        self.evaluate(tasks)

    @on(Input.Submitted, "#eval-tasks")
    def _submitted(self) -> None:
        self.action_run()

    @work(thread=True, exclusive=True, group="evaluate", exit_on_error=False)
    def evaluate(self, tasks: str | None) -> dict:
        from ftwizard.core.afterwards import evaluate

        return evaluate(self.run_dir, generations=self.generations, lm_eval_spec=tasks,
                        progress=lambda msg: self.post_message(EvalProgress(msg)))

    @on(EvalProgress)
    def _progress(self, event: EvalProgress) -> None:
        self.progress.append(event.text)
        self.query_one("#eval-status", Static).update(f"{escape(event.text)}…")

    @on(Worker.StateChanged)
    def _done(self, event: Worker.StateChanged) -> None:
        if event.worker.group != "evaluate":
            return
        if event.state == WorkerState.SUCCESS:
            self.show(event.worker.result, "done: saved as evaluation.json in the run")
        elif event.state == WorkerState.ERROR:
            event.stop()
            from ftwizard.core.errors import UserError

            err = event.worker.error
            text = str(err) if isinstance(err, UserError) else f"{type(err).__name__}: {err}"
            status = self.query_one("#eval-status", Static)
            status.update(f"[b]failed:[/b] {escape(text)}")
            status.add_class("-error")
            self.notify(text, title="Evaluate", severity="error")

