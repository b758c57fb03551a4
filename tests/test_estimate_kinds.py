"""The estimator per training kind (issue 13, item 6): each kind's components appear and scale as the
TRL 1.16 trainers allocate them (core/estimate.py KIND_MEMORY says where each rule was read), the CLI
and a run's config carry the kind, and real tiny DPO and GRPO runs peak within the estimate."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ftwizard.core.catalog import CATALOG
from ftwizard.core.estimate import FUSED_TOKENS, FUSED_VOCAB, GIB, KIND_MEMORY, Settings, estimate

CLI = [sys.executable, "-m", "ftwizard.core.cli"]
A = CATALOG["llama-3.1-8b"]
BASE = dict(seq_len=1024, batch_size=2)
FWD, BWD, LAYER = "end of forward (logits and loss)", "start of backward (loss gradient)", "backward through a layer"


def est(kind: str, **kw):
    return estimate(A, Settings(kind=kind, **{**BASE, **kw}))


def test_every_kind_of_the_config_has_a_memory_rule():
    from typing import get_args

    from ftwizard.core.config import TrainingKind

    assert set(KIND_MEMORY) == set(get_args(TrainingKind))


@pytest.mark.parametrize("kind", ["dpo", "orpo", "simpo"])
@pytest.mark.parametrize("gc", [True, False])
def test_pair_kinds_hold_twice_sfts_activations_at_the_same_rows(kind, gc):
    sft, pair = est("sft", gradient_checkpointing=gc), est(kind, gradient_checkpointing=gc)
    for moment in (FWD, LAYER):
        assert pair.moments[moment]["act"] == pytest.approx(2 * sft.moments[moment]["act"], rel=1e-9)
    assert any("x 2 (chosen and rejected in one batch)" in a for a in pair.assumptions)


def test_kto_and_grpo_train_one_sequence_per_row():
    sft = est("sft")
    for kind in ("kto", "grpo"):
        assert est(kind).moments[LAYER]["act"] == pytest.approx(sft.moments[LAYER]["act"])


@pytest.mark.parametrize("kind", ["orpo", "simpo"])
def test_orpo_and_simpo_materialize_the_logits_of_both_sequences(kind):
    """trl.experimental's ORPO/CPO concatenated_forward computes full logits: SFT's logits term at 2x rows."""
    sft, pair = est("sft"), est(kind)
    assert pair.moments[BWD]["logit"] == pytest.approx(2 * sft.moments[BWD]["logit"])


@pytest.mark.parametrize("kind", ["dpo", "kto", "grpo"])
def test_fused_head_kinds_never_hold_the_whole_logits(kind):
    """DPOTrainer/KTOTrainer/GRPOTrainer call the model with TRL's fused LM head: one [4,096 x 32,768]
    tile plus the head's input per token, instead of 12 bytes per vocabulary entry per token."""
    e, sft = est(kind), est("sft")
    rows = KIND_MEMORY[kind].rows
    tokens = rows * BASE["batch_size"] * BASE["seq_len"]
    tile = min(tokens, FUSED_TOKENS) * min(A.vocab, FUSED_VOCAB) * 2
    assert e.moments[FWD]["logit"] * GIB == pytest.approx(tile + (2 * A.hidden + 32) * tokens)
    assert e.moments[BWD]["logit"] < sft.moments[BWD]["logit"] * rows / 5
    assert any("fused LM head" in a for a in e.assumptions)


@pytest.mark.parametrize("kind", ["dpo", "kto"])
def test_full_dpo_and_kto_add_a_frozen_weight_copy_adapters_do_not(kind):
    full, lora = est(kind, method="full"), est(kind, method="lora")
    weights = full.breakdown["weights (fp32 master, bf16 autocast)"]
    assert full.breakdown["reference model (frozen copy)"] == pytest.approx(weights)
    assert full.total_gib - est("sft", method="full").total_gib >= weights * 0.99
    assert "reference model (frozen copy)" not in lora.breakdown
    assert any("adapter disabled (no copy)" in a for a in lora.assumptions)
    # the reference forward runs after the policy's, with the policy's activations still held
    ref = lora.moments["reference forward (no gradients)"]
    assert ref["act"] >= lora.moments[FWD]["act"] and ref["ref"] > 0


@pytest.mark.parametrize("kind", ["orpo", "simpo"])
def test_reference_free_kinds_have_no_reference_at_all(kind):
    e = est(kind, method="full")
    assert "reference model (frozen copy)" not in e.breakdown
    assert not any(m.startswith("reference") for m in e.moments)


def test_grpo_reference_only_when_beta_is_positive():
    for method in ("full", "lora"):
        off, on = est("grpo", method=method, beta=0.0), est("grpo", method=method, beta=0.04)
        assert "reference log-probs (no gradients)" not in off.moments
        assert "reference log-probs (no gradients)" in on.moments
        assert "reference model (frozen copy)" not in off.breakdown
        assert ("reference model (frozen copy)" in on.breakdown) == (method == "full")


def test_grpo_kv_cache_grows_with_num_generations_at_the_same_prompts_per_step():
    """batch_size counts completions (TRL): 2 prompts per step x G generations; the KV cache of
    (prompt + completion) tokens is G-proportional and exact to the per-token K and V bytes."""
    kv = {}
    for g in (4, 8, 16):
        e = est("grpo", num_generations=g, batch_size=2 * g, max_completion_length=256)
        kv[g] = e.moments["generation (KV cache)"]["kv"]
        per_token = 2 * A.layers * A.kv_dim * 2  # K and V, every layer, bf16
        assert kv[g] * GIB == pytest.approx(2 * g * BASE["seq_len"] * per_token)
    assert kv[8] == pytest.approx(2 * kv[4]) and kv[16] == pytest.approx(4 * kv[4])
    # gradient accumulation = steps_per_generation: TRL generates for all of them at once
    acc = est("grpo", num_generations=4, batch_size=8, grad_accum=2, max_completion_length=256)
    assert acc.moments["generation (KV cache)"]["kv"] == pytest.approx(2 * kv[4])


def test_grpo_generation_can_be_the_peak():
    e = est("grpo", num_generations=16, batch_size=16, grad_accum=8, seq_len=4096, max_completion_length=3072)
    assert e.peak_phase == "generation (KV cache)"
    assert e.breakdown["generation KV cache"] > 10


def test_cli_refuses_a_grpo_completion_as_long_as_the_sequence():
    r = subprocess.run(CLI + ["estimate", "--model", "llama-3.1-8b", "--method", "lora", "--kind", "grpo",
                              "--seq-len", "512", "--max-completion-length", "512"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2 and "no room for prompts" in r.stderr and "Traceback" not in r.stderr


def test_cpt_is_sft_on_blocks_of_max_length():
    assert est("cpt").total_gib == est("sft").total_gib


def test_run_config_carries_the_kind_into_the_estimate():
    from ftwizard.core.config import RunConfig
    from ftwizard.core.estimate import run_settings, settings_from_config

    cfg = RunConfig.model_validate({"dataset": {"path": "x.jsonl"}, "training": "grpo", "method": "full",
                                    "grpo": {"beta": 0.04, "num_generations": 8, "max_completion_length": 256,
                                             "rewards": ["format"]}})
    s = settings_from_config(cfg)
    assert (s.kind, s.beta, s.num_generations, s.max_completion_length) == ("grpo", 0.04, 8, 256)
    assert run_settings(cfg, gpu=True).kind == "grpo"
    assert "reference model (frozen copy)" in estimate(A, s).breakdown


def test_cli_kind_flags():
    def run(*args):
        r = subprocess.run(CLI + ["estimate", "--model", "llama-3.1-8b", "--method", "full", "--json", *args],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    sft, dpo = run(), run("--kind", "dpo")
    assert dpo["kind"] == "dpo" and "reference model (frozen copy)" in dpo["breakdown"]
    assert dpo["total_gib"] > sft["total_gib"]
    g4 = run("--kind", "grpo", "--beta", "0.04", "--num-generations", "4", "--batch-size", "4")
    assert "reference model (frozen copy)" in g4["breakdown"]
    r = subprocess.run(CLI + ["estimate", "--model", "llama-3.1-8b", "--method", "lora", "--kind", "nope"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr


# ------------------------------------------------------------------------- against measured peaks


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["dpo", "grpo"])
def test_tiny_runs_peak_within_their_kind_estimate(kind, tiny_config, tmp_path, start_run, wait_run):
    """A real DPO and a real GRPO run on the tiny model: the `estimate` event the trainer writes (this
    kind's estimate) against its measured peak RSS (VmHWM) in status --json, within the stated tolerance."""
    from ftwizard.core.events import read_events
    from ftwizard.core.estimate import ESTIMATE_TOLERANCE
    from test_grpo import prompt_rows
    from test_preference import kind_config, pair_rows

    if kind == "dpo":
        cfg = kind_config(tiny_config, tmp_path, "dpo", pair_rows(24), steps=4)
    else:
        from ftwizard.core.tiny import write_jsonl

        cfg = tiny_config(steps=4, batch_size=4, max_length=64).model_copy(update={"training": "grpo"})
        cfg.dataset.path = str(write_jsonl(prompt_rows(), tmp_path / "prompts.jsonl"))
        cfg.dataset.validation = 0.0
        cfg.grpo.num_generations, cfg.grpo.max_completion_length = 4, 12
        cfg.grpo.rewards = ["numeric_match"]
    run_dir = start_run(cfg)
    assert wait_run(run_dir).state == "completed"
    info = [e for e in read_events(run_dir) if e["type"] == "info" and e.get("key") == "estimate"]
    assert info, "no estimate event"
    r = subprocess.run(CLI + ["status", str(run_dir), "--json"], capture_output=True, text=True, timeout=60)
    status = json.loads(r.stdout)
    est_gib, peak = status["estimate_gib"], status["peak_gib"]
    print(f"{kind}: estimate {est_gib:.3f} GiB, measured VmHWM {peak:.3f} GiB, peak/estimate {peak / est_gib:.2f}")
    assert peak <= est_gib * (1 + ESTIMATE_TOLERANCE)
    assert est_gib <= peak * 2, "an estimate this far above the peak would refuse runs that fit"
