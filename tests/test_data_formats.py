"""Format detection (with evidence) and conversion, on small fixture files of every format and source kind."""

from __future__ import annotations

import json

import pytest

from ftwizard.core.data.formats import detect_format, keep_for_sft, to_canonical, to_trl, validate_row
from ftwizard.core.data.preview import quick_preview
from ftwizard.core.errors import UserError

MSG = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"},
       {"role": "assistant", "content": "Hello."}]

ROWS = {
    "alpaca": [{"instruction": "Add", "input": "2 and 3", "output": "5"}, {"instruction": "Say hi", "input": "", "output": "hi"}],
    "sharegpt": [{"conversations": [{"from": "human", "value": "Hi?"}, {"from": "gpt", "value": "Hello."}],
                  "system": "Be brief."}],
    "messages": [{"messages": MSG}],
    "prompt-completion": [{"prompt": "2+2=", "completion": "4"}],
    "preference": [{"prompt": "2+2=", "chosen": "4", "rejected": "5"}],
    "kto": [{"prompt": "2+2=", "completion": "4", "label": True}, {"prompt": "2+3=", "completion": "6", "label": False}],
    "text": [{"text": "Once upon a time."}],
}


def write(path, rows, kind="jsonl"):
    if kind == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    elif kind == "json":
        path.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    return path


@pytest.mark.parametrize("fmt", sorted(ROWS))
def test_each_format_detected_from_a_file_with_evidence(tmp_path, fmt):
    p = quick_preview(str(write(tmp_path / "d.jsonl", ROWS[fmt])))
    assert p.format == fmt
    assert p.evidence  # says why
    assert p.rows == ROWS[fmt] and p.total_rows == len(ROWS[fmt]) and p.problems == []


def test_evidence_names_the_columns():
    d = detect_format(["instruction", "input", "output"], ROWS["alpaca"])
    assert d.evidence == "columns 'instruction'/'output' and input"
    d = detect_format(["conversations"], [{"conversations": [{"from": "human", "value": "a"},
                                                            {"from": "function_call", "value": "{}"},
                                                            {"from": "observation", "value": "{}"},
                                                            {"from": "gpt", "value": "b"}]}])
    assert d.format == "sharegpt" and d.variant == "with tool calls"
    assert "function_call" in d.evidence and "observation" in d.evidence


def test_conversational_prompt_completion_and_preference_variants():
    rows = [{"prompt": [{"role": "user", "content": "Hi"}], "completion": [{"role": "assistant", "content": "Yo"}]}]
    d = detect_format(["prompt", "completion"], rows)
    assert (d.format, d.variant) == ("prompt-completion", "conversational")
    assert to_canonical(rows[0], d) == {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]}
    imp = [{"chosen": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "good"}],
            "rejected": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "bad"}]}]
    d = detect_format(["chosen", "rejected"], imp)
    assert (d.format, d.variant) == ("preference", "implicit prompt")
    assert to_trl(imp[0], d) == {"prompt": [{"role": "user", "content": "Q"}],
                                 "chosen": [{"role": "assistant", "content": "good"}],
                                 "rejected": [{"role": "assistant", "content": "bad"}]}
    assert to_canonical(imp[0], d)["messages"][-1] == {"role": "assistant", "content": "good"}


def test_column_mapping_and_aliases():
    rows = [{"question": "Capital of France?", "answer": "Paris"}]
    d = detect_format(["question", "answer"], rows)
    assert d.format == "alpaca" and "'question' as instruction" in d.evidence and "'answer' as output" in d.evidence
    assert to_canonical(rows[0], d)["messages"][1]["content"] == "Paris"
    rows = [{"q": "Capital?", "a": "Paris"}]
    with pytest.raises(UserError, match="map yours with dataset.columns"):
        detect_format(["q", "a"], rows)
    d = detect_format(["q", "a"], rows, {"prompt": "q", "completion": "a"})
    assert d.format == "prompt-completion" and "(dataset.columns)" in d.evidence
    assert to_canonical(rows[0], d) == {"prompt": "Capital?", "completion": "Paris"}


def test_forced_format_and_unknown_format():
    d = detect_format(["text"], [{"text": "x"}], forced="text")
    assert d.format == "text" and d.evidence.startswith("format set in the config")
    with pytest.raises(UserError, match="unknown format 'chat'"):
        detect_format(["text"], [{"text": "x"}], forced="chat")


def test_canonical_and_trl_shapes():
    d = detect_format(["instruction", "input", "output"], ROWS["alpaca"])
    assert to_canonical(ROWS["alpaca"][0], d) == {"messages": [
        {"role": "user", "content": "Add\n\n2 and 3"}, {"role": "assistant", "content": "5"}]}
    d = detect_format(["conversations", "system"], ROWS["sharegpt"])
    assert to_canonical(ROWS["sharegpt"][0], d)["messages"][0] == {"role": "system", "content": "Be brief."}
    d = detect_format(["prompt", "chosen", "rejected"], ROWS["preference"])
    assert to_trl(ROWS["preference"][0], d) == {"prompt": "2+2=", "chosen": "4", "rejected": "5"}
    assert to_canonical(ROWS["preference"][0], d) == {"prompt": "2+2=", "completion": "4"}
    d = detect_format(["prompt", "completion", "label"], ROWS["kto"])
    assert [keep_for_sft(r, d) for r in ROWS["kto"]] == [True, False]
    assert to_trl(ROWS["kto"][1], d) == {"prompt": "2+3=", "completion": "6", "label": False}
    d = detect_format(["text"], ROWS["text"])
    assert to_canonical(ROWS["text"][0], d) == {"text": "Once upon a time."}


def test_tool_calls_rendered_as_text():
    row = {"conversations": [{"from": "human", "value": "Weather in Oslo?"},
                             {"from": "function_call", "value": '{"name": "weather", "arguments": {"city": "Oslo"}}'},
                             {"from": "observation", "value": '{"temp": 3}'},
                             {"from": "gpt", "value": "3 degrees."}],
           "tools": '[{"name": "weather", "description": "Weather now"}]'}
    d = detect_format(list(row), [row])
    msgs = to_canonical(row, d)["messages"]
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "tool", "assistant"]
    assert "<tools>" in msgs[0]["content"] and '"name": "weather"' in msgs[0]["content"]
    assert msgs[2]["content"] == '<tool_call>\n{"name": "weather", "arguments": {"city": "Oslo"}}\n</tool_call>'
    openai = {"messages": [{"role": "user", "content": "Oslo?"},
                           {"role": "assistant", "content": None, "tool_calls": [
                               {"type": "function", "function": {"name": "weather", "arguments": '{"city": "Oslo"}'}}]},
                           {"role": "tool", "content": "3"}, {"role": "assistant", "content": "3 degrees."}]}
    d = detect_format(["messages"], [openai])
    assert d.variant == "with tool calls"
    msgs = to_canonical(openai, d)["messages"]
    assert msgs[1]["content"] == '<tool_call>\n{"name": "weather", "arguments": {"city": "Oslo"}}\n</tool_call>'
    assert validate_row(openai, d) == []


@pytest.mark.parametrize("kind", ["json-array", "json-object", "json-object-late", "json-lines-in-json",
                                  "json-columns", "csv", "tsv",
                                  "parquet", "dir"])
def test_every_source_kind(tmp_path, kind):
    rows = [{"instruction": f"q{i}", "input": "", "output": f"a{i}"} for i in range(3)]
    if kind == "json-array":
        path = write(tmp_path / "d.json", rows, "json")
        lines = [2, 7, 12]
    elif kind == "json-object":  # {"data": [...]}: streamed, real line numbers
        path = tmp_path / "d.json"
        path.write_text(json.dumps({"data": rows}, indent=1))
        lines = [3, 8, 13]
    elif kind == "json-object-late":  # the rows under a later key: read whole, rows numbered
        path = tmp_path / "d.json"
        path.write_text(json.dumps({"version": "1", "data": rows}, indent=1))
        lines = [1, 2, 3]
    elif kind == "json-lines-in-json":
        path = write(tmp_path / "d.json", rows)
        lines = [1, 2, 3]
    elif kind == "json-columns":
        path = tmp_path / "d.json"
        path.write_text(json.dumps({k: [r[k] for r in rows] for k in rows[0]}))
        lines = [1, 2, 3]
    elif kind in ("csv", "tsv"):
        sep = "," if kind == "csv" else "\t"
        path = tmp_path / f"d.{kind}"
        path.write_text("instruction" + sep + "input" + sep + "output\n"
                        + "".join(f"q{i}{sep}{sep}a{i}\n" for i in range(3)), encoding="utf-8")
        lines = [2, 3, 4]
    elif kind == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = tmp_path / "d.parquet"
        pq.write_table(pa.Table.from_pylist(rows), str(path))
        lines = [1, 2, 3]
    else:
        path = tmp_path / "d"
        path.mkdir()
        write(path / "a.jsonl", rows[:2])
        write(path / "b.jsonl", rows[2:])
        lines = [1, 2, 1]
    p = quick_preview(str(path))
    assert p.format == "alpaca"
    assert p.rows == rows and p.lines == lines and p.total_rows == 3


def test_messages_stored_as_json_strings_in_csv(tmp_path):
    path = tmp_path / "chat.csv"
    import csv

    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["messages"])
        w.writerow([json.dumps(MSG)])
    p = quick_preview(str(path))
    assert p.format == "messages" and p.rows[0]["messages"] == MSG


def test_local_paths_and_hub_ids(tmp_path):
    from ftwizard.core.data.read import local_files

    assert local_files("tatsu-lab/alpaca") is None and local_files("imdb") is None  # hub ids
    with pytest.raises(UserError, match="no such file"):
        local_files("./missing.jsonl")
    with pytest.raises(UserError, match="no such file"):
        local_files("data/sub/train.jsonl")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(UserError, match="unsupported file type '.txt'"):
        local_files(str(tmp_path / "x.txt"))
    write(tmp_path / "a.jsonl", ROWS["text"])
    assert local_files(str(tmp_path / "a.jsonl")) == [tmp_path / "a.jsonl"]


def test_undetectable_format_suggests_a_mapping_from_the_columns():
    with pytest.raises(UserError, match=r"e\.g\. \{prompt: src, completion: tgt\}"):
        detect_format(["id", "src", "tgt"], [{"id": 1, "src": "hello", "tgt": "bonjour"}])
    with pytest.raises(UserError, match=r"e\.g\. \{messages: dialogue\}"):
        detect_format(["dialogue", "meta"], [{"dialogue": [{"role": "user", "content": "hi"}], "meta": {"a": 1}}])


def test_every_format_is_one_spec_the_config_accepts():
    from typing import get_args

    from ftwizard.core.config import DatasetFormat
    from ftwizard.core.data.formats import FORMATS, SPECS, spec

    assert set(get_args(DatasetFormat)) == {"auto", *FORMATS} and set(FORMATS) == set(SPECS)
    for fmt, rows in ROWS.items():
        d = detect_format(list(rows[0]), rows)
        assert d.spec is spec(fmt)
        assert d.spec.trl_kind == {"preference": "dpo", "kto": "kto"}.get(fmt, "sft")
        assert set(d.spec.columns) <= set(rows[0])


def test_row_problems_carry_their_code_and_fix():
    d = detect_format(["messages"], ROWS["messages"])
    (p,) = validate_row({"messages": [{"role": "user", "content": "hi"}]}, d)
    assert (p.code, p.field, p.severity) == ("no-assistant-turn", "messages", "error") and p.fix
    (p,) = validate_row({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": ""}]}, d)
    assert (p.code, p.field, p.severity) == ("empty-answer", "messages[1].content", "warning")
    (p,) = validate_row({"messages": [{"role": "robot", "content": "hi"}, {"role": "assistant", "content": "a"}]}, d)
    assert (p.code, p.field) == ("missing-field", "messages[0].role") and "assistant" in p.fix
