"""How a training kind sees the rows of a dataset: the wizard's dataset step for dpo, orpo, simpo, kto, grpo
and cpt (the `sft` view is preview.render_row).

    pair_view(source, det, kind, tokenizer, max_length)   dpo/orpo/simpo: each row's prompt as rendered and
                                                          its chosen and rejected answers, each side's
                                                          trained tokens (and what max_length cuts);
                                                          kto: prompt, completion and label, the label
                                                          balance over every row
    prompt_text(tokenizer, prompt)                        grpo: the prompt as the model gets it before it
                                                          generates (chat template + generation prompt)
    cpt_block(source, det, tokenizer, max_length)         cpt: the first packed block and where documents join

The pair sides are tokenized the way TRL's DPOTrainer does (trl.data_utils._tokenize: the prompt with the
generation prompt, prompt + answer, the answer starting where both diverge; EOS added to plain-text
answers; the sequence cut at max_length keeping its start), so the trained tokens shown are the ones
trained. Rows come from prepare.read_trl_rows, the training process's own reader. Problems are the ones a
kind's run would waste steps on: chosen equal to rejected, an empty side, both sides cut at max_length, a
prompt that fills max_length (TRL drops the row), one KTO label only or a far-from-balanced set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import UserError
from .formats import Detected
from .prepare import PAIR_KINDS, kind_data_problem, read_trl_rows
from .read import iter_rows

TOKEN_CHECK_ROWS = 200  # rows tokenized for the max_length checks (the whole set is read for the rest)


@dataclass
class Side:
    """One answer (chosen, rejected or a KTO completion): (text, trained) segments and its token count."""
    segments: list[tuple[str, bool]]
    n_tokens: int | None = None   # the answer's tokens (None: no tokenizer)
    cut_text: str = ""            # what max_length cuts off the end (not trained)
    empty: bool = False

    @property
    def cut(self) -> bool:
        return bool(self.cut_text)


@dataclass
class KindRow:
    line: int | None
    prompt: str                   # as the model sees it (rendered)
    prompt_tokens: int | None
    sides: dict[str, Side]        # "chosen" and "rejected", or "completion"
    label: bool | None = None     # kto


@dataclass
class KindView:
    kind: str
    rows: int                     # rows this kind trains on (KTO: pairs count twice)
    preview: list[KindRow]
    labels: dict | None = None    # kto: {"desirable": n, "undesirable": n}
    problems: list = field(default_factory=list)   # data.problems.Problem, kinds.kind_report's
    tokens_checked: int = 0       # rows whose token lengths were checked against max_length


def prompt_text(tokenizer, prompt) -> str:
    """A prompt as the model gets it before it answers: messages through the chat template with the
    generation prompt (as TRL renders conversational prompts), a string as it is."""
    if isinstance(prompt, list):
        if tokenizer is None or not getattr(tokenizer, "chat_template", None):
            return "\n".join(f"{m['role']}: {m['content']}" for m in prompt) + "\nassistant: "
        return tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    return str(prompt)


def _answer_text(answer) -> str:
    if isinstance(answer, list):
        return "\n".join(str(m.get("content") or "") for m in answer)
    return "" if answer is None else str(answer)


def _sides(tokenizer, prompt, answers: dict[str, Any], max_length: int) -> tuple[str, int | None, dict[str, Side]]:
    """(prompt as rendered, its tokens, each answer's Side) as TRL's DPOTrainer tokenizes them."""
    if tokenizer is None:
        return prompt_text(None, prompt), None, {
            k: Side([(_answer_text(a), True)], empty=not _answer_text(a).strip()) for k, a in answers.items()}
    from trl.data_utils import _tokenize, common_prefix_length

    conversational = isinstance(prompt, list)
    eos = tokenizer.eos_token or ""
    if conversational:
        prompt_ids = _tokenize(tokenizer, prompt, add_generation_prompt=True)["input_ids"]
        full = {k: _tokenize(tokenizer, prompt + a)["input_ids"] for k, a in answers.items()}
    else:  # TRL adds EOS to plain-text answers that lack it
        prompt_ids = _tokenize(tokenizer, prompt)["input_ids"]
        full = {k: _tokenize(tokenizer, prompt + (a if str(a).endswith(eos) else str(a) + eos))["input_ids"]
                for k, a in answers.items()}
    n_prompt = min([common_prefix_length(prompt_ids, ids) for ids in full.values()] or [len(prompt_ids)])
    out = {}
    for k, ids in full.items():
        answer = ids[n_prompt:]
        kept = max(0, min(len(answer), max_length - n_prompt))  # keep_start: the end of the sequence is cut
        text = tokenizer.decode(answer[:kept], skip_special_tokens=False)
        cut = tokenizer.decode(answer[kept:], skip_special_tokens=False) if kept < len(answer) else ""
        out[k] = Side([(text, True)], n_tokens=len(answer), cut_text=cut, empty=not _answer_text(answers[k]).strip())
    return tokenizer.decode(prompt_ids[:n_prompt], skip_special_tokens=False), n_prompt, out


def _lines(source: str, split: str, n: int) -> list[int]:
    """The line of each of the first `n` readable rows (read_trl_rows refuses the set if any is bad)."""
    return [r.line for r in iter_rows(source, split=split, limit=n, streaming_hub=False) if not r.error]


def pair_view(source: str, det: Detected, kind: str, tokenizer, max_length: int, *, n: int = 50,
              split: str = "train", max_rows: int | None = None, kto_weights: tuple[float, float] = (1.0, 1.0)) -> KindView:
    """The rows as training `kind` (dpo, orpo, simpo or kto) takes them; UserError when the data cannot train
    as this kind (the pre-flight's and the training process's own refusal) or a row is bad. The row count,
    KTO label balance and problems are kinds.kind_report's (the pre-flight's and `inspect --kind`'s own,
    over the first TOKEN_CHECK_ROWS rows for the token checks); this adds each previewed side's trained and
    cut text."""
    from .kinds import kind_report

    why = kind_data_problem(kind, det)
    if why:
        raise UserError(why, file=source, field="training")
    rep = kind_report(source, kind, tokenizer=tokenizer, max_length=max_length, split=split, max_rows=max_rows,
                      n=0, det=det, token_rows=TOKEN_CHECK_ROWS, desirable_weight=kto_weights[0],
                      undesirable_weight=kto_weights[1])
    refused = [p for p in rep.problems if p.code == "one-label"]
    if refused:
        raise UserError(refused[0].message, file=source, field="training")
    rows, _ = read_trl_rows(source, det, kind, split=split, max_rows=n if max_rows is None else min(n, max_rows))
    per_source_row = 2 if kind == "kto" and det.format == "preference" else 1
    lines = _lines(source, split, n)
    view = KindView(kind, rep.rows, [], labels=rep.labels, problems=list(rep.problems),
                    tokens_checked=min(rep.rows, TOKEN_CHECK_ROWS) if tokenizer is not None else 0)
    names = ("chosen", "rejected") if kind in PAIR_KINDS else ("completion",)
    for i, row in enumerate(rows[:n]):
        line = lines[i // per_source_row] if i // per_source_row < len(lines) else None
        prompt, n_prompt, sides = _sides(tokenizer, row["prompt"], {k: row[k] for k in names}, max_length)
        view.preview.append(KindRow(line, prompt, n_prompt, sides, row.get("label")))
    return view


@dataclass
class BlockView:
    pieces: list[str]             # the block's text between document joins
    n_tokens: int
    eos_token: str | None
    documents_joined: int


def cpt_block(source: str, det: Detected, tokenizer, max_length: int, *, split: str = "train") -> BlockView | None:
    """The first CPT block as the model sees it (corpus.first_block), split where documents join; None when
    the whole dataset is shorter than one block. UserError when the data is not raw text."""
    from .corpus import first_block, text_format_problem

    err = text_format_problem(det, source)
    if err is not None:
        raise err
    b = first_block(source, tokenizer, max_length, det=det, split=split)
    if b is None:
        return None
    cuts = [s for s in b.doc_starts if s > 0] + [len(b.input_ids)]
    pieces, start = [], 0
    for c in cuts:
        pieces.append(tokenizer.decode(b.input_ids[start:c], skip_special_tokens=False))
        start = c
    return BlockView(pieces, len(b.input_ids), tokenizer.eos_token, len(cuts) - 1)
