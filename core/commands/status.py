"""State of one run (running, completed, failed, stopped), its reason, step and pid, the training kind's
latest numbers, and the training doctor's warnings with their fixes (the monitor's `diagnose_view`: the
rules on the run's curves, then the run's own `warning` events; `--json`: under `doctor`)."""

from __future__ import annotations

import argparse
import json

from . import add_run_arguments


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_run_arguments(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run(args) -> int:
    from ..events import read_events
    from ..monitor import RunView, diagnose_view
    from ..runs import resolve_run, run_info

    run_dir = resolve_run(args.run, args.runs_dir)
    view = RunView()
    view.apply(read_events(run_dir))
    info = run_info(run_dir, fold=view)
    doctor = diagnose_view(view)
    if args.json:
        print(json.dumps({**info.to_json(), "doctor": [w.to_json() for w in doctor]}, indent=1))
        return 0
    step = f"{info.step}/{info.max_steps}" if info.max_steps else str(info.step)
    print(f"{info.id}: {info.state}" + (f" ({info.reason})" if info.reason else ""))
    loss = f"{info.last_loss:.4f}" if info.last_loss is not None else "-"
    best = f"  best validation {info.best_eval_loss:.4f}" if info.best_eval_loss is not None else ""
    where = f"Slurm job {info.extra['slurm_job']}" if info.extra.get("slurm_job") else f"pid {info.pid}"
    print(f"  step {step}  last loss {loss}{best}  {where}  phase {info.phase}")
    if info.extra.get("metrics"):  # the training kind's latest numbers (dpo: rewards, margin, accuracy)
        from ..monitor import kind_summary

        print(f"  {info.training}: {kind_summary(info.training, info.extra['metrics'])}")
    for w in doctor:
        named = f" ({w.code})" if w.code not in ("warning", "error") else ""
        print(f"  {'error' if w.severity == 'error' else 'warning'}{named}: {w.message}")
        for fix in w.advice:
            print(f"   - {fix}")
    if info.diagnosis and info.diagnosis.get("fixes"):
        print("  try, in order:")
        for fix in info.diagnosis["fixes"]:
            print(f"   - {fix}")
    if info.output:
        print(f"  output: {info.output}")
    return 0
