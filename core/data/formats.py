"""Dataset formats: detect which one a table is in (with the evidence), check each row against it, and
convert rows to the shapes training takes.

Formats (`dataset.format`):
    alpaca             instruction / input (optional) / output (+ system, history optional)
    sharegpt           conversations: [{from, value}] (human/gpt/system/function_call/observation),
                       optional `system` and `tools` columns
    messages           OpenAI messages: [{role, content}] (system/user/assistant/tool, tool_calls)
    prompt-completion  prompt / completion: strings, or lists of messages (conversational)
    preference         prompt / chosen / rejected; or ShareGPT-style conversations + chosen/rejected
                       turn objects; or chosen / rejected conversations with an implicit prompt
    kto                prompt / completion / label; or messages (or conversations) + label
    text               one text column (continued pre-training style: every token trained)

Canonical rows (what `tokenize.encode_row` takes; `to_canonical`):
    {"messages": [{"role": .., "content": str}, ...]}   chat
    {"prompt": str, "completion": str}                  plain prompt/completion
    {"text": str}                                       raw text

With only SFT implemented, preference rows train on prompt + chosen and KTO rows on the desirable
(label true) rows only; `to_trl` gives the shapes TRL's DPO/KTO trainers take, for later.

Tool calls (ShareGPT `function_call` / `observation`, OpenAI `tool_calls` / role `tool`) become text
in the Hermes / Qwen style every chat template can render: the tool list goes into the system prompt
inside `<tools>...</tools>`, a call is an assistant turn `<tool_call>\\n{json}\\n</tool_call>` (trained),
a result is a `tool` turn (masked).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, get_args

from ..config import DatasetFormat
from ..errors import UserError

FORMATS = tuple(f for f in get_args(DatasetFormat) if f != "auto")  # the config's (core/config.py)

SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "bot": "assistant", "model": "assistant", "system": "system",
                  "function_call": "assistant", "observation": "tool", "tool": "tool", "function": "tool",
                  "ipython": "tool"}
MESSAGE_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant",
                 "tool": "tool", "function": "tool", "ipython": "tool"}

# Other names people give the canonical columns; used only when the canonical name is absent and no
# mapping was given. The evidence says which one was used.
ALIASES = {
    "instruction": ("instruction", "question", "query", "input_text"),
    "output": ("output", "response", "answer", "target"),
    "prompt": ("prompt",),
    "completion": ("completion", "response", "answer"),
    "text": ("text", "content", "document", "body"),
    "messages": ("messages", "conversation", "chat", "dialog"),
    "conversations": ("conversations", "conversation"),
}


@dataclass
class Detected:
    """A detected format: what it is, why we think so, which columns hold what, and what SFT does with it."""

    format: str
    evidence: str
    columns: dict[str, str] = field(default_factory=dict)  # canonical name -> column in the data
    variant: str = ""          # e.g. "conversational", "sharegpt-style", "with tool calls"
    sft_note: str | None = None  # how SFT uses this format when it is not plain SFT data

    def col(self, name: str) -> str:
        return self.columns.get(name, name)

    def to_json(self) -> dict:
        return {"format": self.format, "evidence": self.evidence, "columns": dict(self.columns),
                "variant": self.variant, "sft_note": self.sft_note}


SFT_NOTES = {
    "preference": "preference data: SFT trains on the prompt + the chosen answer (rejected answers are "
                  "ignored until DPO is available)",
    "kto": "KTO-labelled data: SFT trains on the desirable rows (label true) only; undesirable rows are "
           "skipped until KTO is available",
    "text": "raw text: continued-pretraining style, every token carries loss",
}


# ------------------------------------------------------------------------------------------ detection


def _turn_style(value: Any) -> str | None:
    """'openai' for [{role, content}], 'sharegpt' for [{from, value}], None otherwise."""
    if isinstance(value, str):
        value = _maybe_json_list(value)
    if isinstance(value, list) and value and all(isinstance(t, dict) for t in value[:4]):
        t = value[0]
        if "role" in t:
            return "openai"
        if "from" in t and "value" in t:
            return "sharegpt"
    if isinstance(value, dict):
        if "role" in value:
            return "openai"
        if "from" in value and "value" in value:
            return "sharegpt"
    return None


def _maybe_json_list(value: str):
    s = value.lstrip()[:1]
    if s in ("[", "{"):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return None


def _sample_values(sample: list[dict], col: str) -> list:
    return [r[col] for r in sample if isinstance(r, dict) and r.get(col) not in (None, "", [])]


def _style_of(sample: list[dict], col: str) -> str | None:
    for v in _sample_values(sample, col)[:5]:
        s = _turn_style(v)
        if s:
            return s
    return None


def detect_format(columns: list[str], sample: list[dict], mapping: dict[str, str] | None = None,
                  forced: str = "auto") -> Detected:
    """Which format `sample` (the first rows) is in, with the evidence. `mapping` maps canonical names
    to the data's column names (dataset.columns); `forced` is dataset.format ("auto" detects)."""
    given = dict(mapping or {})
    cols = set(columns) | {k for r in sample[:50] if isinstance(r, dict) for k in r}
    cm = dict(given)

    def has(*names: str) -> bool:
        return all(cm.get(n, n) in cols for n in names)

    def alias(name: str) -> bool:
        """Use an alias column for `name` when the canonical one is absent (records the choice)."""
        if has(name):
            return True
        if name in given:
            return False
        for a in ALIASES.get(name, ()):
            if a in cols and a not in cm.values():
                cm[name] = a
                return True
        return False

    def ev(text: str) -> str:
        renamed = [f"'{v}' as {k}" for k, v in cm.items() if k != v and k not in given]
        mapped = [f"'{v}' as {k} (dataset.columns)" for k, v in given.items() if k != v]
        extra = renamed + mapped
        return text + (f"; using {', '.join(extra)}" if extra else "")

    def done(fmt: str, evidence: str, variant: str = "") -> Detected:
        return Detected(fmt, ev(evidence), cm, variant, SFT_NOTES.get(fmt))

    if forced and forced != "auto":
        if forced not in FORMATS:
            raise UserError(f"unknown format '{forced}' (allowed: auto, {', '.join(FORMATS)})",
                            field="dataset.format")
        det = _detect_auto(cols, sample, cm, has, alias, done)
        if det is not None and det.format == forced:
            det.evidence = "format set in the config (dataset.format); " + det.evidence
            return det
        for n in ("messages", "conversations"):
            if forced in ("messages", "sharegpt") and not has(n):
                alias(n)
        variant = ""
        if forced == "prompt-completion" and has("prompt") and _style_of(sample, cm.get("prompt", "prompt")):
            variant = "conversational"
        return Detected(forced, "format set in the config (dataset.format)", cm, variant, SFT_NOTES.get(forced))
    det = _detect_auto(cols, sample, cm, has, alias, done)
    if det is not None:
        return det
    raise UserError(f"cannot tell the dataset's format from its columns {sorted(cols)}: expected one of "
                    "messages (role/content turns), conversations (from/value turns), instruction/output, "
                    "prompt/completion, prompt/chosen/rejected, prompt/completion/label, text; map yours "
                    f"with dataset.columns, e.g. {suggest_mapping(columns, sample)}", field="dataset.format")


def suggest_mapping(columns: list[str], sample: list[dict]) -> str:
    """A dataset.columns example built from the data's own columns (for the error message)."""
    order = list(dict.fromkeys(list(columns) + [k for r in sample[:20] if isinstance(r, dict) for k in r]))
    turns = [c for c in order if _style_of(sample, c)]
    if turns:
        return f"{{messages: {turns[0]}}}" if _style_of(sample, turns[0]) == "openai" else f"{{conversations: {turns[0]}}}"
    strings = [c for c in order if any(isinstance(r.get(c), str) and r.get(c).strip() for r in sample[:20]
                                       if isinstance(r, dict))]
    if len(strings) >= 2:
        return f"{{prompt: {strings[0]}, completion: {strings[-1]}}}"
    if len(strings) == 1:
        return f"{{text: {strings[0]}}}"
    return "{instruction: question, output: answer}"


def _detect_auto(cols, sample, cm, has, alias, done) -> Detected | None:
    c = lambda n: cm.get(n, n)  # noqa: E731
    # preference: chosen + rejected, with an explicit prompt, ShareGPT-style turns, or implicit prompt
    if has("chosen", "rejected"):
        style = _style_of(sample, c("chosen"))
        if has("prompt"):
            conv = "conversational" if style or _style_of(sample, c("prompt")) else ""
            return done("preference", f"columns '{c('prompt')}', '{c('chosen')}', '{c('rejected')}'", conv)
        for n in ("conversations", "messages"):
            if has(n) and _style_of(sample, c(n)):
                cm.setdefault("prompt", c(n))
                return done("preference", f"column '{c(n)}' holds the prompt turns and "
                            f"'{c('chosen')}'/'{c('rejected')}' the two answers (ShareGPT style)", "sharegpt-style")
        if style:
            return done("preference", f"columns '{c('chosen')}'/'{c('rejected')}' hold whole conversations "
                        "(implicit prompt: their shared first turns)", "implicit prompt")
        return done("preference", f"columns '{c('chosen')}'/'{c('rejected')}' (no prompt column)", "implicit prompt")
    # KTO: a boolean-ish label with prompt/completion or a conversation
    if has("label"):
        labels = _sample_values(sample, c("label"))
        if labels and all(_as_bool(v) is not None for v in labels[:20]):
            if has("prompt", "completion"):
                return done("kto", f"columns '{c('prompt')}'/'{c('completion')}' with a true/false "
                            f"'{c('label')}'", "conversational" if _style_of(sample, c("prompt")) else "")
            for n in ("messages", "conversations"):
                if alias(n) and _style_of(sample, c(n)):
                    cm.setdefault("messages", c(n))
                    return done("kto", f"column '{c(n)}' holds {_style_of(sample, c(n))} turns and "
                                f"'{c('label')}' is true/false (desirable or not)", "messages")
    for n in ("messages", "conversations"):
        if alias(n):
            style = _style_of(sample, c(n))
            if style == "openai":
                cm.setdefault("messages", c(n))
                tools = " with tool calls" if _has_tool_calls(sample, c(n)) or has("tools") else ""
                return done("messages", f"column '{c(n)}' holds role/content turns{tools}", tools.strip())
            if style == "sharegpt":
                cm.setdefault("conversations", c(n))
                roles = sorted({t.get("from") for v in _sample_values(sample, c(n))[:20]
                                for t in (v if isinstance(v, list) else []) if isinstance(t, dict)} - {None})
                tools = " with tool calls" if ({"function_call", "observation"} & set(roles)) or has("tools") else ""
                return done("sharegpt", f"column '{c(n)}' holds from/value turns ({', '.join(roles)}){tools}",
                            tools.strip())
    if alias("instruction") and alias("output"):
        extra = " and input" if has("input") else " (no input column)"
        return done("alpaca", f"columns '{c('instruction')}'/'{c('output')}'{extra}")
    if has("prompt") and alias("completion"):
        style = _style_of(sample, c("prompt"))
        return done("prompt-completion", f"columns '{c('prompt')}'/'{c('completion')}'"
                    + (" holding message lists" if style else ""), "conversational" if style else "")
    if alias("text"):
        return done("text", f"column '{c('text')}' of raw text")
    strings = [k for k in cols if sample and all(isinstance(r.get(k), str) for r in sample[:20] if isinstance(r, dict))]
    if len(cols) == 1 and strings:
        cm["text"] = strings[0]
        return done("text", f"the only column, '{strings[0]}', holds strings: raw text")
    return None


def _has_tool_calls(sample: list[dict], col: str) -> bool:
    for v in _sample_values(sample, col)[:20]:
        for t in v if isinstance(v, list) else []:
            if isinstance(t, dict) and (t.get("tool_calls") or t.get("role") in ("tool", "function")):
                return True
    return False


def _as_bool(v: Any) -> bool | None:
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float)) and v in (0, 1):
        return bool(v)
    if isinstance(v, str) and v.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
        return v.strip().lower() in ("true", "1", "yes")
    return None


def row_format(row: dict) -> str | None:
    """The format a single row looks like on its own (for the mixed-formats check); None if none."""
    try:
        return detect_format(list(row), [row]).format
    except UserError:
        return None


# ----------------------------------------------------------------------------------- row validation


@dataclass
class RowIssue:
    field: str
    message: str
    fix: str
    severity: str = "error"  # error: the row cannot be trained on; warning: it can, but look


def _content_text(content: Any) -> str | None:
    """Text of a message content: a string, or OpenAI content parts [{type: text, text}]."""
    if content is None:
        return None
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text", "") if isinstance(p, dict) else str(p) for p in content]
        return "".join(parts)
    return str(content)


def _turns(row: dict, det: Detected, name: str, issues: list[RowIssue]) -> list | None:
    col = det.col(name)
    v = row.get(col)
    if isinstance(v, str):
        parsed = _maybe_json_list(v)
        v = parsed if parsed is not None else v
    if v is None or v == [] or v == "":
        issues.append(RowIssue(col, "missing or empty", f"give every row a non-empty '{col}' list of turns"))
        return None
    if not isinstance(v, list) or not all(isinstance(t, dict) for t in v):
        issues.append(RowIssue(col, f"expected a list of turns (objects), got {type(v).__name__}",
                               f"make '{col}' a list like [{{\"role\": \"user\", \"content\": \"...\"}}]"))
        return None
    return v


def validate_row(row: dict, det: Detected) -> list[RowIssue]:
    """What is wrong with one row for its dataset's format: missing or empty fields, wrong types, unknown
    roles, no assistant answer. Errors make the row unusable; warnings do not."""
    issues: list[RowIssue] = []
    fmt = det.format
    c = det.col
    if fmt == "alpaca":
        for name in ("instruction", "output"):
            v = row.get(c(name))
            if v is None or (isinstance(v, str) and not v.strip()):
                if name == "instruction" and isinstance(row.get(c("input")), str) and row[c("input")].strip():
                    continue  # the input alone is the prompt
                issues.append(RowIssue(c(name), "missing or empty", f"fill in '{c(name)}' or delete the row"))
            elif not isinstance(v, str):
                issues.append(RowIssue(c(name), f"expected text, got {type(v).__name__}", f"make '{c(name)}' a string"))
    elif fmt in ("sharegpt", "messages") or (fmt == "kto" and det.variant == "messages"):
        name = "conversations" if fmt == "sharegpt" else "messages"
        turns = _turns(row, det, name, issues)
        if turns is not None:
            _check_turns(turns, c(name), issues, need_answer=True)
    elif fmt in ("prompt-completion", "kto"):
        for name in ("prompt", "completion"):
            v = row.get(c(name))
            if v is None or v == "" or v == [] or (isinstance(v, str) and not v.strip() and name == "completion"):
                issues.append(RowIssue(c(name), "missing or empty", f"fill in '{c(name)}' or delete the row"))
            elif isinstance(v, list):
                _check_turns(v, c(name), issues, need_answer=(name == "completion"))
            elif not isinstance(v, str):
                issues.append(RowIssue(c(name), f"expected text or a list of messages, got {type(v).__name__}",
                                       f"make '{c(name)}' a string"))
    elif fmt == "preference":
        for name in ("chosen", "rejected"):
            v = row.get(c(name))
            if v in (None, "", [], {}):
                issues.append(RowIssue(c(name), "missing or empty", f"fill in '{c(name)}' or delete the row"))
        if det.variant == "sharegpt-style" or (det.variant != "implicit prompt" and isinstance(row.get(c("prompt")), list)):
            turns = _turns(row, det, "prompt", issues)
            if turns is not None:
                _check_turns(turns, c("prompt"), issues, need_answer=False)
        elif det.variant != "implicit prompt" and row.get(c("prompt")) in (None, ""):
            issues.append(RowIssue(c("prompt"), "missing or empty", f"fill in '{c('prompt')}' or delete the row"))
    elif fmt == "text":
        v = row.get(c("text"))
        if v is None or (isinstance(v, str) and not v.strip()):
            issues.append(RowIssue(c("text"), "missing or empty", f"fill in '{c('text')}' or delete the row"))
        elif not isinstance(v, str):
            issues.append(RowIssue(c("text"), f"expected text, got {type(v).__name__}", f"make '{c('text')}' a string"))
    if fmt == "kto":
        v = row.get(c("label"))
        if _as_bool(v) is None:
            issues.append(RowIssue(c("label"), f"expected true or false, got {v!r}",
                                   f"set '{c('label')}' to true (desirable) or false (undesirable)"))
    return issues


def _check_turns(turns: list[dict], col: str, issues: list[RowIssue], need_answer: bool) -> None:
    answered = False
    for i, t in enumerate(turns):
        role_key = "role" if "role" in t else "from"
        raw_role = t.get(role_key)
        role = (MESSAGE_ROLES if role_key == "role" else SHAREGPT_ROLES).get(raw_role)
        where = f"{col}[{i}].{role_key}"
        if role is None:
            allowed = ", ".join(sorted(MESSAGE_ROLES if role_key == "role" else SHAREGPT_ROLES))
            issues.append(RowIssue(where, f"unknown role {raw_role!r}", f"use one of: {allowed}"))
            continue
        content_key = "content" if role_key == "role" else "value"
        text = _content_text(t.get(content_key))
        if role == "assistant":
            if text and text.strip() or t.get("tool_calls"):
                answered = True
            elif t.get(content_key) is None and not t.get("tool_calls"):
                issues.append(RowIssue(f"{col}[{i}].{content_key}", "assistant turn is missing its text",
                                       "give the assistant turn its answer or delete the row"))
            else:
                issues.append(RowIssue(f"{col}[{i}].{content_key}", "empty assistant turn: nothing to learn "
                                       "but the end-of-turn token", "give the assistant turn its answer or "
                                       "delete the row", "warning"))
        elif text is None:
            issues.append(RowIssue(f"{col}[{i}].{content_key}", f"{role} turn has no '{content_key}'",
                                   f"add '{content_key}' to every turn"))
    if need_answer and not answered and not any(i.field.endswith((".content", ".value")) for i in issues):
        issues.append(RowIssue(col, "no assistant turn: nothing to train on with assistant-only loss",
                               "end each conversation with the assistant's answer", "error"))


# ----------------------------------------------------------------------------------------- conversion


def _tools_text(tools: Any) -> str | None:
    if tools in (None, "", "[]", []):
        return None
    if isinstance(tools, str):
        try:
            tools = json.loads(tools)
        except ValueError:
            return tools.strip() or None
    if isinstance(tools, dict):
        tools = [tools]
    if not tools:
        return None
    lines = "\n".join(json.dumps(t, ensure_ascii=False) for t in tools)
    return ("You can call these tools:\n<tools>\n" + lines + "\n</tools>\nTo call a tool, answer with "
            "<tool_call>\n{\"name\": ..., \"arguments\": ...}\n</tool_call>")


def _tool_call_text(call: Any) -> str:
    if isinstance(call, str):
        body = call.strip()
    else:
        if isinstance(call, dict) and "function" in call:  # OpenAI {type, function: {name, arguments}}
            call = call["function"]
        if isinstance(call, dict) and isinstance(call.get("arguments"), str):
            try:
                call = {**call, "arguments": json.loads(call["arguments"])}
            except ValueError:
                pass
        body = json.dumps(call, ensure_ascii=False)
    return f"<tool_call>\n{body}\n</tool_call>"


def _to_messages(turns: Any, *, sharegpt: bool | None = None) -> list[dict]:
    """Turns in any style (OpenAI role/content with tool_calls, ShareGPT from/value) -> role/content strings."""
    if isinstance(turns, str):
        parsed = _maybe_json_list(turns)
        turns = parsed if parsed is not None else [{"role": "user", "content": turns}]
    if isinstance(turns, dict):
        turns = [turns]
    out = []
    for t in turns or []:
        if not isinstance(t, dict):
            continue
        if "from" in t and (sharegpt or "role" not in t):
            src = t.get("from")
            role = SHAREGPT_ROLES.get(src, src)
            text = _content_text(t.get("value")) or ""
            if src == "function_call":
                text = _tool_call_text(text)
        else:
            role = MESSAGE_ROLES.get(t.get("role"), t.get("role"))
            text = _content_text(t.get("content")) or ""
            calls = t.get("tool_calls")
            if calls:
                text = "\n".join(([text] if text.strip() else []) + [_tool_call_text(c) for c in calls])
        out.append({"role": role, "content": text})
    return out


def _with_system(msgs: list[dict], system: Any, tools: Any) -> list[dict]:
    extra = [s for s in (_content_text(system) if system else None, _tools_text(tools)) if s]
    if not extra:
        return msgs
    if msgs and msgs[0]["role"] == "system":
        first = {"role": "system", "content": "\n\n".join([msgs[0]["content"]] + [s for s in extra if s != msgs[0]["content"]])}
        return [first] + msgs[1:]
    return [{"role": "system", "content": "\n\n".join(extra)}] + msgs


def keep_for_sft(row: dict, det: Detected) -> bool:
    """False for rows SFT must not train on: KTO rows labelled undesirable."""
    if det.format == "kto":
        return _as_bool(row.get(det.col("label"))) is True
    return True


def to_canonical(row: dict[str, Any], det: Detected) -> dict[str, Any]:
    """The SFT shape of one row (see the module docstring). Call `keep_for_sft` first for KTO data."""
    c = det.col
    fmt = det.format
    system, tools = row.get(c("system")), row.get(c("tools"))
    if fmt == "messages" or (fmt == "kto" and det.variant == "messages"):
        return {"messages": _with_system(_to_messages(row[c("messages")]), system, tools)}
    if fmt == "sharegpt":
        return {"messages": _with_system(_to_messages(row[c("conversations")], sharegpt=True), system, tools)}
    if fmt == "alpaca":
        instruction = _content_text(row.get(c("instruction"))) or ""
        inp = _content_text(row.get(c("input"))) or ""
        prompt = f"{instruction}\n\n{inp}" if instruction and inp.strip() else (instruction or inp)
        msgs = []
        for pair in row.get(c("history")) or []:  # alpaca's optional [[user, assistant], ...]
            if isinstance(pair, (list, tuple)) and len(pair) == 2:
                msgs += [{"role": "user", "content": str(pair[0])}, {"role": "assistant", "content": str(pair[1])}]
        msgs += [{"role": "user", "content": prompt},
                 {"role": "assistant", "content": _content_text(row.get(c("output"))) or ""}]
        return {"messages": _with_system(msgs, system, tools)}
    if fmt in ("prompt-completion", "kto"):
        p, comp = row.get(c("prompt")), row.get(c("completion"))
        if isinstance(p, list) or isinstance(comp, list):
            return {"messages": _with_system(_to_messages(p) + _to_messages(
                comp if isinstance(comp, list) else [{"role": "assistant", "content": comp}]), system, tools)}
        return {"prompt": str(p or ""), "completion": str(comp or "")}
    if fmt == "preference":
        prompt, chosen, _ = _preference_parts(row, det)
        if prompt is None:  # plain strings
            return {"prompt": str(row.get(c("prompt")) or ""), "completion": str(chosen or "")}
        return {"messages": _with_system(prompt + chosen, system, tools)}
    if fmt == "text":
        return {"text": _content_text(row.get(c("text"))) or ""}
    raise UserError(f"format '{fmt}' cannot be trained with sft", field="dataset.format")


def _preference_parts(row: dict, det: Detected):
    """(prompt messages, chosen messages, rejected messages); prompt None when all three are strings."""
    c = det.col
    p, ch, rj = row.get(c("prompt")), row.get(c("chosen")), row.get(c("rejected"))
    if det.variant == "implicit prompt":
        ch_m, rj_m = _to_messages(ch), _to_messages(rj)
        n = 0
        while n < min(len(ch_m), len(rj_m)) - 1 and ch_m[n] == rj_m[n]:
            n += 1
        return ch_m[:n], ch_m[n:], rj_m[n:]
    if isinstance(p, str) and isinstance(ch, str) and isinstance(rj, str):
        return None, ch, rj

    def answer(v):
        return _to_messages(v) if isinstance(v, (list, dict)) else [{"role": "assistant", "content": str(v or "")}]

    return _to_messages(p), answer(ch), answer(rj)


def to_trl(row: dict[str, Any], det: Detected) -> dict[str, Any]:
    """The row in the shape TRL's trainer for its kind takes: SFT rows as `to_canonical`; preference as
    {prompt, chosen, rejected} (message lists, or strings for plain data); KTO as {prompt, completion,
    label} (message lists for conversations)."""
    c = det.col
    if det.format == "preference":
        prompt, chosen, rejected = _preference_parts(row, det)
        if prompt is None:
            return {"prompt": row.get(c("prompt")), "chosen": chosen, "rejected": rejected}
        return {"prompt": _with_system(prompt, row.get(c("system")), row.get(c("tools"))), "chosen": chosen,
                "rejected": rejected}
    if det.format == "kto":
        label = _as_bool(row.get(c("label")))
        if det.variant == "messages":
            msgs = _to_messages(row[c("messages")])
            k = max((i for i, m in enumerate(msgs) if m["role"] != "assistant"), default=-1) + 1
            return {"prompt": msgs[:k], "completion": msgs[k:], "label": label}
        p, comp = row.get(c("prompt")), row.get(c("completion"))
        if isinstance(p, list):
            return {"prompt": _to_messages(p), "completion": _to_messages(comp), "label": label}
        return {"prompt": p, "completion": comp, "label": label}
    return to_canonical(row, det)
