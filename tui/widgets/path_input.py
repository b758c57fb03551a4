"""An Input for file paths that completes the way a shell does: type, and the rest of the only (or
first) matching name is suggested; right arrow / end accepts it."""

from __future__ import annotations

import os
from pathlib import Path

from textual.suggester import Suggester
from textual.widgets import Input


class PathSuggester(Suggester):
    """Suggests the first existing path that starts with what was typed (directories end in '/')."""

    def __init__(self, suffixes: tuple[str, ...] = (), base: Path | None = None):
        super().__init__(use_cache=False, case_sensitive=True)
        self.suffixes = suffixes
        self.base = base

    async def get_suggestion(self, value: str) -> str | None:
        return complete_path(value, self.suffixes, self.base)


def complete_path(value: str, suffixes: tuple[str, ...] = (), base: Path | None = None) -> str | None:
    """The first existing path that extends `value` (files filtered by `suffixes`), or None."""
    if not value:
        return None
    head, sep, stem = os.path.expanduser(value).rpartition("/")
    root = Path(head or "/") if sep else (base or Path("."))
    if not root.is_absolute() and base is not None:
        root = base / root
    try:
        names = sorted(os.listdir(root))
    except OSError:
        return None
    for name in names:
        if not name.startswith(stem) or name == stem or (name.startswith(".") and not stem.startswith(".")):
            continue
        is_dir = (root / name).is_dir()
        if not is_dir and suffixes and not name.endswith(suffixes):
            continue
        return value + name[len(stem):] + ("/" if is_dir else "")
    return None


class PathInput(Input):
    """Input with path completion."""

    def __init__(self, value: str = "", *, suffixes: tuple[str, ...] = (), **kwargs):
        super().__init__(value=value, suggester=PathSuggester(suffixes), **kwargs)
