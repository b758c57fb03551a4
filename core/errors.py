"""Errors a user can fix, and how they are shown.

Every problem caused by input (a config key, a dataset line, a model path, a CLI argument) is raised as
`UserError`, which knows *where* it happened. The CLI prints it as one line and exits 2; nothing else
in the code base prints tracebacks at a user.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Problem:
    """One located problem: `file:line: field: message` when all parts are known."""

    message: str
    file: str | None = None
    line: int | None = None
    field: str | None = None

    def __str__(self) -> str:
        where = ""
        if self.file:
            where = self.file + (f":{self.line}" if self.line else "") + ": "
        elif self.line:
            where = f"line {self.line}: "
        field = f"{self.field}: " if self.field else ""
        return f"{where}{field}{self.message}"


class UserError(Exception):
    """Bad input. Carries one or more `Problem`s; printed one per line, exit code 2."""

    exit_code = 2

    def __init__(self, problems: Problem | str | list[Problem], *, file: str | None = None,
                 line: int | None = None, field: str | None = None):
        if isinstance(problems, str):
            problems = [Problem(problems, file=file, line=line, field=field)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems: list[Problem] = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))
