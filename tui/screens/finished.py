"""Step 10: a run has ended. Final and best losses, time, where the adapter or model is, and what to do
next; for a failed run the reason and the fixes from its diagnosis, most effective first.

Opened on top of the monitor when its run ends (escape goes back to the chart), or on its own for
any run directory (the view is rebuilt from `events.jsonl`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Static

from ftwizard.core.monitor import RunView, fmt_duration, fmt_num
from ftwizard.tui import AFTER_CSS, MONITOR_CSS
from ftwizard.tui.widgets.footer import Footer
from ftwizard.tui.screens.page import PageScreen

HELP = """
**The run has ended.** Completed runs show their final and best losses and where the adapter (LoRA,
QLoRA) or the model (full fine-tuning) was saved. Stopped runs can be continued from their last
checkpoint. Failed runs show why, and what to change, most effective first.

The forgetting check compares the perplexity of the base and the tuned model on a small sample of
general English shipped with ftwizard (measured by the training process as it ended); a rise of more
than 20% is shown as a warning: the model may have lost some general ability.

With a trained model: **c** chat with it, **b** base vs tuned on validation prompts, **v** evaluate,
**e** export (merge, GGUF, Ollama), **p** push to the hub, **m** compare with other runs.
"""


AFTER_KEYS = [  # (key, what it opens): shown in the finished screen's "Next steps" and on the runs screen
    ("c", "chat with it, tokens as they come (ctrl+b: the base model)"),
    ("b", "base vs tuned on validation prompts, beside the reference"),
    ("v", "evaluate: loss, answers, forgetting check, lm-eval tasks"),
    ("e", "export: merged model, GGUF, Ollama Modelfile, round-trip check"),
    ("p", "push to the Hugging Face Hub (dry run first)"),
]
COMPARE_KEY = ("m", "compare with other runs: loss curves, config differences")


def next_steps(run_id: str, run_dir: Path, state: str, output: str | None, method: str | None) -> list[str]:
    """What to do next: this screen's keys first, then commands that can be pasted."""
    steps = []
    if has_model(state, output):
        steps += [f"{k}  {what}" for k, what in AFTER_KEYS]
    steps.append(f"{COMPARE_KEY[0]}  {COMPARE_KEY[1]}")
    if state == "completed" and output:
        if method in ("lora", "qlora"):
            steps.append(f"load it: PeftModel.from_pretrained(base_model, \"{output}\")")
        else:
            steps.append(f"load it: AutoModelForCausalLM.from_pretrained(\"{output}\")")
    if state in ("stopped", "failed") and (run_dir / "checkpoints").is_dir() \
            and any((run_dir / "checkpoints").glob("checkpoint-*")):
        steps.append(f"continue from the last checkpoint: ftwizard resume {run_id}")
    steps.append(f"train again (edit it first?): ftwizard train {run_dir / 'config.yaml'}")
    if state == "failed":
        steps.append(f"the full log: {run_dir / 'train.log'}")
    return steps


# Not in the footer (80 columns cannot hold six more keys): the screens list them (AFTER_KEYS).
AFTER_BINDINGS = [
    Binding("c", "after('chat')", "Chat", show=False, id="after.chat", tooltip="chat with the tuned model"),
    Binding("b", "after('compare')", "Base/tuned", show=False, id="after.compare",
            tooltip="validation prompts answered by the base and the tuned model, beside the reference"),
    Binding("v", "after('evaluate')", "Evaluate", show=False, id="after.evaluate",
            tooltip="loss, answers, forgetting check (and lm-eval tasks) of base vs tuned"),
    Binding("e", "after('export')", "Export", show=False, id="after.export", tooltip="merged model, GGUF, Ollama Modelfile"),
    Binding("p", "after('push')", "Push", show=False, id="after.push", tooltip="upload to the Hugging Face Hub"),
    Binding("m", "after('compare_runs')", "Compare runs", show=False, id="after.compare-runs",
            tooltip="overlay this run's loss curves with other runs', and their config differences"),
]


def after_screen(what: str, run_dir: Path, runs_dir=None) -> Screen:
    """The screen for an after-training key (the finished and the runs screens share them)."""
    if what == "chat":
        from ftwizard.tui.screens.chat import ChatScreen

        return ChatScreen(run_dir)
    if what == "compare":
        from ftwizard.tui.screens.compare import CompareScreen

        return CompareScreen(run_dir)
    if what == "evaluate":
        from ftwizard.tui.screens.evaluate import EvaluateScreen

        return EvaluateScreen(run_dir)
    if what == "export":
        from ftwizard.tui.screens.export import ExportScreen

        return ExportScreen(run_dir)
    if what == "push":
        from ftwizard.tui.screens.push import PushScreen

        return PushScreen(run_dir)
    from ftwizard.tui.screens.compare_runs import CompareRunsScreen

    return CompareRunsScreen([run_dir], runs_dir=runs_dir)


def has_model(state: str, output: str | None) -> bool:
    """Chat, evaluate, export and push need the saved adapter or model (completed, or stopped with one)."""
    return state in ("completed", "stopped") and bool(output) and Path(output).is_dir()


class FinishedScreen(PageScreen):
    CSS_PATH = [MONITOR_CSS, AFTER_CSS]
    STEP_NAME = "Finished"
    HELP = HELP
    BINDINGS = [
        Binding("escape", "back", "Chart", key_display="esc", id="finished.chart", tooltip="back to the loss chart"),
        Binding("question_mark", "help", "Help", key_display="?", id="finished.help",
                tooltip="help for this view: what it shows and its keys"),
        *AFTER_BINDINGS,
    ]

    def __init__(self, run_dir: str | Path, view: RunView | None = None, info: Any = None):
        super().__init__()
        self.run_dir = Path(run_dir)
        self.run_id = self.run_dir.name
        if view is None:
            from ftwizard.core.events import read_events
            from ftwizard.core.monitor import view_from_events

            view = view_from_events(read_events(self.run_dir))
        if info is None:
            from ftwizard.core.runs import run_info

            info = run_info(self.run_dir, fold=view)  # the state is core.runs.derive_state's
        self.view, self.info = view, info
        self.state, self.reason, self.diagnosis, self.output = info.state, info.reason, info.diagnosis, info.output

    def compose(self) -> ComposeResult:
        yield Static(f"run {self.run_id} · {self.state}", id="fin-title")
        with VerticalScroll(id="fin-body"):
            yield Static(self._result_text(), id="fin-result", classes="fin-box")
            if self.state == "failed":
                yield Static(self._fixes_text(), id="fin-fixes", classes="fin-box")
            forgetting = self._forgetting()
            if forgetting is not None:
                box = Static(forgetting[0], id="fin-forgetting", classes="fin-box")
                box.set_class(forgetting[1], "-warning")
                yield box
            yield Static(self._next_text(), id="fin-next", classes="fin-box")
        yield Footer()

    def on_mount(self) -> None:
        self.add_class(f"-{self.state}")
        self.query_one("#fin-result").border_title = {"completed": "Done", "stopped": "Stopped",
                                                      "failed": "Failed"}.get(self.state, self.state)
        if self.state == "failed":
            self.query_one("#fin-fixes").border_title = "Why, and what to try (in order)"
        self.query_one("#fin-next").border_title = "Next steps"
        if self.query("#fin-forgetting"):
            self.query_one("#fin-forgetting").border_title = "Forgetting check"

    def _forgetting(self) -> tuple[str, bool] | None:
        """(text, is a warning) of the run's forgetting check, None when it was not made."""
        from ftwizard.core.forgetting import load_result

        f = load_result(self.run_dir)
        if f is None:
            return None
        text = escape(f.summary())
        if f.warning:
            return f"[b]⚠ {escape(f.warning)}[/b]\n{text}", True
        return f"{text}: no sign of forgetting (warns above +{f.threshold:.0%})", False

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        if action == "after" and parameters and parameters[0] != "compare_runs":
            return has_model(self.state, self.output)
        return True

    def action_after(self, what: str) -> None:
        self.app.push_screen(after_screen(what, self.run_dir))

    def _result_text(self) -> str:
        v = self.view
        lines = []
        if self.reason:
            lines.append(f"[b]{escape(str(self.reason))}[/b]")
        if v.loss is not None:
            lines.append(f"final loss {fmt_num(v.loss)} at step {v.step:,}"
                         + (f" of {v.max_steps:,}" if v.max_steps else ""))
        if v.best_loss:
            lines.append(f"best training loss {fmt_num(v.best_loss[1])} (step {v.best_loss[0]:,})")
        if v.best_eval:
            lines.append(f"best validation loss {fmt_num(v.best_eval[1])} (step {v.best_eval[0]:,})"
                         + (f", last {fmt_num(v.eval_loss)}" if v.eval_loss != v.best_eval[1] else ""))
        time_bits = [f"time {fmt_duration(v.elapsed_s)}"]
        if v.train_elapsed_s is not None:
            time_bits.append(f"training {fmt_duration(v.train_elapsed_s)}")
        if v.tokens:
            time_bits.append(f"{v.tokens:,} tokens")
        if v.peak_memory_gib is not None:
            time_bits.append(f"peak memory {v.peak_memory_gib:.2f} GB" + (
                f" (estimated {v.estimate_gib:.2f})" if v.estimate_gib is not None else ""))
        lines.append(" · ".join(time_bits))
        if self.output and self.state != "failed":
            what = "adapter" if (self.info.method or "") in ("lora", "qlora") else "model"
            lines.append(f"{what}: {escape(str(self.output))}")
        if v.checkpoints:
            lines.append(f"last checkpoint: step {v.checkpoints[-1][0]:,}")
        if not v.started_training and self.state != "completed":
            lines.append(f"[dim]ended before the first step, while {escape(v.phase_text())}[/dim]")
        return "\n".join(lines)

    def _fixes_text(self) -> str:
        diag = self.diagnosis or {}
        message = str(diag.get("message") or self.reason or "the run failed")
        lines = [] if message == str(self.reason) else [escape(message)]
        fixes = diag.get("fixes") or []
        for i, fix in enumerate(fixes, 1):
            lines.append(f"{i}. {escape(str(fix))}")
        if not fixes:
            lines.append("[dim]no known fix for this one: read the end of train.log[/dim]")
        return "\n".join(lines)

    def _next_text(self) -> str:
        return "\n".join(f"[b]{s[0]}[/b]{escape(s[1:])}" if s[1:3] == "  " else f"· {escape(s)}"
                         for s in next_steps(self.run_id, self.run_dir, self.state, self.output, self.info.method))

