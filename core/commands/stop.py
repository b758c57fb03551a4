"""Stop a run gracefully: it saves a checkpoint and its adapter/model, then ends as 'stopped'."""

from __future__ import annotations

import argparse
import time

from . import add_run_arguments


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_run_arguments(p)
    p.add_argument("--no-wait", action="store_true", help="ask and return at once")
    p.add_argument("--timeout", type=float, default=300, help="seconds to wait for the run to end")


def run(args) -> int:
    from ..launch import stop
    from ..runs import LIVE_STATES, resolve_run, run_info

    from ..errors import UserError

    run_dir = resolve_run(args.run, args.runs_dir)
    if not stop(run_dir):
        info = run_info(run_dir)
        raise UserError(f"{info.id} is not running ({info.state}" + (f": {info.reason}" if info.reason else "")
                        + "); nothing to stop", field="RUN")
    print(f"stop requested for {run_dir.name}; it saves a checkpoint first")
    if args.no_wait:
        return 0
    deadline = time.time() + args.timeout
    while time.time() < deadline:
        info = run_info(run_dir)
        if info.state not in LIVE_STATES:
            print(f"{info.id}: {info.state}" + (f" ({info.reason})" if info.reason else ""))
            return 0
        time.sleep(0.5)
    print("still stopping; check again with: ftwizard status " + run_dir.name)
    return 1
