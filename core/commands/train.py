"""Create a run from CONFIG and start training in a detached process, then follow it here.

Before anything is made, the pre-flight (core/preflight.py) scans the whole dataset, checks the model
is reachable, the runs folder writable and the settings sane: an error is one line, exit 2, no run.

Ctrl-C stops following, not training: the run goes on and `ftwizard attach RUN` (or the wizard)
picks it up again. With --detach, print the run directory and return at once.
"""

from __future__ import annotations

import argparse

from ..config import load_config


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", metavar="CONFIG", help="a run config (YAML), or a preset name (ftwizard presets)")
    p.add_argument("--detach", action="store_true", help="start and return at once; print the run directory")
    p.add_argument("--runs-dir", help="where to create the run (default: the config's runs_dir, "
                                          "else $FTWIZARD_RUNS_DIR, else the user data dir)")
    p.add_argument("--name", help="a label for the run directory")
    p.add_argument("--force", action="store_true", help="start despite a pre-flight judgement (too few rows, "
                   "tight memory, a batch above the rows); never despite what is impossible")


def config_path(ref: str):
    """A config file, or the name of a bundled preset (`ftwizard train cpu-demo` works from anywhere)."""
    from pathlib import Path

    from ..presets import presets_dir

    p = Path(ref)
    if not p.exists() and "/" not in ref:
        preset = presets_dir() / (ref if ref.endswith(".yaml") else f"{ref}.yaml")
        if preset.exists():
            return preset
    return p


def run(args) -> int:
    from ..follow import detach_or_follow
    from ..launch import create_run, start

    from ..preflight import print_warnings

    path = config_path(args.config)
    cfg = load_config(path)
    if args.name:
        cfg.name = args.name
    run_dir = create_run(cfg, args.runs_dir, force=args.force, config_file=path)
    print_warnings(run_dir)
    return detach_or_follow(run_dir, start(run_dir), "started", args.detach)

