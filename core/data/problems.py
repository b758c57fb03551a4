"""The dataset `Problem`: where (file, line, field), what, how to fix it, how bad, and a stable code.

The bottom layer of `core.data` (it imports nothing from its siblings), so every module that finds a
problem builds it where it finds it, code and fix included; nobody picks a code later by reading the
message. The codes, and the module that raises each:

    code                   severity       raised in
    unreadable             error          read (malformed JSON/CSV line, not UTF-8, not an object)
    missing-field          error          formats (a required field missing, empty or of the wrong type,
                                          an unknown role)
    no-assistant-turn      error          formats (a conversation with nothing to learn)
    empty-answer           warning        formats (an assistant turn with empty text)
    mixed-formats          error          checks (a row shaped like another format than the dataset's)
    too-few-rows           warning        checks (fewer rows than the task needs)
    no-generation-marker   error          checks (assistant-only loss, template cannot mark the answer)
    mask-fallback          warning        checks (prompt tokens not a prefix of prompt + completion)
    too-long, duplicates, placeholders, validation-overlap, no-trained-tokens, all-masked,
    missing-eos, template-error, undesirable-skipped, <format>-as-sft      stats (whole-file pass)
    same-answers, empty-side, both-cut, prompt-too-long, one-label, unbalanced-labels,
    no-reward-column       per kind       kinds (the rows as a training kind's TRL trainer sees them)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import Problem as _BaseProblem

SEVERITIES = ("error", "warning", "info")


@dataclass
class Problem(_BaseProblem):
    """A dataset problem: `file:line: field: message` plus how to fix it.

    `severity` is "error" (training would fail or learn nothing), "warning" (it trains, but look) or
    "info". `lines` lists further lines with the same problem (first ones), `count` how many rows."""

    fix: str = ""
    severity: str = "error"
    code: str = ""
    lines: list[int] = field(default_factory=list)
    count: int = 1

    def to_json(self) -> dict:
        return {"line": self.line, "field": self.field, "message": self.message, "fix": self.fix,
                "severity": self.severity, "code": self.code, "file": self.file, "count": self.count,
                "lines": self.lines}

    def at(self, file: str | None, line: int | None) -> "Problem":
        """This problem located at `file:line` (row checks do not know where the row came from)."""
        return Problem(self.message, file=file, line=line, field=self.field, fix=self.fix,
                       severity=self.severity, code=self.code, lines=list(self.lines), count=self.count)

    def __str__(self) -> str:
        return super().__str__() + (f" (fix: {self.fix})" if self.fix else "")


def by_severity(problems: list[Problem]) -> list[Problem]:
    """Errors first, then warnings, then info; by file and line within each."""
    order = {s: i for i, s in enumerate(SEVERITIES)}
    return sorted(problems, key=lambda p: (order.get(p.severity, 3), p.file or "", p.line or 0))
