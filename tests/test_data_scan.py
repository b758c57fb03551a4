"""The full scan at Arrow speed (issue 17): clean messages rows of a JSONL are read in bulk by pyarrow,
the rest row by row with their line numbers, and the report is the row-by-row report. Counts work
(rows through each path), not time: the timing is tests/benchmarks/scan_speed.py."""

from __future__ import annotations

import json
import random

import pytest

from ftwizard.core.data import formats, stats
from ftwizard.core.data.stats import WORK, scan_dataset


def chat(q: str, a: str, system: str | None = None) -> dict:
    turns = ([{"role": "developer", "content": system}] if system else []) + [
        {"role": "user", "content": q}, {"role": "assistant", "content": a}]
    return {"messages": turns}


def write_mixed(path, n: int = 3000) -> dict[int, str]:
    """n rows of ~700 bytes with a few bad ones; returns {line: what is wrong} for the bad lines."""
    rng = random.Random(0)
    words = "the model data answer question token loss step first second file line".split()
    lines = []
    for i in range(n):
        q = " ".join(rng.choice(words) for _ in range(40))
        a = " ".join(rng.choice(words) for _ in range(80))
        lines.append(json.dumps(chat(f"{i} {q}", a, "be brief" if i % 7 == 0 else None)))
    bad = {500: "not valid JSON", 1200: "unknown role", 1700: "empty assistant turn", 2600: "duplicate"}
    lines[499] = '{"messages": [{"role": "user", "content": "hi"}'  # cut off
    lines[1199] = json.dumps({"messages": [{"role": "wizard", "content": "hi"}, {"role": "assistant", "content": "x"}]})
    lines[1699] = json.dumps(chat("hi", "   "))
    lines[2599] = lines[99]  # repeats line 100
    for k in range(2800, 2840):  # a placeholder left in many rows
        lines[k] = json.dumps(chat(f"who are you {k}", "I am {{name}}, made by {{author}}."))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return bad


def bulk_and_row_by_row(path):
    """(the full scan, the work it counted, the same file read row by row): a row limit reads row by
    row; WORK then holds that second scan's counts."""
    WORK.clear()
    bulk = scan_dataset(str(path))
    work = dict(WORK)
    WORK.clear()
    return bulk, work, scan_dataset(str(path), max_rows=10**9)


def report_json(rep) -> str:
    st = rep.stats.to_json()
    st.pop("elapsed_s")
    return json.dumps({"stats": st, "problems": [p.to_json() for p in rep.problems]}, sort_keys=True)


@pytest.mark.parametrize("block", [1 << 20, 1 << 14])  # pyarrow's blocks: one per chunk, or many
def test_full_scan_reads_clean_rows_in_bulk_and_reports_as_row_by_row(tmp_path, monkeypatch, block):
    monkeypatch.setattr(formats, "ARROW_BLOCK", block)
    path = tmp_path / "mixed.jsonl"
    write_mixed(path)
    bulk, work, one_by_one = bulk_and_row_by_row(path)
    assert WORK["python_rows"] == 3000 and not WORK["arrow_rows"]
    assert report_json(bulk) == report_json(one_by_one)
    # the bad JSON line costs its own 64 KB piece (~90 rows) row by row; every other row is read in bulk
    assert work["arrow_rows"] + work["python_rows"] == 3000
    assert work["python_rows"] <= 200, work
    codes = {(p.code, p.line) for p in bulk.problems}
    assert {("unreadable", 500), ("missing-field", 1200), ("empty-answer", 1700), ("duplicates", 2600),
            ("placeholders", 2801)} <= codes, codes
    # "developer" turns counted as system (the placeholder rows replaced some of them)
    assert bulk.stats.roles["system"] == len([i for i in range(3000) if i % 7 == 0 and not 2800 <= i < 2840])


def test_blank_lines_keep_the_line_numbers(tmp_path):
    path = tmp_path / "blank.jsonl"
    rows = [json.dumps(chat(f"q{i}", f"a{i}")) for i in range(300)]
    rows[200] = json.dumps(chat("q", ""))  # line 202 once a blank line is put after line 100
    path.write_text("\n".join(rows[:100]) + "\n\n" + "\n".join(rows[100:]) + "\n", encoding="utf-8")
    rep = scan_dataset(str(path))
    assert [(p.code, p.line) for p in rep.problems if p.code == "empty-answer"] == [("empty-answer", 202)]
    assert rep.stats.rows == 300


def test_bulk_scan_gives_partials_and_stops_on_cancel_between_chunks(tmp_path, monkeypatch):
    import threading

    monkeypatch.setattr(stats, "CHUNK_BYTES", 1 << 20)  # 1 MB chunks: a small file has several
    path = tmp_path / "big.jsonl"
    rows = 3000  # ~2 MB of rows of ~700 bytes
    write_mixed(path, rows)
    cancel, progress, partials = threading.Event(), [], []

    def partial(st):
        partials.append(st)
        cancel.set()

    rep = scan_dataset(str(path), progress=progress.append, partial=partial, partial_every=0.0, cancel=cancel)
    assert not rep.stats.complete and 0 < rep.stats.rows < rows
    assert progress and progress[-1] < 1.0
    assert abs(partials[0].estimated_rows - rows) < rows / 10, partials[0].estimated_rows


def write_repeats(path, n: int = 3000) -> None:
    """n rows of ~700 bytes (some not ASCII), every 7th repeating a row 1,000 lines above, one row read
    one by one (a bad line next to it) repeating a row read in bulk, and a bad line."""
    rng = random.Random(1)
    words = "the model data answer question token loss step café 東京 naïve 🙂".split()
    lines = []
    for i in range(n):
        if i % 7 == 0 and i >= 1000:
            lines.append(lines[i - 1000])
            continue
        q = " ".join(rng.choice(words) for _ in range(40))
        lines.append(json.dumps(chat(f"{i} {q}", " ".join(rng.choice(words) for _ in range(80)),
                                     "be brief" if i % 5 == 0 else None), ensure_ascii=i % 2 == 0))
    lines[1500] = '{"messages": [{"role": "user"'  # cut off: its 64 KB piece is read row by row
    lines[1501] = lines[10]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.mark.parametrize("block", [1 << 20, 1 << 14])
def test_repeats_are_the_row_by_row_ones_across_chunks_and_paths(tmp_path, monkeypatch, block):
    monkeypatch.setattr(stats, "CHUNK_BYTES", 1 << 20)
    monkeypatch.setattr(formats, "ARROW_BLOCK", block)
    path = tmp_path / "repeats.jsonl"
    write_repeats(path)
    bulk, work, one_by_one = bulk_and_row_by_row(path)
    assert report_json(bulk) == report_json(one_by_one)
    (dup,) = [p for p in bulk.problems if p.code == "duplicates"]
    assert dup.message.startswith("287 exact duplicate rows (line 1002 repeats line 2)"), dup.message
    # 286 lines repeating the row 1,000 above, and line 1502 (read one by one) repeating line 11 (in bulk)
    assert work["arrow_rows"] > 2500 and 0 < work["python_rows"] < 200, work
    assert work["key_compares"] + work["arrow_repeats"] == 287, work  # each repeat confirmed once


def test_a_digest_collision_never_makes_a_duplicate(tmp_path, monkeypatch):
    """Rows are found by a 64-bit digest and confirmed on their whole key: with a digest that collides
    all the time (the text's length mod 3), the report is still the exact one."""
    monkeypatch.setattr(stats, "CHUNK_BYTES", 1 << 20)
    path = tmp_path / "repeats.jsonl"
    write_repeats(path)
    exact = report_json(scan_dataset(str(path)))
    monkeypatch.setattr(stats, "_digest", lambda: lambda b: len(b) % 3)
    WORK.clear()
    assert report_json(scan_dataset(str(path))) == exact
    assert WORK["key_compares"] > 2900, dict(WORK)  # nearly every row met a colliding one


def test_repeats_of_rows_no_longer_cached_are_read_back_from_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(stats, "CHUNK_BYTES", 1 << 20)
    monkeypatch.setattr(stats._Seen, "BUDGET", 0)  # the cache is emptied before every look-up
    path = tmp_path / "repeats.jsonl"
    write_repeats(path)
    WORK.clear()
    rep = scan_dataset(str(path))
    assert WORK["reread_rows"] >= 200, dict(WORK)
    assert report_json(rep) == report_json(scan_dataset(str(path), max_rows=10**9))


def test_rows_repeating_earlier_chunks_are_found_by_arrow(tmp_path, monkeypatch):
    """A file of 300 rows over and over (~3 chunks): after the first chunk each row is found among the
    texts that repeated before, by Arrow's hash table, and the report is the row-by-row one."""
    monkeypatch.setattr(stats, "CHUNK_BYTES", 1 << 20)
    path = tmp_path / "cycle.jsonl"
    rng = random.Random(2)
    words = "the model data answer question token loss step".split()
    block = [json.dumps(chat(f"{i} " + " ".join(rng.choices(words, k=40)), " ".join(rng.choices(words, k=80))))
             for i in range(300)]
    path.write_text("\n".join(block[i % 300] for i in range(4000)) + "\n", encoding="utf-8")
    bulk, work, one_by_one = bulk_and_row_by_row(path)
    assert report_json(bulk) == report_json(one_by_one)
    assert [p.count for p in bulk.problems if p.code == "duplicates"] == [3700]
    assert work["arrow_repeats"] == 3700 and not work.get("key_compares"), work  # none compared in Python


def test_row_by_row_past_the_key_budget_keeps_the_report(tmp_path, monkeypatch):
    """Row by row nothing can be read back: keys are kept up to a budget, then a second, independent
    digest of each new key stands for it (memory stays bounded); the report does not change."""
    path = tmp_path / "repeats.jsonl"
    write_repeats(path)
    exact = report_json(scan_dataset(str(path), max_rows=10**9))
    monkeypatch.setattr(stats._Seen, "BUDGET", 0)
    WORK.clear()
    assert report_json(scan_dataset(str(path), max_rows=10**9)) == exact
    assert WORK["second_digest_compares"] >= 280, dict(WORK)


def test_alpaca_rows_are_read_in_bulk_and_reported_as_row_by_row(tmp_path, monkeypatch):
    """instruction/input/output JSONL takes the Arrow path too: the canonical row (instruction, a blank
    line and the input when it has text; the output) is built on the columns, duplicates and
    placeholders are found as row by row, and rows with a problem are read one by one."""
    monkeypatch.setattr(stats, "CHUNK_BYTES", 1 << 20)
    rng = random.Random(4)
    words = "the model data answer question token loss step café 東京".split()
    rows = []
    for i in range(3000):
        row = {"instruction": f"{i} " + " ".join(rng.choices(words, k=30)),
               "output": " ".join(rng.choices(words, k=60))}
        if i % 3 == 0:
            row["input"] = " ".join(rng.choices(words, k=10))
        elif i % 3 == 1:
            row["input"] = "  " if i % 2 else ""  # blank input: the instruction alone is the prompt
        rows.append(json.dumps(row, ensure_ascii=i % 2 == 0))
    rows[99] = json.dumps({"instruction": "", "input": "the input alone", "output": "fine"})  # valid, not clean
    rows[500] = json.dumps({"instruction": "q", "output": "   "})  # output missing
    rows[900] = '{"instruction": "cut off'
    rows[1200] = json.dumps({"instruction": "hi", "input": None, "output": "x"})
    rows[2600] = rows[100]  # repeats line 101
    for k in range(2800, 2840):
        rows[k] = json.dumps({"instruction": f"who are you {k}", "output": "I am {{name}}."})
    path = tmp_path / "alpaca.jsonl"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    bulk, work, one_by_one = bulk_and_row_by_row(path)
    assert bulk.stats.format == "alpaca"
    assert report_json(bulk) == report_json(one_by_one)
    codes = {(p.code, p.line) for p in bulk.problems}
    assert {("unreadable", 901), ("missing-field", 501), ("duplicates", 2601), ("placeholders", 2801)} <= codes, codes
    assert work["arrow_rows"] > 2800 and work["python_rows"] < 200, work


def test_arrow_to_numpy_and_back_match_pyarrow_with_nulls_and_offsets():
    """formats.to_numpy / from_numpy read and build the buffers themselves (pyarrow's own conversion
    imports pandas): the same values as pyarrow's, for sliced arrays with nulls."""
    import numpy as np
    import pyarrow as pa

    ints = pa.array([5, None, -3, 7, None, 2**40, 0, 1, 9, None, 4], pa.int64()).slice(3, 7)
    bools = pa.array([True, None, False, True, True, None, False, False, True, True, None]).slice(2, 8)
    small = pa.array([1, 2, None], pa.int32())
    for arr, null in ((ints, -1), (bools, False), (small, 7)):
        want = np.array([null if v is None else v for v in arr.to_pylist()])
        got = formats.to_numpy(arr, null=null)
        assert got.tolist() == want.tolist() and len(got) == len(arr)
    assert formats.to_numpy(small, null=7).dtype == np.int32 and formats.to_numpy(bools).dtype == bool
    all_null = pa.nulls(4, pa.string()).cast(pa.string())
    assert formats.to_numpy(all_null.is_valid()).tolist() == [False] * 4
    for values in (np.array([3, 1, 4, 1, 5], np.int64), np.array([True, False, True] * 5)):
        assert formats.from_numpy(values).to_pylist() == values.tolist()
    assert formats.string_scalar("\n\n").as_py() == "\n\n"


@pytest.mark.parametrize("fmt", ["messages", "alpaca"])
def test_a_bulk_scan_leaves_pandas_unloaded(tmp_path, fmt):
    """pyarrow's numpy conversions import pandas (0.3-0.5 s) on first use; the Arrow path reads the
    buffers itself, so `ftwizard inspect` and the pre-flight never load it. A fresh interpreter."""
    import subprocess
    import sys

    path = tmp_path / "data.jsonl"
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(400):
            row = (chat(f"q {i % 60} {{{{x}}}}", "  " if i == 5 else f"a {i % 60}") if fmt == "messages" else
                   {"instruction": f"q {i % 60}", "input": "" if i % 2 else "ctx", "output": f"a {i % 60}"})
            fh.write(json.dumps(row) + "\n")
    probe = ("import sys; from ftwizard.core.data.stats import scan_dataset, WORK; "
             f"r = scan_dataset({str(path)!r}); "
             "print(WORK['arrow_rows'], sorted({p.code for p in r.problems}), 'pandas' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split(" ", 1)
    assert int(out[0]) > 300  # the Arrow path read the rows
    assert out[1].rstrip().endswith("False"), out
