"""Continue a stopped or failed run from its last checkpoint, in the same run directory.

Optimizer, scheduler, RNG and data position come back from the checkpoint; events continue in the
same events.jsonl with the same step numbers.
"""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", metavar="RUN", help="run id (or unique prefix) or run directory")
    p.add_argument("--runs-dir", help="runs root")
    p.add_argument("--detach", action="store_true", help="return at once")


def run(args) -> int:
    from ..follow import follow
    from ..launch import resume
    from ..runs import resolve_run

    run_dir = resolve_run(args.run, args.runs_dir)
    pid = resume(run_dir)
    if args.detach:
        print(run_dir)
        return 0
    print(f"run {run_dir.name} resumed (pid {pid}); Ctrl-C detaches, training goes on")
    return follow(run_dir)
