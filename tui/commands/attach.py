"""Open the training monitor on a run (running or finished): the whole history is rebuilt from its
events. Detach with d (the run goes on); quitting asks whether to detach or stop."""

from __future__ import annotations

from ftwizard.core.commands.attach import add_arguments, resolve

__all__ = ["add_arguments", "run"]


def run(args) -> int:
    run_dir = resolve(args)  # a bad RUN is a one-line error, before textual is imported
    from ftwizard.tui.screens.monitor import run_monitor_app

    return run_monitor_app(run_dir)
