"""Merge a run's LoRA/QLoRA adapter into its base model and save a standalone model (default:
RUN/merged; an existing directory is never overwritten). Load it with from_pretrained anywhere."""

from __future__ import annotations

import argparse

from . import add_run_arguments


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_run_arguments(p)
    p.add_argument("--out", help="where to save (default: RUN/merged)")


def run(args) -> int:
    from ..afterwards import merge
    from ..runs import resolve_run

    dest = merge(resolve_run(args.run, args.runs_dir), args.out)
    print(f"merged model saved: {dest}")
    return 0
