"""GPU defaults resolved from what the hardware supports and what is installed (fake NVML cards)."""

from __future__ import annotations

from fakes import A100_80GB, T4_16GB, TWO_A6000

import pytest

from ftwizard.core.config import RunConfig
from ftwizard.core.defaults import installed, resolve_defaults, unresolved_keys
from ftwizard.core.errors import UserError
from ftwizard.core.hardware import Hardware


def cfg(**kw):
    return RunConfig(dataset={"path": "d.jsonl"}, **kw)


def test_cpu_only_machine_gets_fp32_sdpa_and_no_gpu_extras():
    out, notes = resolve_defaults(cfg(), Hardware(cpu_count=2))
    t = out.train
    assert (t.device, t.precision, t.optim, t.use_liger_kernel) == ("cpu", "fp32", "adamw_torch_fused", False)
    assert t.packing is True  # exact on SDPA for SmolLM2 (llama family): tests/test_packing.py
    assert out.model.attn_implementation == "sdpa"
    assert any("no GPU" in n for n in notes)


def test_ampere_gets_bf16_and_fused_adamw():
    out, notes = resolve_defaults(cfg(), Hardware(gpus=(A100_80GB,)))
    assert out.train.device == "cuda" and out.train.precision == "bf16" and out.train.optim == "adamw_torch_fused"
    assert any("compute capability >= 8.0" in n for n in notes)
    # flash attention and liger follow what is installed here
    assert (out.model.attn_implementation == "flash_attention_2") == installed("flash_attn")
    assert out.train.use_liger_kernel == installed("liger_kernel")
    assert out.train.packing is True  # flash attention's varlen path, or SDPA's mask from position_ids


def test_turing_card_falls_back_to_fp16():
    out, _ = resolve_defaults(cfg(), Hardware(gpus=(T4_16GB,)))
    assert out.train.precision == "fp16"


def test_qlora_defaults_to_8bit_adamw_and_explicit_values_are_kept():
    out, _ = resolve_defaults(cfg(method="qlora"), Hardware(gpus=tuple(TWO_A6000)))
    assert out.train.optim == "adamw_8bit"
    explicit = cfg(method="qlora", train={"optim": "adamw_torch", "precision": "fp16", "packing": True})
    out, notes = resolve_defaults(explicit, Hardware(gpus=(A100_80GB,)))
    assert (out.train.optim, out.train.precision, out.train.packing) == ("adamw_torch", "fp16", True)
    assert not any(n.startswith(("optimizer", "precision", "packing")) for n in notes)


def test_forced_cpu_on_a_gpu_machine():
    out, _ = resolve_defaults(cfg(train={"device": "cpu"}), Hardware(gpus=(A100_80GB,)))
    assert out.train.device == "cpu" and out.train.precision == "fp32"


def test_gemma2_gets_eager_attention():
    out, notes = resolve_defaults(RunConfig(model={"name_or_path": "google/gemma-2-9b"},
                                            dataset={"path": "d.jsonl"}), Hardware(gpus=(A100_80GB,)))
    assert out.model.attn_implementation == "eager" and any("Gemma 2" in n for n in notes)


def test_gradient_checkpointing_only_when_needed():
    small = RunConfig(model={"name_or_path": "Qwen/Qwen2.5-0.5B-Instruct"}, dataset={"path": "d.jsonl"})
    out, notes = resolve_defaults(small, Hardware(gpus=(A100_80GB,)))
    assert out.train.gradient_checkpointing is False and any("fits without it" in n for n in notes)
    big = RunConfig(model={"name_or_path": "meta-llama/Llama-3.1-8B-Instruct"}, dataset={"path": "d.jsonl"},
                    train={"max_length": 4096})
    out, notes = resolve_defaults(big, Hardware(gpus=(T4_16GB,)))
    assert out.train.gradient_checkpointing is True and any("without it the run needs" in n for n in notes)
    unknown = RunConfig(model={"name_or_path": "someone/unknown-model"}, dataset={"path": "d.jsonl"})
    assert resolve_defaults(unknown, Hardware(gpus=(A100_80GB,)))[0].train.gradient_checkpointing is True
    assert resolve_defaults(unknown, Hardware())[0].train.gradient_checkpointing is False  # CPU


def test_the_estimator_counts_the_optimizer_a_run_gets():
    """A config that leaves train.optim null is estimated with the optimizer resolve_defaults writes into
    the run (the Method step's bars and the run must not disagree about 8-bit states or fused AdamW)."""
    from ftwizard.core.catalog import CATALOG
    from ftwizard.core.estimate import estimate, settings_from_config

    for method in ("full", "lora", "qlora"):
        c = cfg(method=method, model={"name_or_path": "meta-llama/Llama-3.1-8B"})
        resolved, _ = resolve_defaults(c.model_copy(deep=True), Hardware(gpus=(A100_80GB,)))
        before = estimate(CATALOG["llama-3.1-8b"], settings_from_config(c))
        after = estimate(CATALOG["llama-3.1-8b"], settings_from_config(resolved))
        key = f"optimizer states ({resolved.train.optim})"
        assert key in before.breakdown, method
        assert before.breakdown[key] == after.breakdown[key]


def test_resolved_config_leaves_nothing_for_the_trainer_to_decide():
    """The training process refuses a config.yaml with anything `auto`/null it would have to resolve."""
    raw = cfg()
    assert {k for k, _ in unresolved_keys(raw)} == {
        "train.device", "train.precision", "model.attn_implementation", "train.packing",
        "train.use_liger_kernel", "train.gradient_checkpointing", "train.optim",
        "distributed.strategy", "distributed.nproc_per_node"}
    for hw in (Hardware(cpu_count=2), Hardware(gpus=(A100_80GB,)), Hardware(gpus=(T4_16GB,))):
        assert unresolved_keys(resolve_defaults(raw, hw)[0]) == []
        assert resolve_defaults(raw, hw)[0].train.micro_batch_size is not None  # written, though not required
    unsloth = resolve_defaults(cfg(model={"backend": "unsloth"}), Hardware(gpus=(A100_80GB,)))[0]
    assert unsloth.model.attn_implementation == "auto" and unresolved_keys(unsloth) == []  # Unsloth's kernels


def test_explicit_bf16_on_a_cpu_is_kept():
    out, notes = resolve_defaults(cfg(train={"precision": "bf16"}), Hardware(cpu_count=2))
    assert (out.train.device, out.train.precision) == ("cpu", "bf16")
    assert not any(n.startswith("precision") for n in notes)


@pytest.mark.parametrize("kw, hw, key", [
    ({"train": {"precision": "fp16"}}, Hardware(cpu_count=2), "train.precision"),
    ({"train": {"precision": "fp16", "device": "cpu"}}, Hardware(gpus=(A100_80GB,)), "train.precision"),
    ({"train": {"precision": "bf16"}}, Hardware(gpus=(T4_16GB,)), "train.precision"),
    ({"train": {"use_liger_kernel": True}}, Hardware(cpu_count=2), "train.use_liger_kernel"),
    ({"model": {"backend": "unsloth"}}, Hardware(cpu_count=2), "model.backend"),
])
def test_settings_this_machine_cannot_honour_are_refused(kw, hw, key):
    with pytest.raises(UserError) as exc:
        resolve_defaults(cfg(**kw), hw)
    assert [p.field for p in exc.value.problems] == [key]
