"""Follow a run in the terminal with a rich progress display until it ends (Ctrl-C detaches)."""

from __future__ import annotations

import time
from pathlib import Path

from .events import EVENTS, EvalEvent, EventTail, PhaseEvent, RunFold, WarningEvent, as_number, parse_event
from .runs import TERMINAL_STATES, run_info

STATE_STYLES = {"completed": "green", "failed": "red", "stopped": "yellow"}


def follow(run_dir: Path, poll_s: float = 0.5) -> int:
    """Events are folded into one `RunFold` (events.py), the bar drawn from it; phase details,
    validation losses and warnings are printed as they come; the end is `run_info`'s, on the same fold."""
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)
    from rich.markup import escape

    console = Console(emoji=False)  # run data (paths, warnings naming file:line) is never an :emoji:
    run_dir = Path(run_dir)
    tail = EventTail(run_dir / EVENTS)
    fold = RunFold()
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[stats]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                        console=console, transient=False)
    task = progress.add_task("starting", total=None, stats="")

    def read() -> None:
        for ev in map(parse_event, tail.read_new()):
            fold.apply([ev])
            if isinstance(ev, PhaseEvent) and ev.detail:
                progress.console.print(f"[dim]{ev.phase}: {escape(str(ev.detail))}[/]")
            elif isinstance(ev, EvalEvent) and as_number(ev.eval_loss) is not None:
                progress.console.print(f"step {ev.step}: validation loss {as_number(ev.eval_loss):.4f}")
            elif isinstance(ev, WarningEvent):
                progress.console.print(f"[yellow]warning:[/] {escape(str(ev.message))}")
        stats = "" if fold.loss is None else f"loss {fold.loss:.4f}  {fold.tokens_per_s or 0:,.0f} tok/s"
        progress.update(task, description=str(fold.phase or "starting").replace("_", " "),
                        total=fold.max_steps or None, completed=fold.step, stats=stats)

    try:
        with progress:
            while True:
                read()
                info = run_info(run_dir, fold=fold)
                if info.state in TERMINAL_STATES:
                    read()
                    break
                time.sleep(poll_s)
    except KeyboardInterrupt:
        console.print(f"\ndetached; the run goes on. Follow it again: ftwizard attach {run_dir.name}")
        return 0
    info = run_info(run_dir, fold=fold)
    console.print(f"[{STATE_STYLES[info.state]}]{info.state}[/]" + (f": {escape(info.reason)}" if info.reason else ""))
    if info.diagnosis and info.diagnosis.get("fixes"):
        for fix in info.diagnosis["fixes"]:
            console.print(f"  - {escape(fix)}")
    if info.output:
        console.print(f"output: {escape(info.output)}")
    if info.state == "failed":
        console.print(f"log: {run_dir / 'train.log'}")
    return 0 if info.state == "completed" else 1


def detach_or_follow(run_dir: Path, pid: int, verb: str, detach: bool) -> int:
    """After `train`/`resume` started the process: print the run dir and return (--detach), or follow."""
    if detach:
        print(run_dir)
        return 0
    print(f"run {run_dir.name} {verb} (pid {pid}); Ctrl-C detaches, training goes on")
    return follow(run_dir)
