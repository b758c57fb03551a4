"""The runs screen: every run under the runs root with its state, model, method, progress, last loss
and disk usage; enter opens one in the monitor, x deletes one (after a typed-y confirmation; a
running run must be stopped first), r refreshes.

The list comes from `core.runs.list_runs` and the sizes from walking each run directory, both in
thread workers: the screen shows at once and fills in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Static
from textual.worker import Worker, WorkerState

from ftwizard.core.runs import LIVE_STATES, disk_usage
from ftwizard.core.runs import fmt_bytes as core_fmt_bytes
from ftwizard.tui import MONITOR_CSS
from ftwizard.tui.screens.finished import AFTER_BINDINGS, after_screen, has_model
from ftwizard.tui.widgets.footer import Footer
from ftwizard.tui.screens.page import PageScreen

HELP = """
**Runs** lists every training run of yours, wherever it was made (the default runs directory,
`$FTWIZARD_RUNS_DIR` or the user data dir, and every run made with a config's `runs_dir`).
A run's state is derived from its process and its files: a run whose process vanished is shown as
failed, with the reason.

For a run with a trained model: **c** chat, **b** base vs tuned, **v** evaluate, **e** export, **p** push.
**space** marks runs and **m** compares the marked ones (or the selected one with others you pick):
their loss curves overlaid and their config differences.
"""

# What matters most first: at 80 columns run, state, step, loss and disk fit; model and method follow
# (and the selected run's model and method are on the status line).
COLUMNS = ("run", "state", "step", "last loss", "disk", "model", "method")


def fmt_bytes(n: int | None) -> str:
    return core_fmt_bytes(n, unknown="…")  # "…" while the size is still being measured


def short_model(name: str | None) -> str:
    if not name:
        return "?"
    return Path(str(name)).name or str(name)


class RunsScreen(PageScreen):
    CSS_PATH = MONITOR_CSS
    STEP_NAME = "Runs"
    HELP = HELP
    BINDINGS = [
        Binding("enter", "open", "Open", show=True, id="runs.open",
                tooltip="open the run in the monitor (running or finished: the whole history is there)"),
        Binding("x", "delete", "Delete", id="runs.delete",
                tooltip="delete the run and all its files (asks first; stop a running run first)"),
        Binding("r", "refresh", "Refresh", id="runs.refresh", tooltip="read the runs again"),
        Binding("escape", "back", "Back", key_display="esc", id="runs.back", tooltip="back to where you came from"),
        Binding("question_mark", "help", "Help", key_display="?", id="runs.help",
                tooltip="help for this list: what it shows and its keys"),
        Binding("space", "mark", "Mark", id="runs.mark", tooltip="mark the run for m (compare runs)"),
        *AFTER_BINDINGS,
    ]

    def __init__(self, runs_dir: str | Path | None = None, nvml_source: Any = None):
        super().__init__()
        self.runs_dir = runs_dir
        self.nvml_source = nvml_source
        self.runs: list = []  # core.runs.RunInfo, in table order
        self.sizes: dict[str, int] = {}
        self.loaded = False
        self.marked: list[str] = []  # run paths marked with space, for m

    def compose(self) -> ComposeResult:
        yield Static("runs", id="runs-title")
        yield DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
        yield Static("No runs yet. Start one from the wizard, or `ftwizard train CONFIG`.", id="runs-empty")
        yield Static("", id="runs-status")
        yield Static("", id="runs-keys")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for col in COLUMNS:
            table.add_column(col, key=col, width=9 if col == "disk" else None)
        table.focus()
        self.load()

    def on_screen_resume(self) -> None:
        if self.loaded:
            self.load()

    # ------------------------------------------------------------------------------ loading

    @work(thread=True, exclusive=True, group="runs-list", exit_on_error=False)
    def load(self) -> list:
        from ftwizard.core.runs import list_runs

        missing: list = []
        runs = list(reversed(list_runs(self.runs_dir, missing=missing)))  # newest first
        if missing:
            from ftwizard.core.runs import missing_note

            self.app.call_from_thread(self.notify, missing_note(missing), title="Runs", severity="warning")
        return runs

    @work(thread=True, exclusive=True, group="runs-sizes", exit_on_error=False)
    def measure(self, paths: list[str]) -> dict[str, int]:
        return {p: disk_usage(p) for p in paths}

    @on(Worker.StateChanged)
    def _worker_done(self, event: Worker.StateChanged) -> None:
        w = event.worker
        if event.state == WorkerState.ERROR:
            event.stop()
            self.notify(f"{type(w.error).__name__}: {w.error}", title="Runs", severity="error")
            return
        if event.state != WorkerState.SUCCESS:
            return
        if w.group == "runs-list":
            self.runs = w.result
            self._fill()
            self.loaded = True
            self.measure([i.path for i in self.runs])
        elif w.group == "runs-sizes":
            self.sizes.update(w.result)
            table = self.query_one(DataTable)
            for info in self.runs:
                if info.path in w.result and info.id in table.rows:
                    table.update_cell(info.id, "disk", fmt_bytes(w.result[info.path]))
            self._status()

    def _fill(self) -> None:
        table = self.query_one(DataTable)
        cursor = table.cursor_row
        table.clear()
        for i in self.runs:
            step = f"{i.step:,}/{i.max_steps:,}" if i.max_steps else (f"{i.step:,}" if i.step else "-")
            loss = f"{i.last_loss:.4f}" if isinstance(i.last_loss, (int, float)) else "-"
            table.add_row(("✓ " if i.path in self.marked else "") + i.id, i.state, step, loss, fmt_bytes(self.sizes.get(i.path)),
                          short_model(i.model), i.method or "?", key=i.id)
        if self.runs:
            table.move_cursor(row=min(max(cursor, 0), len(self.runs) - 1))
        self.set_class(not self.runs, "-empty")
        counts: dict[str, int] = {}
        for i in self.runs:
            counts[i.state] = counts.get(i.state, 0) + 1
        summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        self.query_one("#runs-title", Static).update(f"runs · {len(self.runs)}" + (f" ({summary})" if summary else ""))
        self._status()

    def _status(self) -> None:
        from ftwizard.core.runs import runs_root

        total = sum(self.sizes.values())
        text = f"{runs_root(self.runs_dir)}"
        if self.sizes:
            text += f" · {fmt_bytes(total)} in all"
        info = self.selected()
        if info is not None:
            text += f" · {short_model(info.model)} · {info.method or '?'}"
        self.query_one("#runs-status", Static).update(text)
        self.query_one("#runs-keys", Static).update(self._keys_text(info))

    def _keys_text(self, info) -> str:
        """The after-training keys (not in the footer: 80 columns cannot hold them) for the selected run."""
        marked = f" ({len(self.marked)} marked)" if self.marked else ""
        tail = f"[b]space[/b] mark  [b]m[/b] compare runs{marked}"
        if info is None:
            return ""
        if not has_model(info.state, info.output):
            return f"no trained model in this run · {tail}"
        return "[b]c[/b] chat  [b]b[/b] vs base  [b]v[/b] evaluate  [b]e[/b] export  [b]p[/b] push  " + tail

    # ------------------------------------------------------------------------------ actions

    def selected(self):
        table = self.query_one(DataTable)
        if not self.runs or table.cursor_row is None or table.cursor_row >= len(self.runs):
            return None
        return self.runs[table.cursor_row]

    @on(DataTable.RowHighlighted)
    def _row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._status()

    @on(DataTable.RowSelected)
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_open()

    def action_open(self) -> None:
        info = self.selected()
        if info is None:
            return
        from ftwizard.tui.screens.monitor import MonitorScreen

        source = self.nvml_source if self.nvml_source is not None else getattr(self.app, "nvml_source", None)
        self.app.push_screen(MonitorScreen(Path(info.path), nvml_source=source))

    def action_refresh(self) -> None:
        self.load()

    def action_delete(self) -> None:
        info = self.selected()
        if info is None:
            return
        if info.state in LIVE_STATES:
            self.notify(f"{info.id} is {info.state}: stop it first (open it, then s).", title="Delete",
                        severity="warning")
            return
        from ftwizard.tui.dialogs.confirm import ConfirmDialog

        size = fmt_bytes(self.sizes.get(info.path)) if info.path in self.sizes else "size unknown"

        def answer(yes: bool | None) -> None:
            if yes:
                self.delete_run(info.path)

        self.app.push_screen(ConfirmDialog(
            "Delete run", f"Delete run {info.id} ({info.state}, {size})?", yes_label="delete it",
            detail=f"Removes {info.path} with its checkpoints, adapter/model and logs. "
                   "This cannot be undone."), answer)

    @work(thread=True, group="runs-delete", exit_on_error=False)
    def delete_run(self, path: str) -> str:
        from ftwizard.core.runs import delete_run

        p = Path(path)
        delete_run(p)  # refuses anything but a run directory, and a run that started meanwhile
        self.sizes.pop(path, None)
        self.app.call_from_thread(self.notify, f"Deleted {p.name}.", title="Delete")
        self.app.call_from_thread(self.load)
        return path

    def action_mark(self) -> None:
        info = self.selected()
        if info is None:
            return
        if info.path in self.marked:
            self.marked.remove(info.path)
        else:
            self.marked.append(info.path)
        table = self.query_one(DataTable)
        table.update_cell(info.id, "run", ("✓ " if info.path in self.marked else "") + info.id)
        self._status()

    def action_after(self, what: str) -> None:
        info = self.selected()
        if what == "compare_runs":
            paths = self.marked or ([info.path] if info is not None else [])
            from ftwizard.tui.screens.compare_runs import CompareRunsScreen

            self.app.push_screen(CompareRunsScreen(paths, runs_dir=self.runs_dir))
            return
        if info is None:
            return
        if not has_model(info.state, info.output):
            self.notify(f"{info.id} is {info.state} and has no trained model to use", title="Runs",
                        severity="warning")
            return
        self.app.push_screen(after_screen(what, Path(info.path), self.runs_dir))

