"""Can this machine train? Build a tiny Llama and tokenizer offline, train ~20 LoRA steps through the
same detached launch path as `ftwizard train`, and check that the loss went down. Exit 0 or 1."""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--steps", type=int, default=20, help="training steps (default 20)")
    p.add_argument("--keep", action="store_true", help="keep the working directory and print it")
    p.add_argument("--timeout", type=float, default=300, help="seconds before giving up")


def run(args) -> int:
    from ..selftest import run_selftest

    work = Path(tempfile.mkdtemp(prefix="ftwizard-selftest-"))
    try:
        ok = run_selftest(work, steps=args.steps, timeout=args.timeout, echo=print)
    finally:
        if args.keep:
            print(f"kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1
