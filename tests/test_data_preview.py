"""The preview is the training path: render_row against tokenize_dataset; quick_preview on big files;
statistics with progress and cancel; the split; `ftwizard inspect` (real subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections import Counter

import pytest

from ftwizard.core.data.preview import quick_preview, render_row
from ftwizard.core.data.split import split_indices
from ftwizard.core.data.stats import compute_stats, histogram, scan_dataset
from ftwizard.core.errors import UserError
from reads import PROC_IO, bytes_read


@pytest.fixture(scope="module")
def tok(tiny_work):
    from ftwizard.core.data.tokenize import load_tokenizer

    return load_tokenizer(str(tiny_work / "tiny-model"))


def jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def test_render_row_exact_text_and_trained_part(tok):
    row = {"instruction": "What is five plus one?", "input": "", "output": "five plus one equals six."}
    r = render_row(row, tok, None, 128)
    assert r.text == ("<|im_start|>user\nWhat is five plus one?<|im_end|>\n<|im_start|>assistant\n"
                      "five plus one equals six.<|im_end|>\n")
    assert [t for t, trained in r.segments if trained] == ["five plus one equals six.<|im_end|>"]
    assert r.ends_with_eos and r.eos_token == "<|im_end|>" and not r.truncated
    assert r.n_tokens == len(tok(r.text)["input_ids"])
    assert r.n_trained == len(tok("five plus one equals six.<|im_end|>")["input_ids"])
    cut = render_row(row, tok, None, 12)
    assert cut.truncated and cut.n_tokens == 12 and cut.text + cut.cut_text == r.text


def test_render_row_text_kto_and_all_tokens(tok):
    t = render_row({"text": "hello world"}, tok, None, 64)
    assert t.segments == [("hello world<|im_end|>", True)]
    k = render_row({"prompt": "two plus two", "completion": " four", "label": False}, tok, None, 64)
    assert not k.used and "SFT skips" in k.note and k.segments[-1] == (" four<|im_end|>", True)
    a = render_row({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]},
                   tok, None, 64, assistant_only=False)
    assert a.segments == [(a.text, True)]


def test_preview_matches_what_training_tokenizes(tmp_path, tok):
    """The segments render_row shows are exactly the input_ids/labels prepare + tokenize_dataset train on."""
    import datasets

    from ftwizard.core.data.prepare import read_canonical
    from ftwizard.core.data.preview import detect_source
    from ftwizard.core.data.tokenize import IGNORE, tokenize_dataset

    rows = [{"question": f"What is {i} plus one?", "answer": f"{i} plus one is {i + 1}.", "sys": "Be brief."}
            for i in range(6)]
    rows[2]["answer"] = "a long answer " * 20
    path = jsonl(tmp_path / "d.jsonl", rows)
    cols = {"system": "sys"}
    prev = quick_preview(path, columns=cols)
    assert prev.format == "alpaca" and "'question' as instruction" in prev.evidence
    det, _, _ = detect_source(path, columns=cols)
    canon, _, _, _ = read_canonical(path, det)
    ds, _ = tokenize_dataset(datasets.Dataset.from_list(canon), tok, None, 64, True, data_fingerprint="t1")
    assert len(ds) == len(rows)
    for row, enc in zip(prev.rows, ds):
        r = render_row(row, tok, None, 64, True, prev.detected)
        assert r.text == tok.decode(enc["input_ids"], skip_special_tokens=False)
        trained = "".join(t for t, m in r.segments if m)
        assert trained == tok.decode([i for i, lab in zip(enc["input_ids"], enc["labels"]) if lab != IGNORE],
                                     skip_special_tokens=False)
        assert r.n_trained == enc["trained"] and r.truncated == enc["truncated"]
    assert "Be brief." in render_row(prev.rows[0], tok, None, 64, True, prev.detected).text


@pytest.mark.skipif(not PROC_IO.exists(), reason="counts bytes read from /proc/self/io (Linux)")
def test_quick_preview_reads_only_the_start(tmp_path):
    row = {"messages": [{"role": "user", "content": "x" * 400}, {"role": "assistant", "content": "y" * 400}]}
    path = tmp_path / "big.jsonl"
    line = json.dumps(row) + "\n"
    with open(path, "w") as fh:
        fh.write(line * 12000)  # ~10 MB: above the whole-file threshold
    warm = tmp_path / "warm.jsonl"
    warm.write_text(line * 60)
    quick_preview(str(warm), n=50)  # this code path's imports happen here, so only the file is read below
    before = bytes_read()
    p = quick_preview(str(path), n=50)
    assert bytes_read() - before < path.stat().st_size / 10
    assert p.format == "messages" and len(p.rows) == 50 and p.total_rows is None and p.lines[-1] == 50


def test_unreadable_source_raises_with_file_and_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text("this is not json\nnor this\n")
    with pytest.raises(UserError) as e:
        quick_preview(str(bad))
    assert str(e.value) == f"{bad}:1: not valid JSON: Expecting value at column 1"
    unknown = jsonl(tmp_path / "u.jsonl", [{"a": 1, "b": 2}])
    with pytest.raises(UserError, match=r"u.jsonl:1: dataset.format: cannot tell the dataset's format"):
        quick_preview(unknown)
    with pytest.raises(UserError, match="no such file"):
        quick_preview(str(tmp_path / "missing.jsonl"))


def test_statistics_progress_and_cancel(tmp_path, tok):
    rows = [{"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "hi " * (i % 10 + 1)},
                          {"role": "assistant", "content": "yo"}]} for i in range(400)]
    path = jsonl(tmp_path / "d.jsonl", rows)
    seen = []
    st = compute_stats(path, tok, None, 128, batch_size=4, gradient_accumulation_steps=2, progress=seen.append)
    assert st.complete and st.rows == st.used_rows == 400 and st.unit == "tokens"
    assert st.roles == {"system": 400, "user": 400, "assistant": 400}
    lengths = sorted(len(tok.apply_chat_template(r["messages"], tokenize=True, return_dict=True)["input_ids"])
                     for r in rows)
    assert (st.min, st.max) == (lengths[0], lengths[-1])
    assert st.median == lengths[199] and st.p95 == lengths[379]
    assert sum(c for _, _, c in st.histogram) == 400 and st.tokens_per_epoch == sum(lengths)
    assert st.steps_per_epoch == 50 and seen[-1] == 1.0
    cancel = threading.Event()
    cancel.set()
    assert not compute_stats(path, tok, None, 128, cancel=cancel).complete


def test_stats_in_a_thread_can_be_cancelled(tmp_path, tok):
    """The wizard runs the scan in a thread worker: the caller keeps running, and cancel ends it early
    with a partial report (key latency while it runs is measured by tests/benchmarks/data_preview.py)."""
    rows = [{"text": "word " * 50} for _ in range(20000)]
    path = jsonl(tmp_path / "d.jsonl", rows)
    cancel = threading.Event()
    started = threading.Event()
    out = {}

    def work():
        out["s"] = compute_stats(path, tok, None, 64, cancel=cancel, progress=lambda f: started.set())

    th = threading.Thread(target=work)
    th.start()
    assert started.wait(30)  # the scan is under way, and this thread still runs
    assert th.is_alive()
    cancel.set()
    th.join(30)
    assert not th.is_alive() and not out["s"].complete and 0 < out["s"].rows < 20000


def test_histogram_bins():
    assert histogram([5, 5]) == [(5, 5, 2)]
    h = histogram(list(range(100)), bins=10)
    assert len(h) == 10 and h[0] == (0, 9, 10) and h[-1] == (90, 99, 10)


def test_split_is_seeded_and_stratified():
    labels = ["a"] * 90 + ["b"] * 10
    tr, va = split_indices(100, 0.2, seed=3, labels=labels)
    assert len(va) == 20 and sorted(tr + va) == list(range(100))
    assert Counter(labels[i] for i in va) == {"a": 18, "b": 2}
    assert (tr, va) == split_indices(100, 0.2, seed=3, labels=labels)
    assert va != split_indices(100, 0.2, seed=4, labels=labels)[1]
    assert split_indices(5, 0.2, 0) == ([0, 1, 2, 3, 4], [])  # too few rows to hold any out
    rare = ["x"] * 98 + ["y"] * 2
    assert any(rare[i] == "y" for i in split_indices(100, 0.05, 0, rare)[1])


def cli(*args, cwd=None):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "ftwizard.core.cli", "inspect", *args], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=120)


def test_inspect_json(tmp_path, tiny_work):
    rows = [{"instruction": f"q{i}", "input": "", "output": f"a{i}"} for i in range(30)]
    path = tmp_path / "d.jsonl"
    jsonl(path, rows)
    with open(path, "a") as fh:
        fh.write("{broken\n")
    r = cli(str(path), "--json", "--model", str(tiny_work / "tiny-model"), "--max-length", "64")
    assert r.returncode == 1, r.stderr  # a bad line is an error training would refuse
    out = json.loads(r.stdout)
    assert out["format"] == "alpaca" and out["columns"] == ["instruction", "input", "output"]
    assert out["rows"] == 30 and out["preview"][0] == rows[0] and len(out["preview"]) == 30
    bad = [p for p in out["problems"] if p["code"] == "unreadable"]
    assert bad == [{**bad[0], "line": 31, "field": None}] and bad[0]["message"].startswith("not valid JSON")
    assert out["rendered"]["segments"][-2:] == [["a0<|im_end|>", True], ["\n", False]]
    quick = json.loads(cli(str(tmp_path / "d.jsonl"), "--json", "--quick").stdout)
    assert quick["rows"] == 30 and quick["stats"] is None


def test_inspect_unreadable_exits_2_with_one_line(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("[\n\n  {\"text\": oops},\n  {\"text\": \"a\"}\n]\n")
    r = cli(str(bad), "--json")
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip().splitlines() == [f"ftwizard: {bad}:3: not valid JSON: Expecting value at column 12; "
                                            "the rest of the file cannot be read"]


def test_render_with_a_chosen_llama3_template(tiny_work):
    """model.chat_template: llama3 — headers rendered, the answer and <|eot_id|> trained, EOS switched."""
    from ftwizard.core.data.tokenize import load_tokenizer, setup_tokenizer

    tok = load_tokenizer(str(tiny_work / "tiny-model"))
    tok.add_special_tokens({"additional_special_tokens": ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]})
    template, why = setup_tokenizer(tok, "llama3", True)
    assert why.startswith("built-in llama3") and tok.eos_token == "<|eot_id|>"
    r = render_row({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]},
                   tok, template, 64)
    assert r.text == ("<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>"
                      "<|start_header_id|>assistant<|end_header_id|>\n\nhello<|eot_id|>")
    assert [t for t, m in r.segments if m] == ["hello<|eot_id|>"] and r.ends_with_eos


def test_inspect_text_output(tmp_path):
    path = jsonl(tmp_path / "d.jsonl", [{"prompt": f"q{i}", "chosen": "a", "rejected": "b"} for i in range(3)])
    r = cli(path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == f"{path} · preference · 3 rows · 2 problems"  # too few rows + the SFT note
    assert lines[1] == "  why: columns 'prompt', 'chosen', 'rejected'"
    assert lines[2].startswith("  note: preference data: SFT trains on the prompt + the chosen answer")
    assert any("warning:" in x and "only 3 usable rows" in x for x in lines)


def test_partial_statistics_estimate_the_whole_file(tmp_path):
    rows = [{"text": "word " * (5 + i % 20)} for i in range(6000)]
    path = jsonl(tmp_path / "d.jsonl", rows)
    snaps = []
    st = scan_dataset(path, partial=snaps.append, partial_every=0.0).stats
    assert st.complete and st.rows == 6000 and st.estimated_rows is None and st.fraction == 1.0
    mid = [s for s in snaps if 0.3 < s.fraction < 0.7]
    assert mid and all(not s.complete for s in mid)
    assert all(abs(s.estimated_rows - 6000) < 300 for s in mid), [s.estimated_rows for s in mid[:5]]
    assert all(s.histogram and s.max <= st.max for s in mid)


def test_steps_per_epoch_with_packing_keep_the_batch_in_rows(tmp_path, tok):
    """With packing a step takes the packed rows that hold at most batch_size rows (schedule.packed_batch):
    rows over half of max_length pack one to a row (the same steps as unpacked); short rows pack several to
    a row and a step takes as many packed rows as hold at most batch_size of them."""
    long_rows = jsonl(tmp_path / "long.jsonl", [{"text": "word " * 30} for _ in range(100)])
    plain = scan_dataset(long_rows, tok, None, 128, batch_size=4).stats
    packed = scan_dataset(long_rows, tok, None, 128, batch_size=4, packing=True).stats
    assert plain.tokens_per_epoch // 100 > 64  # each row is over half of max_length: one to a packed row
    assert plain.steps_per_epoch == packed.steps_per_epoch == 25
    short_rows = jsonl(tmp_path / "short.jsonl", [{"text": "word " * 5} for _ in range(120)])
    plain = scan_dataset(short_rows, tok, None, 128, batch_size=16).stats
    packed = scan_dataset(short_rows, tok, None, 128, batch_size=16, packing=True).stats
    per_row = plain.tokens_per_epoch // 120
    packed_rows = -(-120 * per_row // 128)
    per_step = 16 * packed_rows // 120
    assert 1 <= per_step < 16 and plain.steps_per_epoch == 8
    assert packed.steps_per_epoch == -(-packed_rows // per_step) >= plain.steps_per_epoch
