"""`ftwizard` command line. With no arguments it opens the wizard; otherwise one subcommand.

Each subcommand lives in `ftwizard.core.commands.<name>` with `add_arguments(parser)` and
`run(args) -> int`. This module imports no ML library and no textual: `ftwizard --help` and
`ftwizard status` answer at once. A `UserError` from any command is printed as one line per problem
and exits 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .errors import UserError

# name -> (module, one-line help). Order is the order shown by --help.
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("train", "create a run from CONFIG and start training, detached"),
    "runs": ("runs", "list runs"),
    "status": ("status", "state of one run"),
    "attach": ("attach", "open the training monitor on a run (running or finished)"),
    "stop": ("stop", "stop a run gracefully (a checkpoint is saved)"),
    "resume": ("resume", "continue a stopped or failed run from its last checkpoint"),
    "delete": ("delete", "delete a run directory (asks first; never a running run)"),
    "chat": ("chat", "chat with a run's tuned model (--compare: beside the base model)"),
    "evaluate": ("evaluate", "loss and perplexity of the tuned and the base model on held-out data"),
    "merge": ("merge", "merge a LoRA adapter into its base model: a standalone model"),
    "export": ("export", "merged model, GGUF (llama.cpp's converter), Ollama Modelfile; checks the chat template"),
    "push": ("push", "upload the adapter, merged model or GGUF to the Hugging Face Hub with a model card"),
    "inspect": ("inspect", "a dataset's format, rows, statistics and problems; --model shows what the model sees"),
    "selftest": ("selftest", "can this machine train? builds a tiny model offline and trains it"),
    "presets": ("presets", "list the bundled presets"),
    "config-reference": ("config_reference", "print every config key with its default and meaning"),
    "estimate": ("estimate", "peak GPU memory of a run (per GPU), with its breakdown"),
    "recommend": ("recommend", "should you fine-tune? prompting, RAG or fine-tuning, and which method"),
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2 (argparse's own convention too)
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ftwizard", description="Fine-tune LLMs from the terminal. Run without "
                     "arguments for the wizard.")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, (module, help_) in COMMANDS.items():
        mod = importlib.import_module(f"ftwizard.core.commands.{module}")
        p = sub.add_parser(name, help=help_, description=(mod.__doc__ or help_).strip())
        mod.add_arguments(p)
        p.set_defaults(_module=mod)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"ftwizard {version('ftwizard')}"
    except PackageNotFoundError:
        return "ftwizard (not installed)"


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
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(args._module.run(args) or 0)
    except UserError as exc:
        for problem in exc.problems:
            print(f"ftwizard: {problem}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("ftwizard: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
