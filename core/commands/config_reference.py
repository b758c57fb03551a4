"""Print every config key with its default and meaning (Markdown)."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    pass


def run(args) -> int:
    from ..config import reference_markdown

    print(reference_markdown())
    return 0
