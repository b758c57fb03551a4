"""Open the training monitor on a run (running or finished): the whole history is rebuilt from its
events. Detach with d (the run goes on); quitting asks whether to detach or stop."""

from __future__ import annotations

import argparse

from . import add_run_arguments


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_run_arguments(p)


def run(args) -> int:
    from ..runs import resolve_run

    run_dir = resolve_run(args.run, args.runs_dir)  # a bad RUN is a one-line error, before any UI
    from ftwizard.tui.screens.monitor import run_monitor_app

    return run_monitor_app(run_dir)
