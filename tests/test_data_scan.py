"""The full scan at Arrow speed (issue 17): clean messages rows of a JSONL are read in bulk by pyarrow,
the rest row by row with their line numbers, and the report is the row-by-row report. Counts work
(rows through each path), not time: the timing is tests/benchmarks/scan_speed.py."""

from __future__ import annotations

import json
import random

from ftwizard.core.data.stats import CHUNK_BYTES, WORK, scan_dataset


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


def report_json(rep) -> str:
    st = rep.stats.to_json()
    st.pop("elapsed_s")
    return json.dumps({"stats": st, "problems": [p.to_json() for p in rep.problems]}, sort_keys=True)


def test_full_scan_reads_clean_rows_in_bulk_and_reports_as_row_by_row(tmp_path):
    path = tmp_path / "mixed.jsonl"
    write_mixed(path)
    WORK.clear()
    bulk = scan_dataset(str(path))
    work = dict(WORK)
    WORK.clear()
    one_by_one = scan_dataset(str(path), max_rows=10**9)  # a row limit reads row by row
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


def test_bulk_scan_gives_partials_and_stops_on_cancel_between_chunks(tmp_path):
    import threading

    path = tmp_path / "big.jsonl"
    rows = CHUNK_BYTES * 3 // 2 // 700  # rows of ~700 bytes: one chunk and a half
    write_mixed(path, rows)
    cancel, progress, partials = threading.Event(), [], []

    def partial(st):
        partials.append(st)
        cancel.set()

    rep = scan_dataset(str(path), progress=progress.append, partial=partial, partial_every=0.0, cancel=cancel)
    assert not rep.stats.complete and 0 < rep.stats.rows < rows
    assert progress and progress[-1] < 1.0
    assert abs(partials[0].estimated_rows - rows) < rows / 10, partials[0].estimated_rows
