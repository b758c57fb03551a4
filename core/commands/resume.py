"""Continue a stopped or failed run from its last checkpoint, in the same run directory.

Optimizer, scheduler, RNG and data position come back from the checkpoint; events continue in the
same events.jsonl with the same step numbers.
"""

from __future__ import annotations

import argparse

from . import add_run_arguments


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_run_arguments(p)
    p.add_argument("--detach", action="store_true", help="return at once")


def run(args) -> int:
    from ..follow import detach_or_follow
    from ..launch import resume
    from ..runs import resolve_run

    run_dir = resolve_run(args.run, args.runs_dir)
    return detach_or_follow(run_dir, resume(run_dir), "resumed", args.detach)
