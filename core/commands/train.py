"""Create a run from CONFIG and start training in a detached process, then follow it here.

Ctrl-C stops following, not training: the run goes on and `ftwizard attach RUN` (or the wizard)
picks it up again. With --detach, print the run directory and return at once.
"""

from __future__ import annotations

import argparse

from ..config import load_config


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", metavar="CONFIG", help="a run config (YAML), or a preset name (ftwizard presets)")
    p.add_argument("--detach", action="store_true", help="start and return at once; print the run directory")
    p.add_argument("--runs-dir", help="where to create the run (default: the config's runs_dir, ./runs)")
    p.add_argument("--name", help="a label for the run directory")
    p.add_argument("--force", action="store_true",
                   help="start even when the memory estimate says the run does not fit this machine")


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

    cfg = load_config(config_path(args.config))
    if args.name:
        cfg.name = args.name
    if not args.force:
        preflight(cfg)
    run_dir = create_run(cfg, args.runs_dir)
    return detach_or_follow(run_dir, start(run_dir), "started", args.detach)


def preflight(cfg) -> None:
    """Refuse a run the estimator says would not fit this machine (free RAM without a GPU, the smallest
    card's free memory with one), naming the setting that would. Models it cannot size are let through."""
    from pathlib import Path

    from ..catalog import _lookup, resolve_arch
    from ..errors import UserError
    from ..estimate import check_fits
    from ..hardware import detect

    name = cfg.model.name_or_path
    try:
        arch = _lookup(name) or (resolve_arch(name) if (Path(name).expanduser() / "config.json").is_file() else None)
    except UserError:
        arch = None
    if arch is None:
        return
    c = check_fits(cfg, detect(), arch=arch)
    if not c.ok:
        raise UserError(f"would not fit: {c.reason()}; --force starts it anyway", field="train")
