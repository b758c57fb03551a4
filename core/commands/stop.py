"""Stop a run gracefully: it saves a checkpoint and its adapter/model, then ends as 'stopped'.

A Slurm run (`ftwizard slurm`) is asked the same way (stop.request in its run directory, which every rank
reads on the shared filesystem); when it has not ended after --grace seconds (or is still pending), its
job is cancelled with scancel and the run reads as stopped, resumable from its newest checkpoint."""

from __future__ import annotations

import argparse
import time

from . import add_run_arguments


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_run_arguments(p)
    p.add_argument("--no-wait", action="store_true", help="ask and return at once")
    p.add_argument("--timeout", type=float, default=300, help="seconds to wait for the run to end")
    p.add_argument("--grace", type=float, default=120, help="Slurm runs: seconds to wait for the graceful stop "
                   "before scancel")


def run(args) -> int:
    from ..launch import cancel_slurm, stop
    from ..runs import LIVE_STATES, resolve_run, run_info

    from ..errors import UserError

    run_dir = resolve_run(args.run, args.runs_dir)
    if not stop(run_dir):
        info = run_info(run_dir)
        raise UserError(f"{info.id} is not running ({info.state}" + (f": {info.reason}" if info.reason else "")
                        + "); nothing to stop", field="RUN")
    print(f"stop requested for {run_dir.name}; it saves a checkpoint first")
    job = run_info(run_dir).extra.get("slurm_job")
    if args.no_wait:
        if job:
            print(f"Slurm job {job} is not cancelled (--no-wait): it ends at its next step")
        return 0
    start = time.time()
    deadline, cancelled = start + args.timeout, False
    while time.time() < deadline:
        info = run_info(run_dir)
        if info.state not in LIVE_STATES:
            print(f"{info.id}: {info.state}" + (f" ({info.reason})" if info.reason else ""))
            return 0
        pending = info.reason is not None and "pending" in info.reason
        if job and not cancelled and (pending or time.time() - start >= args.grace):
            cancel_slurm(run_dir)
            cancelled = True
            print(f"scancel {job}: " + ("it was still pending" if pending else
                                       f"no graceful end within {args.grace:g} s"))
        time.sleep(0.5)
    print("still stopping; check again with: ftwizard status " + run_dir.name)
    return 1
