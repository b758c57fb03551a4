"""Why did a run fail? Classify an exception or a log into a diagnosis with fixes, ranked.

A diagnosis is a dict: `kind` (oom | nan | dataset | model-missing | disk-full | killed | error),
`message` (one line) and `fixes` (list of strings, most effective first).
"""

from __future__ import annotations

import re
from pathlib import Path

OOM_FIXES = [
    "halve train.batch_size and double train.gradient_accumulation_steps (same effective batch)",
    "lower train.max_length (the longest rows dominate peak memory)",
    "turn on train.gradient_checkpointing",
    "switch method to qlora (4-bit base weights)",
    "use train.optim: adamw_8bit (8-bit optimizer states)",
]

_PATTERNS: list[tuple[str, re.Pattern, str, list[str]]] = [
    ("oom", re.compile(r"CUDA out of memory|OutOfMemoryError|out of memory", re.I),
     "out of memory", OOM_FIXES),
    ("disk-full", re.compile(r"No space left on device|ENOSPC", re.I),
     "disk full while writing", ["free disk space or point runs_dir at a larger disk",
                                 "lower train.save_total_limit"]),
    ("nan", re.compile(r"loss is (nan|inf)|non-finite loss", re.I),
     "the loss became NaN/inf", ["lower train.learning_rate (by 10x)", "keep train.max_grad_norm at 1.0",
                                 "use bf16 instead of fp16"]),
    ("model-missing", re.compile(r"(is not a local folder and is not a valid model identifier|"
                                 r"Repository Not Found|does not appear to have a file named|"
                                 r"We couldn't connect to|offline mode)", re.I),
     "the model could not be found or downloaded", ["check model.name_or_path (a local directory with "
                                                    "config.json, or a hub id with network access)"]),
]


def diagnose_text(text: str, *, exc_type: str | None = None) -> dict | None:
    """Diagnose from an error message (and optionally the exception type name)."""
    blob = f"{exc_type or ''}: {text}"
    for kind, pattern, message, fixes in _PATTERNS:
        if pattern.search(blob):
            detail = _first_line_matching(text, pattern)
            return {"kind": kind, "message": f"{message}: {detail}" if detail else message,
                    "fixes": list(fixes)}
    return None


def _first_line_matching(text: str, pattern: re.Pattern) -> str:
    for line in text.splitlines():
        if pattern.search(line):
            return line.strip()[:200]
    return ""


def diagnose_log(log_path: str | Path, tail_bytes: int = 64_000) -> dict | None:
    """Look at the end of train.log for a known cause. None when nothing is recognised."""
    try:
        with open(log_path, "rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - tail_bytes))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return None
    found = diagnose_text(text)
    if found:
        return found
    if re.search(r"^Killed$", text, re.M):
        return {"kind": "killed", "message": "killed by the system (out of host memory?)",
                "fixes": ["lower train.batch_size or train.max_length", "close other programs"]}
    return None
