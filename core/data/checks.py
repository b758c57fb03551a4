"""Dataset checks: every problem with its file, line, field and a fix.

`check_dataset(...)` reads the whole source once (the same pass as `stats.compute_stats`; call
`stats.scan_dataset` to get both) and returns `Problem`s:

    code                 severity  what
    unreadable           error     malformed JSON/CSV line, not UTF-8, not an object
    missing-field        error     a required field missing, empty or of the wrong type
    mixed-formats        error     a row shaped like another format than the dataset's
    no-assistant-turn    error     a conversation with nothing to learn
    empty-answer         warning   an assistant turn with empty text
    too-few-rows         warning   fewer rows than the task needs (reference note's table)
    too-long             warning   rows longer than max_length (how many; truncated, not dropped)
    duplicates           warning   exact duplicate rows
    validation-overlap   warning   validation rows also in the training data
    no-trained-tokens    warning   rows whose trained-token count is zero (dropped in training)
    all-masked           error     every row would train on zero tokens (training refuses)
    no-generation-marker error     assistant-only loss with a template that cannot mark the answer
    missing-eos          error/warning  no EOS token / rows whose trained part never ends with EOS
    placeholders         warning   `{{name}}`-style placeholders left in the text
    undesirable-skipped  info      KTO rows labelled false, skipped by SFT
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import Problem as _BaseProblem

# The reference note's minimum example counts per task (ANCHORS.md, "Fine-tuning reference note").
MIN_ROWS = {"classification": 100, "instruction": 500, "reasoning": 1000, "domain": 5000}
TASK_NAMES = {"classification": "classification", "instruction": "instruction following",
              "reasoning": "complex reasoning", "domain": "domain adaptation"}
POOR_CANDIDATE = 100  # "fewer than 100 good examples" makes a poor fine-tuning candidate


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

    def __str__(self) -> str:
        return super().__str__() + (f" (fix: {self.fix})" if self.fix else "")


def generation_marker_problem(template: str | None, fmt: str, assistant_only: bool) -> Problem | None:
    """Assistant-only loss needs `{% generation %}` markers; without them every chat row is masked."""
    from ..templates import has_generation_markers

    if not assistant_only or fmt == "text" or fmt == "prompt-completion-plain":
        return None
    if has_generation_markers(template):
        return None
    return Problem("the chat template has no {% generation %} markers, so with assistant-only loss no "
                   "token would carry loss", field="model.chat_template", code="no-generation-marker",
                   fix="set model.chat_template: chatml (or llama3) to use a built-in template with markers, "
                   "or dataset.assistant_only_loss: false to train on every token")


def too_few_rows_problem(n: int, fmt: str, task: str | None, file: str | None) -> Problem | None:
    if task is None:
        task = "domain" if fmt == "text" else None
    if task is not None:
        need = MIN_ROWS[task]
        if n < need:
            return Problem(f"{n} usable rows; {TASK_NAMES[task]} usually needs at least {need:,} "
                           f"(reference note: {need:,}-{_upper(task):,})", file=file, code="too-few-rows",
                           severity="warning", count=n,
                           fix=f"add examples up to {need:,}+, or try prompting with a few examples first")
        return None
    if n < POOR_CANDIDATE:
        return Problem(f"only {n} usable rows; with fewer than {POOR_CANDIDATE} good examples fine-tuning "
                       "rarely beats prompting (instruction following needs 500-1,000)", file=file,
                       code="too-few-rows", severity="warning", count=n,
                       fix="collect more examples, or try few-shot prompting first")
    return None


def _upper(task: str) -> int:
    return {"classification": 500, "instruction": 1000, "reasoning": 5000, "domain": 10000}[task]


def check_dataset(source: str, tokenizer=None, template: str | None = None, max_length: int = 1024,
                  assistant_only: bool = True, *, columns: dict | None = None, format: str = "auto",
                  validation_path: str | None = None, task: str | None = None, max_rows: int | None = None,
                  progress=None, cancel=None) -> list[Problem]:
    """All problems of a dataset, errors first. Reads the whole source once (see `stats.scan_dataset`,
    which returns these and the statistics from the same pass). Without a tokenizer the token-level
    checks (too long, zero trained tokens, EOS, template) are skipped. Raises `UserError` only when the
    source cannot be read as a dataset at all."""
    from .stats import scan_dataset

    return scan_dataset(source, tokenizer, template, max_length, assistant_only, columns=columns,
                        format=format, validation_path=validation_path, task=task, max_rows=max_rows,
                        progress=progress, cancel=cancel).problems
