"""Continue a stopped or failed run from its newest whole and finite checkpoint, in the same run
directory; checkpoints cut short or holding NaN are skipped, and the command says which and why. A Slurm
run (`ftwizard slurm`) continues as a new job, submitted with the job spec the run was made with.

Optimizer, scheduler, RNG and data position come back from the checkpoint; events continue in the
same events.jsonl with the same step numbers. A completed run is final: refused (exit 2). To train it
further, --extend N makes a NEW run that starts from its adapter and trains N more steps.
"""

from __future__ import annotations

import argparse

from . import add_run_arguments


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_run_arguments(p)
    p.add_argument("--detach", action="store_true", help="return at once")
    p.add_argument("--extend", type=int, metavar="N", help="a NEW run from this run's finished adapter (or "
                   "model), training N more steps; the run itself is only read")
    p.add_argument("--force", action="store_true", help="go on despite a pre-flight judgement (see train --force)")


def run(args) -> int:
    import sys

    from ..checkpoints import resume_checkpoint
    from ..follow import detach_or_follow, follow
    from ..launch import extend, is_slurm_run, resume, start
    from ..preflight import print_warnings
    from ..runs import resolve_run

    run_dir = resolve_run(args.run, args.runs_dir)
    if args.extend is not None:
        new = extend(run_dir, args.extend, force=args.force)
        print_warnings(new)
        return detach_or_follow(new, start(new), f"started (extends {run_dir.name})", args.detach)
    ckpt, skipped = resume_checkpoint(run_dir)  # what the training process will pick (it asks the same)
    pid = resume(run_dir, force=args.force)
    for name, why in skipped:
        print(f"ftwizard: skipped {name}: {why}", file=sys.stderr)
    print(f"ftwizard: resuming from {ckpt and ckpt.rsplit('/', 1)[-1]}", file=sys.stderr)
    print_warnings(run_dir)
    if is_slurm_run(run_dir):  # a new Slurm job: `pid` is its id
        print(f"ftwizard: submitted Slurm job {pid}", file=sys.stderr)
        if args.detach:
            print(run_dir)
            return 0
        return follow(run_dir)
    return detach_or_follow(run_dir, pid, "resumed", args.detach)
