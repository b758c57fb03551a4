"""Dataset rules: the problems of one row, and the whole-dataset rules that need no full pass.

Each function builds its `Problem` with code and fix where the rule is (the codes are listed in
`problems`). The streaming pass that applies them to every row is `stats.scan_dataset`; the preview
applies `row_problems` to the first rows and training (`prepare`) refuses the rows it finds errors in.

    row_problems(raw_row, detected)             unreadable / mixed-formats / the format's row checks
    generation_marker_problem(template, fmt, assistant_only)   no-generation-marker
    too_few_rows_problem(n, fmt, task, file)    too-few-rows (the reference note's table)
    mask_fallback_problem(count, lines, file)   mask-fallback (prompt tokens not a prefix)

`check_dataset` (all problems of a file) lives in `stats`, next to the pass it runs.
"""

from __future__ import annotations

from .formats import Detected, row_format, spec, validate_row
from .problems import Problem
from .read import RawRow

# The reference note's minimum example counts per task (ANCHORS.md, "Fine-tuning reference note").
MIN_ROWS = {"classification": 100, "instruction": 500, "reasoning": 1000, "domain": 5000}
TASK_NAMES = {"classification": "classification", "instruction": "instruction following",
              "reasoning": "complex reasoning", "domain": "domain adaptation"}
POOR_CANDIDATE = 100  # "fewer than 100 good examples" makes a poor fine-tuning candidate
MASK_FALLBACK_WHY = ("the prompt's last token merges with the completion's first, so the prompt is not a "
                     "token prefix of prompt + completion; the loss mask stops at the merge and the merged "
                     "prompt token is trained")
MASK_FALLBACK_FIX = ("end each prompt where a token ends (a newline or punctuation) and start the completion "
                     "with its own leading space, e.g. prompt 'Q: 2+2?\\nA:' completion ' 4'")


def row_problems(r: RawRow, det: Detected) -> list[Problem]:
    """The problems of one row as read, located at its file and line: `unreadable`; `mixed-formats` when
    the row has errors and looks like another format; else the format's own row checks."""
    if r.error:
        return [r.problem()]
    issues = validate_row(r.row, det)
    if any(i.severity == "error" for i in issues):
        other = row_format(r.row)
        if other and other != det.format:
            return [Problem(f"this row looks like {other}, but the dataset is {det.format} ({det.evidence})",
                            file=r.file, line=r.line, code="mixed-formats",
                            fix=f"convert it to {det.format} or move it to its own file")]
    return [i.at(r.file, r.line) for i in issues]


def generation_marker_problem(template: str | None, fmt: str, assistant_only: bool) -> Problem | None:
    """Assistant-only loss needs `{% generation %}` markers; without them every chat row is masked."""
    from ..templates import has_generation_markers

    if not spec(fmt).masks_prompt(assistant_only):
        return None
    if has_generation_markers(template):
        return None
    return Problem("the chat template has no {% generation %} markers, so with assistant-only loss no "
                   "token would carry loss", field="model.chat_template", code="no-generation-marker",
                   fix="set model.chat_template: chatml (or llama3) to use a built-in template with markers, "
                   "or dataset.assistant_only_loss: false to train on every token")


def too_few_rows_problem(n: int, fmt: str, task: str | None, file: str | None) -> Problem | None:
    if task is None:
        task = spec(fmt).default_task
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


def mask_fallback_problem(count: int, lines: list[int], file: str | None) -> Problem | None:
    """Rows whose prompt tokens are not a prefix of the prompt + completion tokens: the tokenizer merges
    the prompt's end with the completion's start, so the completion-only mask can only hide the prompt
    tokens before the merge (`tokenize.encode_row`); the merged token and the rest train."""
    if not count:
        return None
    return Problem(f"{count} rows: {MASK_FALLBACK_WHY}", file=file, line=lines[0] if lines else None,
                   field="dataset.assistant_only_loss", code="mask-fallback", severity="warning",
                   count=count, lines=list(lines), fix=MASK_FALLBACK_FIX)


def _upper(task: str) -> int:
    return {"classification": 500, "instruction": 1000, "reasoning": 5000, "domain": 10000}[task]
