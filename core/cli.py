"""The headless command line: a parser and one command run. `ftwizard` itself is `ftwizard.tui.cli`,
which adds the wizard (no arguments) and the commands with a UI (`attach`) and delegates the rest here;
`python -m ftwizard.core.cli COMMAND ...` runs a headless command without the TUI installed or loaded.

Each command lives in a module with `add_arguments(parser)` and `run(args) -> int`; `COMMANDS` names
them. This module imports no ML library and no textual: `ftwizard --help` and `ftwizard status`
answer at once. A `UserError` from any command is printed as one line per problem and exits 2,
never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .errors import UserError

# name -> (module, one-line help). Order is the order shown by --help. A layer above adds its own
# commands by passing a bigger dict to build_parser/main (ftwizard.tui.cli does).
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("ftwizard.core.commands.train", "create a run from CONFIG and start training, detached"),
    "runs": ("ftwizard.core.commands.runs", "list runs"),
    "status": ("ftwizard.core.commands.status", "state of one run"),
    "stop": ("ftwizard.core.commands.stop", "stop a run gracefully (a checkpoint is saved)"),
    "resume": ("ftwizard.core.commands.resume", "continue a stopped or failed run from its last checkpoint"),
    "delete": ("ftwizard.core.commands.delete", "delete a run directory (asks first; never a running run)"),
    "chat": ("ftwizard.core.commands.chat", "chat with a run's tuned model (--compare: beside the base model)"),
    "evaluate": ("ftwizard.core.commands.evaluate",
                 "loss and perplexity of the tuned and the base model on held-out data"),
    "compare": ("ftwizard.core.commands.compare", "compare runs: loss curves side by side and config differences"),
    "merge": ("ftwizard.core.commands.merge", "merge a LoRA adapter into its base model: a standalone model"),
    "export": ("ftwizard.core.commands.export",
               "merged model, GGUF (llama.cpp's converter), Ollama Modelfile; checks the chat template"),
    "push": ("ftwizard.core.commands.push",
             "upload the adapter, merged model or GGUF to the Hugging Face Hub with a model card"),
    "inspect": ("ftwizard.core.commands.inspect",
                "a dataset's format, rows, statistics and problems; --model shows what the model sees"),
    "selftest": ("ftwizard.core.commands.selftest", "can this machine train? builds a tiny model offline and trains it"),
    "presets": ("ftwizard.core.commands.presets", "list the bundled presets"),
    "launch-command": ("ftwizard.core.commands.launch_command",
                       "the torchrun line to run on each machine of a run on several machines"),
    "slurm": ("ftwizard.core.commands.slurm",
              "create a run for a Slurm cluster and write its job.sbatch (--submit: sbatch it)"),
    "config-reference": ("ftwizard.core.commands.config_reference",
                         "print every config key with its default and meaning"),
    "estimate": ("ftwizard.core.commands.estimate", "peak GPU memory of a run (per GPU), with its breakdown"),
    "recommend": ("ftwizard.core.commands.recommend",
                  "should you fine-tune? prompting, RAG or fine-tuning, and which method"),
}

DESCRIPTION = "Fine-tune LLMs from the terminal."


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2 (argparse's own convention too)
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser(commands: dict[str, tuple[str, str]] | None = None,
                 description: str = DESCRIPTION) -> argparse.ArgumentParser:
    parser = _Parser(prog="ftwizard", description=description)
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, (module, help_) in (COMMANDS if commands is None else commands).items():
        mod = importlib.import_module(module)
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


def main(argv: list[str] | None = None, commands: dict[str, tuple[str, str]] | None = None,
         description: str = DESCRIPTION) -> int:
    """Parse `argv` and run one command. Without a command: the help, exit 2."""
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(commands, description)
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
