"""Streaming row reader for every source: JSONL, JSON (array, `{"data": [...]}`, columns, or JSON lines in
a .json file), CSV/TSV, Parquet, a directory of them, and hub ids (through `datasets`).

`iter_rows` yields `RawRow`s one at a time with the file and line each came from (the 1-based line
where the row starts; the row number for Parquet and hub data) and never holds the file in memory, so
the first rows of a 1 GB file come back in milliseconds. A row that cannot be read (bad JSON, not
UTF-8, not an object) is yielded with `error` set instead of stopping, so checks can list them all;
training turns them into a `UserError` with the line. Each such row carries its fix, chosen here where
the error is found.

`EXTENSIONS` is the one list of dataset file suffixes (the CLI help, the wizard's path completion and
the error messages all read it).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from ..errors import UserError
from .problems import Problem

_WRAPPED = re.compile(r'\{\s*"(?:[^"\\]|\\.)*"\s*:\s*\[\s*')  # {"data": [  (rows under the first key)
EXTENSIONS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".tsv": "tsv",
              ".parquet": "parquet"}
SUFFIXES = tuple(EXTENSIONS)
CHUNK = 1 << 20

# fixes of unreadable rows, given where each error is found
FIX_UTF8 = "re-save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8 in > out)"
FIX_JSON = "fix the JSON on this line (a missing quote, comma or brace) or delete the line"
FIX_OBJECT = "make each row one {...} object"
FIX_ROW = "fix or delete this row"
FIX_EMPTY = "put the rows in this file, or point dataset.path at the right one"


def suffix_list(sep: str = ", ", last: str = " or ") -> str:
    """'.jsonl, .json, .csv, .tsv or .parquet' (the main suffixes; .ndjson is JSONL's other name)."""
    main = [s for s in SUFFIXES if s != ".ndjson"]
    return sep.join(main[:-1]) + last + main[-1]


def is_dataset_file(path: str | Path) -> bool:
    """True when the name ends in a dataset suffix this reader takes."""
    return Path(path).suffix.lower() in EXTENSIONS


def looks_local(source: str) -> bool:
    """True when `source` is meant as a local path (exists, starts like a path or has a dataset suffix),
    False when it reads as a hub id."""
    p = Path(source).expanduser()
    return p.exists() or source.startswith(("/", ".", "~")) or is_dataset_file(p)


@dataclass
class RawRow:
    file: str
    line: int
    row: dict | None
    error: str | None = None   # the row could not be read at all
    field: str | None = None   # where in the row, when known
    fix: str | None = None     # how to fix an unreadable row (set with `error`)

    def problem(self) -> Problem:
        """The `unreadable` problem of a row that could not be read."""
        return Problem(self.error or "", file=self.file, line=self.line, field=self.field, code="unreadable",
                       fix=self.fix or FIX_ROW)


def source_fingerprint(source: str, *parts: Any) -> str:
    """A cache key for data read from `source`: each local file's path, size and modification time (a
    hub id: the id itself), and `parts` (formats, settings, versions) as JSON. Changes when the data
    or any part does; reading nothing but the files' metadata."""
    import hashlib

    h = hashlib.sha256()
    files = local_files(source)
    for f in files or []:
        st = f.stat()
        h.update(f"{f.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    if files is None:
        h.update(source.encode())
    h.update(json.dumps(list(parts), sort_keys=True, default=str).encode())
    return h.hexdigest()


def local_files(source: str) -> list[Path] | None:
    """The data files of a local file or directory; None when `source` is not a local path (a hub id)."""
    p = Path(source).expanduser()
    if p.is_file():
        if not is_dataset_file(p):
            raise UserError(f"unsupported file type '{p.suffix}' (use {suffix_list()})",
                            file=str(p), field="dataset.path")
        return [p]
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.is_file() and is_dataset_file(f))
        if not files:
            raise UserError(f"no {suffix_list('/', '/')} files in this directory", file=str(p),
                            field="dataset.path")
        return files
    if source.startswith(("/", "./", "../", "~")) or is_dataset_file(p) or source.count("/") > 1:
        raise UserError("no such file or directory", file=source, field="dataset.path")
    return None


def total_bytes(source: str) -> int | None:
    files = local_files(source)
    return sum(f.stat().st_size for f in files) if files is not None else None


def iter_rows(source: str, *, split: str = "train", limit: int | None = None,
              progress: Callable[[float], None] | None = None,
              cancel: threading.Event | None = None, streaming_hub: bool = True) -> Iterator[RawRow]:
    """Rows of `source` in order, each with its file and line. `progress` gets the fraction of bytes read
    (local files); `cancel` stops the iteration between rows."""
    files = local_files(source)
    n = 0
    if files is None:
        for r in _iter_hub(source, split, streaming_hub):
            if (limit is not None and n >= limit) or (cancel is not None and cancel.is_set()):
                return
            n += 1
            yield r
        return
    total = sum(f.stat().st_size for f in files) or 1
    done = 0
    for f in files:
        kind = EXTENSIONS[f.suffix.lower()]
        reader = {"jsonl": _iter_jsonl, "json": _iter_json, "csv": _iter_csv, "tsv": _iter_csv,
                  "parquet": _iter_parquet}[kind]
        base = done

        def report(pos: int, base=base):
            if progress is not None:
                progress(min(1.0, (base + pos) / total))

        for r in reader(f, report):
            if (limit is not None and n >= limit) or (cancel is not None and cancel.is_set()):
                return
            n += 1
            yield r
        done += f.stat().st_size
    if progress is not None:
        progress(1.0)


# --------------------------------------------------------------------------------------------- JSONL


def _iter_jsonl(path: Path, report) -> Iterator[RawRow]:
    name = str(path)
    with open(path, "rb") as fh:
        pos = 0
        for i, raw in enumerate(fh, 1):
            pos += len(raw)
            if i % 256 == 0:
                report(pos)
            if not raw.strip():
                continue
            yield _parse_line(name, i, raw)


def jsonl_chunks(path: Path, size: int = 4 << 20) -> Iterator[tuple[int, bytes | memoryview, int, int]]:
    """A JSONL file in whole lines: (number of the chunk's first line, the lines as bytes or a memoryview
    valid until the next item, bytes of the file read so far, newlines in the chunk). For readers that
    take many rows at once (the Arrow scan in `stats`). One buffer for the whole file: a block's
    unfinished last line is read again with the next block."""
    import numpy as np

    line = 1
    buf, newline = bytearray(size), np.empty(size, dtype=bool)
    with open(path, "rb") as fh:
        while True:
            got = fh.readinto(buf)
            if not got:
                return
            cut = buf.rfind(b"\n", 0, got) + 1
            if cut == 0:  # one line longer than `size` (or the last line, without its newline)
                chunk = bytes(buf[:got]) + fh.readline()
                lines = chunk.count(b"\n")
            else:
                if cut < got:
                    fh.seek(cut - got, 1)
                chunk = memoryview(buf)[:cut]
                lines = int(np.count_nonzero(np.equal(np.frombuffer(chunk, np.uint8), 10, out=newline[:cut])))
            yield line, chunk, fh.tell(), lines
            line += lines


def chunk_line(name: str, first_line: int, lines: list[bytes], i: int) -> RawRow | None:
    """Row `i` of a chunk from `jsonl_chunks` split on newlines, as `_iter_jsonl` reads it (None: blank)."""
    raw = lines[i]
    if not raw.strip():
        return None
    return _parse_line(name, first_line + i, raw)


def _parse_line(name: str, i: int, raw: bytes) -> RawRow:
    raw = raw.rstrip(b"\r\n")  # a line cut short is then reported at its own end, not as line 2 column 1
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return RawRow(name, i, None, f"not UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})",
                      fix=FIX_UTF8)
    if i == 1 and text.startswith("\ufeff"):
        text = text[1:]
    try:
        obj = json.loads(text)
    except ValueError as exc:
        col = getattr(exc, "colno", None)
        msg = getattr(exc, "msg", str(exc))
        return RawRow(name, i, None, f"not valid JSON: {msg}" + (f" at column {col}" if col else ""),
                      fix=FIX_JSON)
    if not isinstance(obj, dict):
        return RawRow(name, i, None, f"expected a JSON object per line, got {type(obj).__name__}",
                      fix=FIX_OBJECT)
    return RawRow(name, i, obj)


# ---------------------------------------------------------------------------------------------- JSON


class _Buffer:
    """Reads a file in chunks as text and tracks the line number of any offset."""

    def __init__(self, path: Path, report):
        self.fh = open(path, "rb")
        import codecs

        self.dec = codecs.getincrementaldecoder("utf-8")()
        self.text = ""
        self.eof = False
        self.line = 1       # line number of text[0]
        self._cache = (0, 1)
        self.read_bytes = 0
        self.report = report
        self.bad_utf8: str | None = None

    def more(self) -> bool:
        if self.eof:
            return False
        chunk = self.fh.read(CHUNK)
        self.read_bytes += len(chunk)
        self.report(self.read_bytes)
        try:
            self.text += self.dec.decode(chunk, final=not chunk)
        except UnicodeDecodeError as exc:
            line = self.line + self.text.count("\n") + chunk[:exc.start].count(b"\n")
            self.bad_utf8 = (f"not UTF-8 (byte 0x{chunk[exc.start]:02x})", line)
            self.eof = True
            return False
        if not chunk:
            self.eof = True
        return True

    def line_at(self, pos: int) -> int:
        """Line number of text[pos], counted incrementally (rows are read in order)."""
        cpos, cline = self._cache
        if pos < cpos:
            cpos, cline = 0, self.line
        cline += self.text.count("\n", cpos, pos)
        self._cache = (pos, cline)
        return cline

    def drop(self, pos: int) -> None:
        self.line = self.line_at(pos)
        self.text = self.text[pos:]
        self._cache = (0, self.line)

    def compact(self, pos: int) -> int:
        """Forget the text before `pos` once it is large (amortised: no copy per row). Returns the new pos."""
        if pos > CHUNK:
            self.drop(pos)
            return 0
        return pos

    def skip_ws(self, pos: int, extra: str = "") -> int:
        while True:
            while pos < len(self.text) and (self.text[pos].isspace() or self.text[pos] in extra):
                pos += 1
            if pos < len(self.text) or not self.more():
                return pos

    def close(self):
        self.fh.close()


def _iter_json(path: Path, report) -> Iterator[RawRow]:
    name = str(path)
    buf = _Buffer(path, report)
    try:
        pos = buf.skip_ws(0)
        if pos < len(buf.text) and buf.text[pos] == "\ufeff":
            pos = buf.skip_ws(pos + 1)
        if pos >= len(buf.text):
            if buf.bad_utf8:
                yield RawRow(name, buf.bad_utf8[1], None, buf.bad_utf8[0], fix=FIX_UTF8)
                return
            yield RawRow(name, 1, None, "the file is empty", fix=FIX_EMPTY)
            return
        ch = buf.text[pos]
        if ch == "[":
            yield from _json_array(name, buf, pos + 1)
            return
        if ch != "{":
            yield RawRow(name, buf.line + buf.text.count("\n", 0, pos), None,
                         "expected a JSON array of objects or an object",
                         fix="make the file a JSON array of {...} objects, or one object per line")
            return
        # {"data": [{...}, ...]}: stream the rows of the list, with their real line numbers
        m = _WRAPPED.match(buf.text, pos)
        if m and m.end() < len(buf.text) and buf.text[m.end()] == "{":
            yield from _json_array(name, buf, m.end())
            return
        # An object: JSON lines in a .json file, or one object holding the rows.
        first = _decode_one(name, buf, pos)
        if isinstance(first, RawRow):
            yield first
            return
        obj, end = first
        nxt = buf.skip_ws(end)
        if nxt < len(buf.text) and buf.text[nxt] == "{":  # JSON lines in a .json file
            line0 = buf.line + buf.text.count("\n", 0, pos)
            yield RawRow(name, line0, obj)
            buf.drop(nxt)
            yield from _json_sequence(name, buf)
            return
        if nxt < len(buf.text):
            yield RawRow(name, buf.line + buf.text.count("\n", 0, nxt), None,
                         "unexpected text after the JSON object", fix=FIX_JSON)
            return
        yield from _rows_of_object(name, obj)
    finally:
        buf.close()


def _decode_one(name: str, buf: _Buffer, pos: int):
    """(value, end) of the JSON value at `pos` of file `name`, reading more of it as needed; a RawRow on
    error."""
    dec = json.JSONDecoder()
    last_err = None
    while True:
        try:
            return dec.raw_decode(buf.text, pos)
        except ValueError as exc:
            # An incomplete value at the end of the buffer: read more and try again. A real syntax error
            # stays where it is when more text arrives: stop there (a long string still being read is
            # the exception), and never grow one value past 256 MB.
            real = last_err == exc.pos and not exc.msg.startswith("Unterminated string")
            last_err = exc.pos
            if not buf.eof and not real and len(buf.text) - pos < (256 << 20):
                if buf.more():
                    continue
            if buf.bad_utf8:
                return RawRow(name, buf.bad_utf8[1], None, buf.bad_utf8[0], fix=FIX_UTF8)
            line = buf.line + buf.text.count("\n", 0, min(exc.pos, len(buf.text)))
            col = exc.pos - (buf.text.rfind("\n", 0, exc.pos) + 1) + 1
            return RawRow(name, line, None, f"not valid JSON: {exc.msg} at column {col}; the rest of the "
                          "file cannot be read", fix=FIX_JSON)


def _json_array(name: str, buf: _Buffer, pos: int) -> Iterator[RawRow]:
    i = 0
    while True:
        pos = buf.skip_ws(pos, ",")
        if pos >= len(buf.text):
            yield RawRow(name, buf.line + buf.text.count("\n"), None, buf.bad_utf8[0] if buf.bad_utf8 else
                         "the JSON array is not closed (file cut short?)", fix=FIX_UTF8 if buf.bad_utf8 else
                         "the file is cut short: restore its end (a closing ])")
            return
        if buf.text[pos] == "]":
            return
        line = buf.line_at(pos)
        got = _decode_one(name, buf, pos)
        if isinstance(got, RawRow):
            yield got
            return
        obj, end = got
        i += 1
        if isinstance(obj, dict):
            yield RawRow(name, line, obj)
        else:
            yield RawRow(name, line, None, f"array item {i} is {type(obj).__name__}, expected an object",
                         fix=FIX_OBJECT)
        pos = buf.compact(end)


def _json_sequence(name: str, buf: _Buffer) -> Iterator[RawRow]:
    pos = 0
    while True:
        pos = buf.skip_ws(pos)
        if pos >= len(buf.text):
            return
        line = buf.line_at(pos)
        got = _decode_one(name, buf, pos)
        if isinstance(got, RawRow):
            yield got
            # resync at the next line
            nl = buf.text.find("\n", pos)
            if nl < 0:
                return
            pos = buf.compact(nl + 1)
            continue
        obj, end = got
        yield RawRow(name, line, obj) if isinstance(obj, dict) else RawRow(
            name, line, None, f"expected a JSON object, got {type(obj).__name__}", fix=FIX_OBJECT)
        pos = buf.compact(end)


def _rows_of_object(name: str, obj: dict) -> Iterator[RawRow]:
    lists = {k: v for k, v in obj.items() if isinstance(v, list)}
    of_rows = {k: v for k, v in lists.items() if v and all(isinstance(x, dict) for x in v[:100])}
    if len(of_rows) == 1:
        key, rows = next(iter(of_rows.items()))  # {"data": [{...}, ...]} (other keys: metadata)
        for i, r in enumerate(rows, 1):
            yield RawRow(name, i, r) if isinstance(r, dict) else RawRow(
                name, i, None, f"'{key}' item {i} is {type(r).__name__}, expected an object", fix=FIX_OBJECT)
        return
    if lists and len(lists) == len(obj) and len({len(v) for v in lists.values()}) == 1:
        keys = list(lists)  # columns: {"instruction": [...], "output": [...]}
        for i, vals in enumerate(zip(*lists.values()), 1):
            yield RawRow(name, i, dict(zip(keys, vals)))
        return
    yield RawRow(name, 1, obj)  # a single row


# ----------------------------------------------------------------------------------------------- CSV


def _iter_csv(path: Path, report) -> Iterator[RawRow]:
    name = str(path)
    delim = "\t" if path.suffix.lower() == ".tsv" else ","
    with open(path, "rb") as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="surrogateescape", newline="")
        reader = csv.reader(text, delimiter=delim)
        try:
            header = next(reader)
        except StopIteration:
            yield RawRow(name, 1, None, "the file is empty", fix=FIX_EMPTY)
            return
        header = [h.strip() for h in header]
        start = reader.line_num + 1
        n = 0
        try:
            for cells in reader:
                line, start = start, reader.line_num + 1
                n += 1
                if n % 2048 == 0:
                    report(raw.tell())
                if not cells or all(not c.strip() for c in cells):
                    continue
                bad = next((c for c in cells if _has_surrogates(c)), None)
                if bad is not None:
                    yield RawRow(name, line, None, "not UTF-8", fix=FIX_UTF8)
                    continue
                if len(cells) != len(header):
                    yield RawRow(name, line, None, f"{len(cells)} cells but the header has {len(header)}",
                                 fix="quote cells that contain the delimiter or a newline")
                    continue
                yield RawRow(name, line, {h: _cell(c) for h, c in zip(header, cells)})
        except csv.Error as exc:
            yield RawRow(name, reader.line_num, None, f"not valid CSV: {exc}", fix=FIX_ROW)


def _has_surrogates(s: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in s)


def _cell(c: str) -> Any:
    s = c.strip()
    if s[:1] in ("[", "{"):
        try:
            return json.loads(s)  # a JSON list of messages stored in a cell
        except ValueError:
            return c
    return c


# ------------------------------------------------------------------------------------------- Parquet


def _iter_parquet(path: Path, report) -> Iterator[RawRow]:
    import pyarrow.parquet as pq

    name = str(path)
    try:
        pf = pq.ParquetFile(str(path))
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a bad file
        yield RawRow(name, 1, None, f"not a readable Parquet file: {str(exc).splitlines()[0][:200]}",
                     fix="write the Parquet file again (it may be cut short)")
        return
    size = os.path.getsize(path) or 1
    total = pf.metadata.num_rows or 1
    i = 0
    for batch in pf.iter_batches(batch_size=256):
        for r in batch.to_pylist():
            i += 1
            yield RawRow(name, i, r)
        report(int(size * i / total))


# ----------------------------------------------------------------------------------------------- hub


def _iter_hub(source: str, split: str, streaming: bool) -> Iterator[RawRow]:
    import datasets

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    try:
        from huggingface_hub.utils import logging as hub_logging

        hub_logging.set_verbosity_error()  # its retry warnings would break the one-line error
    except ImportError:
        pass
    try:
        ds = datasets.load_dataset(source, split=split, streaming=streaming)
    except Exception as exc:  # noqa: BLE001 - datasets raises many types; the message is what matters
        msg = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise UserError(f"cannot read the dataset: {msg}", file=source, field="dataset.path") from None
    for i, r in enumerate(ds, 1):
        yield RawRow(source, i, dict(r))


def count_rows(source: str, cancel: threading.Event | None = None) -> int | None:
    """Number of rows, read cheaply where the format allows (JSONL: newline count; Parquet: metadata)."""
    files = local_files(source)
    if files is None:
        return None
    n = 0
    for f in files:
        kind = EXTENSIONS[f.suffix.lower()]
        if kind == "jsonl":
            with open(f, "rb") as fh:
                last = b"\n"
                while chunk := fh.read(8 * CHUNK):
                    if cancel is not None and cancel.is_set():
                        return None
                    n += chunk.count(b"\n")
                    last = chunk[-1:]
                n += last != b"\n"  # blank lines count too: an upper bound on such files
        elif kind == "parquet":
            import pyarrow.parquet as pq

            n += pq.ParquetFile(str(f)).metadata.num_rows
        else:
            n += sum(1 for r in iter_rows(str(f), cancel=cancel))
    return n
