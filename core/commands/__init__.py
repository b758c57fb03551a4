"""One module per `ftwizard` subcommand: `add_arguments(parser)` and `run(args) -> exit code`."""

from __future__ import annotations

import argparse


RUNS_DIR_HELP = ("look only under this runs root (default: every run of yours, wherever it was made: "
                 "$FTWIZARD_RUNS_DIR or the user data dir, and every runs_dir/--runs-dir used before)")


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """RUN and --runs-dir, as every command that acts on an existing run takes them."""
    p.add_argument("run", metavar="RUN", help="run id (or unique prefix) or run directory")
    p.add_argument("--runs-dir", help=RUNS_DIR_HELP)
