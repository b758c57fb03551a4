"""Compare runs: their training and validation loss (first, last, best and where) side by side, and every
config key whose value differs. Works on finished, stopped and running runs alike."""

from __future__ import annotations

import argparse
import json

from . import RUNS_DIR_HELP


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", metavar="RUN", nargs="+", help="two runs or more: ids, unique prefixes or directories")
    p.add_argument("--runs-dir", help=RUNS_DIR_HELP)
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run(args) -> int:
    from ..compare import compare, table_lines
    from ..runs import resolve_run

    res = compare([resolve_run(r, args.runs_dir) for r in args.runs])
    if args.json:
        print(json.dumps(res, default=str))
    else:
        print("\n".join(table_lines(res)))
    return 0
