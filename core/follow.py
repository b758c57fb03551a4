"""Follow a run in the terminal with a rich progress display until it ends (Ctrl-C detaches)."""

from __future__ import annotations

import time
from pathlib import Path

from .events import EventTail
from .runs import run_info


def follow(run_dir: Path, poll_s: float = 0.5) -> int:
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    from rich.markup import escape

    console = Console(emoji=False)  # run data (paths, warnings naming file:line) is never an :emoji:
    tail = EventTail(Path(run_dir) / "events.jsonl")
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[stats]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                        console=console, transient=False)
    task = progress.add_task("starting", total=None, stats="")
    try:
        with progress:
            while True:
                for ev in tail.read_new():
                    kind = ev.get("type")
                    if kind == "phase":
                        # only the training phase knows the step count: later phases (saving) keep N/N
                        steps = {"total": ev["max_steps"], "completed": ev.get("start_step") or 0} \
                            if ev.get("max_steps") else {}
                        progress.update(task, description=ev["phase"].replace("_", " "), **steps)
                        if ev.get("detail"):
                            progress.console.print(f"[dim]{ev['phase']}: {escape(str(ev['detail']))}[/]")
                    elif kind == "train":
                        stats = f"loss {ev['loss']:.4f}  {ev.get('tokens_per_s') or 0:,.0f} tok/s"
                        progress.update(task, completed=ev["step"], total=ev.get("max_steps"), stats=stats)
                    elif kind == "eval":
                        progress.console.print(f"step {ev['step']}: validation loss {ev['eval_loss']:.4f}")
                    elif kind == "warning":
                        progress.console.print(f"[yellow]warning:[/] {escape(str(ev.get('message')))}")
                info = run_info(run_dir)
                if info.state in ("completed", "failed", "stopped"):
                    for ev in tail.read_new():
                        if ev.get("type") == "train":
                            progress.update(task, completed=ev["step"])
                    break
                time.sleep(poll_s)
    except KeyboardInterrupt:
        console.print(f"\ndetached; the run goes on. Follow it again: ftwizard attach {Path(run_dir).name}")
        return 0
    style = {"completed": "green", "failed": "red", "stopped": "yellow"}[info.state]
    console.print(f"[{style}]{info.state}[/]" + (f": {escape(info.reason)}" if info.reason else ""))
    if info.diagnosis and info.diagnosis.get("fixes"):
        for fix in info.diagnosis["fixes"]:
            console.print(f"  - {fix}")
    if info.output:
        console.print(f"output: {info.output}")
    if info.state == "failed":
        console.print(f"log: {Path(run_dir) / 'train.log'}")
    return 0 if info.state == "completed" else 1


def detach_or_follow(run_dir: Path, pid: int, verb: str, detach: bool) -> int:
    """After `train`/`resume` started the process: print the run dir and return (--detach), or follow."""
    if detach:
        print(run_dir)
        return 0
    print(f"run {run_dir.name} {verb} (pid {pid}); Ctrl-C detaches, training goes on")
    return follow(run_dir)
