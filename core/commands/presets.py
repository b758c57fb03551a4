"""List the bundled presets: who each is for and the command that runs it."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    pass


def run(args) -> int:
    from ..presets import list_presets

    for p in list_presets():
        print(f"{p.name:<22} {p.summary}")
        print(f"{'':<22} ftwizard train {p.path}")
    return 0
