"""Tokenize canonical rows exactly as training consumes them: `input_ids` and `labels` (-100 where no loss).

The wizard's preview calls `encode_row` on one row; training maps it over the whole dataset and caches
the result on disk, keyed by a fingerprint of (data, tokenizer, template, max_length, masking), so a
second run on the same data starts training at once.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UserError

ENCODING_VERSION = "4"  # bump when canonical rows or encode_row change: old caches are not reused
IGNORE = -100
ROW_COLUMN = "row"  # a dataset of canonical rows as JSON strings (prepare.spool_canonical): any nesting, one type


@dataclass
class Encoded:
    """One tokenized row: `input_ids` and `labels` (IGNORE where no loss), cut at max_length; `cut_ids`
    holds what truncation removed (shown greyed in the preview, never trained)."""

    input_ids: list[int]
    labels: list[int]
    length_before_truncation: int
    cut_ids: list[int] = field(default_factory=list)
    mask_fallback: bool = False  # prompt tokens not a prefix of prompt + completion: mask stops at the merge

    @property
    def trained(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE)

    @property
    def truncated(self) -> bool:
        return self.length_before_truncation > len(self.input_ids)


def encode_row(row: dict[str, Any], tokenizer, template: str | None, max_length: int,
               assistant_only: bool = True) -> Encoded:
    """Tokenize one canonical row (`formats.to_canonical`) exactly as training does.

    Chat rows go through the chat template (`template`, else the tokenizer's); with `assistant_only`
    the loss covers the template's `{% generation %}` spans only. Prompt/completion rows train on the
    completion + EOS; text rows on every token + EOS.

    A prompt whose tokens are not a prefix of the prompt + completion's (the tokenizer merges the
    prompt's end with the completion's start, e.g. prompt "Hello wor" + completion "ld") is masked
    up to the first differing token, so only the merged token of the prompt trains; `mask_fallback` says
    so and the checks report it (`checks.mask_fallback_problem`)."""
    if "messages" in row:
        out = tokenizer.apply_chat_template(
            row["messages"], chat_template=template, tokenize=True, return_dict=True,
            return_assistant_tokens_mask=assistant_only)
        ids = list(out["input_ids"])
        if assistant_only:
            mask = out["assistant_masks"]
            labels = [t if m else IGNORE for t, m in zip(ids, mask)]
        else:
            labels = list(ids)
    elif "prompt" in row:
        p = tokenizer(row["prompt"], add_special_tokens=True)["input_ids"]
        full = tokenizer(row["prompt"] + row["completion"], add_special_tokens=True)["input_ids"]
        if tokenizer.eos_token_id is not None:
            full = full + [tokenizer.eos_token_id]
        ids = full
        n = 0
        fallback = False
        if assistant_only:
            n = _common_prefix(p, full)
            fallback = n < len(p)
        labels = [IGNORE] * n + ids[n:]
        return Encoded(ids[:max_length], labels[:max_length], len(ids), ids[max_length:], fallback)
    else:
        ids = tokenizer(row["text"], add_special_tokens=True)["input_ids"]
        if tokenizer.eos_token_id is not None:
            ids = ids + [tokenizer.eos_token_id]
        labels = list(ids)
    n = len(ids)
    return Encoded(ids[:max_length], labels[:max_length], n, ids[max_length:])


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def cache_root() -> Path:
    return Path(os.environ.get("FTWIZARD_CACHE") or Path.home() / ".cache" / "ftwizard")


def tokenizer_fingerprint(tokenizer) -> str:
    h = hashlib.sha256()
    try:
        h.update(tokenizer.backend_tokenizer.to_str().encode())
    except AttributeError:
        h.update(repr(sorted(tokenizer.get_vocab().items())).encode())
    h.update(repr((tokenizer.eos_token_id, tokenizer.pad_token_id, tokenizer.bos_token_id)).encode())
    return h.hexdigest()


def tokenize_dataset(canonical, tokenizer, template: str | None, max_length: int, assistant_only: bool,
                     *, data_fingerprint: str, name: str = "train"):
    """Tokenized dataset (input_ids, labels, length) plus facts about it; cached on disk.

    Rows that carry no trained token after truncation are dropped and counted; if every row would
    carry none, training is refused here, before it starts. `mask_fallback_rows` counts the kept rows
    whose prompt mask stopped early (see `encode_row`).
    """
    import datasets

    key = hashlib.sha256("|".join([
        ENCODING_VERSION, data_fingerprint, tokenizer_fingerprint(tokenizer), template or "",
        str(max_length), str(assistant_only)]).encode()).hexdigest()[:24]
    path = cache_root() / "tokenized" / key
    if (path / "dataset_info.json").exists() or (path / "state.json").exists():
        ds = datasets.load_from_disk(str(path))
        return ds, {"cache": "hit", "cache_key": key, **_facts(ds, len(canonical))}

    as_json = canonical.column_names == [ROW_COLUMN]

    def enc(row):
        e = encode_row(json.loads(row[ROW_COLUMN]) if as_json else row, tokenizer, template, max_length,
                       assistant_only)
        return {"input_ids": e.input_ids, "labels": e.labels, "length": len(e.input_ids),
                "trained": e.trained, "truncated": e.truncated, "mask_fallback": e.mask_fallback}

    ds = canonical.map(enc, remove_columns=canonical.column_names, desc=None)
    total = len(ds)
    if total and max(ds["trained"]) == 0:
        cut = int(sum(ds["truncated"]))
        why = (f"{cut} of {total} rows are longer than train.max_length {max_length} and lose their answers: "
               "raise train.max_length or shorten the prompts" if cut else
               "check the chat template's generation markers (model.chat_template: chatml or llama3) or set "
               "dataset.assistant_only_loss: false")
        raise UserError(f"every row of the {name} data would train on 0 tokens (the loss mask hides them "
                        f"all): {why}", field="dataset.assistant_only_loss" if not cut else "train.max_length")
    ds = ds.filter(lambda r: r["trained"] > 0)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    ds.save_to_disk(str(tmp))
    try:
        os.replace(tmp, path)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)  # another process cached it first: fine
    ds = datasets.load_from_disk(str(path))  # memory-mapped from the cache, not the map's working files
    return ds, {"cache": "miss", "cache_key": key, **_facts(ds, total)}


def _facts(ds, total_before: int) -> dict:
    lengths = ds["length"]
    return {"rows": len(ds), "dropped_no_trained_tokens": total_before - len(ds),
            "truncated_rows": int(sum(ds["truncated"])), "mask_fallback_rows": int(sum(ds["mask_fallback"])),
            "tokens": int(sum(lengths)),
            "max_length_seen": max(lengths) if lengths else 0}


GENERIC_TOKENIZERS = ("TokenizersBackend", "PreTrainedTokenizerFast")  # transformers 5's class for tokenizer.json


def _generic_tokenizer(p: Path) -> bool:
    """A local directory with a tokenizer.json whose tokenizer_config.json names the generic class."""
    try:
        conf = json.loads((p / "tokenizer_config.json").read_text())
    except (OSError, ValueError):
        return False
    return (p / "tokenizer.json").is_file() and conf.get("tokenizer_class") in GENERIC_TOKENIZERS


def load_tokenizer(name_or_path: str, gguf_file: str | None = None, *, revision: str | None = None,
                   trust_remote_code: bool = False):
    """The tokenizer of a local model directory, a `pkg:` model, a GGUF file, or a hub id (at
    `revision`). Pad falls back to EOS, as in training. A local directory whose tokenizer_config.json
    names the generic class (`GENERIC_TOKENIZERS`: what AutoTokenizer would build there) is loaded as that
    class directly: AutoTokenizer's model-config lookup imports torch (~3 s of `ftwizard train`'s pre-flight
    here), the tokenizer itself needs only `tokenizers`."""
    from ..models import resolve_model_path

    path = resolve_model_path(name_or_path)
    p = Path(path)
    if p.is_file() and p.suffix == ".gguf":
        path, gguf_file = str(p.parent), p.name
    kwargs = {"gguf_file": gguf_file} if gguf_file else {}
    kwargs.update(revision=revision, trust_remote_code=trust_remote_code)
    if gguf_file is None and p.is_dir() and not (p / "tokenizer_config.json").exists():
        ggufs = sorted(p.glob("*.gguf"))
        if ggufs:
            kwargs["gguf_file"] = ggufs[0].name
    try:
        if "gguf_file" not in kwargs and revision is None and not trust_remote_code and _generic_tokenizer(p):
            from transformers import PreTrainedTokenizerFast

            tok = PreTrainedTokenizerFast.from_pretrained(path)
        else:
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(path, **kwargs)
    except Exception as exc:  # noqa: BLE001 - many loader errors; the user needs the message
        msg = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise UserError(f"cannot load the tokenizer: {msg}", file=name_or_path, field="model.name_or_path") from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def setup_tokenizer(tokenizer, requested_template: str | None, assistant_only: bool) -> tuple[str | None, str]:
    """Pick the chat template training will use and make EOS the end-of-turn token of known families,
    exactly as the training process does. Mutates `tokenizer`; returns (template, why)."""
    from ..templates import END_OF_TURN, choose_template, family

    template, why = choose_template(tokenizer.chat_template, requested_template, assistant_only)
    tokenizer.chat_template = template
    fam = family(template)
    if fam and tokenizer.eos_token != END_OF_TURN[fam] and END_OF_TURN[fam] in tokenizer.get_vocab():
        tokenizer.eos_token = END_OF_TURN[fam]
    return template, why


# ------------------------------------------------------- token counts of the TRL-tokenized kinds
# DPO/ORPO/SimPO/KTO and GRPO rows are tokenized by TRL's trainers, not encode_row: these count
# their tokens the way TRL 1.16 does, for the checks (data/kinds.py) and the data step (prepare.py).


def text_of(value: Any) -> str:
    """The text of one side of a row: a string, or the contents of a message list joined."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        value = [value]
    if isinstance(value, list):
        return "\n".join(str(m.get("content") or "") if isinstance(m, dict) else str(m) for m in value)
    return str(value)


def _ids(tok, value, generation_prompt: bool = False) -> list[int]:
    if isinstance(value, list):
        out = tok.apply_chat_template(value, tokenize=True, add_generation_prompt=generation_prompt,
                                      return_dict=False)
        return list(out["input_ids"] if isinstance(out, dict) else out)
    return list(tok(text=value)["input_ids"])


def trl_token_counts(tok, row: dict) -> dict[str, int]:
    """{"prompt": n, <side>: n, ...} for a row of TRL's DPO ({prompt, chosen, rejected}) or KTO ({prompt,
    completion}) shape, counted as TRL 1.16 tokenizes it: message lists through the tokenizer's chat template
    (the prompt with the generation prompt), strings with its special tokens and EOS appended to the
    answer; the prompt is the common prefix of the prompt's ids and every prompt + answer, each side what
    follows it. TRL cuts prompt + side at max_length keeping the start, and drops a row whose prompt
    alone fills max_length."""
    sides = [k for k in ("chosen", "rejected", "completion") if k in row]
    prompt = row["prompt"]
    conversational = isinstance(prompt, list)
    eos = getattr(tok, "eos_token", None) or ""
    prompt_ids = _ids(tok, prompt, generation_prompt=True)
    full = {}
    for s in sides:
        ans = row[s]
        if conversational:
            answer = ans if isinstance(ans, list) else [{"role": "assistant", "content": str(ans)}]
            full[s] = _ids(tok, prompt + answer)
        else:
            text = text_of(ans)
            full[s] = _ids(tok, str(prompt) + (text if text.endswith(eos) else text + eos))
    n = min([_common_prefix(prompt_ids, ids) for ids in full.values()] or [len(prompt_ids)])
    return {"prompt": n, **{s: len(ids) - n for s, ids in full.items()}}


def grpo_prompt_tokens(tok, prompt) -> int:
    """Tokens of a GRPO prompt as generation starts from it (messages with the generation prompt; plain
    text without special tokens). The recipe leaves out prompts longer than its budget by this count."""
    if isinstance(prompt, list):
        return len(_ids(tok, prompt, generation_prompt=True))
    return len(tok(prompt, add_special_tokens=False)["input_ids"])


def trl_prompt_tokens(tok, prompt) -> int:
    """Tokens of a DPO/KTO prompt alone, as TRL tokenizes it (an upper bound of `trl_token_counts`'s
    prompt: the common prefix is never longer)."""
    return len(_ids(tok, prompt, generation_prompt=True))


def trl_prompt_fills(tok, row: dict, max_length: int) -> bool:
    """Whether TRL's DPO/KTO trainers drop this row: its prompt (as `trl_token_counts` counts it) fills
    `max_length`. Tokenizes the prompt alone unless it is that long."""
    if trl_prompt_tokens(tok, row["prompt"]) < max_length:
        return False
    return trl_token_counts(tok, row)["prompt"] >= max_length
