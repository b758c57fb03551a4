"""One module per `ftwizard` subcommand: `add_arguments(parser)` and `run(args) -> exit code`."""

from __future__ import annotations

import argparse


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """RUN and --runs-dir, as every command that acts on an existing run takes them."""
    p.add_argument("run", metavar="RUN", help="run id (or unique prefix) or run directory")
    p.add_argument("--runs-dir", help="runs root (default ./runs or $FTWIZARD_RUNS_DIR)")
