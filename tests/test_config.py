"""Config validation: one line per problem, naming the file, line and YAML key, with allowed values."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from ftwizard.core.config import RunConfig, dump_config, load_config, parse_config, reference_markdown
from ftwizard.core.errors import UserError


def write(tmp_path, text: str, name="cfg.yaml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return p


def test_defaults_are_complete_and_round_trip(tmp_path):
    cfg = RunConfig(dataset={"path": "data.jsonl"})
    assert cfg.method == "lora" and cfg.train.logging_steps == 1 and cfg.lora.target_modules == "all-linear"
    p = tmp_path / "c.yaml"
    p.write_text(dump_config(cfg))
    again = load_config(p, resolve_paths=False)
    assert again == cfg


def test_relative_paths_are_resolved_against_the_config_file(tmp_path):
    (tmp_path / "d.jsonl").write_text('{"text": "x"}\n')
    p = write(tmp_path, """
        model: {name_or_path: HuggingFaceTB/SmolLM2-135M-Instruct}
        dataset: {path: d.jsonl}
    """)
    cfg = load_config(p)
    assert cfg.dataset.path == str((tmp_path / "d.jsonl").resolve())
    assert cfg.model.name_or_path == "HuggingFaceTB/SmolLM2-135M-Instruct"  # a hub id stays a hub id


@pytest.mark.parametrize("body, line, key, words", [
    ("method: lora2\ndataset: {path: x.jsonl}\n", 1, "method", ["'full', 'lora' or 'qlora'", "'lora2'"]),
    ("dataset:\n  path: x.jsonl\ntrain:\n  learning_rate: -1\n", 4, "train.learning_rate", ["greater than 0"]),
    ("dataset:\n  path: x.jsonl\ntrain:\n  batchsize: 4\n", 4, "train.batchsize", ["unknown key", "batch_size"]),
    ("train:\n  epochs: 1\n", None, "dataset", ["required"]),
    ("dataset: {path: x.jsonl}\ntraining: dpo\n", 2, "training", ["not implemented yet", "sft"]),
    ("dataset: {path: x.jsonl}\ntrain:\n  optim: adam\n", 3, "train.optim", ["adamw_8bit"]),
])
def test_invalid_values_name_file_line_and_key(tmp_path, body, line, key, words):
    p = write(tmp_path, body)
    with pytest.raises(UserError) as exc:
        load_config(p)
    problems = exc.value.problems
    assert len(problems) == 1
    pr = problems[0]
    assert pr.file == str(p) and pr.field == key and pr.line == line
    for w in words:
        assert w in pr.message, pr.message


def test_several_problems_one_line_each(tmp_path):
    p = write(tmp_path, "method: x\ndataset: {path: d.jsonl}\ntrain: {batch_size: 0, epochs: 0}\n")
    with pytest.raises(UserError) as exc:
        load_config(p)
    fields = sorted(pr.field for pr in exc.value.problems)
    assert fields == ["method", "train.batch_size", "train.epochs"]
    assert all("\n" not in str(pr) for pr in exc.value.problems)


def test_broken_yaml_reports_the_line(tmp_path):
    p = write(tmp_path, "dataset:\n  path: [unclosed\nmethod: lora\n")
    with pytest.raises(UserError) as exc:
        load_config(p)
    assert exc.value.problems[0].line is not None and "not valid YAML" in str(exc.value)


def test_not_a_mapping(tmp_path):
    with pytest.raises(UserError, match="mapping"):
        parse_config(["a", "b"], file="x.yaml")


def test_cli_prints_one_line_per_problem_and_exits_2(tmp_path):
    p = write(tmp_path, "method: lora2\ndataset: {path: x.jsonl}\n")
    r = subprocess.run([sys.executable, "-m", "ftwizard.core.cli", "train", str(p), "--detach",
                        "--runs-dir", str(tmp_path / "runs")], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and f"{p}:1: method:" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "runs").exists()  # nothing created for a bad config


def test_reference_lists_every_key():
    ref = reference_markdown()
    for key in ("`model.gguf_file`", "`lora.use_dora`", "`quantization.double_quant`", "`train.optim`",
                "`dataset.validation`", "`train.gradient_checkpointing`", "`runs_dir`"):
        assert key in ref
