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
    ("dataset: {path: x.jsonl}\ntraining: ppo\n", 2, "training", ["allowed", "grpo", "cpt"]),
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


def leaf_keys(model=RunConfig, prefix=""):
    """Every key of the config, from the pydantic model itself (nested sections walked)."""
    from pydantic import BaseModel

    for name, fld in model.model_fields.items():
        ann = fld.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            yield from leaf_keys(ann, f"{prefix}{name}.")
        else:
            yield prefix + name


def test_reference_lists_every_key():
    keys = list(leaf_keys())
    assert len(keys) > 50 and {"model.revision", "lora.target_modules", "train.early_stopping_patience"} <= set(keys)
    rows = [ln for ln in reference_markdown().splitlines() if ln.startswith("| `")]
    listed = [ln.split("`")[1] for ln in rows]
    assert listed == keys  # every key once, in the config's order
    assert all(ln.rstrip(" |").split("|")[-1].strip() for ln in rows), "a key without a description"


def test_readme_config_reference_is_the_generated_table():
    """README's "Config reference" is `ftwizard config-reference` verbatim (it had fallen 30 keys behind)."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text().splitlines()
    start = readme.index("| key | default | meaning |")
    table = []
    for line in readme[start:]:
        if not line.startswith("|"):
            break
        table.append(line)
    assert table == [ln for ln in reference_markdown().splitlines() if ln.startswith("|")]


# ------------------------------------------------------------------ accepted keys: honoured or refused


def test_target_modules_string_is_the_same_list_for_peft_and_the_estimator():
    from ftwizard.core.estimate import settings_from_config

    cfg = parse_config({"dataset": {"path": "d.jsonl"}, "lora": {"target_modules": "q_proj, v_proj"}})
    assert cfg.lora.target_modules == ["q_proj", "v_proj"]
    assert settings_from_config(cfg).lora_targets == ["q_proj", "v_proj"]
    assert "- q_proj" in dump_config(cfg)  # the run's config.yaml says the same
    same = parse_config({"dataset": {"path": "d.jsonl"}, "lora": {"target_modules": ["q_proj", "v_proj"]}})
    assert same == cfg
    assert parse_config({"dataset": {"path": "d.jsonl"}}).lora.target_modules == "all-linear"


def test_target_modules_regex_is_refused_with_its_line(tmp_path):
    p = write(tmp_path, """
        dataset: {path: d.jsonl}
        lora:
          target_modules: ".*(q|v)_proj"
    """)
    with pytest.raises(UserError) as exc:
        load_config(p)
    (pr,) = exc.value.problems
    assert pr.field == "lora.target_modules" and pr.line == 3 and "regular expressions" in pr.message


def test_early_stopping_without_validation_data_is_refused(tmp_path):
    body = "dataset:\n  path: d.jsonl\n  validation: 0\ntrain:\n  early_stopping_patience: 2\n"
    p = write(tmp_path, body)
    with pytest.raises(UserError) as exc:
        load_config(p)
    (pr,) = exc.value.problems
    assert (pr.field, pr.line) == ("train.early_stopping_patience", 5) and "validation" in pr.message
    # with validation data it is accepted
    load_config(write(tmp_path, body.replace("validation: 0", "validation: 0.1"), "ok.yaml"))
    load_config(write(tmp_path, body.replace("validation: 0", "validation_path: v.jsonl"), "ok2.yaml"))


def test_cli_refuses_early_stopping_without_validation_and_creates_nothing(tmp_path):
    p = write(tmp_path, "dataset: {path: d.jsonl, validation: 0}\ntrain: {early_stopping_patience: 3}\n")
    r = subprocess.run([sys.executable, "-m", "ftwizard.core.cli", "train", str(p), "--detach",
                        "--runs-dir", str(tmp_path / "runs")], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert f"{p}:2: train.early_stopping_patience:" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("section, key, value", [
    ("lora", "use_dora", True),
    ("quantization", "quant_type", "fp4"),
    ("quantization", "double_quant", False),
    ("quantization", "compute_dtype", "float16"),
    ("quantization", "upcast_fp32", True),
    ("model", "attn_implementation", "sdpa"),
    ("train", "precision", "fp32"),
])
def test_unsloth_refuses_what_its_loader_cannot_take(section, key, value):
    data = {"dataset": {"path": "d.jsonl"}, "model": {"backend": "unsloth"}}
    data.setdefault(section, {})[key] = value
    with pytest.raises(UserError) as exc:
        parse_config(data)
    (pr,) = exc.value.problems
    assert pr.field == f"{section}.{key}" and "nsloth" in pr.message
    data["model"]["backend"] = "transformers"
    parse_config(data)  # the transformers backend honours it


def test_unsloth_gets_every_setting_it_can_take():
    """Unsloth cannot be imported without a GPU: the arguments built for its API are what is checked."""
    import torch

    from ftwizard.core.recipes.common import unsloth_arguments

    cfg = parse_config({
        "dataset": {"path": "d.jsonl"}, "method": "qlora",
        "model": {"backend": "unsloth", "name_or_path": "org/m", "revision": "v2", "trust_remote_code": True},
        "lora": {"r": 8, "alpha": 16, "dropout": 0.1, "target_modules": "q_proj,v_proj", "use_rslora": True},
        "train": {"precision": "fp16", "max_length": 512, "gradient_checkpointing": True, "seed": 7},
    })
    load, peft = unsloth_arguments(cfg, "/models/m")
    assert load == {"model_name": "/models/m", "max_seq_length": 512, "dtype": torch.float16, "load_in_4bit": True,
                    "full_finetuning": False, "revision": "v2", "trust_remote_code": True}
    assert peft == {"r": 8, "lora_alpha": 16, "lora_dropout": 0.1, "bias": "none",
                    "target_modules": ["q_proj", "v_proj"], "use_gradient_checkpointing": "unsloth",
                    "random_state": 7, "use_rslora": True}
    cfg.method = "full"
    cfg.train.precision = "bf16"
    load, peft = unsloth_arguments(cfg, "/models/m")
    assert peft is None and load["full_finetuning"] and load["dtype"] == torch.bfloat16 and not load["load_in_4bit"]


def test_revision_of_a_local_model_is_refused_before_a_run_exists(tiny_config, tmp_path):
    from ftwizard.core.launch import create_run

    cfg = tiny_config(steps=1)
    cfg.model.revision = "v1"
    with pytest.raises(UserError) as exc:
        create_run(cfg)
    (pr,) = exc.value.problems
    assert pr.field == "model.revision" and "local model directory" in pr.message
    assert not (tmp_path / "runs").exists()
