"""The data of each training kind as its TRL trainer sees it, and the problems peculiar to that kind.

Pure functions for `ftwizard inspect --kind`, the pre-flight and the wizard's dataset step (run them in a
worker: they read every row and, with a tokenizer, tokenize each one):

    from ftwizard.core.data.kinds import kind_report, grpo_report

    rep = kind_report(path, "dpo", tokenizer=tok, max_length=1024)      # dpo | orpo | simpo | kto
    rep.rows, rep.labels (KTO balance), rep.problems, rep.preview (first rows: prompt, chosen, rejected
    or completion as rendered, with TRL's token counts), rep.left_out (rows TRL drops: prompt too long)
    g = grpo_report(path, cfg.grpo, tokenizer=tok, max_length=1024)
    g.rows, g.columns (what a reward receives), g.reward_columns ({reward: column it reads}), g.budget,
    g.preview (prompt rendered with the chat template, its tokens, the columns), g.problems, g.left_out
    scan_problems_for_kind(scan.problems, "dpo")   # the SFT scan's problems that still hold for the kind

`tokenizer` is the one training uses, set up by `tokenize.setup_tokenizer` (its chat template is what
TRL renders message lists with); without it the token checks are skipped. Token counts follow TRL 1.16's
DPO/KTO tokenization: the prompt through the template with the generation prompt, prompt + answer
through the template, the answer being what follows their common prefix (plain strings: the tokenizer's
own special tokens, EOS appended to the answer); the sequence is cut at train.max_length keeping its
start, and a row whose prompt alone fills max_length is dropped by TRL.

Problems (`problems.Problem`, code and fix set here):

    code               severity                         kinds        what
    same-answers       warning (error: every row)       pairs        chosen == rejected: no preference to learn
    empty-side         error                            pairs, kto   a chosen, rejected or KTO completion with
                                                                     no text (a message list of empty turns)
    both-cut           warning                          pairs        prompt + chosen and prompt + rejected are
                                                                     both longer than max_length (tokenizer)
    prompt-too-long    warning (error: every row)       all          the prompt fills max_length (DPO/KTO: TRL
                                                                     drops the row) or, GRPO, the prompt budget
                                                                     max_length - grpo.max_completion_length
    one-label          error                            kto          every row desirable, or every row not
    unbalanced-labels  warning                          kto          desirable_weight x desirable rows /
                                                                     (undesirable_weight x undesirable rows)
                                                                     outside [1, 4/3] (KTO paper Eq. 8, as TRL)
    no-reward-column   error (first row) / warning      grpo         a column a chosen reward reads is absent
                                                                     (from the first row: TRL never sees it) or
                                                                     empty in a row (that prompt always scores 0)
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Iterator

from ..errors import UserError
from ..guidance import KTO_WEIGHT_RATIO
from .formats import Detected, detect_source
from .prepare import PAIR_KINDS, iter_trl_rows, kind_data_problem, kto_balance, kto_label_problem
from .problems import Problem, by_severity
from .read import iter_rows
from .tokenize import grpo_prompt_tokens, text_of, trl_prompt_tokens, trl_token_counts

# A prompt this many tokens over max_length is counted too long without tokenizing the answers: TRL's
# prompt (the common prefix of prompt and prompt + answer) differs from the prompt alone only in the
# generation prompt at its end, a few tokens.
PROMPT_MARGIN = 32
# SFT's reading of the rows (its loss mask, its sequence length, what it skips; with <format>-as-sft): the
# whole-file scan's (stats.py, checks.py) problems that do not hold when a preference kind trains
SFT_ONLY_CODES = ("undesirable-skipped", "too-long", "no-trained-tokens", "all-masked", "no-generation-marker",
                  "mask-fallback", "missing-eos")
KTO_RATIO = KTO_WEIGHT_RATIO  # desirable_weight*D / (undesirable_weight*U): the KTO paper's Eq. 8 range, as TRL
MAX_LINES = 20  # lines listed per problem


@dataclass
class KindReport:
    """What `kind_report` found: the rows the kind trains on, its problems, the first rows as it sees them."""

    kind: str
    rows: int = 0                       # rows the kind trains on (KTO: a pair counts as two rows)
    problems: list[Problem] = field(default_factory=list)
    labels: dict | None = None          # KTO: {"desirable": n, "undesirable": n}
    preview: list[dict] = field(default_factory=list)
    left_out: int = 0                   # rows dropped for a prompt too long (0 without a tokenizer)
    max_length: int | None = None
    complete: bool = True               # False when `cancel` stopped the pass early

    def to_json(self) -> dict:
        return {"kind": self.kind, "rows": self.rows, "labels": self.labels, "preview": self.preview,
                "left_out": self.left_out, "max_length": self.max_length, "complete": self.complete,
                "problems": [p.to_json() for p in self.problems]}


@dataclass
class GrpoReport:
    """What `grpo_report` found: prompts as the model gets them and what each reward function receives."""

    rows: int = 0
    columns: list[str] = field(default_factory=list)          # the columns passed to every reward
    reward_columns: dict[str, str] = field(default_factory=dict)  # built-in reward -> the column it reads
    budget: int | None = None                                  # prompt tokens allowed
    preview: list[dict] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    left_out: int = 0
    complete: bool = True

    def to_json(self) -> dict:
        return {"kind": "grpo", "rows": self.rows, "columns": self.columns, "reward_columns": self.reward_columns,
                "budget": self.budget, "preview": self.preview, "left_out": self.left_out, "complete": self.complete,
                "problems": [p.to_json() for p in self.problems]}


# --------------------------------------------------------------------------------- text and tokens


def render(tok, prompt, answer=None) -> str:
    """prompt (+ answer) as the model reads it: message lists through the tokenizer's chat template (the
    generation prompt after a prompt alone), strings as they are; without a tokenizer, role: content lines."""
    if isinstance(prompt, list):
        if tok is None or not getattr(tok, "chat_template", None):
            msgs = prompt + (answer or [])
            return "\n".join(f"{m['role']}: {m['content']}" for m in msgs) + ("" if answer else "\nassistant: ")
        if answer is None:
            return tok.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
        return tok.apply_chat_template(prompt + answer, tokenize=False)
    return str(prompt) + (text_of(answer) if answer is not None else "")


# ------------------------------------------------------------------------------------ problems


class _Lines:
    """Rows with one problem: how many, and the first lines."""

    def __init__(self):
        self.count, self.lines, self.file = 0, [], None

    def add(self, file, line) -> None:
        self.count += 1
        self.file = self.file or file
        if len(self.lines) < MAX_LINES and line not in self.lines:
            self.lines.append(line)

    def problem(self, message: str, *, code: str, fix: str, severity: str, field: str | None = None) -> Problem | None:
        if not self.count:
            return None
        return Problem(message, file=self.file, line=self.lines[0] if self.lines else None, field=field, fix=fix,
                       severity=severity, code=code, lines=list(self.lines), count=self.count)


def _rows_have(n: int, one: str = "has", many: str = "have") -> str:
    return f"1 row {one}" if n == 1 else f"{n} rows {many}"


def _at(lines: list) -> str:
    shown = ", ".join(str(x) for x in lines[:5])
    return f"line {shown}" if len(lines) == 1 else f"lines {shown}" + (", ..." if len(lines) > 5 else "")


def scan_problems_for_kind(problems: list[Problem], kind: str) -> list[Problem]:
    """The scan's problems (`stats.scan_dataset`, `preview.quick_preview`: SFT's reading) that still hold when
    `kind` trains: all of them for sft and cpt; for dpo/orpo/simpo/kto those of the rows themselves (bad
    lines, missing fields, duplicates, ...), not SFT's mask, length or skipped rows (`kind_report` checks
    the rows as TRL takes them)."""
    if kind not in (*PAIR_KINDS, "kto"):
        return list(problems)
    return [p for p in problems if p.code not in SFT_ONLY_CODES and not str(p.code or "").endswith("-as-sft")]


def kto_balance_problem(balance: dict, desirable_weight: float = 1.0, undesirable_weight: float = 1.0,
                        file: str | None = None) -> Problem | None:
    """`one-label` (error) or `unbalanced-labels` (warning, with the weights that balance the set)."""
    why = kto_label_problem(balance)
    if why:
        return Problem(why, file=file, field="label", code="one-label",
                       fix="add rows of the other label, or use training: sft")
    d, u = balance["desirable"], balance["undesirable"]
    ratio = desirable_weight * d / (undesirable_weight * u)
    if KTO_RATIO[0] <= ratio <= KTO_RATIO[1] + 1e-9:
        return None
    # either weight alone brings the ratio to the middle of the range (TRL suggests one, not both)
    mid = (KTO_RATIO[0] + KTO_RATIO[1]) / 2
    des = round(mid * u * undesirable_weight / d, 2)
    und = round(d * desirable_weight / (mid * u), 2)
    return Problem(f"{d} desirable and {u} undesirable rows: with kto.desirable_weight {desirable_weight:g} and "
                   f"kto.undesirable_weight {undesirable_weight:g} the weighted ratio is {ratio:.2f}, outside "
                   f"{KTO_RATIO[0]:g}-{KTO_RATIO[1]:.2f} (the KTO paper's range): the smaller side is under- or "
                   "over-weighted", file=file, field="kto.desirable_weight", code="unbalanced-labels",
                   severity="warning", count=d + u,
                   fix=f"set kto.desirable_weight: {des:g} (or kto.undesirable_weight: {und:g}, not both), or "
                   "balance the labels")


def kind_report(source: str, kind: str, *, tokenizer=None, max_length: int = 1024, columns: dict | None = None,
                format: str = "auto", split: str = "train", max_rows: int | None = None, n: int = 5,
                desirable_weight: float = 1.0, undesirable_weight: float = 1.0,
                det: Detected | None = None, token_rows: int | None = None,
                cancel: threading.Event | None = None) -> KindReport:
    """Rows of `source` as training `kind` (dpo, orpo, simpo, kto) takes them, in one pass: the first `n`
    rendered with their token counts, the KTO label balance and this kind's problems (module docstring)
    with the lines they are on. Data of the wrong shape for the kind: `UserError` (kind_data_problem).
    Rows with errors of their own (missing fields, bad JSON) are the format checks' business: skipped
    here and counted by `stats.scan_dataset`. `token_rows`: tokenize only the first rows (the pre-flight's
    sample; the messages then say so), None: every row. `cancel.set()` (from another thread) stops the
    pass between rows: the report then has `complete` False and covers the rows read."""
    if det is None:
        det, _, _ = detect_source(source, columns=columns, format=format, split=split)
    why = kind_data_problem(kind, det)
    if why:
        raise UserError(why, file=source, field="training")
    rep = KindReport(kind, max_length=max_length if tokenizer is not None else None)
    pairs = kind in PAIR_KINDS
    sides = ("chosen", "rejected") if pairs else ("completion",)
    same, empty, cut, too_long = _Lines(), _Lines(), _Lines(), _Lines()
    labels = []
    longest_prompt = tokenized = 0
    for file, line, row in iter_trl_rows(source, det, kind, split=split, max_rows=max_rows):
        if cancel is not None and cancel.is_set():
            rep.complete = False
            break
        rep.rows += 1
        texts = {s: text_of(row.get(s)).strip() for s in sides}
        if any(not t for t in texts.values()):
            empty.add(file, line)
        elif pairs and texts["chosen"] == texts["rejected"]:
            same.add(file, line)
        counts, dropped = None, False
        if tokenizer is not None and (token_rows is None or rep.rows <= token_rows):
            tokenized += 1
            alone = trl_prompt_tokens(tokenizer, row["prompt"])
            if alone >= max_length + PROMPT_MARGIN and len(rep.preview) >= n:
                dropped = True  # far over: the answers need not be tokenized (the bulk of the cost)
                longest_prompt = max(longest_prompt, alone)
            elif alone >= max_length or pairs or len(rep.preview) < n:
                counts = trl_token_counts(tokenizer, row)
                dropped = counts["prompt"] >= max_length
                if dropped:
                    longest_prompt = max(longest_prompt, counts["prompt"])
                elif pairs and all(counts["prompt"] + counts[s] > max_length for s in sides):
                    cut.add(file, line)
            if dropped:
                too_long.add(file, line)
        if "label" in row and not dropped:
            labels.append(row["label"])  # the balance of the rows that train
        if len(rep.preview) < n:
            rep.preview.append(_preview_item(tokenizer, row, sides, line, counts))
    rep.left_out = too_long.count
    ps: list[Problem | None] = []
    ps.append(empty.problem(
        f"{_rows_have(empty.count)} an empty {' or '.join(sides)} ({_at(empty.lines)}): the model would learn "
        "to prefer (or avoid) saying nothing", code="empty-side", severity="error",
        field="completion" if not pairs else None, fix="give every answer its text, or delete those rows"))
    ps.append(same.problem(
        f"{_rows_have(same.count)} the same chosen and rejected answer ({_at(same.lines)}): there is no preference "
        f"to learn from them" + (" - every row" if same.count == rep.rows else ""), code="same-answers",
        severity="error" if same.count == rep.rows else "warning", field="rejected",
        fix="give each pair a rejected answer that differs from the chosen one, or delete those rows"))
    if tokenizer is not None:
        of = f"the first {tokenized}" if tokenized < rep.rows else f"{rep.rows}"
        ps.append(too_long.problem(
            f"{too_long.count} of {of} rows have a prompt of max_length {max_length} tokens or more "
            f"(longest {longest_prompt}; {_at(too_long.lines)}): TRL drops them, as nothing of their answers "
            "would be left", code="prompt-too-long", field="train.max_length",
            severity="error" if too_long.count == tokenized else "warning",
            fix=f"shorten or drop those rows, or raise train.max_length (the longest prompt has {longest_prompt} "
            "tokens) if memory allows"))
        ps.append(cut.problem(
            f"{_rows_have(cut.count, 'is', 'are')} cut at max_length {max_length} on both sides "
            f"({_at(cut.lines)}): the ends of both answers, where they often differ, are not compared",
            code="both-cut", severity="warning", field="train.max_length",
            fix="raise train.max_length, or shorten the prompts or answers of those rows"))
    if labels:
        rep.labels = kto_balance(labels)
        ps.append(kto_balance_problem(rep.labels, desirable_weight, undesirable_weight, file=source))
    rep.problems = by_severity([p for p in ps if p is not None])
    return rep


def _preview_item(tok, row: dict, sides, line, counts) -> dict:
    prompt = render(tok, row["prompt"])
    item = {"line": line, "prompt": prompt, "prompt_tokens": counts["prompt"] if counts else None}
    for side in sides:
        text = render(tok, row["prompt"], row[side])
        item[side] = text[len(prompt):] if text.startswith(prompt) else text
        item[f"{side}_tokens"] = counts[side] if counts else None
    if "label" in row:
        item["label"] = row["label"]
    return item


# ------------------------------------------------------------------------------------------ GRPO


def iter_prompt_rows(source: str, *, columns: dict | None = None, split: str = "train",
                     limit: int | None = None) -> Iterator[tuple[str, int, dict]]:
    """(file, line, row) of GRPO's prompt-only rows, columns renamed by `columns` (dataset.columns: ours ->
    theirs); an unreadable row or one without a usable prompt (a string, or a list of {role, content}
    messages) is a UserError naming its file and line."""
    columns = columns or {}
    theirs_to_ours = {v: k for k, v in columns.items()}
    for r in iter_rows(source, split=split, limit=limit):
        if r.error:
            raise UserError(r.error + (f" (fix: {r.fix})" if r.fix else ""), file=r.file, line=r.line, field=r.field)
        row = {theirs_to_ours.get(k, k): v for k, v in r.row.items()}
        p = row.get("prompt")
        ok = (isinstance(p, str) and p.strip()) or (
            isinstance(p, list) and p and all(isinstance(m, dict) and "role" in m and "content" in m for m in p))
        if not ok:
            col = columns.get("prompt", "prompt")
            raise UserError(f"GRPO needs a prompt on every row (a string, or a list of {{role, content}} messages); "
                            f"got {type(p).__name__ if p is not None else 'no ' + repr(col) + ' column'} "
                            f"(fix: name the column with dataset.columns: {{prompt: YOUR_COLUMN}})",
                            file=r.file, line=r.line, field=col)
        yield r.file, r.line, row


def reward_columns(g) -> dict[str, str]:
    """{reward: the dataset column it reads} for the built-in rewards in `g.rewards` that read one
    (g: config.GrpoConfig; a FILE.py:FUNCTION reward gets every column and says nothing of which it needs)."""
    needs = {"exact_match": g.answer_column, "numeric_match": g.answer_column, "code": g.tests_column}
    return {ref: needs[ref] for ref in g.rewards if ref in needs}


def grpo_report(source: str, g, *, tokenizer=None, max_length: int = 1024, columns: dict | None = None,
                split: str = "train", max_rows: int | None = None, n: int = 5,
                cancel: threading.Event | None = None) -> GrpoReport:
    """GRPO's prompt rows of `source` in one pass: the first `n` rendered as generation starts from them
    (the chat template's generation prompt) with their token count and the columns every reward function
    receives as keyword arguments; the problems `prompt-too-long` (over the prompt budget, max_length -
    g.max_completion_length: the recipe leaves them out) and `no-reward-column`. g: config.GrpoConfig.
    `cancel` as in `kind_report`."""
    rep = GrpoReport(reward_columns=reward_columns(g))
    budget = max_length - g.max_completion_length
    rep.budget = budget if tokenizer is not None else None
    too_long, missing = _Lines(), {col: _Lines() for col in set(rep.reward_columns.values())}
    first_missing: list[str] = []
    longest = 0
    cols: dict[str, None] = {}
    for file, line, row in iter_prompt_rows(source, columns=columns, split=split, limit=max_rows):
        if cancel is not None and cancel.is_set():
            rep.complete = False
            break
        rep.rows += 1
        if rep.rows == 1:
            cols = {k: None for k in row if k != "prompt"}
            first_missing = [c for c in missing if c not in row]
        for col, acc in missing.items():
            if row.get(col) in (None, "", []):
                acc.add(file, line)
        tokens = None
        if tokenizer is not None:
            tokens = grpo_prompt_tokens(tokenizer, row["prompt"])
            if tokens > budget:
                too_long.add(file, line)
                longest = max(longest, tokens)
        if len(rep.preview) < n:
            rep.preview.append({"line": line, "prompt": render(tokenizer, row["prompt"]), "prompt_tokens": tokens,
                                "columns": {k: v for k, v in row.items() if k != "prompt"}})
    rep.columns = list(cols)
    rep.left_out = too_long.count
    ps: list[Problem | None] = []
    for ref, col in rep.reward_columns.items():
        acc = missing[col]
        if col in first_missing:
            ps.append(Problem(f"reward '{ref}' reads the column '{col}', which the first row does not have (it has: "
                              f"{', '.join(rep.columns) or 'only the prompt'}): TRL takes the columns from the "
                              "first row, so the reward would fail at step 1", file=acc.file, line=acc.lines[0],
                              field=col, code="no-reward-column",
                              fix=f"add '{col}' to every row, map yours with dataset.columns, or set "
                              f"grpo.{'tests_column' if ref == 'code' else 'answer_column'}"))
        elif acc.count:
            ps.append(acc.problem(f"{_rows_have(acc.count)} no '{col}' for reward '{ref}' ({_at(acc.lines)}): their "
                                  "completions always score 0 on it, so those prompts teach nothing through it",
                                  code="no-reward-column", severity="warning", field=col,
                                  fix=f"fill in '{col}' on those rows, or delete them"))
    if tokenizer is not None:
        ps.append(too_long.problem(
            f"{too_long.count} of {rep.rows} prompts are longer than the prompt budget of {budget} tokens "
            f"(train.max_length {max_length} - grpo.max_completion_length {g.max_completion_length}; longest "
            f"{longest}; {_at(too_long.lines)}): the run leaves them out", code="prompt-too-long",
            field="train.max_length", severity="error" if too_long.count == rep.rows else "warning",
            fix=f"shorten or drop those prompts, lower grpo.max_completion_length, or raise train.max_length "
            f"(the longest prompt has {longest} tokens) if memory allows"))
    rep.problems = by_severity([p for p in ps if p is not None])
    return rep
