"""Continued-pretraining data (training: cpt): raw text tokenized and packed into blocks of
train.max_length, at corpus scale, without ever holding the corpus in memory.

Blocks are built the classic run_clm way (transformers' examples/pytorch/language-modeling): every
document is tokenized as is (the tokenizer's own BOS when it adds one, no chat template) and ends with
EOS; the documents are concatenated in file order and cut into blocks of exactly `max_length` tokens.
A document longer than a block runs on into the next block; a block usually holds the end of one
document and the start of the next, joined by EOS (no attention mask between them, as run_clm does).
The leftover tail shorter than one block at the very end of the corpus is dropped and counted. Every
token of a block is trained (labels = input_ids; the collator copies them).

Memory: rows are read one at a time (`read.iter_rows`, with file and line), tokenized `BATCH_DOCS`
documents at a time, and the blocks written straight to an Arrow file on disk
(`datasets.arrow_writer.ArrowWriter`); training memory-maps that file (`Dataset.from_file`). What is
held in RAM is one batch of documents and less than one block of carry-over, whatever the corpus size.
The file is cached under `cache_root()/corpus/KEY`, KEY a fingerprint of (files and their size and
mtime, columns, max_rows, tokenizer, max_length), so a second run on the same corpus starts at once.

`first_block(source, tokenizer, max_length)` is the preview: the first block as the model sees it and
where documents join, from the first few documents only (milliseconds, like any other format's preview).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from ..errors import Problem as BaseProblem
from ..errors import UserError
from .checks import row_problems
from .formats import Detected, detect_source, to_canonical
from .read import iter_rows, source_fingerprint
from .tokenize import cache_root, tokenizer_fingerprint

CORPUS_VERSION = "1"  # bump when the block layout changes: old caches are not reused
BATCH_DOCS = 1000  # documents tokenized per call: bounds RAM, amortises the tokenizer's call overhead
MAX_REPORTED = 10


@dataclass
class Block:
    """One packed block: its token ids and the offsets where a new document starts inside it (after
    an EOS; 0 when the block starts a document)."""

    input_ids: list[int]
    doc_starts: list[int] = field(default_factory=list)
    eos_token_id: int | None = None

    def to_json(self) -> dict:
        return {"input_ids": self.input_ids, "doc_starts": self.doc_starts, "n_tokens": len(self.input_ids),
                "eos_token_id": self.eos_token_id}


def text_format_problem(det: Detected, source: str) -> UserError | None:
    """CPT trains on raw text: any other format is refused (one line), with what to do."""
    if det.format == "text":
        return None
    return UserError(f"training: cpt needs raw text (one text column per document); this dataset is "
                     f"{det.format} ({det.evidence}): use training: sft, or map the text column with "
                     "dataset.columns {text: YOUR_COLUMN} and dataset.format: text", file=source,
                     field="dataset.format")


def check_cpt_source(cfg) -> None:
    """Refuse (UserError) a dataset.path or validation_path that is not raw text, reading only its first rows."""
    d = cfg.dataset
    for path in (d.path, d.validation_path):
        if path:
            det, _, _ = detect_source(path, columns=d.columns, format=d.format, split=d.split)
            err = text_format_problem(det, path)
            if err is not None:
                raise err


def _documents(source: str, det: Detected, *, split: str, max_rows: int | None,
               bad: list, counts: dict) -> Iterator[str]:
    """The text of each usable row, in order; unusable rows are counted and the first few kept in `bad`."""
    for r in iter_rows(source, split=split, limit=max_rows, streaming_hub=True):
        errors = [p for p in row_problems(r, det) if p.severity == "error"]
        if errors:
            counts["bad"] += 1
            if len(bad) < MAX_REPORTED:
                e = errors[0]
                bad.append(BaseProblem(f"{e.message} ({e.fix})", file=e.file, line=e.line, field=e.field))
            continue
        counts["docs"] += 1
        yield to_canonical(r.row, det)["text"]


def _encode_docs(tokenizer, texts: list[str]) -> list[list[int]]:
    """Each document's tokens + EOS (the tokenizer's own special tokens, e.g. BOS, as for SFT text rows)."""
    eos = tokenizer.eos_token_id
    ids = tokenizer(texts, add_special_tokens=True)["input_ids"]
    return [x + [eos] if eos is not None else x for x in ids]


def pack(docs: Iterator[list[int]], max_length: int, stats: dict | None = None) -> Iterator[Block]:
    """Concatenate tokenized documents and cut them into blocks of exactly `max_length` (run_clm's
    group_texts, carried across batches so only the corpus's final tail is lost). Each block records
    where documents start in it; `stats["tail"]` gets the tokens of the dropped final partial block."""
    buf: list[int] = []
    starts: list[int] = []  # offsets in buf where a document starts
    for ids in docs:
        starts.append(len(buf))
        buf.extend(ids)
        while len(buf) >= max_length:
            yield Block(buf[:max_length], [s for s in starts if s < max_length])
            buf = buf[max_length:]
            starts = [s - max_length for s in starts if s >= max_length]
    if stats is not None:
        stats["tail"] = len(buf)


def _token_stream(tokenizer, texts: Iterator[str]) -> Iterator[list[int]]:
    batch: list[str] = []
    for t in texts:
        batch.append(t)
        if len(batch) >= BATCH_DOCS:
            yield from _encode_docs(tokenizer, batch)
            batch = []
    if batch:
        yield from _encode_docs(tokenizer, batch)


def first_block(source: str, tokenizer, max_length: int, *, columns: dict | None = None,
                format: str = "auto", split: str = "train", det: Detected | None = None) -> Block | None:
    """The first packed block as the model sees it, reading only the documents it needs. None when the
    whole source is shorter than one block (then nothing would train)."""
    if det is None:
        det, _, _ = detect_source(source, columns=columns, format=format, split=split)
    bad: list = []
    counts = {"bad": 0, "docs": 0}
    docs = (_encode_docs(tokenizer, [t])[0] for t in _documents(source, det, split=split, max_rows=None,
                                                                  bad=bad, counts=counts))
    for b in pack(docs, max_length):
        b.eos_token_id = tokenizer.eos_token_id
        return b
    return None


def _fingerprint(source: str, det: Detected, tokenizer, max_length: int, max_rows: int | None) -> str:
    return source_fingerprint(source, CORPUS_VERSION, det.to_json(), max_rows, max_length,
                              tokenizer_fingerprint(tokenizer))[:24]


def build_blocks(source: str, tokenizer, max_length: int, *, det: Detected, split: str = "train",
                 max_rows: int | None = None, progress: Callable[[int], Any] | None = None):
    """(Dataset of blocks `input_ids`, memory-mapped from an Arrow file on disk; facts). Cached.
    Raises `UserError` listing the first unusable rows (file:line), or when the corpus is shorter than
    one block."""
    import datasets
    from datasets.arrow_writer import ArrowWriter

    key = _fingerprint(source, det, tokenizer, max_length, max_rows)
    home = cache_root() / "corpus" / key
    final, facts_file = home / "blocks.arrow", home / "facts.json"
    if final.exists() and facts_file.exists():
        facts = json.loads(facts_file.read_text())
        return datasets.Dataset.from_file(str(final)), {**facts, "cache": "hit", "cache_key": key}
    home.mkdir(parents=True, exist_ok=True)
    tmp = home / f"blocks.arrow.tmp{os.getpid()}"
    features = datasets.Features({"input_ids": datasets.Sequence(datasets.Value("int32"))})
    bad: list = []
    counts = {"bad": 0, "docs": 0}
    n_blocks = 0
    pending: list[list[int]] = []
    writer = ArrowWriter(features=features, path=str(tmp), writer_batch_size=BATCH_DOCS)
    try:
        docs = _token_stream(tokenizer, _documents(source, det, split=split, max_rows=max_rows,
                                                   bad=bad, counts=counts))
        for b in pack(docs, max_length, counts):
            pending.append(b.input_ids)
            if len(pending) >= BATCH_DOCS:
                writer.write_batch({"input_ids": pending})
                n_blocks += len(pending)
                pending = []
                if progress is not None:
                    progress(n_blocks)
        if pending:
            writer.write_batch({"input_ids": pending})
            n_blocks += len(pending)
        writer.finalize()
    finally:
        writer.close()
    tail = counts.get("tail", 0)
    if bad:
        tmp.unlink(missing_ok=True)
        more = counts["bad"] - len(bad)
        if more > 0:
            bad.append(BaseProblem(f"... and {more} more bad rows; `ftwizard inspect {source}` lists them all",
                                   file=source))
        raise UserError(bad)
    if n_blocks == 0:
        tmp.unlink(missing_ok=True)
        raise UserError(f"the corpus holds {tail} tokens, fewer than one block of train.max_length {max_length}: "
                        "add text or lower train.max_length", file=source, field="train.max_length")
    facts = {"documents": counts["docs"], "blocks": n_blocks, "block_length": max_length,
             "tokens": n_blocks * max_length, "dropped_tail_tokens": tail}
    os.replace(tmp, final)
    facts_file.write_text(json.dumps(facts))
    return datasets.Dataset.from_file(str(final)), {**facts, "cache": "miss", "cache_key": key}


def split_blocks(ds, fraction: float, seed: int):
    """(train, validation or None): a seeded random `fraction` of the blocks held out (an index
    mapping over the memory-mapped file, nothing copied)."""
    import numpy as np

    n = len(ds)
    k = min(n - 1, max(1, round(n * fraction))) if fraction > 0 and n >= 2 else 0
    if k == 0:
        return ds, None
    order = np.random.default_rng(seed).permutation(n)
    return ds.select(np.sort(order[k:])), ds.select(np.sort(order[:k]))


def prepare_cpt_data(cfg, tokenizer, emit: Callable[..., Any], phase: Callable[..., Any] | None = None):
    """The CPT recipe's data step: (train blocks, validation blocks or None, facts). dataset.path,
    columns, format (must be text), split, max_rows, validation or validation_path; train.max_length;
    train.seed for the held-out blocks. dataset.assistant_only_loss does not apply: raw text has no
    prompt, every token trains."""
    import datasets

    datasets.disable_progress_bars()
    d, t = cfg.dataset, cfg.train
    det, _, _ = detect_source(d.path, columns=d.columns, format=d.format, split=d.split)
    err = text_format_problem(det, d.path)
    if err is not None:
        raise err
    if phase is not None:
        phase("tokenizing", f"packing into blocks of {t.max_length} tokens")
    ds, facts = build_blocks(d.path, tokenizer, t.max_length, det=det, split=d.split, max_rows=d.max_rows)
    emit("info", key="dataset", value={"path": d.path, "format": det.format, "evidence": det.evidence,
                                       "variant": det.variant, "rows": facts["documents"],
                                       "used_rows": facts["documents"], "skipped_rows": 0})
    emit("info", key="packed", value=facts)
    if d.validation_path:
        vdet, _, _ = detect_source(d.validation_path, columns=d.columns, format=d.format, split=d.split)
        err = text_format_problem(vdet, d.validation_path)
        if err is not None:
            raise err
        eval_ds, vfacts = build_blocks(d.validation_path, tokenizer, t.max_length, det=vdet, split=d.split)
        emit("info", key="packed_validation", value=vfacts)
        train_ds = ds
    else:
        train_ds, eval_ds = split_blocks(ds, d.validation, t.seed)
        if eval_ds is not None:
            emit("info", key="validation_split", value={"blocks": len(eval_ds)})
    return train_ds, eval_ds, {**facts, "format": det.format, "rows": len(train_ds)}


def clear_cache() -> None:
    """Delete every cached corpus (tests, or to free disk)."""
    shutil.rmtree(cache_root() / "corpus", ignore_errors=True)
