"""List runs: state, model, method, progress, last loss, age. Every run of this user, wherever it was made
(the default runs root and the registry, see core/runs.py); --runs-dir lists one root only."""

from __future__ import annotations

import argparse
import json
import sys

from . import RUNS_DIR_HELP


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs-dir", help=RUNS_DIR_HELP)
    p.add_argument("--json", action="store_true", help="one JSON list of run objects")


def run(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from ..runs import age, disk_usage, fmt_bytes, list_runs, missing_note

    missing: list = []
    infos = list_runs(args.runs_dir, missing=missing)
    if missing:
        print(missing_note(missing), file=sys.stderr)
    if args.json:
        print(json.dumps([i.to_json() for i in infos], indent=1))
        return 0
    if not infos:
        print("no runs yet (ftwizard train CONFIG starts one)")
        return 0
    table = Table(box=None, header_style="bold")
    for col in ("run", "state", "model", "method", "step", "loss", "age", "disk"):
        table.add_column(col, no_wrap=col != "model", overflow="ellipsis" if col == "model" else "fold")
    for i in infos:
        step = f"{i.step}/{i.max_steps}" if i.max_steps else str(i.step)
        loss = f"{i.last_loss:.4f}" if i.last_loss is not None else "-"
        table.add_row(i.id, i.state, str(i.model or "?").rstrip("/").rsplit("/", 1)[-1], str(i.method or "?"), step, loss, age(i),
                      fmt_bytes(disk_usage(i.path)))
    Console(width=None if sys.stdout.isatty() else 200).print(table)  # piped: never cut ids
    return 0
