"""The estimator: golden values for every breakdown term from first-principles arithmetic, the catalog's
numbers against the published parameter counts, the published measurements in ANCHORS.md with their
error, the verdicts, compare_methods, and the `ftwizard estimate` CLI.

`python tests/test_estimate.py` prints the anchor table used in docs/estimator.md.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys

import pytest

from ftwizard.core.catalog import CATALOG, count_params, resolve_arch
from ftwizard.core.errors import UserError
from ftwizard.core.estimate import (FITS, GIB, NO_FIT, TIGHT, Settings, compare_methods, estimate, lora_params,
                                    nf4_bytes, settings_from_config, trainable_tensors)

GB = 1e9 / GIB  # a decimal GB in GiB

# Published parameter counts (model cards / safetensors metadata).
PUBLISHED_PARAMS = {
    "llama-2-7b": 6_738_415_616, "llama-2-13b": 13_015_864_320, "llama-2-70b": 68_976_648_192,
    "llama-3.1-8b": 8_030_261_248, "llama-3.1-70b": 70_553_706_496, "llama-3.1-405b": 405_853_388_800,
    "llama-3.2-1b": 1_235_814_400, "llama-3.2-3b": 3_212_749_824,
    "qwen2.5-0.5b": 494_032_768, "qwen2.5-1.5b": 1_543_714_304, "qwen2.5-3b": 3_085_938_688,
    "qwen2.5-7b": 7_615_616_512, "qwen2.5-14b": 14_770_033_664, "qwen2.5-32b": 32_763_876_352,
    "qwen2.5-72b": 72_706_203_648, "mistral-7b": 7_248_023_552, "mistral-7b-v0.1": 7_241_732_096,
    "gemma-2-2b": 2_614_341_888, "gemma-2-9b": 9_241_705_984, "gemma-2-27b": 27_227_128_320,
    "phi-3-mini": 3_821_079_552, "smollm2-135m": 134_515_008, "smollm2-360m": 361_821_120,
    "smollm2-1.7b": 1_711_376_384, "qwen-7b": 7_721_324_544,
    # current families (safetensors metadata of the hub repos; Gemma 3 4B+ and Mistral Small 3.1+ add a
    # vision tower the catalog does not count, so their text-only siblings are listed)
    "qwen3-0.6b": 596_049_920, "qwen3-8b": 8_190_735_360, "qwen3-30b-a3b": 30_532_122_624,
    "gemma-3-1b": 999_885_952, "llama-3.3-70b": 70_553_706_496, "mistral-small-24b": 23_572_403_200,
    "phi-4": 14_659_507_200, "phi-4-mini": 3_836_021_760, "gpt-oss-20b": 20_914_757_184,
    "gpt-oss-120b": 116_829_156_672, "smollm3-3b": 3_075_098_624,
}


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS))
def test_catalog_params_match_published_counts(name):
    assert CATALOG[name].params == PUBLISHED_PARAMS[name] == count_params(CATALOG[name])


def test_catalog_covers_the_issue_models():
    need = ["llama-2-7b", "llama-2-13b", "llama-2-70b", "llama-3.1-8b", "llama-3.1-70b", "llama-3.1-405b",
            "llama-3.2-1b", "llama-3.2-3b", "qwen2.5-0.5b", "qwen2.5-1.5b", "qwen2.5-3b", "qwen2.5-7b",
            "qwen2.5-14b", "qwen2.5-32b", "qwen2.5-72b", "mistral-7b", "gemma-2-2b", "gemma-2-9b",
            "gemma-2-27b", "phi-3-mini", "smollm2-135m", "smollm2-360m", "smollm2-1.7b",
            # issue 16: today's families
            "qwen3-0.6b", "qwen3-1.7b", "qwen3-4b", "qwen3-8b", "qwen3-14b", "qwen3-32b", "qwen3-30b-a3b",
            "gemma-3-1b", "gemma-3-4b", "gemma-3-12b", "gemma-3-27b", "llama-3.3-70b", "mistral-small-24b",
            "phi-4", "phi-4-mini", "gpt-oss-20b", "gpt-oss-120b", "smollm3-3b"]
    assert set(need) <= set(CATALOG)


def test_moe_counts_every_expert_and_routes_a_few():
    q = CATALOG["qwen3-30b-a3b"]
    assert q.expert_params == 48 * (128 * 3 * 2048 * 768 + 2048 * 128)
    assert 3.0e9 < q.active_params < 3.5e9          # "A3B": ~3.3B active of 30.5B
    g = CATALOG["gpt-oss-120b"]
    assert 5.0e9 < g.active_params < 6.0e9 and g.mxfp4  # ~5.1B active (model card), MXFP4 experts
    e = estimate(q, Settings(method="qlora"))
    # NF4 covers attention only; the fused experts stay bf16 (57 GiB), so QLoRA saves little on a MoE
    assert e.breakdown["weights bf16 (embeddings, lm_head, norms)"] * GIB >= 2 * q.expert_params
    assert any("MoE" in n and "LoRA on the experts: yes" in n for n in e.assumptions)
    assert any("MXFP4" in n for n in estimate(g, Settings()).assumptions)
    assert any("no SDPA" in n for n in estimate(g, Settings()).assumptions)


def test_gemma3_quirks_large_vocabulary_no_softcap_sliding_window():
    g3, g2 = CATALOG["gemma-3-4b"], CATALOG["gemma-2-2b"]
    e = estimate(g3, Settings(method="lora", batch_size=1, seq_len=2048))
    assert not any("eager" in n for n in e.assumptions)  # no soft-capping: SDPA works
    assert any("window" in n for n in e.assumptions)
    assert e.breakdown["logits and loss"] * GIB == pytest.approx(12 * 262208 * 2048)
    assert g3.norms_per_layer == 4 and g3.qk_norm and not g3.final_softcap and g2.final_softcap


def test_resolve_arch_by_name_hub_id_and_directory(tmp_path):
    assert resolve_arch("llama-3.1-8b") is CATALOG["llama-3.1-8b"]
    assert resolve_arch("meta-llama/Llama-3.1-8B-Instruct") is CATALOG["llama-3.1-8b"]
    assert resolve_arch("HuggingFaceTB/SmolLM2-135M-Instruct") is CATALOG["smollm2-135m"]
    cfg = {"model_type": "qwen2", "hidden_size": 896, "num_hidden_layers": 24, "num_attention_heads": 14,
           "num_key_value_heads": 2, "intermediate_size": 4864, "vocab_size": 151936, "tie_word_embeddings": True}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    a = resolve_arch(str(tmp_path))
    assert a.params == PUBLISHED_PARAMS["qwen2.5-0.5b"]


def test_resolve_arch_errors_name_the_problem(tmp_path):
    with pytest.raises(UserError, match="unknown model"):
        resolve_arch("no-such-model")
    with pytest.raises(UserError, match="no config.json"):
        resolve_arch(str(tmp_path))
    (tmp_path / "config.json").write_text('{"hidden_size": 8,\n "oops"}')
    with pytest.raises(UserError) as e:
        resolve_arch(str(tmp_path))
    assert "config.json:2" in str(e.value)
    (tmp_path / "config.json").write_text('{"hidden_size": 8}')
    with pytest.raises(UserError, match="num_hidden_layers"):
        resolve_arch(str(tmp_path))


# ------------------------------------------------------------------------------ golden terms


def test_lora_params_llama3_8b_r16_all_linear_is_the_published_41943040():
    assert lora_params(CATALOG["llama-3.1-8b"], 16, "all-linear") == 41_943_040
    # attention only (q, v): r * (4096 + 4096) + r * (4096 + 1024), 32 layers
    assert lora_params(CATALOG["llama-3.1-8b"], 16, ["q_proj", "v_proj"]) == 32 * 16 * (8192 + 5120)
    assert lora_params(CATALOG["llama-3.1-8b"], 16, "q,v") == 32 * 16 * (8192 + 5120)
    # DoRA adds one magnitude per output feature of each adapted matrix
    dora = lora_params(CATALOG["llama-3.1-8b"], 16, "all-linear", dora=True)
    assert dora - 41_943_040 == 32 * (4096 + 1024 + 1024 + 4096 + 14336 + 14336 + 4096)


GOLDEN_ARCHS = ["llama-2-7b", "llama-3.1-8b", "llama-3.2-1b", "qwen2.5-7b", "mistral-7b", "gemma-2-9b",
                "phi-3-mini", "smollm2-135m"]


def _linear_params(a):
    h, q, kv, i = a.hidden, a.q_dim, a.kv_dim, a.intermediate
    return a.layers * (h * q + 2 * h * kv + q * h + 3 * h * i)


@pytest.mark.parametrize("name", GOLDEN_ARCHS)
def test_golden_static_terms(name):
    a = CATALOG[name]
    P = a.params
    lin = _linear_params(a)
    assert a.linear_params == lin

    # foreach AdamW at a short batch: the peak is its step, with one fp32 temporary of the parameters
    full_e = estimate(a, Settings(method="full", optim="adamw_torch", batch_size=1, seq_len=64))
    full = full_e.breakdown
    assert full["weights (fp32 master, bf16 autocast)"] * GIB == pytest.approx(4 * P)
    assert full_e.static_gib["gradients"] * GIB == pytest.approx(4 * P)
    assert full_e.peak_phase == "optimizer step"
    assert full["gradients (fp32)"] * GIB == pytest.approx(4 * P)
    assert full["optimizer step temporaries"] * GIB == pytest.approx(4 * P)
    n_tensors = a.layers * (7 + a.norms_per_layer + (3 if a.qkv_bias else 0)) + 1 + (1 if a.tied_embeddings else 2)
    if a.family == "phi3":
        n_tensors -= a.layers * 3  # fused qkv_proj and gate_up_proj
    assert full["optimizer states (adamw_torch)"] * GIB == pytest.approx(8 * P + 4 * n_tensors)

    T = lora_params(a, 16)
    lora_e = estimate(a, Settings(method="lora", optim="adamw_torch"))
    lora = lora_e.breakdown
    assert lora["weights (bf16)"] * GIB == pytest.approx(2 * P)
    assert lora["LoRA adapters (fp32)"] * GIB == pytest.approx(4 * T)
    assert lora_e.static_gib["gradients"] * GIB == pytest.approx(4 * T)
    # at the loss peak the gradients of the last step are freed and the new ones not yet made
    assert lora["gradients (fp32)"] == (0.0 if lora_e.peak_phase.startswith(("start", "end")) else pytest.approx(4 * T / GIB))
    assert lora["optimizer states (adamw_torch)"] * GIB == pytest.approx(8 * T, rel=1e-4)

    q = estimate(a, Settings(method="qlora")).breakdown
    # NF4: 0.5 B/param + per 64-block an 8-bit absmax + per 256 blocks an fp32 absmax (double quant)
    assert q["weights NF4 (decoder linears, double quant)"] * GIB == pytest.approx(lin * (0.5 + 1 / 64 + 4 / 64 / 256))
    assert q["weights bf16 (embeddings, lm_head, norms)"] * GIB == pytest.approx(2 * (P - lin))
    up = estimate(a, Settings(method="qlora", upcast_fp32=True)).breakdown  # peft's prepare_model_for_kbit_training
    assert up["weights fp32 (embeddings, lm_head, norms)"] * GIB == pytest.approx(4 * (P - lin))
    nq = estimate(a, Settings(method="qlora", double_quant=False)).breakdown
    assert nq["weights NF4 (decoder linears)"] * GIB == pytest.approx(lin * (0.5 + 4 / 64))
    # about 0.37 bit/param saved by double quant (QLoRA paper)
    saved_bits = (nf4_bytes(lin, False) - nf4_bytes(lin, True)) * 8 / lin
    assert saved_bits == pytest.approx(0.373, abs=0.005)

    eight = estimate(a, Settings(method="lora", optim="adamw_8bit")).breakdown["optimizer states (adamw_8bit)"]
    # bitsandbytes: 1 B per state and an fp32 absmax per 256-block; tensors under 4,096 elements stay 32-bit
    sizes = [16 * d for d_in, d_out in a.linear_shapes().values() for d in (d_in, d_out)] * a.layers
    expect = sum(8 * n if n < 4096 else 2 * n + 8 * -(-n // 256) for n in sizes) + 4 * len(sizes)
    assert eight * GIB == pytest.approx(expect)
    assert eight * GIB < 0.35 * 8 * T


@pytest.mark.parametrize("name", GOLDEN_ARCHS)
def test_golden_dynamic_terms(name):
    a = CATALOG[name]
    s = Settings(method="lora", batch_size=2, seq_len=2048)
    e = estimate(a, s)
    tokens = 2 * 2048
    b = e.breakdown
    # logits: fp32 log-probs, their gradient and the incoming gradient at the start of backward
    # Gemma 2's final logit soft-capping keeps one more bf16 copy of the logits
    per_vocab = 12 + (2 if a.family == "gemma2" else 0)
    if e.peak_phase.startswith("start of backward"):
        assert b["logits and loss"] * GIB == pytest.approx(per_vocab * a.vocab * tokens)
        # checkpoints: one bf16 hidden state per layer per token
        assert b["activations"] * GIB == pytest.approx(2 * a.hidden * a.layers * tokens)
    assert b["CUDA context"] == pytest.approx(0.9)
    assert b["allocator slack"] == pytest.approx(0.08 * (b["activations"] + b["logits and loss"]
                                                        + b.get("optimizer step temporaries", 0)))
    assert e.total_gib == pytest.approx(sum(b.values()))


@pytest.mark.parametrize("name", GOLDEN_ARCHS)
def test_golden_dynamic_terms_qlora_and_full(name):
    a = CATALOG[name]
    tokens = 2 * 2048
    biggest = max(x * y for x, y in a.linear_shapes().values())
    for upcast in (False, True):
        q = estimate(a, Settings(method="qlora", batch_size=2, seq_len=2048, upcast_fp32=upcast))
        b = q.breakdown
        assert b["dequantization buffer"] * GIB == pytest.approx(2 * biggest)
        if not q.peak_phase.startswith("start of backward"):  # 32k vocabularies: a layer's backward
            continue
        # one checkpointed hidden state per layer: bf16 as in LoRA; fp32 when peft upcasts the
        # embeddings, and then autocast also keeps a bf16 copy of the fp32 lm_head for backward
        kept = (4 if upcast else 2) * a.hidden * a.layers * tokens
        assert b["activations"] * GIB == pytest.approx(kept + (2 * a.vocab * a.hidden if upcast else 0))
        assert b["logits and loss"] * GIB == pytest.approx((12 + (2 if a.family == "gemma2" else 0)) * a.vocab * tokens)
    # foreach AdamW (the Trainer's old default) peaks in its step at a short batch; fused AdamW never does
    f = estimate(a, Settings(method="full", batch_size=1, seq_len=64, optim="adamw_torch"))
    assert f.peak_phase == "optimizer step"
    assert f.breakdown["activations"] == 0 and f.breakdown["logits and loss"] == 0
    # weights 4 + gradients 4 + AdamW 8 + foreach temporary 4 bytes/param (+ 4 B step per tensor),
    # allocator slack on the temporary, CUDA context
    n_tensors = len(trainable_tensors(a, Settings(method="full")))
    expect = (20 * a.params + 4 * n_tensors + 0.08 * 4 * a.params) / GIB + 0.9
    assert f.total_gib == pytest.approx(expect, rel=1e-9)
    fused = estimate(a, Settings(method="full", batch_size=1, seq_len=64))
    assert fused.peak_phase != "optimizer step" and "optimizer step temporaries" not in fused.breakdown


def test_vocabulary_size_drives_the_logits():
    s = Settings(method="lora", batch_size=1, seq_len=4096)
    llama2, llama3 = CATALOG["llama-2-7b"], CATALOG["llama-3.1-8b"]
    l2 = estimate(llama2, s).breakdown["logits and loss"]
    l3 = estimate(llama3, s).breakdown["logits and loss"]
    assert l3 / l2 == pytest.approx(128256 / 32000)
    assert l3 == pytest.approx(12 * 128256 * 4096 / GIB)  # 5.9 GiB for one 4k row


def test_gradient_checkpointing_and_attention():
    a = CATALOG["llama-3.1-8b"]
    on = estimate(a, Settings(method="lora", batch_size=4, seq_len=2048))
    off = estimate(a, Settings(method="lora", batch_size=4, seq_len=2048, gradient_checkpointing=False))
    assert off.breakdown["activations"] > 8 * on.breakdown["activations"]
    eager = estimate(a, Settings(method="lora", batch_size=4, seq_len=2048, gradient_checkpointing=False,
                                 attn="eager"))
    # eager keeps heads x s scores per token per layer: fp32 softmax + its bf16 copy
    extra = (eager.breakdown["activations"] - off.breakdown["activations"]) * GIB
    assert extra == pytest.approx(32 * 32 * 2048 * 6 * 4 * 2048)


def test_gemma2_assumes_eager_attention():
    g = CATALOG["gemma-2-2b"]
    e = estimate(g, Settings(method="lora", batch_size=1, seq_len=2048, gradient_checkpointing=False))
    assert any("Gemma 2" in x and "eager" in x for x in e.assumptions)
    fa = estimate(g, Settings(method="lora", batch_size=1, seq_len=2048, gradient_checkpointing=False,
                              attn="flash_attention_2"))
    assert e.breakdown["activations"] > fa.breakdown["activations"]


def test_ddp_and_fsdp_note():
    a = CATALOG["llama-3.1-8b"]
    one = estimate(a, Settings(method="full"))
    two = estimate(a, Settings(method="full", gpus=2))
    assert two.breakdown["DDP gradient buckets"] * GIB == pytest.approx(4 * a.params)
    assert any("FSDP" in x for x in two.assumptions)
    assert two.total_gib > one.total_gib


def test_full_ft_peak_is_the_optimizer_step_with_foreach_adamw():
    a = CATALOG["llama-3.2-1b"]
    e = estimate(a, Settings(method="full", batch_size=1, seq_len=256, optim="adamw_torch"))
    assert e.peak_phase == "optimizer step"
    assert e.breakdown["optimizer step temporaries"] * GIB == pytest.approx(4 * a.params)
    fused = estimate(a, Settings(method="full", batch_size=1, seq_len=256, optim="adamw_torch_fused"))
    assert fused.total_gib < e.total_gib


def test_settings_from_config():
    from ftwizard.core.config import RunConfig

    cfg = RunConfig.model_validate({"method": "qlora", "dataset": {"path": "x.jsonl"},
                                    "lora": {"r": 32, "target_modules": ["q_proj", "v_proj"]},
                                    "train": {"max_length": 2048, "batch_size": 2, "optim": "paged_adamw_8bit"}})
    s = settings_from_config(cfg, gpus=2)
    assert (s.method, s.seq_len, s.batch_size, s.lora_rank, s.lora_targets, s.optim, s.gpus, s.precision) == \
        ("qlora", 2048, 2, 32, ["q_proj", "v_proj"], "paged_adamw_8bit", 2, "bf16")
    assert estimate(CATALOG["smollm2-135m"], s).total_gib > 0


# ------------------------------------------------------------------------ published measurements

# (label, model, settings, reported GiB, source, kind). kind "stack": transformers + peft, settings
# stated: calibration rows, error asserted. "other": another stack or unstated settings: error shown.
ANCHOR_ROWS = [
    ("Qwen-7B LoRA bs1 seq256 FA2", "qwen-7b", dict(method="lora", lora_rank=64, batch_size=1, seq_len=256,
     attn="flash_attention_2"), 20.1 * GB, "Qwen README", "stack"),
    ("Qwen-7B LoRA bs1 seq2048 FA2", "qwen-7b", dict(method="lora", lora_rank=64, batch_size=1, seq_len=2048,
     attn="flash_attention_2"), 23.8 * GB, "Qwen README", "stack"),
    ("Qwen-7B LoRA bs1 seq8192 FA2", "qwen-7b", dict(method="lora", lora_rank=64, batch_size=1, seq_len=8192,
     attn="flash_attention_2"), 36.6 * GB, "Qwen README", "stack"),
    ("Llama-3-8B QLoRA bs1 seq32 (PEFT+bnb)", "llama-3.1-8b", dict(method="qlora", lora_rank=8, batch_size=1,
     seq_len=32, upcast_fp32=True), 8.0, "PEFT maintainers (ANCHORS)", "stack"),
    ("Qwen-7B QLoRA bs1 seq256", "qwen-7b", dict(method="qlora", lora_rank=64, batch_size=1, seq_len=256,
     attn="flash_attention_2"), 11.5 * GB, "Qwen README (GPTQ int4, fp16)", "other"),
    ("Qwen-7B QLoRA bs1 seq2048", "qwen-7b", dict(method="qlora", lora_rank=64, batch_size=1, seq_len=2048,
     attn="flash_attention_2"), 13.9 * GB, "Qwen README (GPTQ int4, fp16)", "other"),
    ("Qwen-7B QLoRA bs1 seq8192", "qwen-7b", dict(method="qlora", lora_rank=64, batch_size=1, seq_len=8192,
     attn="flash_attention_2"), 23.5 * GB, "Qwen README (GPTQ int4, fp16)", "other"),
    ("Llama-3-8B QLoRA bs2 (torchtune recipe) in PEFT", "llama-3.1-8b", dict(method="qlora", lora_rank=8,
     batch_size=2, seq_len=2048), 21.0, "PEFT maintainers (ANCHORS), seq not stated (2048 assumed)", "other"),
    ("Llama-2-7B LoRA q,v r8 bs2", "llama-2-7b", dict(method="lora", lora_rank=8, lora_targets="q_proj,v_proj",
     batch_size=2, seq_len=512), 15.57, "torchtune LoRA tutorial (seq 512 assumed)", "other"),
    ("Llama-2-7B LoRA all-linear r64 bs2", "llama-2-7b", dict(method="lora", lora_rank=64, batch_size=2,
     seq_len=512), 17.04, "torchtune LoRA tutorial (seq 512 assumed)", "other"),
    ("Llama-2-7B QLoRA bs2", "llama-2-7b", dict(method="qlora", lora_rank=8, lora_targets="q_proj,v_proj",
     batch_size=2, seq_len=512), 9.29, "torchtune QLoRA tutorial (seq 512 assumed)", "other"),
    ("7B LoRA (rule of thumb)", "llama-2-7b", dict(method="lora", batch_size=1, seq_len=512), 16 * GB,
     "LLaMA-Factory README (estimate)", "other"),
    ("7B QLoRA-4 (rule of thumb)", "llama-2-7b", dict(method="qlora", batch_size=1, seq_len=512), 6 * GB,
     "LLaMA-Factory README (estimate)", "other"),
    ("7B full AMP (rule of thumb)", "llama-2-7b", dict(method="full", batch_size=1, seq_len=512), 120 * GB,
     "LLaMA-Factory README (estimate)", "other"),
    ("70B QLoRA-4 (rule of thumb)", "llama-2-70b", dict(method="qlora", batch_size=1, seq_len=512), 48 * GB,
     "LLaMA-Factory README (estimate)", "other"),
] + [
    (f"{n} QLoRA minimum (Unsloth kernels)", m, dict(method="qlora", batch_size=1, seq_len=512), v * GB,
     "Unsloth requirements (other kernels)", "other")
    for n, m, v in [("3B", "llama-3.2-3b", 3.5), ("7B", "llama-2-7b", 5), ("8B", "llama-3.1-8b", 6),
                    ("14B", "qwen2.5-14b", 8.5), ("70B", "llama-3.1-70b", 41)]
] + [
    (f"{n} 16-bit LoRA (Unsloth kernels)", m, dict(method="lora", batch_size=1, seq_len=512), v * GB,
     "Unsloth requirements (other kernels)", "other")
    for n, m, v in [("3B", "llama-3.2-3b", 8), ("7B", "llama-2-7b", 19), ("8B", "llama-3.1-8b", 22),
                    ("14B", "qwen2.5-14b", 33), ("70B", "llama-3.1-70b", 164)]
]


# The sources trained (or reckoned) with the Trainer's default of their day, foreach AdamW, not with
# what a run of ours gets today (fused AdamW; 8-bit states for QLoRA)
ERA_OPTIM = {"optim": "adamw_torch"}


def anchor_errors():
    out = []
    for label, model, kw, reported, source, kind in ANCHOR_ROWS:
        e = estimate(CATALOG[model], Settings(**(ERA_OPTIM | kw)))
        out.append((label, e.total_gib, reported, (e.total_gib - reported) / reported, source, kind))
    return out


def test_calibration_rows_median_and_max_error():
    errs = [abs(err) for _, _, _, err, _, kind in anchor_errors() if kind == "stack"]
    assert len(errs) >= 4
    assert statistics.median(errs) <= 0.15
    assert max(errs) <= 0.30


def test_verdicts_where_a_measurement_says_it_fits_or_not():
    # a setup measured at M GiB runs on the smallest common card above M, and not on one of 0.8 M
    for label, model, kw, reported, _, kind in ANCHOR_ROWS:
        if kind != "stack":
            continue
        e = estimate(CATALOG[model], Settings(**(ERA_OPTIM | kw)))
        card = min(c for c in (8, 12, 16, 24, 40, 48, 80) if c >= reported * 1.05)
        assert e.verdict(card) in (FITS, TIGHT), label
        assert e.verdict(reported * 0.8) == NO_FIT, label
    # QLoRA paper: a 65B-class model fine-tunes on one 48 GB GPU; Llama-2-70B QLoRA, bs 1, seq 512
    assert estimate(CATALOG["llama-2-70b"], Settings(method="qlora", batch_size=1, seq_len=512,
                                                     optim="paged_adamw_8bit")).verdict(48 * GB) != NO_FIT
    # unsloth PR #10815: Llama-3.1-8B QLoRA needs ~9 GB, not 21: our stack at a short sequence is
    # within 25% of that, and fits a 16 GB card even with peft's fp32 upcast
    e8 = estimate(CATALOG["llama-3.1-8b"], Settings(method="qlora", batch_size=1, seq_len=512))
    assert 0.75 * 9 * GB <= e8.total_gib <= 1.25 * 9 * GB
    up = estimate(CATALOG["llama-3.1-8b"], Settings(method="qlora", batch_size=1, seq_len=512, upcast_fp32=True))
    assert up.total_gib > e8.total_gib and up.verdict(16) != NO_FIT
    # full fine-tuning of an 8B model never fits an 80 GB card in our stack (16 B/param + activations)
    assert estimate(CATALOG["llama-3.1-8b"], Settings(method="full", batch_size=1, seq_len=512)).verdict(80) == NO_FIT


def test_verdict_bands():
    e = estimate(CATALOG["smollm2-135m"], Settings())
    assert e.verdict(e.total_gib / 0.75) == FITS
    assert e.verdict(e.total_gib / 0.9) == TIGHT
    assert e.verdict(e.total_gib * 0.99) == NO_FIT


def test_compare_methods_prefers_lora_then_qlora_then_none():
    a = CATALOG["llama-3.1-8b"]
    assert compare_methods(a, 80).recommended == "lora"
    c = compare_methods(a, 16, base=Settings(batch_size=1, seq_len=1024))
    assert c.recommended == "qlora" and "QLoRA" in c.reason
    assert compare_methods(a, 24).recommended == "qlora"  # LoRA at 99% of the card: tight; QLoRA fits
    # both tight: LoRA at 95% of the card is riskier than QLoRA at 82%
    both = compare_methods(a, 80, base=Settings(batch_size=8, seq_len=4096))
    assert [v for _, _, v in both.rows][1:] == [TIGHT, TIGHT]
    assert both.recommended == "qlora" and "would fill 95%" in both.reason
    none = compare_methods(CATALOG["llama-3.1-70b"], 24)
    assert none.recommended is None and "smaller model" in none.reason
    assert compare_methods(CATALOG["smollm2-135m"], 80, prefer_full=True).recommended == "full"
    assert compare_methods(a, None).recommended is None
    assert [m for m, _, _ in compare_methods(a, 24).rows] == ["full", "lora", "qlora"]


# --------------------------------------------------------------------------------------- CLI


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "ftwizard.core.cli", *args], capture_output=True, text=True,
                          timeout=60)


def test_cli_json_one_object_with_verdict():
    p = _cli("estimate", "--model", "llama-3.1-8b", "--method", "qlora", "--seq-len", "2048", "--batch-size", "1",
             "--lora-targets", "q,v", "--optim", "paged_adamw_8bit", "--vram-gb", "24", "--json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["verdict"] in (FITS, TIGHT, NO_FIT)
    assert out["total_gib"] == pytest.approx(sum(out["breakdown"].values()), abs=0.05)
    assert isinstance(out["assumptions"], list) and out["assumptions"]
    assert p.stdout.count("\n") == 1
    up = json.loads(_cli("estimate", "--model", "llama-3.1-8b", "--method", "qlora", "--seq-len", "2048",
                         "--batch-size", "1", "--lora-targets", "q,v", "--optim", "paged_adamw_8bit", "--upcast-fp32",
                         "--json").stdout)
    assert "weights fp32 (embeddings, lm_head, norms)" in up["breakdown"] and up["total_gib"] > out["total_gib"]


def test_cli_bad_args_one_line_exit_2(tmp_path):
    for args in (["--model", "nope/nope-x", "--method", "lora"], ["--model", "llama-3.1-8b", "--method", "lora",
                 "--lora-targets", "foo"], ["--model", "llama-3.1-8b", "--method", "dpo"],
                 ["--model", str(tmp_path), "--method", "lora"],
                 ["--model", "llama-3.1-8b", "--method", "lora", "--batch-size", "0"]):
        p = _cli("estimate", *args)
        assert p.returncode == 2, (args, p.stderr)
        assert len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr


def test_estimator_imports_no_ml_library():
    code = ("import sys, ftwizard.core.estimate, ftwizard.core.recommend, ftwizard.core.catalog; "
            "print([m for m in ('torch', 'transformers', 'peft', 'trl', 'textual') if m in sys.modules])")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.stdout.strip() == "[]"


def markdown_table() -> str:
    rows = ["| setup | source | reported GiB | estimate GiB | error | kind |", "| --- | --- | ---: | ---: | ---: | --- |"]
    for label, est, rep, err, src, kind in anchor_errors():
        rows.append(f"| {label} | {src} | {rep:.2f} | {est:.2f} | {100 * err:+.0f}% | "
                    f"{'calibration' if kind == 'stack' else 'reference'} |")
    cal = [abs(r[3]) for r in anchor_errors() if r[5] == "stack"]
    allr = [abs(r[3]) for r in anchor_errors()]
    rows.append("")
    rows.append(f"Calibration rows: median |error| {100 * statistics.median(cal):.1f}%, max {100 * max(cal):.1f}%. "
                f"All rows: median {100 * statistics.median(allr):.1f}%, max {100 * max(allr):.1f}%.")
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())


def test_cli_on_a_saved_model_directory(tiny_work):
    """A real `save_pretrained` directory: the parameter count from its config.json equals the model's."""
    from transformers import AutoModelForCausalLM

    model_dir = tiny_work / "tiny-model"
    p = _cli("estimate", "--model", str(model_dir), "--method", "lora", "--vram-gb", "8", "--json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    assert out["params"] == sum(t.numel() for t in model.parameters())
    assert out["verdict"] == FITS
