"""Dataset formats: detect which one a table is in, and convert its rows to canonical rows.

Canonical rows are what the tokenizer step takes:
    {"messages": [{"role": .., "content": ..}, ...]}   chat (alpaca, sharegpt, messages, conversational p/c)
    {"prompt": str, "completion": str}                  plain prompt/completion
    {"text": str}                                       raw text (continued pre-training style)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import UserError

SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "system": "system", "function_call": "assistant", "observation": "tool", "tool": "tool",
                  "function": "tool"}


@dataclass
class Detected:
    format: str
    evidence: str
    columns: dict[str, str] = field(default_factory=dict)  # canonical name -> column in the data


def _has(cols: set[str], mapping: dict[str, str], *names: str) -> bool:
    return all(mapping.get(n, n) in cols for n in names)


def detect_format(columns: list[str], sample: list[dict], mapping: dict[str, str] | None = None,
                  forced: str = "auto") -> Detected:
    mapping = dict(mapping or {})
    cols = set(columns)
    m = lambda n: mapping.get(n, n)  # noqa: E731
    if forced != "auto":
        return Detected(forced, "format set in the config", mapping)
    if _has(cols, mapping, "messages") and _looks_like_turns(sample, m("messages"), "role", "content"):
        return Detected("messages", f"column '{m('messages')}' holds role/content turns", mapping)
    for name in ("conversations", "messages"):
        if m(name) in cols and _looks_like_turns(sample, m(name), "from", "value"):
            mapping.setdefault("conversations", m(name))
            return Detected("sharegpt", f"column '{m(name)}' holds from/value turns", mapping)
    if _has(cols, mapping, "prompt", "chosen", "rejected"):
        return Detected("preference", "columns prompt/chosen/rejected", mapping)
    if _has(cols, mapping, "prompt", "completion", "label"):
        return Detected("kto", "columns prompt/completion/label", mapping)
    if _has(cols, mapping, "instruction", "output"):
        return Detected("alpaca", "columns instruction/output (input optional)", mapping)
    if _has(cols, mapping, "prompt", "completion"):
        return Detected("prompt-completion", "columns prompt/completion", mapping)
    if _has(cols, mapping, "text"):
        return Detected("text", f"column '{m('text')}' of raw text", mapping)
    raise UserError(f"cannot tell the dataset's format from its columns {sorted(cols)}: expected one of "
                    "messages (role/content), conversations (from/value), instruction/output, "
                    "prompt/completion, prompt/chosen/rejected, text; map yours with dataset.columns",
                    field="dataset.format")


def _looks_like_turns(sample: list[dict], col: str, role_key: str, content_key: str) -> bool:
    for row in sample:
        turns = row.get(col)
        if isinstance(turns, list) and turns and isinstance(turns[0], dict):
            return role_key in turns[0] and content_key in turns[0]
    return False


def to_canonical(row: dict[str, Any], det: Detected) -> dict[str, Any]:
    m = lambda n: det.columns.get(n, n)  # noqa: E731
    fmt = det.format
    if fmt == "messages":
        return {"messages": [{"role": t["role"], "content": t.get("content") or ""} for t in row[m("messages")]]}
    if fmt == "sharegpt":
        turns = row[m("conversations")]
        msgs = []
        if row.get(m("system")):
            msgs.append({"role": "system", "content": row[m("system")]})
        for t in turns:
            msgs.append({"role": SHAREGPT_ROLES.get(t.get("from"), t.get("from")), "content": t.get("value") or ""})
        return {"messages": msgs}
    if fmt == "alpaca":
        prompt = row.get(m("instruction")) or ""
        if row.get(m("input")):
            prompt = f"{prompt}\n\n{row[m('input')]}" if prompt else row[m("input")]
        msgs = []
        if row.get(m("system")):
            msgs.append({"role": "system", "content": row[m("system")]})
        msgs += [{"role": "user", "content": prompt}, {"role": "assistant", "content": row.get(m("output")) or ""}]
        return {"messages": msgs}
    if fmt in ("prompt-completion", "kto"):
        p, c = row[m("prompt")], row[m("completion")]
        if isinstance(p, list) and isinstance(c, list):
            return {"messages": list(p) + list(c)}
        return {"prompt": str(p), "completion": str(c)}
    if fmt == "text":
        return {"text": str(row[m("text")] or "")}
    raise UserError(f"format '{fmt}' cannot be trained with sft yet", field="dataset.format")
