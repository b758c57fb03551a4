"""Compare runs: pick runs in the list (space), see their loss curves overlaid (training loss as lines,
validation loss as marks, one colour per run) and the config keys whose values differ, the table
`ftwizard compare` prints (`core.compare`). Opened from the runs screen with the marked runs, or from a
finished run with that run selected: pick the others here."""

from __future__ import annotations

from pathlib import Path

from rich.markup import escape
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import SelectionList, Static
from textual.worker import Worker, WorkerState

from ftwizard.tui import AFTER_CSS
from ftwizard.tui.widgets.footer import Footer
from ftwizard.tui.widgets.overlay_chart import MARKS, OverlayChart
from ftwizard.tui.screens.page import PageScreen

HELP = """
**Compare runs** overlays the loss curves of the runs ticked on the left (space ticks or unticks one):
training loss as a line, validation loss as marks, one colour per run (the first four ticked). Below,
each run's first, last and best losses, and every config key whose value differs between them.
"""


def screen_table(res: dict) -> list[str]:
    """`ftwizard compare`'s table for 80 columns: the config differences first (what sets the runs apart),
    then the losses; the "run N: id" lines left out (the legend above the chart names the runs)."""
    import re

    from ftwizard.core.compare import table_lines

    lines = [line for line in table_lines(res, width=14) if not re.match(r"run \d+: ", line)]
    blank = lines.index("")
    return [lines[0]] + lines[blank + 1:] + [""] + lines[1:blank]


class CompareRunsScreen(PageScreen):
    CSS_PATH = AFTER_CSS
    STEP_NAME = "Compare runs"
    HELP = HELP
    BINDINGS = [
        Binding("escape", "back", "Back", key_display="esc", id="compare-runs.back", tooltip="back"),
    ]

    def __init__(self, selected: list[str | Path], runs_dir: str | Path | None = None):
        super().__init__()
        self.initial = [str(Path(p).resolve()) for p in selected]
        self.runs_dir = runs_dir
        self.paths: list[str] = []  # every run listed
        self.chosen: list[str] = []  # ticked, in the order they were ticked
        self.result: dict | None = None

    def compose(self) -> ComposeResult:
        yield Static("compare runs", id="cruns-title", classes="after-title")
        yield Static("", id="cruns-legend", classes="after-line")
        with Horizontal(id="cruns-top"):
            yield SelectionList[str](id="cruns-pick")
            yield OverlayChart(id="cruns-chart")
        with VerticalScroll(id="cruns-diff"):
            yield Static("", id="cruns-table")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#cruns-pick").border_title = "runs (space)"
        self.list_runs()

    @work(thread=True, exclusive=True, group="cruns-list", exit_on_error=False)
    def list_runs(self) -> list:
        from ftwizard.core.runs import list_runs

        runs = list(reversed(list_runs(self.runs_dir)))
        known = {str(Path(i.path).resolve()) for i in runs}
        extra = [p for p in self.initial if p not in known]  # a run outside the registry: still listed
        return [(p, Path(p).name, "") for p in extra] + [(str(Path(i.path).resolve()), i.id, i.state) for i in runs]

    @work(thread=True, exclusive=True, group="cruns-compare", exit_on_error=False)
    def compare(self, paths: list[str]) -> tuple[list, dict | None]:
        from ftwizard.core.compare import compare, load_curves

        curves = [load_curves(p) for p in paths]
        return curves, (compare(paths) if len(paths) >= 2 else None)

    @on(SelectionList.SelectedChanged)
    def _picked(self, event: SelectionList.SelectedChanged) -> None:
        now = list(event.selection_list.selected)
        self.chosen = [p for p in self.chosen if p in now] + [p for p in now if p not in self.chosen]
        self.compare(list(self.chosen))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        w = event.worker
        if event.state == WorkerState.ERROR:
            event.stop()
            self.notify(f"{type(w.error).__name__}: {w.error}", title="Compare runs", severity="error")
            return
        if event.state != WorkerState.SUCCESS:
            return
        if w.group == "cruns-list":
            pick = self.query_one("#cruns-pick", SelectionList)
            for path, name, state in w.result:
                pick.add_option((f"{name} {state}".strip(), path, path in self.initial))
            self.paths = [p for p, _, _ in w.result]
            self.chosen = [p for p in self.initial if p in self.paths]
            pick.focus()
            self.compare(list(self.chosen))
        elif w.group == "cruns-compare":
            curves, res = w.result
            self.result = res
            self.query_one(OverlayChart).set_runs([(tuple(zip(*c.train)) or ((), ()), tuple(zip(*c.eval)) or ((), ()))
                                                   for c in curves[:4]])
            legend = "  ".join(f"{MARKS[i % 4]} {i + 1} {c.run_id}" for i, c in enumerate(curves[:4]))
            self.query_one("#cruns-legend", Static).update(escape(legend) or "tick two runs or more")
            if res is None:
                self.query_one("#cruns-table", Static).update("tick another run to compare (space)")
            else:
                self.query_one("#cruns-table", Static).update(escape("\n".join(screen_table(res))))

