"""Step 6, Dataset: a path (with completion) or a hub id; as soon as it reads, a live preview of the first
rows, the detected format with its evidence, the selected row rendered exactly as training will see
it (trained tokens marked), the problems, and whole-file statistics computed in the background.

For the other training kinds the rows are shown as that kind sees them (core/data/kindview.py) and
checked for it (the pre-flight's refusals): dpo/orpo/simpo the prompt with the chosen and rejected
answers side by side, their trained tokens bright; kto the label balance; grpo the prompt as rendered
and the columns a reward sees; cpt the first packed block. Data of the wrong shape blocks Next.

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
from ftwizard.core.monitor import KIND_TITLES

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

For the other training kinds (chosen at the end of the questionnaire) the row is shown as that kind
trains on it, and the data is checked for it:
- DPO, ORPO, SimPO: the prompt (dim), then the chosen and the rejected answer side by side, bright
  where trained, with what max_length cuts off. Rows with chosen == rejected, an empty side, or both
  sides cut are listed.
- KTO: the label balance over every row (both labels are needed; the KTO paper's advice on weights
  for an unbalanced set), each answer with its label.
- GRPO: the prompt exactly as the model gets it before generating, the other columns (what the reward
  functions read), and prompts longer than max_length minus the completion length (left out).
- CPT: the first packed block of max_length tokens, every token trained, ‖ where documents join.
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
class KindViewed(Message):
    """The rows as the training kind sees them (kindview.KindView, GrpoView or BlockView), or why the data
    cannot train as that kind."""
    seq: int
    view: Any = None
    error: str = ""


@dataclass
class GrpoRow:
    line: int | None
    prompt: str                   # as the model gets it before generating
    tokens: int | None
    columns: dict                 # what the reward functions receive besides prompts and completions


@dataclass
class GrpoView:
    rows: int
    preview: list[GrpoRow]
    budget: int                   # train.max_length - grpo.max_completion_length
    over_budget: int              # prompts longer than the budget (left out of training)
    checked: int                  # prompts whose tokens were counted


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
            with Horizontal(id="pair-sides"):
                yield Static("", id="side-a", classes="side")
                yield Static("", id="side-b", classes="side")
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
        self._kind = self.state.training
        self._kind_view = None
        self._kind_error = ""
        self.query_one("#stats-progress").display = False
        self.query_one("#pair-sides").display = False
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
        self._kind_view, self._kind_error = None, ""  # the kind's view of the earlier source no longer holds
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
            if self._kind == "grpo":  # prompt rows: no chat format to detect (the GRPO view checks them)
                self._report(PreviewRead(seq, self._prompt_rows_preview(source)))
                return
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
            template = None
            if s.training != "cpt":  # CPT trains raw text: the tokenizer's own EOS, no chat template
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
                                  world_size=run_world_size(s.hardware, s.distributed), progress=progress,
                                  cancel=WorkerCancelled(get_current_worker()))
        except Exception as exc:
            self._report(StatsScanned(error=error_text(exc)))
            return
        self._report(StatsScanned(report))

    @work(thread=True, exclusive=True, group="dataset-kind", exit_on_error=False)
    def kind_view(self, source: str, det, seq: int) -> None:
        """The rows as the training kind sees them, and its refusals (core.data.kindview, core's readers)."""
        try:
            self._report(KindViewed(seq, self._kind_view_of(source, det)))
        except Exception as exc:  # UserError: the data cannot train as this kind; shown, Next blocked
            self._report(KindViewed(seq, error=error_text(exc)))

    def _kind_view_of(self, source: str, det):
        from ftwizard.core.data import kindview

        s, tok, kind = self.state, self._tokenizer, self._kind
        t = s.train_config
        if kind == "cpt":
            if tok is None:
                from ftwizard.core.data.corpus import text_format_problem

                err = text_format_problem(det, source)
                if err is not None:
                    raise err
                return None
            return kindview.cpt_block(source, det, tok, t.max_length, split=self._split())
        if kind == "grpo":
            return self._grpo_view(source, tok)
        section = s.kind_section("kto") if kind == "kto" else None
        weights = (section.desirable_weight, section.undesirable_weight) if section else (1.0, 1.0)
        return kindview.pair_view(source, det, kind, tok, t.max_length, split=self._split(),
                                  max_rows=s.base.dataset.max_rows if s.base else None, kto_weights=weights)

    def _prompt_rows_preview(self, source: str, n: int = 50):
        """The first rows of a GRPO dataset as they are in the file (read.iter_rows, with their lines): GRPO
        reads a prompt column and hands every other column to the rewards, whatever else the rows look like."""
        from ftwizard.core.data.preview import Preview
        from ftwizard.core.data.read import iter_rows
        from ftwizard.core.errors import UserError

        rows, lines, columns = [], [], []
        for r in iter_rows(source, split=self._split(), limit=n):
            if r.error:
                raise UserError(r.error, file=r.file, line=r.line, field=r.field)
            rows.append(r.row)
            lines.append(r.line)
            columns += [k for k in r.row if k not in columns]
        return Preview(source, "prompt rows", "GRPO reads 'prompt'; the other columns go to the rewards", columns, {},
                       rows, lines, [])

    def _grpo_view(self, source: str, tok) -> GrpoView:
        """GRPO's prompt rows (the recipe's own reader), each prompt as rendered, and the prompts over budget."""
        from ftwizard.core.config import DatasetConfig, RunConfig
        from ftwizard.core.data.kindview import TOKEN_CHECK_ROWS, prompt_text
        from ftwizard.core.recipes.grpo import prompt_budget, prompt_tokens, read_prompt_rows

        s = self.state
        dataset = s.base.dataset.model_copy(update={"path": source}) if s.base else DatasetConfig(path=source)
        rows = read_prompt_rows(RunConfig(dataset=dataset))
        budget = prompt_budget(s.train_config.max_length, s.kind_section("grpo").max_completion_length)
        lines = self._preview.lines if self._preview is not None else []
        preview, over, checked = [], 0, 0
        for i, row in enumerate(rows[:TOKEN_CHECK_ROWS]):
            n = prompt_tokens(tok, row["prompt"]) if tok is not None else None
            if n is not None:
                checked += 1
                over += n > budget
            if i < 50:
                preview.append(GrpoRow(lines[i] if i < len(lines) else None, prompt_text(tok, row["prompt"]), n,
                                       {k: v for k, v in row.items() if k != "prompt"}))
        return GrpoView(len(rows), preview, budget, over, checked)

    def _split(self) -> str:
        return self.state.base.dataset.split if self.state.base else "train"

    def _assistant_only(self) -> bool:
        return self.state.base.dataset.assistant_only_loss if self.state.base else True

    def _cancel_scan(self) -> None:
        if self._scan_worker is not None:
            self._scan_worker.cancel()  # the scan stops between rows; its report is not posted
            self._scan_worker = None

    def _start_scan(self) -> None:
        if self._preview is None or not self._tok_done:
            return  # starts once both the preview and the tokenizer are ready
        if self._kind != "sft":  # the kind's own view and checks instead of SFT's statistics
            self._kind_view, self._kind_error = None, ""
            self.query_one("#stats-text", Static).update(f"reading the rows as {KIND_TITLES[self._kind]} does…")
            self.kind_view(self._source, self._preview.detected, self._preview_seq)
            self.validity_changed()
            return
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

    @on(KindViewed)
    def _kind_viewed(self, message: KindViewed) -> None:
        if message.seq != self._preview_seq:
            return
        self._kind_view, self._kind_error = message.view, message.error
        self._show_kind_summary()
        self._render_selected()
        self.validity_changed()

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
            as_kind = f" · as {KIND_TITLES[self._kind]}" if self._kind != "sft" else ""
            info.update(f"{p.format}{' (' + p.variant + ')' if p.variant else ''}{as_kind} · {p.evidence} · {rows}"
                        + (f" · {len(p.problems)} problem{'s' if len(p.problems) != 1 else ''}" if p.problems else ""))
            info.set_classes("warn-text" if errors else "")
            self._show_problems(p.problems, p.sft_note if self._kind == "sft" else None)
            if self._kind != "sft" and (self._kind_view is not None or self._kind_error):
                self._show_kind_summary()
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
        if self._kind != "sft":
            self._show_kind_row(p.lines[i])
            return
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

    # ------------------------------------------------------------------------------ the kind's view

    def _show_kind_summary(self) -> None:
        """The kind's row count, label balance and problems (or why it cannot train on this data)."""
        name = KIND_TITLES[self._kind]
        problems = self.query_one("#dataset-problems", Static)
        stats = self.query_one("#stats-text", Static)
        v = self._kind_view
        if self._kind_error:
            problems.update(Text(f"✗ {self._kind_error}"))
            stats.update(f"cannot train as {name}")
            return
        if v is None:  # cpt without a model: the format is right, the block needs the tokenizer
            stats.update(f"raw text: trains as {name} (choose a model to see a block)")
            return
        lines = [f"{'✗' if x.severity == 'error' else '⚠'} {x.message}" + (f" - fix: {x.fix}" if x.fix else "")
                 for x in getattr(v, "problems", [])]  # kinds.kind_report's Problems; the file is the step's own
        if self._kind == "grpo":
            if v.over_budget:
                lines.append(f"⚠ {v.over_budget} of {v.checked} prompts are longer than the prompt budget "
                             f"({v.budget} tokens = max length - max completion length): left out of training")
            stats.update(f"{v.rows:,} prompts · budget {v.budget} tokens · {len(lines)} problems")
        elif self._kind == "cpt":
            stats.update(f"blocks of {v.n_tokens} tokens · the first joins {v.documents_joined + 1} documents · "
                         "partial last block dropped")
        else:
            unit = "pairs" if self._kind != "kto" else "rows"
            text = f"{v.rows:,} {unit} as {name}"
            if v.labels is not None:
                total = max(1, v.labels["desirable"] + v.labels["undesirable"])
                text += (f" · labels: {v.labels['desirable']} desirable ({v.labels['desirable'] / total:.0%}) · "
                         f"{v.labels['undesirable']} undesirable ({v.labels['undesirable'] / total:.0%})")
            stats.update(text + f" · {len(lines)} problem{'s' if len(lines) != 1 else ''}")
        problems.update(Text("\n".join(lines[:3]) + (f"\n… and {len(lines) - 3} more" if len(lines) > 3 else "")))

    def _show_kind_row(self, line: int) -> None:
        """The table's highlighted row as the kind sees it."""
        box = self.query_one("#rendered-box")
        out = self.query_one("#rendered", Static)
        sides = self.query_one("#pair-sides")
        name = KIND_TITLES[self._kind]
        v = self._kind_view
        sides.display = False
        box.border_subtitle = ""
        if self._kind_error:
            box.border_title = f"line {line} cannot train as {name}"
            out.update(Text(self._kind_error, style="bold"))
            return
        if v is None:
            box.border_title = f"as {name} sees it"
            out.update(Text("reading…" if not self._tok_done or self._kind != "cpt" else
                            "choose a model (the Model step) to see a packed block", style="dim"))
            return
        if self._kind == "cpt":
            box.border_title = f"the first CPT block · {v.n_tokens} tokens, all trained · ‖ documents join"
            text = Text()
            for i, piece in enumerate(v.pieces):
                if i:
                    text.append(" ‖ ", style="reverse")
                text.append(piece, style="bold")
            out.update(text)
            return
        if self._kind == "grpo":
            row = next((r for r in v.preview if r.line == line), None)
            if row is None:
                out.update(Text(f"(line {line} is beyond the rows shown)", style="dim"))
                return
            tokens = f" · {row.tokens} / {v.budget} prompt tokens" if row.tokens is not None else ""
            box.border_title = f"line {line} as GRPO sees it{tokens}"
            box.border_subtitle = "the model writes the answer; the rewards score it"
            text = Text(row.prompt.rstrip("\n"), style="dim")
            text.append("\ncolumns a reward sees: ", style="bold")
            text.append(", ".join(f"{k}={cell_text(val)}" for k, val in row.columns.items()) or "none (prompt only)")
            out.update(text)
            return
        rows = [r for r in v.preview if r.line == line]
        if not rows:
            out.update(Text(f"(line {line} is beyond the rows shown)", style="dim"))
            return
        first = rows[0]
        tokens = f" · prompt {first.prompt_tokens} tokens" if first.prompt_tokens is not None else ""
        box.border_title = f"line {line} as {name} sees it{tokens} · bright: trained"
        out.update(Text(first.prompt.rstrip("\n"), style="dim"))
        # pairs: chosen | rejected; KTO: one row's completion, or both halves of a pair split into labels
        if self._kind == "kto":
            panes = [(("desirable" if r.label else "undesirable"), r.sides["completion"]) for r in rows]
        else:
            panes = [(k, first.sides[k]) for k in ("chosen", "rejected")]
        for i, widget in enumerate((self.query_one("#side-a", Static), self.query_one("#side-b", Static))):
            if i >= len(panes):
                widget.display = False
                continue
            title, side = panes[i]
            widget.display = True
            widget.border_title = title + (f" · {side.n_tokens} tokens" if side.n_tokens is not None else "")
            text = Text()
            for segment, trained in side.segments:
                text.append(segment, style="bold" if trained else "dim")
            text.rstrip()  # the template's newline after the end of turn: trained, but an empty line here
            if side.cut:
                text.append("\n✂ cut by max_length: " + side.cut_text[:120], style="italic dim")
            if side.empty:
                text.append("(empty)", style="italic")
            widget.update(text)
        sides.display = True

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
        if p is None or not p.rows:
            return False
        if self._kind != "sft":  # checked for the kind it trains
            return not self._kind_error and (self._kind_view is not None or (self._kind == "cpt" and self._tok_done))
        return True

    def why_invalid(self) -> str:
        if getattr(self, "_error", ""):
            return self._error
        if getattr(self, "_kind_error", ""):
            return f"not {KIND_TITLES[self._kind]} data: see the problem below"
        if getattr(self, "_preview", None) is not None and getattr(self, "_preview").rows and self._kind != "sft":
            return f"reading the rows as {KIND_TITLES[self._kind]} does…"
        if getattr(self, "_preview", None) is not None:
            return "no readable rows in this dataset"
        return "choose a dataset that can be read"

    def commit(self) -> None:
        p = self._preview
        self.wizard.set_state(self.state.replace(dataset_path=str(Path(self._source).expanduser()) if looks_local(
            self._source) else self._source, detected_format=p.format))
