"""The decision framework: every branch of the tree, the reasons it gives and the source each cites,
the method chosen with the estimator, the answers file's errors, and `ftwizard recommend`."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from ftwizard.core.errors import UserError
from ftwizard.core.recommend import (AXOLOTL, ESTIMATOR, LLAMA, NOTE, OPENAI, UNSLOTH, Answers, load_answers,
                                     recommend)

SOURCES = (OPENAI, LLAMA, NOTE, AXOLOTL, UNSLOTH, ESTIMATOR)


def ans(**kw) -> Answers:
    base = dict(goal="behavior", facts_change_often=False, needs_citations=False, prompting_tried="inconsistent",
                examples=800, data_kind="pairs", latency_or_cost_critical=False)
    base.update(kw)
    return Answers(**base)


def cites(reason: str) -> set[str]:
    m = re.search(r"\(([^()]*)\)$", reason)
    assert m, f"reason without a source: {reason}"
    found = {s for s in SOURCES if s in m.group(1)}
    assert found, f"reason cites no known source: {reason}"
    return found


def check(rec, approach, training, method=None):
    assert (rec.approach, rec.training, rec.method) == (approach, training, method)
    for r in rec.reasons:
        cites(r)
    return rec


def has(rec, text: str, source: str) -> bool:
    return any(text in r and source in cites(r) for r in rec.reasons)


# ------------------------------------------------------------------------------------- branches


def test_changing_facts_go_to_retrieval():
    rec = check(recommend(ans(goal="knowledge", facts_change_often=True, prompting_tried="works")), "rag", None)
    assert has(rec, "retrieval", OPENAI) and has(rec, "retrieval", LLAMA)
    assert rec.instead and "RAG" in rec.instead


def test_citations_go_to_retrieval():
    rec = check(recommend(ans(goal="knowledge", needs_citations=True, prompting_tried="works")), "rag", None)
    assert has(rec, "cite their sources", NOTE)


def test_changing_facts_and_inconsistent_format_is_rag_plus_fine_tune():
    rec = check(recommend(ans(goal="knowledge", facts_change_often=True, examples=300)), "rag+fine-tune", "sft")
    assert has(rec, "retrieval combines with fine-tuning", OPENAI) and has(rec, "combines", UNSLOTH)
    assert any("method not chosen" in r for r in rec.reasons)


def test_prompting_not_tried_yet():
    rec = check(recommend(ans(prompting_tried="not-yet", examples=5000)), "prompting", None)
    assert has(rec, "try prompting first", OPENAI) and has(rec, "try prompting first", LLAMA)
    assert "few-shot" in rec.instead or "examples" in rec.instead


def test_prompting_works_and_cost_is_not_critical():
    rec = check(recommend(ans(prompting_tried="works")), "prompting", None)
    assert has(rec, "already works", OPENAI)


def test_prompting_works_but_latency_is_critical_distils():
    rec = check(recommend(ans(prompting_tried="works", latency_or_cost_critical=True)), "fine-tune", "sft")
    assert has(rec, "distillation", OPENAI) and has(rec, "distillation", LLAMA)


def test_too_few_examples_means_create_data_first():
    rec = check(recommend(ans(examples=20)), "prompting", None)
    assert has(rec, "too few", LLAMA) and has(rec, "create data first", AXOLOTL)
    assert "100" in rec.instead


def test_static_knowledge_without_documents_is_retrieval():
    rec = check(recommend(ans(goal="knowledge")), "rag", None)
    assert has(rec, "retrieval", NOTE)


def test_static_knowledge_from_documents_is_continued_pretraining():
    rec = check(recommend(ans(goal="knowledge", data_kind="raw-text", examples=8000)), "fine-tune", "cpt")
    assert has(rec, "can add knowledge", UNSLOTH) and has(rec, "continued pretraining", AXOLOTL)
    assert has(rec, "meets the 5,000-10,000 typical for domain adaptation", NOTE)


@pytest.mark.parametrize("kind,training,phrase", [
    ("pairs", "sft", "SFT"), ("preferences", "dpo", "DPO"), ("binary-feedback", "kto", "KTO"),
    ("reward-function", "grpo", "GRPO"), ("raw-text", "cpt", "CPT")])
def test_data_kind_picks_the_training_kind(kind, training, phrase):
    rec = check(recommend(ans(goal="domain" if kind == "raw-text" else "behavior", data_kind=kind, examples=6000)),
                "fine-tune", training)
    assert has(rec, phrase, AXOLOTL)


def test_raw_text_for_a_behaviour_goal_says_sft_after():
    rec = check(recommend(ans(data_kind="raw-text")), "fine-tune", "cpt")
    assert has(rec, "follow CPT with SFT", NOTE)


@pytest.mark.parametrize("goal,examples,phrase,source", [
    ("behavior", 60, "below 100, a poor candidate", LLAMA),
    ("task", 150, "meets the 100-500 typical for classification", NOTE),
    ("behavior", 300, "below the 500-1,000 typical for instruction following", NOTE),
    ("behavior", 800, "meets the 500-1,000 typical for instruction following", NOTE),
    ("domain", 2000, "below the 5,000-10,000 typical for domain adaptation", NOTE),
])
def test_examples_checked_against_the_reference_table(goal, examples, phrase, source):
    rec = check(recommend(ans(goal=goal, examples=examples)), "fine-tune", "sft")
    assert has(rec, phrase, source)


def test_reward_function_uses_the_reasoning_row():
    rec = recommend(ans(data_kind="reward-function", examples=2000))
    assert has(rec, "1,000-5,000 typical for complex reasoning", NOTE)


def test_goal_reasons_cite_their_guides():
    assert has(recommend(ans(goal="task")), "task quality beyond prompting", OPENAI)
    assert has(recommend(ans(goal="domain", examples=6000)), "domain expertise", LLAMA)
    assert has(recommend(ans(goal="alignment", data_kind="preferences")), "preference tuning", AXOLOTL)
    assert has(recommend(ans(latency_or_cost_critical=True)), "shorter prompts", OPENAI)


# --------------------------------------------------------------------------------------- method


def test_method_lora_when_it_fits():
    rec = check(recommend(ans(), model="llama-3.1-8b", vram_gb=80), "fine-tune", "sft", "lora")
    assert has(rec, "start with LoRA", LLAMA) and has(rec, "LoRA fits", ESTIMATOR)
    assert [m for m, _, _ in rec.method_choice.rows] == ["full", "lora", "qlora"]


def test_method_qlora_when_only_it_fits():
    rec = check(recommend(ans(), model="llama-3.1-8b", vram_gb=16, settings=_short()), "fine-tune", "sft", "qlora")
    assert has(rec, "QLoRA when resources are tight", LLAMA)


def test_method_none_only_when_no_lever_is_left_names_a_current_model_of_the_family():
    rec = check(recommend(ans(), model="llama-3.1-70b", vram_gb=16, settings=_short()), "fine-tune", "sft", None)
    assert has(rec, "no method fits", ESTIMATOR) and has(rec, "no setting fits either", ESTIMATOR)
    assert rec.instead and "smaller model such as Llama-3.1-8B" in rec.instead  # same family, current
    assert rec.settings is None
    qwen = recommend(ans(), model="qwen2.5-72b", vram_gb=12)
    assert qwen.method is None and "such as Qwen3-" in qwen.instead  # Qwen3, not Qwen2.5


@pytest.mark.parametrize("model,vram", [("llama-3.1-70b", 48), ("llama-3.1-8b", 12)])
def test_nothing_fits_as_asked_proposes_qlora_with_settings(model, vram):
    rec = check(recommend(ans(), model=model, vram_gb=vram), "fine-tune", "sft", "qlora")
    assert rec.method_choice.recommended is None  # at batch 4 x 1,024 no method fits
    assert rec.settings and set(rec.settings) <= {"seq_len", "batch_size", "gradient_accumulation_steps",
                                                  "lora_rank", "optim", "gradient_checkpointing"}
    # the effective batch is kept: batch x accumulation is still 4
    assert rec.settings["batch_size"] * rec.settings["gradient_accumulation_steps"] == 4
    assert has(rec, f"GiB of {vram}", ESTIMATOR)


def _dir_of(tmp_path, name):
    """A model directory holding the catalog model's config.json (as a downloaded model has)."""
    from ftwizard.core.catalog import CATALOG

    a = CATALOG[name]
    d = tmp_path / f"{name}-dir"
    d.mkdir()
    d.joinpath("config.json").write_text(json.dumps({
        "model_type": "llama", "hidden_size": a.hidden, "num_hidden_layers": a.layers,
        "num_attention_heads": a.heads, "num_key_value_heads": a.kv_heads, "intermediate_size": a.intermediate,
        "vocab_size": a.vocab, "tie_word_embeddings": a.tied_embeddings}))
    return d


@pytest.mark.parametrize("model,vram", [("llama-3.1-70b", 48), ("llama-3.1-8b", 12)])
def test_cli_proposal_re_estimated_by_estimate_fits(tmp_path, model, vram):
    """`recommend --json` returns method + settings; `estimate` with those settings as flags agrees."""
    f = tmp_path / "a.yaml"
    f.write_text(GOOD)
    model_dir = _dir_of(tmp_path, model)
    p = _cli("--answers", str(f), "--model", str(model_dir), "--vram-gb", str(vram), "--json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["method"] == "qlora" and out["settings"]
    flags = []
    for k, v in out["settings"].items():
        flag = "--" + k.replace("_", "-")
        flags += ([flag] if v is True else [f"--no-{k.replace('_', '-')}"] if v is False else [flag, str(v)])
    e = subprocess.run([sys.executable, "-m", "ftwizard.core.cli", "estimate", "--model", str(model_dir),
                        "--method", out["method"], *flags, "--vram-gb", str(vram), "--json"],
                       capture_output=True, text=True, timeout=60)
    assert e.returncode == 0, e.stderr
    est = json.loads(e.stdout)
    assert est["verdict"] in ("fits", "tight")
    assert est["total_gib"] == pytest.approx(out["proposal"]["total_gib"], abs=0.01)


def test_method_full_only_with_ample_vram_and_a_large_domain_shift():
    rec = check(recommend(ans(goal="domain", examples=6000), model="smollm2-135m", vram_gb=80), "fine-tune", "sft",
                "full")
    assert has(rec, "domain shift is large", LLAMA)
    small_data = recommend(ans(goal="domain", examples=1000), model="smollm2-135m", vram_gb=80)
    assert small_data.method == "lora"
    tight = recommend(ans(goal="domain", examples=6000), model="llama-3.1-8b", vram_gb=80)
    assert tight.method == "lora" and has(tight, "could use full fine-tuning", LLAMA)


def test_method_needs_model_and_vram():
    assert recommend(ans(), model="llama-3.1-8b").method is None
    assert recommend(ans(), vram_gb=24).method is None
    assert recommend(ans(prompting_tried="not-yet"), model="llama-3.1-8b", vram_gb=80).method is None


def _short():
    from ftwizard.core.estimate import Settings

    return Settings(batch_size=1, seq_len=1024)


# ------------------------------------------------------------------------------------ answers file


GOOD = """goal: behavior
facts_change_often: false
needs_citations: false
prompting_tried: inconsistent
examples: 800
data_kind: pairs
latency_or_cost_critical: false
"""


def test_load_answers(tmp_path):
    f = tmp_path / "a.yaml"
    f.write_text(GOOD)
    assert load_answers(f) == ans()


def test_load_answers_errors_name_file_line_key_and_allowed_values(tmp_path):
    f = tmp_path / "a.yaml"
    f.write_text(GOOD.replace("data_kind: pairs", "data_kind: chats").replace("examples: 800", "examples: -3")
                 + "colour: blue\n")
    with pytest.raises(UserError) as e:
        load_answers(f)
    msgs = [str(p) for p in e.value.problems]
    assert f"{f}:6: data_kind: got 'chats' (allowed: pairs, preferences, binary-feedback, reward-function, " \
           "raw-text)" in msgs
    assert any(m.startswith(f"{f}:5: examples:") and ">= 0" in m for m in msgs)
    assert any(m.startswith(f"{f}:8: colour: unknown key") for m in msgs)
    f.write_text("goal: task\n")
    with pytest.raises(UserError, match="prompting_tried: required key is missing"):
        load_answers(f)
    f.write_text("goal: [\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_answers(f)
    f.write_text("- a\n")
    with pytest.raises(UserError, match="mapping"):
        load_answers(f)
    with pytest.raises(UserError, match="no such answers file"):
        load_answers(tmp_path / "missing.yaml")


def test_with_defaults_for_a_live_preview():
    a = Answers.with_defaults(goal="knowledge", facts_change_often=True, examples=None)
    assert a.goal == "knowledge" and a.examples == 1000
    assert recommend(a).approach == "rag+fine-tune"
    assert recommend(Answers.with_defaults(goal="knowledge", facts_change_often=True, prompting_tried="works")).approach == "rag"


# ------------------------------------------------------------------------------------------- CLI


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "ftwizard.core.cli", "recommend", *args], capture_output=True,
                          text=True, timeout=60)


def test_cli_json(tmp_path):
    f = tmp_path / "a.yaml"
    f.write_text(GOOD)
    p = _cli("--answers", str(f), "--model", "llama-3.1-8b", "--vram-gb", "80", "--json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert (out["approach"], out["training"], out["method"]) == ("fine-tune", "sft", "lora")
    assert all(isinstance(r, str) and r.endswith(")") for r in out["reasons"])
    p = _cli("--answers", str(f), "--json")
    assert json.loads(p.stdout)["method"] is None


def test_cli_bad_answers_exit_2(tmp_path):
    f = tmp_path / "a.yaml"
    f.write_text(GOOD.replace("goal: behavior", "goal: vibes"))
    p = _cli("--answers", str(f))
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert p.stderr.strip() == f"ftwizard: {f}:1: goal: got 'vibes' (allowed: knowledge, behavior, task, domain, alignment)"
