"""Every dataset check on a small fixture file that has exactly that problem: the code, line and field
reported, and a fix given."""

from __future__ import annotations

import json

import pytest

from ftwizard.core.data.stats import check_dataset, scan_dataset
from ftwizard.core.templates import CHATML


@pytest.fixture(scope="module")
def tok(tiny_work):
    from ftwizard.core.data.tokenize import load_tokenizer

    return load_tokenizer(str(tiny_work / "tiny-model"))


def chat(q="What is two plus two?", a="two plus two equals four.", system=None):
    msgs = [{"role": "system", "content": system}] if system else []
    return {"messages": msgs + [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}


def good(n=120):
    return [chat(f"What is {i} plus one?", f"{i} plus one is {i + 1}.") for i in range(n)]


def jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def by_code(problems, code):
    found = [p for p in problems if p.code == code]
    assert found, f"no {code} in {[(p.code, p.message) for p in problems]}"
    assert all(p.fix for p in found)
    return found


def test_clean_file_has_no_problems(tmp_path, tok):
    assert check_dataset(jsonl(tmp_path / "d.jsonl", good()), tok, max_length=128) == []


def test_malformed_line_and_non_utf8(tmp_path, tok):
    path = tmp_path / "d.jsonl"
    jsonl(path, good(4) + ['{"messages": [ oops'] + good(4))
    with open(path, "ab") as fh:
        fh.write(b'{"text": "caf\xe9"}\n')
    ps = check_dataset(str(path), tok, max_length=128)
    bad = by_code(ps, "unreadable")
    assert [(p.line, p.severity) for p in bad] == [(5, "error"), (10, "error")]
    assert bad[0].message == "not valid JSON: Expecting value at column 16"
    assert "not UTF-8 (byte 0xe9" in bad[1].message and "UTF-8" in bad[1].fix


def test_malformed_json_array_reports_the_line(tmp_path, tok):
    path = tmp_path / "d.json"
    path.write_text('[\n {"text": "a"},\n {"text": "b" "c"}\n]\n', encoding="utf-8")
    ps = check_dataset(str(path))
    assert [(p.code, p.line) for p in ps if p.severity == "error"] == [("unreadable", 3)]


def test_missing_and_empty_fields(tmp_path, tok):
    rows = good(4) + [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": ""}]},
                      {"messages": []}, {"messages": [{"role": "human", "content": "hi"}]}]
    ps = check_dataset(jsonl(tmp_path / "d.jsonl", rows), tok, max_length=128)
    assert [(p.line, p.field, p.code) for p in ps if p.code in ("missing-field", "empty-answer")] == [
        (6, "messages", "missing-field"), (7, "messages[0].role", "missing-field"),
        (5, "messages[1].content", "empty-answer")]
    alpaca = [{"instruction": "a", "input": "", "output": "b"}, {"instruction": "c", "input": "", "output": " "}]
    ps = check_dataset(jsonl(tmp_path / "a.jsonl", alpaca))
    (p,) = by_code(ps, "missing-field")
    assert (p.line, p.field, p.message) == (2, "output", "missing or empty")


def test_mixed_formats(tmp_path, tok):
    rows = good(5) + [{"instruction": "Add", "input": "", "output": "4"}] + good(2)
    (p,) = by_code(check_dataset(jsonl(tmp_path / "d.jsonl", rows), tok, max_length=128), "mixed-formats")
    assert p.line == 6 and "looks like alpaca, but the dataset is messages" in p.message


def test_too_few_rows_uses_the_reference_table(tmp_path):
    path = jsonl(tmp_path / "d.jsonl", good(40))
    (p,) = by_code(check_dataset(path), "too-few-rows")
    assert "only 40 usable rows" in p.message and p.severity == "warning"
    (p,) = by_code(check_dataset(jsonl(tmp_path / "e.jsonl", good(300)), task="instruction"), "too-few-rows")
    assert "instruction following usually needs at least 500" in p.message
    assert not [p for p in check_dataset(jsonl(tmp_path / "f.jsonl", good(150)), task="classification")
                if p.code == "too-few-rows"]


def test_rows_longer_than_max_length(tmp_path, tok):
    rows = good(110) + [chat("What is one plus one? " * 20, "two."), chat("Tell me " * 30, "ok " * 30)]
    (p,) = by_code(check_dataset(jsonl(tmp_path / "d.jsonl", rows), tok, max_length=64), "too-long")
    assert (p.line, p.count, p.lines, p.field) == (111, 2, [111, 112], "train.max_length")
    assert "truncated" in p.message and "raise train.max_length" in p.fix


def test_exact_duplicates(tmp_path, tok):
    rows = good(110)
    rows.insert(50, rows[3])
    (p,) = by_code(check_dataset(jsonl(tmp_path / "d.jsonl", rows)), "duplicates")
    assert (p.line, p.count) == (51, 1) and "line 51 repeats line 4" in p.message


def test_train_validation_overlap(tmp_path, tok):
    train = jsonl(tmp_path / "train.jsonl", good(110))
    val = jsonl(tmp_path / "val.jsonl", [chat("new?", "new."), good(110)[7]])
    (p,) = by_code(check_dataset(train, validation_path=val), "validation-overlap")
    assert (p.file, p.line) == (val, 2) and "training line 8" in p.message


def test_rows_with_zero_trained_tokens(tmp_path, tok):
    long_prompt = "please help with the question " * 10
    rows = good(110) + [chat(long_prompt, "yes.")]
    ps = check_dataset(jsonl(tmp_path / "d.jsonl", rows), tok, max_length=48)
    (p,) = by_code(ps, "no-trained-tokens")
    assert p.line == 111 and p.severity == "warning"


def test_every_row_masked_is_an_error(tmp_path, tok):
    long_system = "you answer in words and are very helpful " * 6
    rows = [chat(f"q{i}", "a", system=long_system) for i in range(110)]
    (p,) = by_code(check_dataset(jsonl(tmp_path / "d.jsonl", rows), tok, max_length=32), "all-masked")
    assert p.severity == "error" and p.count == 110 and "every row would train on 0 tokens" in p.message


def test_template_without_generation_marker(tmp_path, tok):
    plain = "{% for m in messages %}{{ m['role'] + ': ' + m['content'] + '<|im_end|>' }}{% endfor %}"
    path = jsonl(tmp_path / "d.jsonl", good(110))
    (p,) = by_code(check_dataset(path, tok, template=plain, max_length=128), "no-generation-marker")
    assert p.severity == "error" and p.field == "model.chat_template" and "chatml" in p.fix
    # the same template is fine when every token is trained
    assert not check_dataset(path, tok, template=plain, max_length=128, assistant_only=False)
    # raw text never needs markers
    text = jsonl(tmp_path / "t.jsonl", [{"text": f"line {i}"} for i in range(110)])
    assert not [p for p in check_dataset(text, tok, template=plain, max_length=128) if p.code == "no-generation-marker"]


def test_missing_eos(tmp_path, tok):
    # a template that marks the answer but closes the turn with a token that is not the EOS
    no_eos = CHATML.replace("{{- message['content'] + '<|im_end|>' -}}{% endgeneration %}",
                            "{{- message['content'] -}}{% endgeneration %}{{- '<|im_end|>' -}}")
    assert no_eos != CHATML
    (p,) = by_code(check_dataset(jsonl(tmp_path / "d.jsonl", good(110)), tok, template=no_eos, max_length=128),
                   "missing-eos")
    assert p.severity == "error" and p.count == 110 and "<|im_end|>" in p.message and p.line == 1


def test_placeholders_left_in(tmp_path):
    rows = good(110) + [chat("Who are you?", "I am {{name}}, made by {{author}}.") for _ in range(3)]
    rows[-1]["messages"][0]["content"] = "Who made you?"
    rows[-2]["messages"][0]["content"] = "Your name?"
    (p,) = by_code(check_dataset(jsonl(tmp_path / "d.jsonl", rows)), "placeholders")
    assert p.count == 3 and p.line == 111 and "{{name}}" in p.message


def test_kto_undesirable_rows_are_reported_as_skipped(tmp_path):
    rows = [{"prompt": f"q{i}", "completion": f"a{i}", "label": i % 3 != 0} for i in range(150)]
    rep = scan_dataset(jsonl(tmp_path / "d.jsonl", rows))
    (p,) = by_code(rep.problems, "undesirable-skipped")
    assert p.severity == "info" and p.count == 50 and p.line == 1
    assert (rep.stats.used_rows, rep.stats.skipped_rows) == (100, 50)


def test_problem_json_has_line_field_message(tmp_path):
    path = jsonl(tmp_path / "d.jsonl", ["not json"] + good(3))
    d = check_dataset(path)[0].to_json()
    assert {"line", "field", "message", "fix"} <= set(d) and d["line"] == 1


def test_mixed_formats_across_files_of_a_directory(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    jsonl(d / "a.jsonl", good(60))
    jsonl(d / "b.jsonl", [{"instruction": "Add", "input": "", "output": "4"}] * 2)
    ps = [p for p in check_dataset(str(d)) if p.code == "mixed-formats"]
    assert [(p.file, p.line) for p in ps] == [(str(d / "b.jsonl"), 1), (str(d / "b.jsonl"), 2)]


def test_csv_problems(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes(b"instruction,output\nAdd two,four\nCaf\xe9,ok\n\"a, b\",c,d\nthen,\n")
    ps = check_dataset(str(path))
    assert [(p.line, p.code, p.field) for p in ps if p.severity == "error"] == [
        (3, "unreadable", None), (4, "unreadable", None), (5, "missing-field", "output")]
    assert ps[0].message == "not UTF-8" and ps[1].message == "3 cells but the header has 2"


def test_json_array_broken_in_the_middle_keeps_the_rows_before(tmp_path):
    path = tmp_path / "d.json"
    rows = [json.dumps({"text": f"row {i}"}) for i in range(5)]
    rows[3] = '{"text": "row 3" oops}'
    path.write_text("[\n" + ",\n".join(rows) + "\n]\n")
    rep = scan_dataset(str(path))
    assert rep.stats.rows == 3
    (p,) = [p for p in rep.problems if p.severity == "error"]
    assert (p.line, p.code) == (5, "unreadable") and "the rest of the file cannot be read" in p.message


def test_prepare_reports_overlap_and_stratifies(tiny_work, tmp_path, tok):
    """The training data step, in-process: overlap warning event, stratified validation split."""
    from ftwizard.core.data.prepare import prepare_training_data
    from ftwizard.core.selftest import make_tiny_setup

    rows = [{"instruction": f"Is {i} even?", "input": "", "output": "yes" if i % 5 == 0 else "no",
             "label": "even5" if i % 5 == 0 else "other"} for i in range(100)]
    train = jsonl(tmp_path / "train.jsonl", rows)
    cfg = make_tiny_setup(tiny_work, max_length=64)
    cfg.dataset.path, cfg.dataset.validation = train, 0.1
    events = []
    tr, va, facts = prepare_training_data(cfg, tok, None, lambda t, **kw: events.append((t, kw)))
    assert (len(tr), len(va), facts["format"]) == (90, 10, "alpaca")
    assert ("info", {"key": "validation_split", "value": {"rows": 10, "stratified_by": "label"}}) in events
    # 20% of the rows are "even5": stratified, validation holds exactly 2 of them
    assert sum(tok.decode(ids).count("yes<|im_end|>") for ids in va["input_ids"]) == 2
    cfg.dataset.validation_path = jsonl(tmp_path / "val.jsonl", rows[:3] + [{**rows[0], "output": "maybe"}])
    events.clear()
    tr, va, _ = prepare_training_data(cfg, tok, None, lambda t, **kw: events.append((t, kw)))
    (w,) = [kw for t, kw in events if t == "warning" and kw["code"] == "validation-overlap"]
    assert w["evidence"] == {"count": 3, "lines": [1, 2, 3]} and len(va) == 4 and len(tr) == 100


def test_prepare_refuses_bad_rows_with_their_lines(tiny_work, tmp_path, tok):
    from ftwizard.core.data.prepare import prepare_training_data
    from ftwizard.core.errors import UserError
    from ftwizard.core.selftest import make_tiny_setup

    path = tmp_path / "d.jsonl"
    jsonl(path, good(5) + ["{oops"] + good(3) + [{"messages": [{"role": "user", "content": "hi"}]}])
    cfg = make_tiny_setup(tiny_work)
    cfg.dataset.path = str(path)
    with pytest.raises(UserError) as e:
        prepare_training_data(cfg, tok, None, lambda *a, **k: None)
    lines = str(e.value).splitlines()
    assert lines[0].startswith(f"{path}:6: not valid JSON") and "(fix the JSON on this line" in lines[0]
    assert lines[1] == f"{path}:10: messages: no assistant turn: nothing to train on with assistant-only loss " \
                       "(end each conversation with the assistant's answer)"
