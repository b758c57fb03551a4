"""`ftwizard`, the console script. With no arguments it opens the wizard; `attach` opens the monitor;
every other command is core's headless one (`ftwizard.core.cli`), run the same way.

This is the one place that decides when a screen starts: it sits above core and may import both.
Nothing here imports textual or an ML library before a UI is asked for, so `ftwizard --help` and
`ftwizard status` answer at once (tests/test_import_hygiene.py checks it).
"""

from __future__ import annotations

import sys

from ftwizard.core import cli as core_cli

# Commands with a UI: name -> (module, one-line help), listed after core's in --help. The module has
# `add_arguments(parser)` and `run(args) -> exit code`; adding one is one line here.
TUI_COMMANDS: dict[str, tuple[str, str]] = {
    "attach": ("ftwizard.tui.commands.attach", "open the training monitor on a run (running or finished)"),
    "serve": ("ftwizard.tui.serve", "the wizard (or --attach RUN's monitor) in a browser tab, behind a token"),
}

COMMANDS: dict[str, tuple[str, str]] = {**core_cli.COMMANDS, **TUI_COMMANDS}

DESCRIPTION = "Fine-tune LLMs from the terminal. Run without arguments for the wizard."


def build_parser():
    """The parser of every `ftwizard` command (core's and the UI's)."""
    return core_cli.build_parser(COMMANDS, DESCRIPTION)


def pause_gc_for_startup() -> None:
    """No garbage collection while the wizard imports and builds its first screen: start-up allocates
    tens of thousands of long-lived objects, and the full collections they trigger cost ~0.1 s here.
    The App resumes the collector (and freezes those objects) after its first paint."""
    import gc

    gc.disable()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        pause_gc_for_startup()
        from ftwizard.tui.app import run_app

        return run_app() or 0
    return core_cli.main(argv, COMMANDS, DESCRIPTION)


if __name__ == "__main__":
    sys.exit(main())
