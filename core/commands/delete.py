"""Delete a run directory (checkpoints, adapter and all). Asks first unless --yes; refuses a running run."""

from __future__ import annotations

import argparse
import sys

from . import add_run_arguments


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_run_arguments(p)
    p.add_argument("--yes", action="store_true", help="do not ask")


def run(args) -> int:
    from ..errors import UserError
    from ..runs import LIVE_STATES, delete_run, disk_usage, fmt_bytes, resolve_run, run_info

    run_dir = resolve_run(args.run, args.runs_dir)
    info = run_info(run_dir)
    if info.state in LIVE_STATES:
        raise UserError(f"run {info.id} is still {info.state}: stop it first (ftwizard stop {info.id})",
                        field="RUN")
    if not args.yes:
        if not sys.stdin.isatty():
            raise UserError("refusing to delete without confirmation: pass --yes", field="RUN")
        answer = input(f"delete {run_dir} ({info.state}, {fmt_bytes(disk_usage(run_dir))})? [y/N] ")
        if answer.strip().lower() != "y":
            print("kept")
            return 1
    delete_run(run_dir)
    print(f"deleted {run_dir}")
    return 0
