"""Export a run from the wizard: `core.export.export` (merged model, GGUF through llama.cpp's own
converter, Ollama Modelfile, then the template round-trip check) in a worker, its progress lines shown
as they come. Refusals (no converter here, the export directory exists, an unknown template for Ollama)
are shown as the one line `ftwizard export` prints, and nothing is written."""

from __future__ import annotations

from pathlib import Path

from rich.markup import escape
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.widgets import Input, Label, Select, Static
from textual.worker import Worker, WorkerState

from ftwizard.tui import AFTER_CSS
from ftwizard.tui.widgets.footer import Footer
from ftwizard.tui.screens.page import PageScreen

HELP = """
**Export** makes the run's model deployable: a merged standalone model (the adapter folded into the
base, with the tokenizer and the chat template it trained with), optionally a GGUF for llama.cpp /
Ollama (llama.cpp's own converter; q4_k_m and other k-quants need its compiled llama-quantize) and an
Ollama Modelfile. Then the round-trip check reads the chat template, BOS/EOS and stop tokens back from
the GGUF and compares next-token probabilities with the merged model. ctrl+e starts; the export goes
to RUN/export and never overwrites anything.
"""

GGUF_TYPES = ("f16", "bf16", "q8_0", "q4_k_m", "q5_k_m", "q6_k")


class ExportLine(Message):
    def __init__(self, text: str):
        super().__init__()
        self.text = text


def check_lines(check: dict) -> list[str]:
    """The round-trip check as lines (what `ftwizard export` prints)."""
    if not check:
        return []
    out = ["round-trip check passed:"] + [f"  ok  {line}" for line in check.get("checked", [])]
    lg = check.get("logits")
    if lg:
        out.append(f"      {lg['positions']} positions on {lg['rows']} validation rows: max |p-q| "
                   f"{lg['max_abs_prob_diff']:.2g}, mean KL {lg['mean_kl']:.2g} nats, top-1 agreement "
                   f"{lg['top1_agreement']:.1%}")
    return out


class ExportScreen(PageScreen):
    CSS_PATH = AFTER_CSS
    STEP_NAME = "Export"
    HELP = HELP
    BINDINGS = [
        Binding("escape", "back", "Back", key_display="esc", id="export.back", tooltip="back to the run"),
        Binding("ctrl+e", "run", "Export", key_display="^e", priority=True, id="export.run", tooltip="export with these options"),
    ]

    def __init__(self, run_dir: str | Path, *, out: str | Path | None = None):
        super().__init__()
        self.run_dir = Path(run_dir)
        self.out = out
        self.lines: list[str] = []
        self.result = None

    def compose(self) -> ComposeResult:
        yield Static(f"export · {self.run_dir.name}", classes="after-title")
        yield Static(f"to {self.out or self.run_dir / 'export'} · merged model always", id="exp-status",
                     classes="after-line")
        with Horizontal(classes="after-options"):
            yield Label(" GGUF ")
            yield Select([(t, t) for t in GGUF_TYPES], prompt="no GGUF", allow_blank=True, id="exp-gguf")
            yield Input(placeholder="Ollama model name (optional)", id="exp-ollama")
        with VerticalScroll(classes="after-body"):
            yield Static("", id="exp-log")
        yield Footer()

    def action_run(self) -> None:
        pick = self.query_one("#exp-gguf", Select)
        gguf = None if pick.is_blank() else str(pick.value)
        ollama = self.query_one("#exp-ollama", Input).value.strip() or None
        self.lines = []
        self.query_one("#exp-status", Static).update("exporting…")
        self.export(gguf, ollama)

    @work(thread=True, exclusive=True, group="export", exit_on_error=False)
    def export(self, gguf: str | None, ollama: str | None):
        from ftwizard.core.export import export

        return export(self.run_dir, out=self.out, gguf=gguf, ollama=ollama,
                      echo=lambda text: self.post_message(ExportLine(str(text))))

    @on(ExportLine)
    def _line(self, event: ExportLine) -> None:
        self.lines.append(event.text)
        self.query_one("#exp-log", Static).update(escape("\n".join(self.lines[-200:])))

    @on(Worker.StateChanged)
    def _done(self, event: Worker.StateChanged) -> None:
        if event.worker.group != "export":
            return
        status = self.query_one("#exp-status", Static)
        if event.state == WorkerState.SUCCESS:
            res = self.result = event.worker.result
            self.lines += [f"exported to {res.out}:"] + [f"  {f}" for f in res.files]
            self.lines.append("times: " + ", ".join(f"{k[:-2]} {v:.1f} s" for k, v in res.times.items()))
            self.lines += check_lines(res.check)
            self.query_one("#exp-log", Static).update(escape("\n".join(self.lines)))
            status.update(f"done: {res.out}")
        elif event.state == WorkerState.ERROR:
            event.stop()
            from ftwizard.core.errors import UserError

            err = event.worker.error
            text = str(err) if isinstance(err, UserError) else f"{type(err).__name__}: {err}"
            status.update(f"[b]refused:[/b] {escape(text)}")
            status.add_class("-error")
            self.notify(text, title="Export", severity="error")

