"""Step 6, Dataset: a path (with completion) or a hub id; as soon as it reads, a live preview of the first
rows, the detected format with its evidence, the selected row rendered exactly as training will see
it (trained tokens marked), the problems, and whole-file statistics computed in the background.

Everything that reads data or loads a tokenizer runs in a worker (core.data does the work); the
screen never waits. Each worker reports with one small typed message (one handler each); changing the
path cancels the running scan through Textual's own worker cancellation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.widgets import DataTable, Label, ProgressBar, Static
from textual.worker import Worker, get_current_worker

from ftwizard.core.data.read import SUFFIXES, looks_local

from ..state import WizardState
from ..widgets.path_input import PathInput
from .step import WizardStep

HELP = """
# Dataset

Type the path of a `.jsonl`, `.json`, `.csv`, `.tsv` or `.parquet` file (or a folder of them);
`→` accepts the completion. A hub id (`org/name`) is read when you press `enter`.

- The table shows the first rows as they are in the file, with the detected format and why it was
  detected (alpaca, sharegpt, OpenAI messages, prompt-completion, preference, KTO, plain text).
- Below it: the highlighted row **as the model sees it**, after the chat template. Bright text is
  trained on (carries loss), dim text is the prompt (masked with assistant-only loss). The end-of-
  sequence token must be in the trained part, or the model never learns to stop.
- Problems name the line and how to fix it. The statistics (token lengths, rows cut by max length,
  duplicates, steps per epoch) come from a full pass over the file in the background.

`↑`/`↓` choose a row in the table.
"""

CELL = 38


def cell_text(value) -> str:
    """A short one-line view of a cell (messages as 'role: content | ...')."""
    if isinstance(value, list) and value and all(isinstance(m, dict) for m in value):
        parts = []
        for m in value:
            role = m.get("role") or m.get("from") or "?"
            content = m.get("content") if "content" in m else m.get("value", "")
            parts.append(f"{role}: {content}")
        value = " | ".join(parts)
    text = " ".join(str(value).split())
    return text if len(text) <= CELL else text[: CELL - 1] + "…"


def error_text(exc: BaseException) -> str:
    return "; ".join(str(p) for p in getattr(exc, "problems", [])) or f"{type(exc).__name__}: {exc}"


class WorkerCancelled:
    """A worker's cancellation as the `is_set()` flag core's long loops poll between rows."""

    def __init__(self, worker: Worker):
        self._worker = worker

    def is_set(self) -> bool:
        return self._worker.is_cancelled


@dataclass
class PreviewRead(Message):
    """The first rows of a source; `seq` says which typed value it was read for."""
    seq: int
    preview: Any = None
    error: str = ""


@dataclass
class TokenizerLoaded(Message):
    tokenizer: Any = None   # None: no model chosen (statistics count characters)
    template: str | None = None
    error: str = ""


@dataclass
class RowRendered(Message):
    line: int
    rendered: Any = None    # core.data.preview.Rendered
    error: str = ""


@dataclass
class StatsProgress(Message):
    fraction: float

    def can_replace(self, message: Message) -> bool:  # only the newest fraction matters
        return isinstance(message, StatsProgress)


@dataclass
class StatsScanned(Message):
    report: Any = None      # core.data.stats.Report
    error: str = ""


class DatasetScreen(WizardStep):
    NAME = "dataset"
    HELP = HELP

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="dataset-top"):
            yield Label("Data:", id="dataset-label")
            yield PathInput(self.state.dataset_path, suffixes=SUFFIXES,
                            id="dataset-path", placeholder="path/to/data.jsonl or org/dataset", compact=True)
        yield Static("Type a path to see the first rows.", id="dataset-info")
        yield DataTable(id="preview-table", cursor_type="row", zebra_stripes=True)
        with VerticalScroll(id="rendered-box", classes="box") as box:
            box.border_title = "as the model sees the row"
            yield Static("", id="rendered")
        yield Static("", id="dataset-problems")
        with Horizontal(id="stats-line"):
            yield ProgressBar(total=1.0, show_eta=False, show_percentage=True, id="stats-progress")
            yield Static("", id="stats-text")

    def on_mount(self) -> None:
        self._preview = None
        self._error = ""
        self._tokenizer = None
        self._template = None
        self._tok_error = ""
        self._tok_done = False
        self._preview_seq = 0     # results of a preview for an earlier value are dropped
        self._scan_worker: Worker | None = None
        self.query_one("#stats-progress").display = False
        self.load_tokenizer()
        path = self.query_one("#dataset-path", PathInput)
        path.focus()
        if path.value.strip():
            self._start_preview(path.value.strip())

    def on_state(self, state: WizardState) -> None:
        pass

    # ------------------------------------------------------------------------------ input

    @on(PathInput.Changed, "#dataset-path")
    def _changed(self, event: PathInput.Changed) -> None:
        text = event.value.strip()
        self._cancel_scan()
        if text and looks_local(text) and Path(text).expanduser().is_file():
            self._start_preview(text)
            return
        # Anything else waits for enter: a folder may be a step on the way to a file, a hub id needs
        # the network. Results of a preview started for an earlier value are ignored.
        self._preview_seq += 1
        self._preview = None
        p = Path(text).expanduser()
        self._error = "" if not text else (
            "a folder: press enter to use all the data files in it" if p.is_dir() else
            "no such file or directory" if looks_local(text) else "press enter to read this hub dataset")
        self.query_one("#preview-table", DataTable).clear(columns=True)
        self._show_info()

    @on(PathInput.Submitted, "#dataset-path")
    def _submitted(self, event: PathInput.Submitted) -> None:
        text = event.value.strip()
        if text:
            self._start_preview(text)

    def _start_preview(self, source: str) -> None:
        self._source = source
        self._error = ""
        self.query_one("#dataset-info", Static).update(f"Reading {source}…")
        self._preview_seq += 1
        self.preview(source, self._preview_seq)
        self.validity_changed()

    # ------------------------------------------------------------------------------ workers

    def _report(self, message: Message) -> None:
        """From a worker thread: post `message` unless the worker was cancelled meanwhile."""
        if not get_current_worker().is_cancelled:
            self.post_message(message)

    @work(thread=True, exclusive=True, group="dataset-preview", exit_on_error=False)
    def preview(self, source: str, seq: int) -> None:
        from ftwizard.core.data.preview import quick_preview

        try:
            self._report(PreviewRead(seq, quick_preview(source, n=50)))
        except Exception as exc:  # shown on this screen, beside the path
            self._report(PreviewRead(seq, error=error_text(exc)))

    @work(thread=True, exclusive=True, group="dataset-tokenizer", exit_on_error=False)
    def load_tokenizer(self) -> None:
        from ftwizard.core.data.tokenize import load_tokenizer, setup_tokenizer

        s = self.state
        if not s.model:
            self._report(TokenizerLoaded())
            return
        try:
            tok = load_tokenizer(s.model, s.gguf_file)
            requested = s.base.model.chat_template if s.base else None
            template, _why = setup_tokenizer(tok, requested, self._assistant_only())
        except Exception as exc:
            self._report(TokenizerLoaded(error=error_text(exc)))
            return
        self._report(TokenizerLoaded(tok, template))

    @work(thread=True, exclusive=True, group="dataset-render", exit_on_error=False)
    def render_one(self, row: dict, line: int) -> None:
        from ftwizard.core.data.preview import render_row

        try:
            self._report(RowRendered(line, render_row(
                row, self._tokenizer, self._template, self.state.train_config.max_length,
                self._assistant_only(), detected=self._preview.detected)))
        except Exception as exc:
            self._report(RowRendered(line, error=error_text(exc)))

    @work(thread=True, exclusive=True, group="dataset-stats", exit_on_error=False)
    def scan(self, source: str) -> None:
        from ftwizard.core.data.stats import scan_dataset
        from ftwizard.core.hardware import run_world_size

        s = self.state
        t = s.train_config
        last = [-1.0]

        def progress(fraction: float) -> None:
            if fraction - last[0] >= 0.01:
                last[0] = fraction
                self._report(StatsProgress(fraction))

        try:
            report = scan_dataset(source, self._tokenizer, self._template, t.max_length, self._assistant_only(),
                                  batch_size=t.batch_size, gradient_accumulation_steps=t.gradient_accumulation_steps,
                                  world_size=run_world_size(s.hardware), progress=progress,
                                  cancel=WorkerCancelled(get_current_worker()))
        except Exception as exc:
            self._report(StatsScanned(error=error_text(exc)))
            return
        self._report(StatsScanned(report))

    def _assistant_only(self) -> bool:
        return self.state.base.dataset.assistant_only_loss if self.state.base else True

    def _cancel_scan(self) -> None:
        if self._scan_worker is not None:
            self._scan_worker.cancel()  # the scan stops between rows; its report is not posted
            self._scan_worker = None

    def _start_scan(self) -> None:
        if self._preview is None or not self._tok_done:
            return  # starts once both the preview and the tokenizer are ready
        self._cancel_scan()
        bar = self.query_one("#stats-progress", ProgressBar)
        bar.update(progress=0)
        bar.display = True
        self.query_one("#stats-text", Static).update("scanning the whole file…")
        self._scan_worker = self.scan(self._source)

    # ------------------------------------------------------------------------------ messages

    @on(PreviewRead)
    def _preview_read(self, message: PreviewRead) -> None:
        if message.seq != self._preview_seq:
            return  # a preview of an earlier value
        if message.error:
            self._preview, self._error = None, message.error
            self.query_one("#preview-table", DataTable).clear(columns=True)
        else:
            self._preview = message.preview
            self._fill_table()
            self._start_scan()
        self._show_info()

    @on(TokenizerLoaded)
    def _tokenizer_loaded(self, message: TokenizerLoaded) -> None:
        self._tok_done = True
        self._tokenizer, self._template, self._tok_error = message.tokenizer, message.template, message.error
        self._render_selected()
        self._start_scan()

    @on(RowRendered)
    def _row_rendered(self, message: RowRendered) -> None:
        if message.error:
            self._show_rendered(None, message.error)
        else:
            self._show_rendered(message.line, message.rendered)

    @on(StatsProgress)
    def _progress(self, message: StatsProgress) -> None:
        self.query_one("#stats-progress", ProgressBar).update(progress=message.fraction)

    @on(StatsScanned)
    def _scanned(self, message: StatsScanned) -> None:
        self.query_one("#stats-progress").display = False
        if message.error:
            self.query_one("#stats-text", Static).update(f"statistics failed: {message.error}")
        else:
            self._show_stats(message.report)

    # ------------------------------------------------------------------------------ display

    def _show_info(self) -> None:
        info = self.query_one("#dataset-info", Static)
        p = self._preview
        if p is None:
            info.update(Text(f"✗ {self._error}", style="bold") if self._error else "Type a path to see the first rows.")
            info.set_classes("error-text" if self._error else "")
        else:
            rows = f"{p.total_rows:,} rows" if p.total_rows is not None else f"first {len(p.rows)} rows"
            errors = sum(1 for x in p.problems if x.severity == "error")
            info.update(f"{p.format}{' (' + p.variant + ')' if p.variant else ''} · {p.evidence} · {rows}"
                        + (f" · {len(p.problems)} problem{'s' if len(p.problems) != 1 else ''}" if p.problems else ""))
            info.set_classes("warn-text" if errors else "")
            self._show_problems(p.problems, p.sft_note)
        self.validity_changed()

    def _show_problems(self, problems, note: str | None = None) -> None:
        lines = [f"{'✗' if x.severity == 'error' else '⚠'} {x}" for x in problems[:3]]
        if len(problems) > 3:
            lines.append(f"… and {len(problems) - 3} more (F1: what they mean)")
        if note:
            lines.insert(0, note)
        self.query_one("#dataset-problems", Static).update("\n".join(lines))

    def _fill_table(self) -> None:
        table = self.query_one("#preview-table", DataTable)
        table.clear(columns=True)
        p = self._preview
        table.add_column("line", key="line")
        for c in p.columns:
            table.add_column(c, key=c)
        for line, row in zip(p.lines, p.rows):
            table.add_row(str(line), *(cell_text(row.get(c, "")) for c in p.columns), key=str(line))
        if p.rows:
            table.move_cursor(row=0)
            self._render_selected()

    @on(DataTable.RowHighlighted, "#preview-table")
    def _row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._render_selected()

    def _render_selected(self) -> None:
        p = self._preview
        if p is None or not p.rows:
            return
        i = min(self.query_one("#preview-table", DataTable).cursor_row, len(p.rows) - 1)
        if self._tokenizer is None:
            why = self._tok_error or "loading the tokenizer…"
            self.query_one("#rendered", Static).update(Text(f"(row {p.lines[i]}: {why})", style="dim"))
            return
        self.render_one(p.rows[i], p.lines[i])

    def _show_rendered(self, line, r) -> None:
        box = self.query_one("#rendered-box")
        out = self.query_one("#rendered", Static)
        if line is None:
            out.update(Text(f"Cannot render this row: {r}", style="bold"))
            return
        text = Text()
        for segment, trained in r.segments:
            text.append(segment, style="bold" if trained else "dim")
        if r.cut_text:
            text.append("\n✂ cut by max_length: " + r.cut_text[:200], style="italic dim")
        box.border_title = (f"line {line} as the model sees it · {r.n_tokens} / {r.max_length} tokens · "
                            f"{r.n_trained} trained (bright)")
        box.border_subtitle = ("EOS trained ✓" if r.ends_with_eos else "EOS not trained ✗") + (
            " · truncated" if r.truncated else "")
        if r.note:
            text.append("\n" + r.note, style="italic")
        out.update(text)

    def _show_stats(self, report) -> None:
        st = report.stats
        parts = [f"{st.rows:,} rows", f"{st.unit} min {st.min:,} · median {st.median:,} · max {st.max:,}"]
        if st.truncated_rows:
            parts.append(f"{st.truncated_rows} cut at max length")
        if st.steps_per_epoch:
            parts.append(f"{st.steps_per_epoch:,} steps/epoch")
        if not st.complete:
            parts.append("(stopped early)")
        self.query_one("#stats-text", Static).update(" · ".join(parts))
        if report.problems:
            self._show_problems(report.problems, self._preview.sft_note if self._preview else None)
        if self._preview is not None and self._preview.total_rows is None:
            self._preview.total_rows = st.rows
            self._show_info()

    # ------------------------------------------------------------------------------ validity

    def is_valid(self) -> bool:
        p = getattr(self, "_preview", None)
        return p is not None and bool(p.rows)

    def why_invalid(self) -> str:
        if getattr(self, "_error", ""):
            return self._error
        if getattr(self, "_preview", None) is not None:
            return "no readable rows in this dataset"
        return "choose a dataset that can be read"

    def commit(self) -> None:
        p = self._preview
        self.wizard.set_state(self.state.replace(dataset_path=str(Path(self._source).expanduser()) if looks_local(
            self._source) else self._source, detected_format=p.format))
