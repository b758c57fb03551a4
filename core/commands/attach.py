"""`ftwizard attach RUN`, its headless half: the arguments and which run it opens. The monitor itself
is the UI's (`ftwizard.tui.commands.attach`): core never imports the TUI."""

from __future__ import annotations

import argparse
from pathlib import Path

from . import add_run_arguments


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_run_arguments(p)


def resolve(args) -> Path:
    """The run directory `args` names. A bad RUN is a one-line error (UserError), before any UI."""
    from ..runs import resolve_run

    return resolve_run(args.run, args.runs_dir)
