"""Dataset statistics and checks in one streaming pass, built for a background worker.

`scan_dataset` reads every row once (progress as the fraction of bytes read, cancellable between rows)
and returns a `Report`: `Stats` (rows, token length histogram with min/median/p95/max, role counts,
tokens per epoch, steps per epoch) and the `Problem` list. `compute_stats` and `check_dataset` are
the two halves of it. Token figures come from `encode_row`, the function training uses, so "trained
tokens" here is what the loss will see. The rules are `checks`' and the formats' own; this module
applies them in one pass and adds the whole-file ones (duplicates, lengths, masking, EOS).
"""

from __future__ import annotations

import itertools
import json
import math
import re
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Callable

from ..schedule import effective_batch, packed_batch, steps_per_epoch
from .checks import generation_marker_problem, mask_fallback_problem, row_problems, too_few_rows_problem
from .formats import (ARROW_FORMATS, Detected, arrow_rows, canonical_key, detect_source, from_numpy, keep_for_sft,
                      to_canonical, to_numpy, validate_row)
from .problems import Problem, by_severity
from .read import EXTENSIONS, chunk_line, iter_rows, jsonl_chunks, local_files
from .tokenize import encode_row

PLACEHOLDER_STRICT = re.compile(r"\{\{\s*[A-Za-z_]\w*\s*\}\}")  # {{name}}, not {{a.b}} (code)
MAX_LISTED = 20  # individual problems per kind before they are summed up
WORK: Counter = Counter()  # for tests: rows read in bulk by Arrow (arrow_rows) and one by one (python_rows),
# repeats Arrow found within a chunk (arrow_repeats), keys compared (key_compares) and read back (reread_rows),
# row by row past the key cache's budget: rows confirmed on the second digest (second_digest_compares)
CHUNK_BYTES = 16 << 20  # JSONL bytes Arrow reads at once: fewer, larger calls cost less CPU (4 MB: +10%)


@dataclass
class Stats:
    """What the Dataset screen shows under "statistics". Lengths are in tokens when a tokenizer was
    given (`unit == "tokens"`), else in characters of the rendered text."""

    rows: int = 0                 # readable rows
    used_rows: int = 0            # rows training uses (after KTO filtering, bad rows removed)
    bad_rows: int = 0             # rows with errors (unreadable or missing fields)
    skipped_rows: int = 0         # rows SFT deliberately skips (KTO undesirable)
    roles: dict[str, int] = field(default_factory=dict)
    unit: str = "chars"
    min: int = 0
    median: int = 0
    p95: int = 0
    max: int = 0
    histogram: list[tuple[int, int, int]] = field(default_factory=list)  # (from, to, rows)
    truncated_rows: int = 0       # rows longer than max_length
    zero_trained_rows: int = 0
    tokens_per_epoch: int = 0     # tokens fed per epoch (after truncation; all rows, before the split)
    trained_tokens_per_epoch: int = 0
    steps_per_epoch: int | None = None  # rows / effective batch; with packing, packed rows / schedule.packed_batch
    complete: bool = True         # False when cancelled before the end, or for a partial report
    fraction: float = 1.0         # share of the source read (bytes) when these numbers were taken
    estimated_rows: int | None = None  # for partial reports: rows extrapolated from `fraction`
    elapsed_s: float = 0.0
    format: str | None = None

    def to_json(self) -> dict:
        d = dict(self.__dict__)
        d["histogram"] = [list(b) for b in self.histogram]
        return d


@dataclass
class Report:
    stats: Stats
    problems: list[Problem]
    detected: Detected | None = None


def percentile(sorted_vals, q: float) -> int:
    """`sorted_vals` a sorted list or numpy array."""
    if not len(sorted_vals):
        return 0
    k = min(len(sorted_vals) - 1, max(0, math.ceil(q * len(sorted_vals)) - 1))
    return int(sorted_vals[k])


def histogram(vals, bins: int = 12) -> list[tuple[int, int, int]]:
    """Equal-width bins over [min, max]: (from, to inclusive, count). `vals`: ints, a list or numpy array."""
    import numpy as np

    vals = np.asarray(vals, dtype=np.int64)
    if not len(vals):
        return []
    lo, hi = int(vals.min()), int(vals.max())
    if lo == hi:
        return [(lo, hi, len(vals))]
    width = max(1, math.ceil((hi - lo + 1) / bins))
    n = math.ceil((hi - lo + 1) / width)
    counts = np.bincount((vals - lo) // width, minlength=n).tolist()
    return [(lo + i * width, min(hi, lo + (i + 1) * width - 1), counts[i]) for i in range(n)]


class _Lengths:
    """Row lengths as read: numpy arrays from the bulk path, ints from the row path."""

    def __init__(self):
        self.parts: list = []
        self.ints: list[int] = []

    def append(self, n: int) -> None:
        self.ints.append(n)

    def extend(self, arr) -> None:
        self.parts.append(arr)

    def sorted(self):
        import numpy as np

        return np.sort(np.concatenate([*self.parts, np.asarray(self.ints, dtype=np.int64)]))


class _Keys:
    """A batch of `canonical_key`s for `_Seen`: rows `rows` (default all) of an `ArrowTurns`, or pairs."""

    def __init__(self, got=None, pairs: list | None = None, rows=None):
        self.got, self.list, self.rows = got, pairs, rows
        self._texts: list | None = None

    def texts(self) -> list:
        """The first halves of the keys, as bytes or memoryviews."""
        if self._texts is None:
            if self.list is not None:
                self._texts = [t for t, _ in self.list]
            else:
                at, text = self.got.text_at, memoryview(self.got.text)
                if self.rows is None:
                    self._texts = list(map(text.__getitem__, map(slice, at[:-1].tolist(), at[1:].tolist())))
                else:
                    self._texts = list(map(text.__getitem__, map(slice, at[self.rows].tolist(),
                                                                 at[self.rows + 1].tolist())))
        return self._texts

    def shapes(self, idx: list[int]) -> list[bytes]:
        if self.list is not None:
            return [self.list[k][1] for k in idx]
        at, shape = self.got.shape_at, self.got.shape
        rows = idx if self.rows is None else self.rows[idx].tolist()
        return [shape[at[k]:at[k + 1]] for k in rows]

    def shapes_joined(self, idx: list[int]) -> tuple[bytes, list[int]]:
        """The shapes of rows `idx` end to end, and their lengths (one gather, no object per row)."""
        import numpy as np

        if self.list is not None:
            shapes = self.shapes(idx)
            return b"".join(shapes), list(map(len, shapes))
        rows = np.asarray(idx) if self.rows is None else self.rows[idx]
        start, end = self.got.shape_at[rows] // 8, self.got.shape_at[rows + 1] // 8
        count = end - start
        turn = np.arange(int(count.sum())) + np.repeat(start - (np.cumsum(count) - count), count)
        return np.frombuffer(self.got.shape, "<u8")[turn].tobytes(), (count * 8).tolist()

    def pairs(self, idx: list[int]) -> list[tuple[bytes, bytes]]:
        texts = self.texts()
        return list(zip([bytes(texts[k]) for k in idx], self.shapes(idx)))


class _Seen:
    """Exact duplicates, fast: rows are looked up by a 64-bit digest of their text (`canonical_key`'s
    first half), and a row whose digest was seen counts as a repeat only when its whole key equals the
    earlier row's, so a digest collision never makes a false duplicate (nor hides a true one: the
    colliding row is kept too). Keys of earlier rows come from a bounded cache, else `reread(ids) ->
    {id: key}` (the file read again). Without `reread` (row by row, any source) the keys are kept up to
    the budget, then a second, independent 64-bit digest of each new key stands for it. Chunks that repeat
    rows go through Arrow's hash table first (`add_rows`), exact by itself. A row id is
    `file index << LINE_BITS | line`."""

    BUDGET = 64 << 20  # bytes of cached keys before the cache is emptied
    HOT = 16 << 20     # bytes of texts that repeated, handed to Arrow with each chunk

    def __init__(self, reread: Callable[[set], dict] | None = None):
        self.first: dict[int, int] = {}          # digest -> id of the first row with it
        self.others: dict[int, list[int]] = {}   # digest -> ids of rows with it but another key (collisions)
        self.texts: dict[int, bytes] = {}        # cached keys: id -> text, id -> shape
        self.shapes: dict[int, bytes] = {}
        self.cached = 0
        self.reread = reread
        self.count = 0                           # rows that repeat an earlier one
        self.listed: list[tuple[int, int]] = []  # the first MAX_LISTED (id, id of the row it repeats)
        self.digest = _digest()
        self.second: dict[int, int] = {}         # row by row: id -> a second digest of the whole key
        self._second = _second_digest()
        self.repeating = True                    # the last batch repeated rows of its own (the first: unknown)
        self.hot: tuple = (None, None, [])       # texts, shapes (Arrow) and first ids of rows that repeated

    def add(self, ids, keys: _Keys) -> None:
        """Rows in file order: their ids (list or numpy int64) and keys."""
        import numpy as np

        ids = np.asarray(ids, dtype=np.int64)
        earliest = self._resolve(ids, keys)
        if earliest is not None:
            self._repeats(ids, earliest)

    def add_rows(self, ids, got) -> None:
        """All rows of an `ArrowTurns` (ids: numpy int64). Once rows repeat (in the chunk before), Arrow's
        hash table takes the chunk with the texts that repeated before (`hot`): rows repeating those, or
        an earlier row of their chunk, are found there exactly, and one row of each other text is looked
        up here."""
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        if not self.repeating:
            return self.add(ids, _Keys(got))
        texts = pa.Array.from_buffers(pa.binary(), got.rows, [None, pa.py_buffer(got.text_at), pa.py_buffer(got.text)])
        shapes = pa.Array.from_buffers(pa.binary(), got.rows, [None, pa.py_buffer(got.shape_at),
                                                               pa.py_buffer(got.shape)])
        enc = pc.dictionary_encode(texts)
        group = to_numpy(enc.indices)
        _, lead = np.unique(group, return_index=True)  # the first row of each text (in row order)
        if not pc.all(pc.equal(shapes, shapes.take(from_numpy(lead[group])))).as_py():  # same text, other turns
            return self.add(ids, _Keys(got))
        hot_texts, hot_shapes, hot_ids = self.hot
        at = np.full(len(lead), -1, dtype=np.int64)  # per text: its row in `hot`, or -1
        if len(hot_ids):
            at = to_numpy(pc.index_in(enc.dictionary, value_set=hot_texts), null=-1).astype(np.int64)
            hit = np.flatnonzero(at >= 0)
            same = pc.equal(shapes.take(from_numpy(lead[hit])), hot_shapes.take(from_numpy(at[hit])))
            at[hit[~to_numpy(same)]] = -1
        new = lead[at < 0]  # rows of this chunk with a text not seen in `hot`
        earliest = np.empty(len(lead), dtype=np.int64)
        earliest[at >= 0] = np.asarray(hot_ids, dtype=np.int64)[at[at >= 0]]
        found = self._resolve(ids[new], _Keys(got, rows=new), keep=len(new) < got.rows)
        earliest[at < 0] = ids[new] if found is None else found
        WORK["arrow_repeats"] += got.rows - len(new)
        self._repeats(ids, earliest[group])
        self.repeating = len(new) < got.rows
        repeated = (at < 0) & ((np.bincount(group, minlength=len(lead)) > 1) | (earliest != ids[lead]))
        if repeated.any():  # texts that repeated: the next chunks are looked up in them first
            take = from_numpy(lead[repeated])
            more = (texts.take(take), shapes.take(take), earliest[repeated].tolist())
            if len(hot_ids) and hot_texts.nbytes + more[0].nbytes <= self.HOT:
                more = (pa.concat_arrays([hot_texts, more[0]]), pa.concat_arrays([hot_shapes, more[1]]),
                        hot_ids + more[2])
            if more[0].nbytes <= self.HOT:
                self.hot = more

    def _resolve(self, ids, keys: _Keys, keep: bool = False):
        """Per row, the id of the first row with its key (its own id when new); None: all new. `keep`:
        cache the keys of new rows (their chunk repeats rows: later chunks may too)."""
        import numpy as np

        hs = list(map(self.digest, keys.texts()))
        if not hs:
            return None
        ids_l = ids.tolist()
        first_at = dict(zip(reversed(hs), reversed(ids_l)))
        self.repeating = len(first_at) < len(hs)
        if keep or self.reread is None:  # without a file to read back from, keep every new key
            new = [k for k, i in enumerate(ids_l) if first_at[hs[k]] == i and hs[k] not in self.first]
            pairs = dict(zip([ids_l[k] for k in new], keys.pairs(new)))
            if self.reread is None:
                self.second.update(zip(pairs, map(self._second, pairs.values())))
            self._fetch(set(), pairs)
        if not self.repeating and self.first.keys().isdisjoint(first_at):  # the common piece
            self.first.update(first_at)
            return None
        known = first_at.keys() & self.first.keys()
        first_at.update(zip(known, map(self.first.__getitem__, known)))  # the earliest row of each digest
        self.first.update(first_at)
        earlier = np.fromiter(map(first_at.__getitem__, hs), np.int64, len(hs))
        cand = np.flatnonzero(earlier != ids)
        if not len(cand):
            return None
        here = dict(zip(ids_l, range(len(ids_l))))
        before = earlier[cand].tolist()
        local = [e for e in set(before) if e in here]
        self._fetch(set(before), dict(zip(local, keys.pairs([here[e] for e in local]))))
        WORK["key_compares"] += len(cand)
        cand_l = cand.tolist()
        if self.texts.keys() >= set(before):
            texts = keys.texts() if len(cand_l) == len(hs) else list(map(keys.texts().__getitem__, cand_l))
            their_texts = list(map(self.texts.__getitem__, before))
            their_shapes = list(map(self.shapes.__getitem__, before))
            shapes, shape_lens = keys.shapes_joined(cand_l)
            if (list(map(len, texts)) == list(map(len, their_texts)) and shape_lens == list(map(len, their_shapes))
                    and shapes == b"".join(their_shapes) and b"".join(texts) == b"".join(their_texts)):
                return earlier  # all the same, found with four comparisons at C speed
        for k, key, e in zip(cand_l, keys.pairs(cand_l), before):
            if not self._matches(e, key):
                e = self._other(hs[k], ids_l[k], key)
                earlier[k] = ids_l[k] if e is None else e
        return earlier

    def _matches(self, i: int, key: tuple[bytes, bytes]) -> bool:
        """Row `i`'s key is `key`: compared whole, or (row by row, past the cache's budget) on a second,
        independent 64-bit digest."""
        if i in self.texts:
            return (self.texts[i], self.shapes[i]) == key
        WORK["second_digest_compares"] += 1
        return self.second[i] == self._second(key)

    def find(self, key: tuple[bytes, bytes]) -> int | None:
        """The id of the first row whose `canonical_key` is `key`, or None."""
        h = self.digest(key[0])
        ids = [self.first[h], *self.others.get(h, ())] if h in self.first else []
        self._fetch(set(ids))
        return next((i for i in ids if self._matches(i, key)), None)

    def _other(self, h: int, i: int, key: tuple) -> int | None:
        """A row whose digest matched a row with another key: an earlier row of the same key, else None
        (and the row is remembered under that digest)."""
        ids = self.others.setdefault(h, [])
        self._fetch(set(ids))
        hit = next((o for o in ids if self._matches(o, key)), None)
        if hit is None:
            ids.append(i)
            self._keep({i: key})
            if self.reread is None:
                self.second[i] = self._second(key)
        return hit

    def _repeats(self, ids, earliest) -> None:
        """Rows `ids` and the first rows with their keys: those that differ are repeats."""
        import numpy as np

        hit = np.flatnonzero(earliest != ids)
        self.count += len(hit)
        if len(self.listed) < MAX_LISTED:
            self.listed.extend(zip(ids[hit[:MAX_LISTED]].tolist(), earliest[hit[:MAX_LISTED]].tolist()))
            del self.listed[MAX_LISTED:]

    def _keep(self, keys: dict) -> None:
        if self.reread is None:  # row by row: up to the budget, then `second` stands for the keys
            sizes = [len(t) + len(sh) for t, sh in keys.values()]
            fits = sum(1 for total in itertools.accumulate(sizes) if total <= self.BUDGET - self.cached)
            keys = dict(itertools.islice(keys.items(), fits))
        self.texts.update(zip(keys, (t for t, _ in keys.values())))
        self.shapes.update(zip(keys, (sh for _, sh in keys.values())))
        self.cached += sum(len(t) + len(sh) for t, sh in keys.values())

    def _fetch(self, ids: set, local: dict | None = None) -> None:
        """Put the keys of `ids` in the cache: from `local` (rows at hand), else read back."""
        if self.reread is not None and self.cached > self.BUDGET:
            self.texts.clear()
            self.shapes.clear()
            self.cached = 0
        if local:
            self._keep({k: v for k, v in local.items() if k not in self.texts})
        missing = ids - self.texts.keys()
        if missing and self.reread is not None:  # (row by row: `second` stands for keys not kept)
            self._keep(self.reread(missing))


def _digest():
    """64-bit digest of bytes: xxh3 (a dependency; datasets needs it too)."""
    from xxhash import xxh3_64_intdigest

    return xxh3_64_intdigest


def _second_digest():
    """A second 64-bit digest of a whole key (text, shape), independent of `_digest`'s."""
    from xxhash import xxh3_64_intdigest as x3

    return lambda key: x3(key[0], x3(key[1], 0x9E3779B97F4A7C15))


LINE_BITS = 40  # a row id: file index << LINE_BITS | line


def _arrow_pieces(first: int, chunk, det: Detected, lines: int, smallest: int = 1 << 16):
    """(first line, lines, `arrow_rows` of them or None) covering `chunk` (`lines` newlines): a chunk
    Arrow refuses (a bad line in it) is halved until the pieces Arrow refuses are small, so a few bad
    lines cost their own piece read row by row, not the whole chunk."""
    got = arrow_rows(chunk, det, lines)
    if got is not None or len(chunk) <= smallest:
        yield first, chunk, got
        return
    chunk = bytes(chunk)
    mid = chunk.rfind(b"\n", 0, len(chunk) // 2) + 1
    if mid == 0:
        yield first, chunk, None
        return
    head = chunk.count(b"\n", 0, mid)
    yield from _arrow_pieces(first, chunk[:mid], det, head, smallest)
    yield from _arrow_pieces(first + head, chunk[mid:], det, lines - head, smallest)


def _reread(ids: set, files: list, spans: list, det: Detected) -> dict[int, tuple[bytes, bytes]]:
    """`canonical_key`s of rows `ids` (file index << LINE_BITS | line), read again from the
    JSONL chunks they were in (`spans`: per file, (first line, byte offset, bytes) of each chunk)."""
    import bisect

    mask = (1 << LINE_BITS) - 1
    wanted: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i in ids:
        fid = i >> LINE_BITS
        c = bisect.bisect_right(spans[fid], ((i & mask), 1 << 62)) - 1
        wanted[fid, c].append(i)
    out = {}
    for (fid, c), rows in wanted.items():
        first, start, size = spans[fid][c]
        with open(files[fid], "rb") as fh:
            fh.seek(start)
            lines = fh.read(size).split(b"\n")
        for i in rows:
            r = chunk_line(str(files[fid]), first, lines, (i & mask) - first)
            out[i] = canonical_key(to_canonical(r.row, det))
    WORK["reread_rows"] += len(out)
    return out


def _arrow_files(source: str, det: Detected, tokenizer, max_rows: int | None) -> list | None:
    """The files the Arrow path reads (`formats.arrow_rows`): local JSONL of a messages or alpaca dataset,
    no tokenizer (token counts need the tokenizer row by row), no row limit. None: read row by row."""
    if tokenizer is not None or max_rows is not None or det.format not in ARROW_FORMATS:
        return None
    files = local_files(source)
    if not files or any(EXTENSIONS.get(f.suffix.lower()) != "jsonl" for f in files):
        return None
    return files


def _canon_text(canon: dict) -> str:
    if "messages" in canon:
        return "\n".join(m["content"] for m in canon["messages"])
    if "prompt" in canon:
        return canon["prompt"] + canon["completion"]
    return canon.get("text", "")


class _Collector:
    """Problems keyed by kind; the first MAX_LISTED of a kind listed one by one, the rest counted."""

    def __init__(self):
        self.items: list[Problem] = []
        self.per_kind: dict[tuple, int] = defaultdict(int)
        self.extra: dict[tuple, Problem] = {}

    def add(self, p: Problem) -> None:
        key = (p.code, p.field if p.code != "unreadable" else None)
        self.per_kind[key] += 1
        if self.per_kind[key] <= MAX_LISTED:
            self.items.append(p)
        else:
            s = self.extra.get(key)
            if s is None:
                self.extra[key] = Problem(f"and more rows with: {p.message}", file=p.file, line=p.line,
                                          field=p.field, fix=p.fix, severity=p.severity, code=p.code, count=0)
                s = self.extra[key]
            s.count += 1
            if len(s.lines) < MAX_LISTED:
                s.lines.append(p.line)

    def result(self) -> list[Problem]:
        out = self.items + list(self.extra.values())
        for s in self.extra.values():
            s.message = f"{s.count} more rows: " + s.message.removeprefix("and more rows with: ")
        return by_severity(out)


def scan_dataset(source: str, tokenizer=None, template: str | None = None, max_length: int = 1024,
                 assistant_only: bool = True, *, columns: dict | None = None, format: str = "auto",
                 split: str = "train", validation_path: str | None = None, validation: float = 0.0,
                 task: str | None = None, max_rows: int | None = None, batch_size: int = 4,
                 gradient_accumulation_steps: int = 1, world_size: int = 1, packing: bool = False,
                 progress: Callable[[float], None] | None = None,
                 cancel: threading.Event | None = None,
                 partial: Callable[[Stats], None] | None = None, partial_every: float = 1.0) -> Report:
    """One pass over `source`: statistics and problems together. Safe to run in a worker thread;
    `progress(fraction)` is called at most ~10 times a second, `cancel.set()` stops early (the report
    then has `stats.complete == False`). `partial(stats)`, every `partial_every` seconds, gets the
    statistics so far (`complete` False, `fraction` read, `estimated_rows`), so a big file shows a
    histogram long before the scan ends."""
    t0 = time.time()
    det, _, _ = detect_source(source, columns=columns, format=format, split=split)
    col = _Collector()
    st = Stats(unit="tokens" if tokenizer is not None else "chars", format=det.format)
    eff_assistant_only = det.spec.masks_prompt(assistant_only)
    if tokenizer is not None:
        template = template if template is not None else getattr(tokenizer, "chat_template", None)
        eos = getattr(tokenizer, "eos_token_id", None)
        if eos is None:
            col.add(Problem("the tokenizer has no EOS token: the model can never learn to stop",
                            field="model.name_or_path", code="missing-eos",
                            fix="use a tokenizer with an EOS token (or set one in tokenizer_config.json)"))
    else:
        eos = None
    template_blocks = False
    is_chat_rows = None  # decided from the first converted row
    arrow = _arrow_files(source, det, tokenizer, max_rows)
    spans: list[list[tuple[int, int, int]]] = []  # per Arrow file: (first line, byte offset, bytes) of its chunks
    seen = _Seen(None if arrow is None else lambda ids: _reread(ids, arrow, spans, det))
    fids: dict[str, int] = {}
    lengths = _Lengths()
    zero_lines: list[int] = []
    long_lines: list[int] = []
    no_eos_lines: list[int] = []
    fallback_lines: list[int] = []
    placeholder_lines: list[int] = []
    placeholder_names: Counter = Counter()
    skipped_lines: list[int] = []
    roles: Counter = Counter()
    files = set()
    last_report = [0.0]
    read_fraction = [0.0, 0]  # bytes fraction, rows read when it was measured
    last_partial = time.time()
    snap_at = 0
    shape = dict(validation_path=validation_path, validation=validation, batch_size=batch_size,
                 gradient_accumulation_steps=gradient_accumulation_steps, world_size=world_size,
                 packing=packing, max_length=max_length)

    def report(frac: float) -> None:
        read_fraction[0], read_fraction[1] = frac, st.rows + st.bad_rows
        now = time.time()
        if progress is not None and (now - last_report[0] > 0.1 or frac >= 1.0):
            last_report[0] = now
            progress(frac)

    def snapshot() -> None:
        nonlocal last_partial, snap_at
        if partial is not None and read_fraction[1] != snap_at and time.time() - last_partial >= partial_every:
            last_partial, snap_at = time.time(), read_fraction[1]  # only after the byte count moved
            snap = Stats(**{**st.__dict__, "complete": False})
            _finish(snap, lengths, roles, t0, fraction=read_fraction[0], rows_at=read_fraction[1], **shape)
            partial(snap)

    def one(r, keys: list) -> None:
        """Statistics and problems of one row as read (everything but the whole-file checks); the row's
        (id, canonical key) goes to `keys` when it counts for duplicates."""
        nonlocal is_chat_rows, template_blocks
        WORK["python_rows"] += 1
        issues = row_problems(r, det)
        for p in issues:
            col.add(p)
        if r.error:
            st.bad_rows += 1
            return
        st.rows += 1
        if any(p.severity == "error" for p in issues):
            st.bad_rows += 1
            return
        if not keep_for_sft(r.row, det):
            st.skipped_rows += 1
            if len(skipped_lines) < MAX_LISTED:
                skipped_lines.append(r.line)
            return
        try:
            canon = to_canonical(r.row, det)
        except Exception as exc:  # noqa: BLE001 - a row the converter cannot handle is a row problem
            st.bad_rows += 1
            col.add(Problem(f"cannot convert this row: {exc}", file=r.file, line=r.line, code="missing-field",
                            fix="check the row against the format's fields"))
            return
        st.used_rows += 1
        if is_chat_rows is None:
            is_chat_rows = "messages" in canon
            if tokenizer is not None and is_chat_rows:
                p = generation_marker_problem(template, det.format, eff_assistant_only)
                if p is not None:
                    col.add(p)
                    template_blocks = True
        keys.append((fids.setdefault(r.file, len(fids)) << LINE_BITS | r.line, canonical_key(canon)))
        if "messages" in canon:
            roles.update(m["role"] for m in canon["messages"])
        text = _canon_text(canon)
        if "{{" in text:
            names = PLACEHOLDER_STRICT.findall(text)
            if names:
                placeholder_lines.append(r.line)
                placeholder_names.update({n.replace(" ", "") for n in names})
        if tokenizer is None:
            lengths.append(len(text))
            return
        try:
            enc = encode_row(canon, tokenizer, template, max_length, eff_assistant_only)
        except Exception as exc:  # noqa: BLE001 - template errors (e.g. a role the template refuses)
            st.bad_rows += 1
            st.used_rows -= 1
            col.add(Problem(f"the chat template cannot render this row: {str(exc)[:200]}", file=r.file,
                            line=r.line, code="template-error", field="model.chat_template",
                            fix="use a template that accepts these roles (model.chat_template: chatml)"))
            return
        lengths.append(enc.length_before_truncation)
        st.tokens_per_epoch += len(enc.input_ids)
        trained = enc.trained
        st.trained_tokens_per_epoch += trained
        if enc.mask_fallback:
            fallback_lines.append(r.line)
        if enc.truncated:
            st.truncated_rows += 1
            long_lines.append(r.line)
        if trained == 0:
            st.zero_trained_rows += 1
            zero_lines.append(r.line)
        elif eos is not None and not enc.truncated and eos not in [t for t in enc.labels if t != -100]:
            no_eos_lines.append(r.line)

    def bulk(fid: int, name: str, first: int, chunk, got) -> None:
        """The rows of a JSONL piece: clean rows from Arrow's figures, the others one by one, in line order."""
        import numpy as np

        fids.setdefault(name, fid)
        base = fid << LINE_BITS
        if got is None:
            lines = bytes(chunk).split(b"\n")
            keys: list = []
            for k in range(len(lines)):
                r = chunk_line(name, first, lines, k)
                if r is not None:
                    one(r, keys)
            seen.add([i for i, _ in keys], _Keys(pairs=[key for _, key in keys]))
            return
        clean = got.clean
        n_clean = int(clean.sum())
        WORK["arrow_rows"] += n_clean
        st.rows += n_clean
        st.used_rows += n_clean
        lengths.extend(got.chars[clean])
        roles.update(got.roles)
        ids = np.arange(base + first, base + first + got.rows, dtype=np.int64)
        if n_clean == got.rows and not got.braces.any():  # the common piece
            seen.add_rows(ids, got)
            return
        lines = bytes(chunk).split(b"\n")
        for k in np.flatnonzero(got.braces & clean).tolist():
            found = PLACEHOLDER_STRICT.findall(_canon_text(to_canonical(json.loads(lines[k]), det)))
            if found:
                placeholder_lines.append(first + k)
                placeholder_names.update({x.replace(" ", "") for x in found})
        keys = []
        for k in np.flatnonzero(~clean).tolist():
            r = chunk_line(name, first, lines, k)
            if r is not None:
                one(r, keys)
        recorded = clean.copy()
        other = {i - base - first: key for i, key in keys}
        recorded[list(other)] = True
        rows = np.flatnonzero(recorded)
        clean_keys = _Keys(got)
        seen.add(ids[rows], _Keys(pairs=[other[k] if k in other else clean_keys.pairs([k])[0] for k in rows.tolist()]))

    if arrow is not None:  # plain messages JSONL without a tokenizer: Arrow reads it, clean rows in bulk
        total = sum(f.stat().st_size for f in arrow) or 1
        done = 0
        for fid, f in enumerate(arrow):
            files.add(str(f))
            spans.append([])
            start = 0
            for first, chunk, pos, n_lines in jsonl_chunks(f, CHUNK_BYTES):
                if cancel is not None and cancel.is_set():
                    break
                spans[-1].append((first, start, len(chunk)))
                start += len(chunk)
                # one thread: parsing the next chunk in a second one cost more CPU (page faults) than it saved
                for piece in _arrow_pieces(first, chunk, det, n_lines):
                    bulk(fid, str(f), *piece)
                report(min(1.0, (done + pos) / total))
                snapshot()
            done += f.stat().st_size
        if not (cancel is not None and cancel.is_set()):
            report(1.0)
    else:
        keys = []  # (id, key) of rows read, handed to `seen` a few thousand at a time
        for r in iter_rows(source, split=split, limit=max_rows, progress=report, cancel=cancel):
            files.add(r.file)
            snapshot()
            one(r, keys)
            if len(keys) >= 4096:
                seen.add([i for i, _ in keys], _Keys(pairs=[key for _, key in keys]))
                keys.clear()
        seen.add([i for i, _ in keys], _Keys(pairs=[key for _, key in keys]))
    st.complete = not (cancel is not None and cancel.is_set())
    file = next(iter(files)) if len(files) == 1 else source

    # ------------------------------------------------------------------ whole-dataset problems
    if st.complete:
        p = too_few_rows_problem(st.used_rows, det.format, task, file)
        if p:
            col.add(p)
    if seen.count:
        (a, b), mask = seen.listed[0], (1 << LINE_BITS) - 1
        col.add(Problem(f"{seen.count} exact duplicate rows (line {a & mask} repeats line {b & mask})",
                        file=file, line=a & mask, code="duplicates", severity="warning", count=seen.count,
                        lines=[i & mask for i, _ in seen.listed],
                        fix="remove the repeats (they weigh those examples more and leak into validation)"))
    # a placeholder is a name left unfilled in many rows (identity data), not code quoted in one answer
    common = [n for n, k in placeholder_names.most_common(5) if k >= max(3, st.used_rows // 100)]
    if common:
        names = ", ".join(common)
        col.add(Problem(f"{len(placeholder_lines)} rows contain template placeholders ({names}) that were "
                        "never filled in; the model would learn them literally", file=file,
                        line=placeholder_lines[0], code="placeholders", severity="warning",
                        count=len(placeholder_lines), lines=placeholder_lines[:MAX_LISTED],
                        fix="replace them with real values before training, e.g. sed -i "
                        "'s/{{name}}/Aria/g; s/{{author}}/Acme/g' FILE"))
    if st.skipped_rows:
        col.add(Problem(f"{st.skipped_rows} rows labelled undesirable (label false) are skipped: SFT trains "
                        "on the desirable rows only (KTO is not available yet)", file=file,
                        line=skipped_lines[0], field=det.col("label"), code="undesirable-skipped",
                        severity="info", count=st.skipped_rows, lines=skipped_lines,
                        fix="nothing to do; keep the labels for KTO later"))
    if det.sft_note and det.spec.sft_note_fix:
        col.add(Problem(det.sft_note, file=file, code=f"{det.format}-as-sft", severity="info",
                        fix=det.spec.sft_note_fix))
    if tokenizer is not None and st.used_rows:
        if long_lines:
            vals = lengths.sorted()
            over = len(long_lines)
            col.add(Problem(f"{over} rows are longer than max_length {max_length} (longest {vals[-1]} "
                            "tokens): they are truncated and the cut part is not trained", file=file,
                            line=long_lines[0], field="train.max_length", code="too-long", severity="warning",
                            count=over, lines=long_lines[:MAX_LISTED],
                            fix=_too_long_fix(vals, max_length, over)))
        if zero_lines and not template_blocks:
            if st.zero_trained_rows == st.used_rows:
                col.add(Problem(f"every row would train on 0 tokens (all {st.used_rows} are masked): "
                                "training would learn nothing and is refused", file=file, line=zero_lines[0],
                                field="dataset.assistant_only_loss", code="all-masked",
                                count=st.zero_trained_rows, lines=zero_lines[:MAX_LISTED],
                                fix="raise train.max_length so the answers fit, use a template with "
                                "generation markers, or set dataset.assistant_only_loss: false"))
            else:
                col.add(Problem(f"{len(zero_lines)} rows have no trained token (their answer is cut off or "
                                "masked); training drops them", file=file, line=zero_lines[0],
                                field="train.max_length", code="no-trained-tokens", severity="warning",
                                count=len(zero_lines), lines=zero_lines[:MAX_LISTED],
                                fix="raise train.max_length or shorten the prompts of those rows"))
        p = mask_fallback_problem(len(fallback_lines), fallback_lines[:MAX_LISTED], file)
        if p:
            col.add(p)
        if no_eos_lines and not template_blocks:
            tok_eos = getattr(tokenizer, "eos_token", None)
            severity = "error" if len(no_eos_lines) == st.used_rows - st.zero_trained_rows else "warning"
            col.add(Problem(f"{len(no_eos_lines)} rows never train the EOS token {tok_eos!r}: the model will not "
                            "learn to stop (endless output)", file=file, line=no_eos_lines[0],
                            field="model.chat_template", code="missing-eos", severity=severity,
                            count=len(no_eos_lines), lines=no_eos_lines[:MAX_LISTED],
                            fix="use a template whose assistant turn ends with the tokenizer's EOS "
                            "(model.chat_template: chatml or llama3)"))
    if validation_path and st.complete:
        _overlap(validation_path, det, seen, col, split, cancel)

    _finish(st, lengths, roles, t0, fraction=1.0 if st.complete else read_fraction[0], rows_at=read_fraction[1],
            **shape)
    return Report(st, col.result(), det)


def _finish(st: Stats, lengths: _Lengths, roles: Counter, t0: float, *, fraction: float, rows_at: int, validation_path,
            validation: float, batch_size: int, gradient_accumulation_steps: int, world_size: int,
            packing: bool = False, max_length: int = 1024) -> None:
    """Fill the derived numbers (length summary, histogram, steps per epoch; estimates when partial)."""
    vals = lengths.sorted()
    if len(vals):
        st.min, st.max = int(vals[0]), int(vals[-1])
        st.median, st.p95 = percentile(vals, 0.5), percentile(vals, 0.95)
        st.histogram = histogram(vals)
    st.roles = dict(roles)
    st.fraction = round(fraction, 4)
    scale = 1.0
    if not st.complete and 0 < fraction < 1 and rows_at:
        # rows per byte so far, times the whole source (bad rows count: they take bytes too)
        total = rows_at / fraction
        scale = total / max(1, st.rows + st.bad_rows)
        st.estimated_rows = round(st.rows * scale)
    train_rows = round((st.used_rows - st.zero_trained_rows) * scale)
    if not validation_path and validation > 0 and train_rows >= 10:
        train_rows -= max(1, round(train_rows * validation))
    eff = effective_batch(batch_size, gradient_accumulation_steps, world_size)
    if packing and st.unit == "tokens" and st.used_rows:
        # packed: sequences of max_length tokens, filled from the tokens of the training rows; two rows
        # longer than half of it never share one (the two lower bounds of bin packing, of which best-fit
        # packing is close to the larger)
        share = scale * train_rows / max(1, round((st.used_rows - st.zero_trained_rows) * scale))
        tokens = st.tokens_per_epoch * share
        halves = (len(vals) - int(vals.searchsorted(max_length / 2, side="right"))) * share if len(vals) else 0
        packed = max(math.ceil(tokens / max_length), math.ceil(halves)) if tokens > 0 else 0
        per_step, _ = packed_batch(batch_size, train_rows, packed, batch_size)
        st.steps_per_epoch = steps_per_epoch(packed, effective_batch(per_step, gradient_accumulation_steps, world_size))
    else:
        st.steps_per_epoch = steps_per_epoch(train_rows, eff)
    st.elapsed_s = round(time.time() - t0, 3)


def _too_long_fix(vals: list[int], max_length: int, over: int) -> str:
    p95 = percentile(vals, 0.95)
    if p95 > max_length:
        return (f"raise train.max_length to {_round_up(p95)} (covers 95% of rows) if memory allows, or "
                "shorten/drop the long rows")
    return (f"95% of rows already fit; shorten or drop these {over} outliers (or raise train.max_length to "
            f"{_round_up(vals[-1])} if memory allows)")


def _round_up(n: int) -> int:
    for step in (128, 256, 512, 1024):
        if n <= step * 8:
            return int(math.ceil(n / step) * step)
    return int(math.ceil(n / 1024) * 1024)


def _overlap(validation_path: str, det: Detected, seen: _Seen, col: _Collector, split: str,
             cancel) -> None:
    hits = []
    for r in iter_rows(validation_path, split=split, cancel=cancel):
        if r.error or validate_row(r.row, det) or not keep_for_sft(r.row, det):
            continue
        i = seen.find(canonical_key(to_canonical(r.row, det)))
        if i is not None:
            hits.append((r.line, i & ((1 << LINE_BITS) - 1), r.file))
    if hits:
        col.add(Problem(f"{len(hits)} validation rows also appear in the training data (line {hits[0][0]} = "
                        f"training line {hits[0][1]}): validation loss will look better than it is",
                        file=hits[0][2], line=hits[0][0], field="dataset.validation_path",
                        code="validation-overlap", severity="warning", count=len(hits),
                        lines=[a for a, _, _ in hits[:MAX_LISTED]],
                        fix="remove those rows from one of the two files"))


def compute_stats(source: str, tokenizer=None, template: str | None = None, max_length: int = 1024,
                  assistant_only: bool = True, *, columns: dict | None = None, format: str = "auto",
                  batch_size: int = 4, gradient_accumulation_steps: int = 1, world_size: int = 1,
                  validation: float = 0.0, max_rows: int | None = None,
                  progress: Callable[[float], None] | None = None,
                  cancel: threading.Event | None = None,
                  partial: Callable[[Stats], None] | None = None) -> Stats:
    """Rows, token length histogram (min/median/p95/max), role counts, tokens and steps per epoch.
    Reads the whole source once in the calling thread: run it in a worker. `progress(fraction)` is
    called at most ~10 times a second; `cancel.set()` stops early (`Stats.complete` is then False)."""
    return scan_dataset(source, tokenizer, template, max_length, assistant_only, columns=columns,
                        format=format, batch_size=batch_size, validation=validation,
                        gradient_accumulation_steps=gradient_accumulation_steps, world_size=world_size,
                        max_rows=max_rows, progress=progress, cancel=cancel, partial=partial).stats


def check_dataset(source: str, tokenizer=None, template: str | None = None, max_length: int = 1024,
                  assistant_only: bool = True, *, columns: dict | None = None, format: str = "auto",
                  validation_path: str | None = None, task: str | None = None, max_rows: int | None = None,
                  progress=None, cancel=None) -> list[Problem]:
    """All problems of a dataset, errors first (the `problems` half of `scan_dataset`). Without a
    tokenizer the token-level checks (too long, zero trained tokens, EOS, template, mask fallback) are
    skipped. Raises `UserError` only when the source cannot be read as a dataset at all."""
    return scan_dataset(source, tokenizer, template, max_length, assistant_only, columns=columns,
                        format=format, validation_path=validation_path, task=task, max_rows=max_rows,
                        progress=progress, cancel=cancel).problems
