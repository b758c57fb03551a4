"""Dataset formats, one `FormatSpec` each: how to detect it (with the evidence), which columns it has,
what is wrong with a row, the row in the canonical (SFT) shape and in the shape TRL's trainer for its
kind takes, and what SFT does with it. Callers look the spec up by name (`spec(det.format)`) instead of
branching on the format string; a new format or a per-kind view (DPO pairs, KTO labels, ...) is one
more spec or one more field here.

Formats (`dataset.format`), in detection order:
    preference         prompt / chosen / rejected; or ShareGPT-style conversations + chosen/rejected
                       turn objects; or chosen / rejected conversations with an implicit prompt
    kto                prompt / completion / label; or messages (or conversations) + label
    messages           OpenAI messages: [{role, content}] (system/user/assistant/tool, tool_calls)
    sharegpt           conversations: [{from, value}] (human/gpt/system/function_call/observation),
                       optional `system` and `tools` columns
    alpaca             instruction / input (optional) / output (+ system, history optional)
    prompt-completion  prompt / completion: strings, or lists of messages (conversational)
    text               one text column (continued pre-training style: every token trained)

Canonical rows (what `tokenize.encode_row` takes; `to_canonical`):
    {"messages": [{"role": .., "content": str}, ...]}   chat
    {"prompt": str, "completion": str}                  plain prompt/completion
    {"text": str}                                       raw text

Under training: sft, preference rows train on prompt + chosen and KTO rows on the desirable (label true)
rows only (`sft_note`); `to_trl` gives the shapes TRL's DPO/KTO trainers take (`FormatSpec.trl_kind`).

Tool calls (ShareGPT `function_call` / `observation`, OpenAI `tool_calls` / role `tool`) become text
in the Hermes / Qwen style every chat template can render: the tool list goes into the system prompt
inside `<tools>...</tools>`, a call is an assistant turn `<tool_call>\\n{json}\\n</tool_call>` (trained),
a result is a `tool` turn (masked).

Row problems are `problems.Problem`s with their code and fix set here: `missing-field`,
`no-assistant-turn`, `empty-answer`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable, get_args

from ..config import DatasetFormat
from ..errors import UserError
from .problems import Problem

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

    @property
    def spec(self) -> "FormatSpec":
        return spec(self.format)

    def to_json(self) -> dict:
        return {"format": self.format, "evidence": self.evidence, "columns": dict(self.columns),
                "variant": self.variant, "sft_note": self.sft_note}


@dataclass(frozen=True)
class FormatSpec:
    """Everything about one dataset format. The functions take a raw row and its `Detected`."""

    name: str
    columns: tuple[str, ...]            # canonical columns a row has (first alternative when several)
    optional: tuple[str, ...]           # canonical columns used when present
    detect: Callable[["_Sample"], Detected | None]  # None: not this format
    validate: Callable[[dict, Detected], list[Problem]]
    canonical: Callable[[dict, Detected], dict]      # the SFT shape (module docstring)
    trl: Callable[[dict, Detected], dict] | None = None  # the TRL shape of `trl_kind`; None: canonical
    trl_kind: str = "sft"               # the TRL trainer whose dataset shape `to_trl` gives
    keep: Callable[[dict, Detected], bool] | None = None  # False: SFT skips the row (None: keeps all)
    sft_note: str | None = None         # how SFT uses it when it is not plain SFT data
    sft_note_fix: str | None = None     # set: the note is also listed as an info problem
    all_tokens: bool = False            # no prompt to mask: every token trains (assistant-only n/a)
    default_task: str | None = None     # the task the row-count guidance assumes

    def keeps(self, row: dict, det: Detected) -> bool:
        return self.keep is None or self.keep(row, det)

    def to_trl(self, row: dict, det: Detected) -> dict:
        return (self.trl or self.canonical)(row, det)

    def masks_prompt(self, assistant_only: bool) -> bool:
        """Whether assistant-only loss applies to this format (text has no prompt to mask)."""
        return assistant_only and not self.all_tokens


# ------------------------------------------------------------------------------------------ detection


class _Sample:
    """What detection sees: the columns, the first rows, and the column mapping so far (canonical name
    -> data column; `dataset.columns` first, aliases recorded as they are used)."""

    def __init__(self, columns: list[str], sample: list[dict], given: dict[str, str]):
        self.rows = sample
        self.given = given
        self.cols = set(columns) | {k for r in sample[:50] if isinstance(r, dict) for k in r}
        self.cm = dict(given)

    def c(self, name: str) -> str:
        return self.cm.get(name, name)

    def has(self, *names: str) -> bool:
        return all(self.c(n) in self.cols for n in names)

    def alias(self, name: str) -> bool:
        """Use an alias column for `name` when the canonical one is absent (records the choice)."""
        if self.has(name):
            return True
        if name in self.given:
            return False
        for a in ALIASES.get(name, ()):
            if a in self.cols and a not in self.cm.values():
                self.cm[name] = a
                return True
        return False

    def style(self, name: str) -> str | None:
        """'openai' or 'sharegpt' when the column holds turns, else None."""
        return _style_of(self.rows, self.c(name))

    def done(self, fmt: str, evidence: str, variant: str = "") -> Detected:
        renamed = [f"'{v}' as {k}" for k, v in self.cm.items() if k != v and k not in self.given]
        mapped = [f"'{v}' as {k} (dataset.columns)" for k, v in self.given.items() if k != v]
        extra = renamed + mapped
        evidence += f"; using {', '.join(extra)}" if extra else ""
        return Detected(fmt, evidence, self.cm, variant, spec(fmt).sft_note)


def detect_format(columns: list[str], sample: list[dict], mapping: dict[str, str] | None = None,
                  forced: str = "auto") -> Detected:
    """Which format `sample` (the first rows) is in, with the evidence. `mapping` maps canonical names
    to the data's column names (dataset.columns); `forced` is dataset.format ("auto" detects)."""
    s = _Sample(columns, sample, dict(mapping or {}))
    if forced and forced != "auto":
        fs = spec(forced)
        det = _detect_auto(s)
        if det is not None and det.format == forced:
            det.evidence = "format set in the config (dataset.format); " + det.evidence
            return det
        return _forced(fs, s)
    det = _detect_auto(s)
    if det is not None:
        return det
    half = [n for n in ("chosen", "rejected") if s.has(n)]
    if len(half) == 1:  # half a preference pair: say which column is missing, not every format
        gone = "rejected" if half == ["chosen"] else "chosen"
        raise UserError(f"preference pairs need a '{gone}' column beside '{s.c(half[0])}', and these rows have none "
                        f"(columns {sorted(s.cols)}): add the {gone} answer to every row, or map your column with "
                        f"dataset.columns: {{{gone}: YOUR_COLUMN}}", field=f"dataset.columns.{gone}")
    raise UserError(f"cannot tell the dataset's format from its columns {sorted(s.cols)}: expected one of "
                    "messages (role/content turns), conversations (from/value turns), instruction/output, "
                    "prompt/completion, prompt/chosen/rejected, prompt/completion/label, text; map yours "
                    f"with dataset.columns, e.g. {suggest_mapping(columns, sample)}", field="dataset.format")


def _detect_auto(s: _Sample) -> Detected | None:
    for fs in SPECS.values():
        det = fs.detect(s)
        if det is not None:
            return det
    return _only_string_column(s)


def _forced(fs: FormatSpec, s: _Sample) -> Detected:
    """`dataset.format` names a format the rows were not detected as: trust it, mapping what we can."""
    if fs.name in ("messages", "sharegpt"):
        for n in ("messages", "conversations"):
            if not s.has(n):
                s.alias(n)
    variant = "conversational" if fs.name == "prompt-completion" and s.has("prompt") and s.style("prompt") else ""
    return Detected(fs.name, "format set in the config (dataset.format)", s.cm, variant, fs.sft_note)


def _only_string_column(s: _Sample) -> Detected | None:
    strings = [k for k in s.cols if s.rows and all(isinstance(r.get(k), str) for r in s.rows[:20] if isinstance(r, dict))]
    if len(s.cols) == 1 and strings:
        s.cm["text"] = strings[0]
        return s.done("text", f"the only column, '{strings[0]}', holds strings: raw text")
    return None


def row_format(row: dict) -> str | None:
    """The format a single row looks like on its own (for the mixed-formats check); None if none."""
    try:
        return detect_format(list(row), [row]).format
    except UserError:
        return None


def detect_source(source: str, *, columns: dict | None = None, format: str = "auto", split: str = "train",
                  n: int = 50):
    """(Detected, first readable rows with their lines, unreadable RawRows among them) of a source,
    reading only its first `n` readable rows. Raises `UserError` (file:line) when none can be read or
    the format cannot be told."""
    from .read import iter_rows

    sample, bad = [], []
    for r in iter_rows(source, split=split, limit=n + 10):
        if r.error:
            bad.append(r)
        else:
            sample.append(r)
        if len(sample) >= n:
            break
    if not sample:
        if bad:
            first = bad[0]
            raise UserError(first.error, file=first.file, line=first.line)
        raise UserError("no rows in this dataset", file=source, line=1)
    rows = [r.row for r in sample]
    cols = list(dict.fromkeys(k for r in rows for k in r))
    try:
        det = detect_format(cols, rows, columns, format)
    except UserError as exc:
        p = exc.problems[0]
        raise UserError(p.message, file=sample[0].file, line=sample[0].line, field=p.field) from None
    return det, sample, bad


# ------------------------------------------------------------------------------- row checks (shared)


def _missing(col: str) -> Problem:
    return Problem("missing or empty", field=col, code="missing-field", fix=f"fill in '{col}' or delete the row")


def _wrong_type(col: str, expected: str, v: Any, fix: str) -> Problem:
    return Problem(f"expected {expected}, got {type(v).__name__}", field=col, code="missing-field", fix=fix)


def _text_field(row: dict, col: str, out: list[Problem]) -> None:
    v = row.get(col)
    if v is None or (isinstance(v, str) and not v.strip()):
        out.append(_missing(col))
    elif not isinstance(v, str):
        out.append(_wrong_type(col, "text", v, f"make '{col}' a string"))


def _turns(row: dict, col: str, out: list[Problem]) -> list | None:
    v = row.get(col)
    if isinstance(v, str):
        parsed = _maybe_json_list(v)
        v = parsed if parsed is not None else v
    if v is None or v == [] or v == "":
        out.append(Problem("missing or empty", field=col, code="missing-field",
                           fix=f"give every row a non-empty '{col}' list of turns"))
        return None
    if not isinstance(v, list) or not all(isinstance(t, dict) for t in v):
        out.append(_wrong_type(col, "a list of turns (objects)", v,
                               f"make '{col}' a list like [{{\"role\": \"user\", \"content\": \"...\"}}]"))
        return None
    return v


def _check_turns(turns: list[dict], col: str, out: list[Problem], need_answer: bool) -> None:
    answered = False
    content_problem = False
    for i, t in enumerate(turns):
        role_key = "role" if "role" in t else "from"
        raw_role = t.get(role_key)
        roles = MESSAGE_ROLES if role_key == "role" else SHAREGPT_ROLES
        role = roles.get(raw_role)
        if role is None:
            out.append(Problem(f"unknown role {raw_role!r}", field=f"{col}[{i}].{role_key}", code="missing-field",
                               fix=f"use one of: {', '.join(sorted(roles))}"))
            continue
        content_key = "content" if role_key == "role" else "value"
        where = f"{col}[{i}].{content_key}"
        text = _content_text(t.get(content_key))
        if role == "assistant":
            if text and text.strip() or t.get("tool_calls"):
                answered = True
            elif t.get(content_key) is None and not t.get("tool_calls"):
                content_problem = True
                out.append(Problem("assistant turn is missing its text", field=where, code="missing-field",
                                   fix="give the assistant turn its answer or delete the row"))
            else:
                content_problem = True
                out.append(Problem("empty assistant turn: nothing to learn but the end-of-turn token",
                                   field=where, code="empty-answer", severity="warning",
                                   fix="give the assistant turn its answer or delete the row"))
        elif text is None:
            content_problem = True
            out.append(Problem(f"{role} turn has no '{content_key}'", field=where, code="missing-field",
                               fix=f"add '{content_key}' to every turn"))
    if need_answer and not answered and not content_problem:
        out.append(Problem("no assistant turn: nothing to train on with assistant-only loss", field=col,
                           code="no-assistant-turn", fix="end each conversation with the assistant's answer"))


ARROW_BLOCK = 1 << 20  # bytes pyarrow parses at a time: 1 MB blocks cost ~12% less CPU than one per chunk


@dataclass
class ArrowTurns:
    """Rows of a JSONL chunk read by Arrow (`arrow_messages`): which are plain, and their figures."""

    rows: int
    clean: Any          # numpy bool per row: no problem at all under `_check_turns` (the rest: per row)
    chars: Any          # numpy int per row: length of the canonical text ("\n".join of the contents)
    roles: dict         # canonical role -> turns, over the clean rows
    text: bytes         # `canonical_key`'s first half of every row, end to end
    text_at: Any        # numpy int32: row k's is text[text_at[k]:text_at[k + 1]]
    shape: bytes        # `canonical_key`'s second half of every row, end to end (8 bytes a turn)
    shape_at: Any       # numpy int32, as text_at
    braces: Any         # numpy bool per row: some content holds "{{" (placeholder candidates)


# pyarrow turns numpy arrays and Python values into Arrow ones (`to_numpy`, `pa.array(ndarray)`,
# `pa.scalar`, a str or int handed to a compute function) through its pandas shim, which imports pandas
# on first use: ~0.3-0.5 s of a CLI's pre-flight or a first scan, for a package the scan never uses. The
# Arrow path converts through the buffers instead (tests/test_data_scan.py checks pandas stays unloaded).

def to_numpy(a, null=0):
    """A pyarrow array of integers or booleans as numpy; nulls read as `null`."""
    import numpy as np
    import pyarrow as pa

    if isinstance(a, pa.ChunkedArray):
        a = a.combine_chunks()
    n, offset = len(a), a.offset
    validity, data = a.buffers()[0], a.buffers()[1]
    if pa.types.is_boolean(a.type):
        out = _bits(data, offset, n) if data is not None else np.zeros(n, dtype=bool)
    elif pa.types.is_integer(a.type):
        dtype = np.dtype(str(a.type))  # int8 ... uint64: numpy's names too
        out = np.frombuffer(data, dtype, n, offset * dtype.itemsize) if n else np.zeros(0, dtype)
    else:
        raise TypeError(f"to_numpy: {a.type} is neither integer nor boolean")
    if a.null_count and validity is not None:
        out = np.where(_bits(validity, offset, n), out, null).astype(out.dtype)  # bool stays bool
    return out


def _ascii(text: bytes) -> bool:
    """Every byte below 0x80 (so byte lengths are character lengths): numpy's max, ~2x bytes.isascii here."""
    import numpy as np

    return not text or int(np.frombuffer(text, np.uint8).max()) < 0x80


def _bits(buf, offset: int, n: int):
    """Arrow's bit-packed buffer (least significant bit first) as n numpy bools from bit `offset`."""
    import numpy as np

    return np.unpackbits(np.frombuffer(buf, np.uint8), count=offset + n, bitorder="little")[offset:].astype(bool)


def from_numpy(values):
    """A numpy integer or boolean array as a pyarrow array (zero-copy for integers)."""
    import numpy as np
    import pyarrow as pa

    values = np.ascontiguousarray(values)
    if values.dtype == bool:
        return pa.Array.from_buffers(pa.bool_(), len(values),
                                     [None, pa.py_buffer(np.packbits(values, bitorder="little"))])
    return pa.Array.from_buffers(pa.from_numpy_dtype(values.dtype), len(values), [None, pa.py_buffer(values)])


def string_scalar(text: str):
    """An Arrow string scalar, to hand a compute function a constant without `pa.scalar`."""
    import numpy as np
    import pyarrow as pa

    data = text.encode("utf-8")
    return pa.Array.from_buffers(pa.string(), 1, [None, pa.py_buffer(np.array([0, len(data)], np.int32)),
                                                  pa.py_buffer(data)])[0]


def arrow_rows(chunk, det: Detected, lines: int) -> ArrowTurns | None:
    """`arrow_messages` or `arrow_alpaca`, by the dataset's format (`ARROW_FORMATS`)."""
    return (arrow_messages if det.format == "messages" else arrow_alpaca)(chunk, det, lines)


def _arrow_table(chunk, lines: int):
    """pyarrow's table of a JSONL chunk (bytes or a memoryview holding `lines` newlines), one row a line;
    None when Arrow refuses it (bad JSON) or its rows are not the lines (blank lines, which Arrow skips)."""
    import pyarrow as pa
    import pyarrow.json as pj

    # Arrow's threads: the parse is most of a scan's time; on 2 cores they cut a 300 MB scan's wall time
    # by ~25% (1.0x load_dataset -> 1.23-1.38x) for ~10% more CPU (README "Data" -> "Measured")
    def read(block: int):
        return pj.read_json(pa.BufferReader(chunk), read_options=pj.ReadOptions(use_threads=True,
                                                                              block_size=block))

    try:
        try:
            table = read(ARROW_BLOCK)
        except (pa.ArrowException, ValueError) as exc:
            if "straddl" not in str(exc) or len(chunk) <= ARROW_BLOCK:
                raise
            table = read(min(len(chunk), (1 << 31) - 1))  # a row longer than the block
    except (pa.ArrowException, ValueError):
        return None
    return table if table.num_rows == lines + (chunk[-1:] != b"\n") else None


def arrow_messages(chunk, det: Detected, lines: int) -> ArrowTurns | None:
    """The rules of `_check_turns` on Arrow columns, for a JSONL chunk of a messages dataset: a row is
    clean when its turns are a non-empty list of {role, content} strings with known roles and at least
    one assistant turn with text, so `validate_row` finds nothing and `to_canonical` only maps the roles.
    None when Arrow cannot take the chunk as such rows (bad JSON, blank lines, other fields, a system or
    tools column): the caller reads it row by row. Rows that are not clean are left to `validate_row`.
    `chunk`: bytes or a memoryview, `lines`: how many newlines it holds."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    col = det.col("messages")
    table = _arrow_table(chunk, lines)
    if table is None:
        return None
    names = set(table.column_names)
    if col not in names or det.col("system") in names or det.col("tools") in names:
        return None
    msgs = table.column(col)
    msgs = msgs.chunk(0) if msgs.num_chunks == 1 else msgs.combine_chunks()
    t = msgs.type
    if not pa.types.is_list(t) or not pa.types.is_struct(t.value_type) or msgs.offset:
        return None
    fields = {f.name: f.type for f in t.value_type}
    if set(fields) != {"role", "content"} or not all(pa.types.is_string(x) for x in fields.values()):
        return None
    n = len(msgs)
    offs = to_numpy(msgs.offsets)
    if offs[0]:
        return None
    turns = msgs.values.slice(0, int(offs[-1]))
    parents = np.repeat(np.arange(n), np.diff(offs))
    roles, contents = turns.field("role"), turns.field("content")
    enc = pc.dictionary_encode(roles)
    names = enc.dictionary.to_pylist()
    role_code = np.array([ROLE_CODES[MESSAGE_ROLES[r]] if r in MESSAGE_ROLES else 0 for r in names] + [0],
                         dtype="<u8")  # per turn below: 0 for an unknown or missing role
    code = role_code[to_numpy(enc.indices, null=len(names))]
    ok = (code != 0) & to_numpy(turns.is_valid()) & to_numpy(contents.is_valid())
    asst = code == ROLE_CODES["assistant"]
    # every content's bytes end to end (row by row: canonical_key's first half), one copy
    co = np.frombuffer(contents.buffers()[1], np.int32, len(contents) + 1, contents.offset * 4)
    data = contents.buffers()[2]
    text = bytes(memoryview(data)[co[0]:co[-1]]) if data is not None else b""
    ascii_only = _ascii(text)
    clen = to_numpy((pc.binary_length if ascii_only else pc.utf8_length)(contents))  # a missing content: 0
    # a blank answer: only an assistant turn that starts with a space, a control or a non-ASCII byte can be
    start = np.frombuffer(text, np.uint8)[np.minimum(co[:-1] - co[0], max(len(text) - 1, 0))] if text else clen
    maybe = np.flatnonzero(asst & ((clen == 0) | (start <= 0x20) | (start >= 0x7F)))
    blank = np.zeros(len(contents), dtype=bool)
    blank[maybe] = to_numpy(pc.utf8_is_space(contents.take(from_numpy(maybe)))) | (clen[maybe] == 0)
    answered = asst & ~blank
    bad = ~ok | (asst & ~answered)
    count = np.diff(offs)
    clean = (to_numpy(msgs.is_valid()) & (count > 0)
             & (np.bincount(parents[bad], minlength=n) == 0) & (np.bincount(parents[answered], minlength=n) > 0))
    chars = np.bincount(parents, weights=clen, minlength=n).astype(np.int64) + np.maximum(count - 1, 0)
    counted = np.bincount(code[clean[parents]].astype(np.int64), minlength=len(ROLE_CODES) + 1).tolist()
    role_counts = {r: counted[c] for r, c in ROLE_CODES.items() if counted[c]}
    shape = code << 32 | np.diff(co).astype("<u8")
    if b"{" in text:  # memchr: rare in text; then look for "{{" turn by turn
        hits = to_numpy(pc.match_substring(contents, "{{"))
        braces = np.bincount(parents[hits], minlength=n) > 0
    else:
        braces = np.zeros(n, dtype=bool)
    return ArrowTurns(n, clean, chars, role_counts, text, co[offs] - co[0], shape.tobytes(), offs * 8, braces)


ROLE_CODES = {"system": 1, "user": 2, "assistant": 3, "tool": 4}  # canonical roles in `canonical_key`


def arrow_alpaca(chunk, det: Detected, lines: int) -> ArrowTurns | None:
    """The rules of `_validate_alpaca` on Arrow columns, for a JSONL chunk of an alpaca dataset: a row is
    clean when its instruction and output are strings with text and its input a string or missing, so
    `validate_row` finds nothing; `to_canonical` makes it [user: instruction (+ "\\n\\n" + input when the
    input has text), assistant: output]. None when Arrow cannot take the chunk as such rows (bad JSON,
    blank lines, columns of other types, a history, system or tools column): read row by row."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    table = _arrow_table(chunk, lines)
    if table is None:
        return None
    c, names, n = det.col, set(table.column_names), table.num_rows
    if c("instruction") not in names or c("output") not in names or (
            {c("history"), c("system"), c("tools")} & names):
        return None
    cols = {}
    for key in ("instruction", "input", "output"):
        if c(key) not in names:
            cols[key] = pa.nulls(n, pa.string())
            continue
        col = table.column(c(key)).combine_chunks()
        if not (pa.types.is_string(col.type) or pa.types.is_null(col.type)):
            return None
        cols[key] = col.cast(pa.string())

    def has_text(a):  # a string that is not empty or all spaces (`_text_field`)
        return to_numpy(a.is_valid()) & (to_numpy(pc.binary_length(a)) > 0) & ~to_numpy(pc.utf8_is_space(a))

    clean = has_text(cols["instruction"]) & has_text(cols["output"])
    empty = string_scalar("")
    extra = pc.if_else(from_numpy(has_text(cols["input"])),
                       pc.binary_join_element_wise(string_scalar("\n\n"), pc.fill_null(cols["input"], empty), empty),
                       empty)
    prompt = pc.binary_join_element_wise(pc.fill_null(cols["instruction"], empty), extra, empty)
    output = pc.fill_null(cols["output"], empty)
    texts = pc.binary_join_element_wise(prompt, output, empty)
    at = np.frombuffer(texts.buffers()[1], np.int32, n + 1, texts.offset * 4)
    data = texts.buffers()[2]
    text = bytes(memoryview(data)[at[0]:at[-1]]) if data is not None else b""
    plen = to_numpy(pc.binary_length(prompt)).astype("<u8")
    olen = to_numpy(pc.binary_length(output)).astype("<u8")
    shape = np.empty(2 * n, dtype="<u8")
    shape[0::2] = ROLE_CODES["user"] << 32 | plen
    shape[1::2] = ROLE_CODES["assistant"] << 32 | olen
    if _ascii(text):
        chars = (plen + olen + 1).astype(np.int64)
    else:
        chars = (to_numpy(pc.utf8_length(prompt)) + to_numpy(pc.utf8_length(output)) + 1).astype(np.int64)
    k = int(clean.sum())
    braces = (to_numpy(pc.match_substring(texts, "{{")) if b"{" in text
              else np.zeros(n, dtype=bool))
    return ArrowTurns(n, clean, chars, {"user": k, "assistant": k} if k else {}, text, at - at[0],
                      shape.tobytes(), np.arange(n + 1, dtype=np.int32) * 16, braces)


ARROW_FORMATS = ("messages", "alpaca")  # formats `arrow_rows` reads


def canonical_key(canon: dict) -> tuple[bytes, bytes]:
    """One value per canonical row, equal for equal rows (duplicates, validation overlap). Turns of
    {role, content} strings: (the contents' UTF-8 end to end, the shape: per turn `ROLE_CODES[role] << 32
    | content bytes` as little-endian uint64), the pair `arrow_messages` builds without copying the text.
    Other rows: (sorted JSON, b"J"), never equal to a shape (a multiple of 8 bytes)."""
    msgs = canon.get("messages")
    if msgs is not None and all(set(m) == {"role", "content"} and m["role"] in ROLE_CODES
                                and isinstance(m["content"], str) for m in msgs):
        parts = [m["content"].encode() for m in msgs]
        if all(len(b) < 1 << 32 for b in parts):
            return b"".join(parts), b"".join(((ROLE_CODES[m["role"]] << 32) | len(b)).to_bytes(8, "little")
                                             for m, b in zip(msgs, parts))
    return json.dumps(canon, sort_keys=True, ensure_ascii=False).encode(), b"J"


def _conversation(row: dict, col: str, out: list[Problem]) -> None:
    turns = _turns(row, col, out)
    if turns is not None:
        _check_turns(turns, col, out, need_answer=True)


# ------------------------------------------------------------------------------------------ preference


def _detect_preference(s: _Sample) -> Detected | None:
    if not s.has("chosen", "rejected"):
        return None
    c = s.c
    style = s.style("chosen")
    if s.has("prompt"):
        conv = "conversational" if style or s.style("prompt") else ""
        return s.done("preference", f"columns '{c('prompt')}', '{c('chosen')}', '{c('rejected')}'", conv)
    for n in ("conversations", "messages"):
        if s.has(n) and s.style(n):
            s.cm.setdefault("prompt", c(n))
            return s.done("preference", f"column '{c(n)}' holds the prompt turns and "
                          f"'{c('chosen')}'/'{c('rejected')}' the two answers (ShareGPT style)", "sharegpt-style")
    if style:
        return s.done("preference", f"columns '{c('chosen')}'/'{c('rejected')}' hold whole conversations "
                      "(implicit prompt: their shared first turns)", "implicit prompt")
    return s.done("preference", f"columns '{c('chosen')}'/'{c('rejected')}' (no prompt column)", "implicit prompt")


def _validate_preference(row: dict, det: Detected) -> list[Problem]:
    out: list[Problem] = []
    c = det.col
    for name in ("chosen", "rejected"):
        if row.get(c(name)) in (None, "", [], {}):
            out.append(_missing(c(name)))
    if det.variant == "sharegpt-style" or (det.variant != "implicit prompt" and isinstance(row.get(c("prompt")), list)):
        turns = _turns(row, c("prompt"), out)
        if turns is not None:
            _check_turns(turns, c("prompt"), out, need_answer=False)
    elif det.variant != "implicit prompt" and row.get(c("prompt")) in (None, ""):
        out.append(_missing(c("prompt")))
    return out


def _canonical_preference(row: dict, det: Detected) -> dict:
    c = det.col
    prompt, chosen, _ = _preference_parts(row, det)
    if prompt is None:  # plain strings
        return {"prompt": str(row.get(c("prompt")) or ""), "completion": str(chosen or "")}
    return {"messages": _with_system(prompt + chosen, row.get(c("system")), row.get(c("tools")))}


def _trl_preference(row: dict, det: Detected) -> dict:
    c = det.col
    prompt, chosen, rejected = _preference_parts(row, det)
    if prompt is None:
        return {"prompt": row.get(c("prompt")), "chosen": chosen, "rejected": rejected}
    return {"prompt": _with_system(prompt, row.get(c("system")), row.get(c("tools"))), "chosen": chosen,
            "rejected": rejected}


# ------------------------------------------------------------------------------------------------- KTO


def _detect_kto(s: _Sample) -> Detected | None:
    if not s.has("label"):
        return None
    c = s.c
    labels = _sample_values(s.rows, c("label"))
    if not labels or not all(_as_bool(v) is not None for v in labels[:20]):
        return None
    if s.has("prompt", "completion"):
        return s.done("kto", f"columns '{c('prompt')}'/'{c('completion')}' with a true/false "
                      f"'{c('label')}'", "conversational" if s.style("prompt") else "")
    for n in ("messages", "conversations"):
        if s.alias(n) and s.style(n):
            s.cm.setdefault("messages", c(n))
            return s.done("kto", f"column '{c(n)}' holds {s.style(n)} turns and "
                          f"'{c('label')}' is true/false (desirable or not)", "messages")
    return None


def _validate_kto(row: dict, det: Detected) -> list[Problem]:
    out = _conversation_problems(row, det) if det.variant == "messages" else _validate_prompt_completion(row, det)
    v = row.get(det.col("label"))
    if _as_bool(v) is None:
        out.append(Problem(f"expected true or false, got {v!r}", field=det.col("label"), code="missing-field",
                           fix=f"set '{det.col('label')}' to true (desirable) or false (undesirable)"))
    return out


def _canonical_kto(row: dict, det: Detected) -> dict:
    if det.variant == "messages":
        return _canonical_messages(row, det)
    return _canonical_prompt_completion(row, det)


def _keep_kto(row: dict, det: Detected) -> bool:
    return _as_bool(row.get(det.col("label"))) is True


def _trl_kto(row: dict, det: Detected) -> dict:
    c = det.col
    label = _as_bool(row.get(c("label")))
    if det.variant == "messages":
        msgs = _to_messages(row[c("messages")])
        k = max((i for i, m in enumerate(msgs) if m["role"] != "assistant"), default=-1) + 1
        return {"prompt": msgs[:k], "completion": msgs[k:], "label": label}
    p, comp = row.get(c("prompt")), row.get(c("completion"))
    if isinstance(p, list):
        return {"prompt": _to_messages(p), "completion": _to_messages(comp), "label": label}
    return {"prompt": p, "completion": comp, "label": label}


# ------------------------------------------------------------------------------ messages and ShareGPT


def _detect_turn_column(s: _Sample, style: str) -> tuple[str, str] | None:
    """(canonical name, column) of the first messages/conversations column holding turns, when they are
    of `style`; None when there is none or the first one holds the other style."""
    for n in ("messages", "conversations"):
        if s.alias(n):
            found = s.style(n)
            if found == style:
                return n, s.c(n)
            if found is not None:
                return None
    return None


def _detect_messages(s: _Sample) -> Detected | None:
    hit = _detect_turn_column(s, "openai")
    if hit is None:
        return None
    _, col = hit
    s.cm.setdefault("messages", col)
    tools = " with tool calls" if _has_tool_calls(s.rows, col) or s.has("tools") else ""
    return s.done("messages", f"column '{col}' holds role/content turns{tools}", tools.strip())


def _detect_sharegpt(s: _Sample) -> Detected | None:
    hit = _detect_turn_column(s, "sharegpt")
    if hit is None:
        return None
    _, col = hit
    s.cm.setdefault("conversations", col)
    roles = sorted({t.get("from") for v in _sample_values(s.rows, col)[:20]
                    for t in (v if isinstance(v, list) else []) if isinstance(t, dict)} - {None})
    tools = " with tool calls" if ({"function_call", "observation"} & set(roles)) or s.has("tools") else ""
    return s.done("sharegpt", f"column '{col}' holds from/value turns ({', '.join(roles)}){tools}", tools.strip())


def _conversation_problems(row: dict, det: Detected, name: str = "messages") -> list[Problem]:
    out: list[Problem] = []
    _conversation(row, det.col(name), out)
    return out


def _canonical_messages(row: dict, det: Detected) -> dict:
    c = det.col
    return {"messages": _with_system(_to_messages(row[c("messages")]), row.get(c("system")), row.get(c("tools")))}


def _canonical_sharegpt(row: dict, det: Detected) -> dict:
    c = det.col
    return {"messages": _with_system(_to_messages(row[c("conversations")], sharegpt=True), row.get(c("system")),
                                     row.get(c("tools")))}


# ---------------------------------------------------------------------------------------------- alpaca


def _detect_alpaca(s: _Sample) -> Detected | None:
    if not (s.alias("instruction") and s.alias("output")):
        return None
    extra = " and input" if s.has("input") else " (no input column)"
    return s.done("alpaca", f"columns '{s.c('instruction')}'/'{s.c('output')}'{extra}")


def _validate_alpaca(row: dict, det: Detected) -> list[Problem]:
    out: list[Problem] = []
    c = det.col
    for name in ("instruction", "output"):
        v = row.get(c(name))
        if name == "instruction" and (v is None or (isinstance(v, str) and not v.strip())) \
                and isinstance(row.get(c("input")), str) and row[c("input")].strip():
            continue  # the input alone is the prompt
        _text_field(row, c(name), out)
    return out


def _canonical_alpaca(row: dict, det: Detected) -> dict:
    c = det.col
    instruction = _content_text(row.get(c("instruction"))) or ""
    inp = _content_text(row.get(c("input"))) or ""
    prompt = f"{instruction}\n\n{inp}" if instruction and inp.strip() else (instruction or inp)
    msgs = []
    for pair in row.get(c("history")) or []:  # alpaca's optional [[user, assistant], ...]
        if isinstance(pair, (list, tuple)) and len(pair) == 2:
            msgs += [{"role": "user", "content": str(pair[0])}, {"role": "assistant", "content": str(pair[1])}]
    msgs += [{"role": "user", "content": prompt},
             {"role": "assistant", "content": _content_text(row.get(c("output"))) or ""}]
    return {"messages": _with_system(msgs, row.get(c("system")), row.get(c("tools")))}


# ----------------------------------------------------------------------------------- prompt-completion


def _detect_prompt_completion(s: _Sample) -> Detected | None:
    if not (s.has("prompt") and s.alias("completion")):
        return None
    style = s.style("prompt")
    return s.done("prompt-completion", f"columns '{s.c('prompt')}'/'{s.c('completion')}'"
                  + (" holding message lists" if style else ""), "conversational" if style else "")


def _validate_prompt_completion(row: dict, det: Detected) -> list[Problem]:
    out: list[Problem] = []
    c = det.col
    for name in ("prompt", "completion"):
        v = row.get(c(name))
        if v is None or v == "" or v == [] or (isinstance(v, str) and not v.strip() and name == "completion"):
            out.append(_missing(c(name)))
        elif isinstance(v, list):
            _check_turns(v, c(name), out, need_answer=(name == "completion"))
        elif not isinstance(v, str):
            out.append(_wrong_type(c(name), "text or a list of messages", v, f"make '{c(name)}' a string"))
    return out


def _canonical_prompt_completion(row: dict, det: Detected) -> dict:
    c = det.col
    p, comp = row.get(c("prompt")), row.get(c("completion"))
    if isinstance(p, list) or isinstance(comp, list):
        return {"messages": _with_system(_to_messages(p) + _to_messages(
            comp if isinstance(comp, list) else [{"role": "assistant", "content": comp}]),
            row.get(c("system")), row.get(c("tools")))}
    return {"prompt": str(p or ""), "completion": str(comp or "")}


# ------------------------------------------------------------------------------------------------ text


def _detect_text(s: _Sample) -> Detected | None:
    if not s.alias("text"):
        return None
    return s.done("text", f"column '{s.c('text')}' of raw text")


def _validate_text(row: dict, det: Detected) -> list[Problem]:
    out: list[Problem] = []
    _text_field(row, det.col("text"), out)
    return out


def _canonical_text(row: dict, det: Detected) -> dict:
    return {"text": _content_text(row.get(det.col("text"))) or ""}


# ------------------------------------------------------------------------------------------- registry

SPECS: dict[str, FormatSpec] = {fs.name: fs for fs in (  # in detection order
    FormatSpec("preference", ("prompt", "chosen", "rejected"), ("system", "tools"), _detect_preference,
               _validate_preference, _canonical_preference, trl=_trl_preference, trl_kind="dpo",
               sft_note="preference data: SFT trains on the prompt + the chosen answer and ignores the rejected "
                        "ones (training: dpo, orpo, simpo or kto learns from both)",
               sft_note_fix="set training: dpo to learn from the rejected answers too, or keep SFT"),
    FormatSpec("kto", ("prompt", "completion", "label"), ("messages", "system", "tools"), _detect_kto,
               _validate_kto, _canonical_kto, trl=_trl_kto, trl_kind="kto", keep=_keep_kto,
               sft_note="KTO-labelled data: SFT trains on the desirable rows (label true) only and skips the "
                        "undesirable ones (training: kto learns from both)"),
    FormatSpec("messages", ("messages",), ("system", "tools"), _detect_messages,
               lambda row, det: _conversation_problems(row, det, "messages"), _canonical_messages),
    FormatSpec("sharegpt", ("conversations",), ("system", "tools"), _detect_sharegpt,
               lambda row, det: _conversation_problems(row, det, "conversations"), _canonical_sharegpt),
    FormatSpec("alpaca", ("instruction", "output"), ("input", "system", "history", "tools"), _detect_alpaca,
               _validate_alpaca, _canonical_alpaca),
    FormatSpec("prompt-completion", ("prompt", "completion"), ("system", "tools"), _detect_prompt_completion,
               _validate_prompt_completion, _canonical_prompt_completion),
    FormatSpec("text", ("text",), (), _detect_text, _validate_text, _canonical_text,
               sft_note="raw text: continued-pretraining style, every token carries loss", all_tokens=True,
               default_task="domain"),
)}
SFT_NOTES = {name: fs.sft_note for name, fs in SPECS.items() if fs.sft_note}


def spec(name: str) -> FormatSpec:
    """The spec of format `name`; `UserError` (field dataset.format) for an unknown one."""
    try:
        return SPECS[name]
    except KeyError:
        raise UserError(f"unknown format '{name}' (allowed: auto, {', '.join(FORMATS)})",
                        field="dataset.format") from None


def validate_row(row: dict, det: Detected) -> list[Problem]:
    """What is wrong with one row for its dataset's format: missing or empty fields, wrong types, unknown
    roles, no assistant answer. Errors make the row unusable; warnings do not. The problems carry their
    code, field and fix, but no file or line (`Problem.at` adds them)."""
    return det.spec.validate(row, det)


def keep_for_sft(row: dict, det: Detected) -> bool:
    """False for rows SFT must not train on: KTO rows labelled undesirable."""
    return det.spec.keeps(row, det)


def to_canonical(row: dict[str, Any], det: Detected) -> dict[str, Any]:
    """The SFT shape of one row (see the module docstring). Call `keep_for_sft` first for KTO data."""
    return det.spec.canonical(row, det)


def to_trl(row: dict[str, Any], det: Detected) -> dict[str, Any]:
    """The row in the shape TRL's trainer for its kind takes (`spec.trl_kind`): SFT rows as `to_canonical`;
    preference as {prompt, chosen, rejected} (message lists, or strings for plain data); KTO as {prompt,
    completion, label} (message lists for conversations)."""
    return det.spec.to_trl(row, det)


# -------------------------------------------------------------------------------------------- helpers


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
