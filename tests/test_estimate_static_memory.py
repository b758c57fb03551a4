"""The estimator's static memory (weights + gradients + optimizer states) against real tensors.

Small Llama models are built on CPU from a config (no hub), set up exactly as core/trainer.py does
for full, LoRA and QLoRA (bitsandbytes 4-bit works on CPU), trained for one real optimizer step, and
then every tensor they hold is counted: parameters (4-bit data and quantization constants included),
gradients and optimizer state. Each count must be within 2% of the estimator's term.
"""

from __future__ import annotations

import weakref

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from ftwizard.core.catalog import arch_from_config  # noqa: E402
from ftwizard.core.estimate import GIB, Settings, estimate  # noqa: E402

SMALL = dict(hidden_size=512, num_hidden_layers=3, num_attention_heads=8, num_key_value_heads=4,
             intermediate_size=1376, vocab_size=1024, tie_word_embeddings=False)
TINY_TIED = dict(hidden_size=256, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                 intermediate_size=704, vocab_size=768, tie_word_embeddings=True)


def _config(spec):
    from transformers import LlamaConfig

    return LlamaConfig(max_position_embeddings=256, **spec)


def _bytes(tensors) -> int:
    """Bytes of distinct storages among `tensors` (shared ones count once)."""
    seen, total = set(), 0
    for t in tensors:
        if t is None or not isinstance(t, torch.Tensor):
            continue
        key = (t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())
        if key in seen:
            continue
        seen.add(key)
        total += t.untyped_storage().nbytes()
    return total


def _quant_state_tensors(model):
    out = []
    for p in model.parameters():
        qs = getattr(p, "quant_state", None)
        if qs is None:
            continue
        out += [qs.absmax, qs.code]
        if getattr(qs, "offset", None) is not None:
            out.append(qs.offset)
        if getattr(qs, "state2", None) is not None:
            out += [qs.state2.absmax, qs.state2.code]
    return out


def _one_step(model, optim_name: str):
    params = [p for p in model.parameters() if p.requires_grad]
    if optim_name == "adamw_torch":
        opt = torch.optim.AdamW(params, lr=1e-4)
    else:
        import bitsandbytes as bnb

        opt = bnb.optim.AdamW8bit(params, lr=1e-4)
    ids = torch.randint(0, model.config.vocab_size, (2, 16))
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    return opt


def _measure(model, opt) -> dict[str, int]:
    params = list(model.parameters())
    state = [v for st in opt.state.values() for v in st.values() if isinstance(v, torch.Tensor)]
    return {
        "params": _bytes(params) + _bytes(_quant_state_tensors(model)),
        "grads": _bytes([p.grad for p in params if p.grad is not None]),
        "optim": _bytes(state),
    }


def _static(est) -> dict[str, float]:
    st = est.static_gib
    return {"params": (st["weights"] + st["adapters"]) * GIB, "grads": st["gradients"] * GIB,
            "optim": st["optimizer"] * GIB}


def _check(measured, estimated, tol=0.02):
    print(" ".join(f"{k} {100 * (estimated[k] - measured[k]) / measured[k]:+.2f}%" for k in ("params", "grads", "optim")))
    for k in ("params", "grads", "optim"):
        m, e = measured[k], estimated[k]
        assert m > 0, k
        assert abs(e - m) / m <= tol, f"{k}: estimated {e:,.0f} B vs measured {m:,.0f} B ({100 * (e - m) / m:+.2f}%)"


@pytest.mark.parametrize("spec", [SMALL, TINY_TIED], ids=["small-untied", "tiny-tied"])
def test_full_fp32_adamw(spec):
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(_config(spec)).to(torch.float32)  # full: fp32 weights (trainer.py)
    arch = arch_from_config(model.config.to_dict(), "small")
    assert arch.params == sum(p.numel() for p in model.parameters())
    opt = _one_step(model, "adamw_torch")
    est = estimate(arch, Settings(method="full", optim="adamw_torch", seq_len=16, batch_size=2))
    _check(_measure(model, opt), _static(est))


@pytest.mark.parametrize("optim", ["adamw_torch", "adamw_8bit"])
@pytest.mark.parametrize("targets", ["all-linear", ["q_proj", "v_proj"]], ids=["all-linear", "qv"])
def test_lora_bf16(optim, targets):
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(_config(SMALL)).to(torch.bfloat16)  # lora: 16-bit base (trainer.py)
    arch = arch_from_config(model.config.to_dict(), "small")
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, target_modules=targets,
                                             task_type="CAUSAL_LM", bias="none"))
    opt = _one_step(model, optim)
    est = estimate(arch, Settings(method="lora", lora_rank=8, lora_targets=targets, optim=optim,
                                  seq_len=16, batch_size=2))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == est.trainable_params
    _check(_measure(model, opt), _static(est))


def _qlora(model, path, *, upcast: bool, gc: bool, double_quant: bool = True, attn: str = "sdpa"):
    """`model` saved and loaded back in 4-bit, then readied for adapters as core/trainer.py does
    (prepare_kbit: peft's fp32 upcast when `upcast`), checkpointing switched on as the Trainer does."""
    pytest.importorskip("bitsandbytes")
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    from ftwizard.core.recipes.common import prepare_kbit

    model.save_pretrained(path)
    q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=double_quant,
                           bnb_4bit_compute_dtype=torch.bfloat16, bnb_4bit_quant_storage=torch.bfloat16)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16, quantization_config=q,
                                                 attn_implementation=attn)
    model = prepare_kbit(model, upcast)
    if gc:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model


@pytest.mark.parametrize("double_quant,upcast", [(True, False), (False, False), (True, True)],
                         ids=["double-quant", "no-double-quant", "upcast-fp32"])
def test_qlora_nf4(tmp_path, double_quant, upcast):
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    model = _qlora(LlamaForCausalLM(_config(SMALL)), tmp_path, upcast=upcast, gc=True, double_quant=double_quant)
    arch = arch_from_config(model.config.to_dict(), "small")
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear",
                                             task_type="CAUSAL_LM", bias="none"))
    n4 = sum(1 for p in model.parameters() if p.__class__.__name__ == "Params4bit")
    assert n4 == arch.layers * 7, "every decoder linear is 4-bit"
    opt = _one_step(model, "adamw_torch")
    est = estimate(arch, Settings(method="qlora", lora_rank=8, double_quant=double_quant, upcast_fp32=upcast,
                                  optim="adamw_torch", seq_len=16, batch_size=2))
    _check(_measure(model, opt), _static(est))


# ------------------------------------------------------------------------------------ activations


def _saved_bytes_per_token(layer, hidden, pos, pe, params) -> dict[int, int]:
    """Bytes of the distinct storages autograd holds for the layer's backward once its forward is done.

    Only tensors still saved at the end count: a sub-graph built and dropped inside the forward (DoRA's
    weight norm is computed with grad, then detached) frees its memory, and the allocator hands those
    addresses to later tensors; keyed by address alone, a freed storage and a live one could collide
    and the count would depend on where malloc put things (seen: DoRA 10.5% under, once in CI)."""
    saved: list[weakref.ref] = []

    def pack(t):
        saved.append(weakref.ref(t))
        return t

    with torch.autocast("cpu", dtype=torch.bfloat16), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = layer(hidden, attention_mask=None, position_ids=pos, position_embeddings=pe)
    seen: dict[int, int] = {}
    for ref in saved:
        t = ref()
        if t is None:
            continue
        st = t.untyped_storage()
        if st.data_ptr() not in params:
            seen[st.data_ptr()] = st.nbytes()
    del out
    return seen


@pytest.mark.parametrize("method,attn", [("lora", "sdpa"), ("full", "sdpa"), ("lora", "eager"), ("full", "eager"),
                                         ("qlora", "sdpa"), ("qlora-upcast", "sdpa"), ("dora", "sdpa")])
def test_activation_bytes_per_layer_on_cpu(tmp_path, method, attn):
    """What autograd saves for one decoder layer under bf16 autocast, per token (the slope between two
    sequence lengths, so weight-sized casts cancel), against the estimator's itemized layer.

    CPU differs from CUDA in one known way: its dropout keeps a float32 mask (CUDA: bool), so the
    estimator is asked for 4-byte masks here."""
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    cfg = _config(SMALL)
    cfg._attn_implementation = attn
    model = LlamaForCausalLM(cfg)
    arch = arch_from_config(cfg.to_dict(), "small")
    lc = LoraConfig(r=16, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM",
                    use_dora=method == "dora")
    if method in ("lora", "dora"):
        model = get_peft_model(model.to(torch.bfloat16), lc)
        inner = model.get_base_model()
    elif method.startswith("qlora"):
        model = get_peft_model(_qlora(model, tmp_path, upcast=method == "qlora-upcast", gc=False, attn=attn), lc)
        inner = model.get_base_model()
    else:
        inner = model.float()
    model.train()
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    layer = inner.model.layers[0]
    layer.self_attn.config._attn_implementation = attn

    def total(S, B=2):
        ids = torch.randint(0, cfg.vocab_size, (B, S))
        h = inner.model.embed_tokens(ids).detach().requires_grad_(True)  # fp32 for full and upcast qlora
        pos = torch.arange(S)[None].expand(B, S)
        return sum(_saved_bytes_per_token(layer, h, pos, inner.model.rotary_emb(h, pos), params).values())

    from ftwizard.core.estimate import _activation_bytes_per_token_layer

    S1, S2, B = 128, 256, 2
    measured = (total(S2) - total(S1)) / (B * (S2 - S1))
    s = Settings(method={"dora": "lora", "qlora-upcast": "qlora"}.get(method, method), attn=attn, lora_rank=16,
                 use_dora=method == "dora", upcast_fp32=method == "qlora-upcast")
    # eager's softmax scores grow with s: compare at the mean length of the two runs' difference
    if attn == "eager":
        e1 = _activation_bytes_per_token_layer(arch, s, S1, mask_bytes=4)[0] * S1
        e2 = _activation_bytes_per_token_layer(arch, s, S2, mask_bytes=4)[0] * S2
        estimated = (e2 - e1) / (S2 - S1)
    else:
        estimated = _activation_bytes_per_token_layer(arch, s, S2, mask_bytes=4)[0]
    print(f"{method} {attn}: measured {measured:,.0f} B/token/layer, estimated {estimated:,.0f}")
    assert abs(estimated - measured) / measured <= 0.03, (measured, estimated)


# -------------------------------------------------------------------------- whole-step peak on CPU


@pytest.mark.parametrize("method,gc,batch,seq,optim", [
    ("lora", True, 2, 256, "adamw_torch_fused"), ("qlora", True, 2, 256, "adamw_torch_fused"),
    ("qlora-upcast", True, 2, 256, "adamw_torch_fused"),
    ("full", False, 1, 64, "adamw_torch_fused"), ("full", False, 1, 64, "adamw_torch"),
    ("gemma2-lora", False, 2, 256, "adamw_torch_fused")])
def test_whole_step_peak_on_cpu(tmp_path, method, gc, batch, seq, optim):
    """Peak tensor memory of a whole training step (forward under bf16 autocast, loss, backward,
    AdamW step: fused, the default, or foreach with its temporaries; zero_grad) tracked by torch's
    MemTracker (a TorchDispatchMode that follows every storage), on the second step so optimizer
    states exist. Compared with the estimator's total minus
    what only a GPU has (CUDA context, allocator slack), with CPU's float32 dropout masks. Vocabulary
    8k so the logits term matters as it does for real models."""
    from peft import LoraConfig, get_peft_model
    from torch.distributed._tools.mem_tracker import MemTracker
    from transformers import LlamaForCausalLM

    class Tracker(MemTracker):  # frozen parameters cannot take gradient hooks
        def _track_module_params_and_buffers(self, module, install_grad_hooks=True):
            return super()._track_module_params_and_buffers(module, install_grad_hooks=False)

    spec = dict(SMALL, num_hidden_layers=2, vocab_size=8192)
    torch.manual_seed(0)
    if method == "gemma2-lora":  # four norms, GELU, soft-capped logits, eager attention only
        from transformers import Gemma2Config, Gemma2ForCausalLM

        cfg = Gemma2Config(hidden_size=256, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                           head_dim=64, intermediate_size=704, vocab_size=8192, max_position_embeddings=512)
        cfg._attn_implementation = "eager"
        model = Gemma2ForCausalLM(cfg)
        method = "lora"
    else:
        cfg = _config(spec)
        cfg._attn_implementation = "sdpa"
        model = LlamaForCausalLM(cfg)
    arch = arch_from_config(cfg.to_dict(), "e2e")
    lc = LoraConfig(r=16, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM")
    upcast = method == "qlora-upcast"
    if method.startswith("qlora"):
        model = get_peft_model(_qlora(model, tmp_path, upcast=upcast, gc=gc), lc)
        method = "qlora"
    elif method == "lora":
        model = get_peft_model(model.to(torch.bfloat16), lc)
        if gc:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    else:
        model = model.float()
    if method != "full":
        model.enable_input_require_grads()
    model.config.use_cache = False
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4,
                            **({"fused": True} if optim == "adamw_torch_fused" else {"foreach": True}))
    ids = torch.randint(0, cfg.vocab_size, (batch, seq))

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()
    mt = Tracker()
    mt.track_external(model, opt)
    with mt:
        step()
    peak = max(snap["Total"] for snap in mt.get_tracker_snapshot("peak").values())
    est = estimate(arch, Settings(method=method, batch_size=batch, seq_len=seq, lora_rank=16, upcast_fp32=upcast,
                                  gradient_checkpointing=gc, dropout_mask_bytes=4, optim=optim))
    ours = (est.total_gib - est.breakdown["CUDA context"] - est.breakdown["allocator slack"]) * GIB
    print(f"{method}{' upcast' if upcast else ''} {optim} gc={gc} b{batch} s{seq}: measured {peak / 2**20:.1f} MiB, estimated {ours / 2**20:.1f} MiB "
          f"({100 * (ours - peak) / peak:+.1f}%), peak at {est.peak_phase}")
    assert abs(ours - peak) / peak <= 0.03


# ------------------------------------------------------------------------------ mixture of experts

# Qwen3-30B-A3B's config.json scaled down (128 experts -> 16, 8 routed -> 4, hidden 2048 -> 256, 48
# layers -> 2; QK-norm, head_dim, untied embeddings as the real one) and gpt-oss-20b's (32 experts,
# 4 routed, biases, sinks) the same way. transformers 5 keeps the experts as fused 3D parameters.
QWEN3_MOE_SMALL = dict(hidden_size=256, num_hidden_layers=2, num_attention_heads=8, num_key_value_heads=2,
                       head_dim=32, intermediate_size=768, moe_intermediate_size=96, num_experts=16,
                       num_experts_per_tok=4, vocab_size=1024, tie_word_embeddings=False,
                       max_position_embeddings=512)
GPT_OSS_SMALL = dict(hidden_size=192, num_hidden_layers=2, num_attention_heads=8, num_key_value_heads=2,
                     head_dim=32, intermediate_size=96, num_local_experts=8, num_experts_per_tok=4,
                     vocab_size=1024, tie_word_embeddings=False, max_position_embeddings=512)


def _moe_model(kind):
    if kind == "qwen3_moe":
        from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM

        cfg = Qwen3MoeConfig(**QWEN3_MOE_SMALL)
        return cfg, Qwen3MoeForCausalLM(cfg)
    from transformers import GptOssConfig, GptOssForCausalLM

    cfg = GptOssConfig(**GPT_OSS_SMALL)
    return cfg, GptOssForCausalLM(cfg)


@pytest.mark.parametrize("kind", ["qwen3_moe", "gpt_oss"])
@pytest.mark.parametrize("method", ["full", "lora", "qlora"])
def test_moe_static_bytes(tmp_path, kind, method):
    """Every expert stored, LoRA on the experts (Qwen3-MoE) or not (gpt-oss), NF4 only on nn.Linear."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    cfg, model = _moe_model(kind)
    arch = arch_from_config(cfg.to_dict(), "moe")
    assert arch.moe and arch.params == sum(p.numel() for p in model.parameters())
    lc = LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM", bias="none")
    if method == "full":
        model = model.float()
    elif method == "lora":
        model = get_peft_model(model.to(torch.bfloat16), lc)
    else:
        attn = "eager" if kind == "gpt_oss" else "sdpa"  # transformers has no SDPA path for gpt-oss (sinks)
        model = get_peft_model(_qlora(model, tmp_path, upcast=False, gc=True, attn=attn), lc)
        n4 = sum(1 for p in model.parameters() if p.__class__.__name__ == "Params4bit")
        assert n4 == arch.layers * 4, "only attention's nn.Linear is 4-bit; the fused experts stay bf16"
    opt = _one_step(model, "adamw_torch")
    est = estimate(arch, Settings(method=method, lora_rank=8, optim="adamw_torch", seq_len=16, batch_size=2))
    if method != "full":
        assert sum(p.numel() for p in model.parameters() if p.requires_grad) == est.trainable_params
    _check(_measure(model, opt), _static(est))


def test_moe_activation_bytes_per_layer_on_cpu():
    """Per token per layer, what autograd saves in a Qwen3-MoE layer with LoRA on all linears and on the
    fused experts (peft's all-linear), bf16 autocast: the slope between two lengths, as for dense layers."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    cfg, model = _moe_model("qwen3_moe")
    cfg._attn_implementation = "sdpa"
    # peft's ParamWrapper (LoRA on fused experts) refuses lora_dropout != 0
    lc = LoraConfig(r=8, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
    model = get_peft_model(model.to(torch.bfloat16), lc).train()
    inner = model.get_base_model()
    arch = arch_from_config(cfg.to_dict(), "moe")
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    layer = inner.model.layers[0]

    def total(S, B=2):
        ids = torch.randint(0, cfg.vocab_size, (B, S))
        h = inner.model.embed_tokens(ids).detach().requires_grad_(True)
        pos = torch.arange(S)[None].expand(B, S)
        return sum(_saved_bytes_per_token(layer, h, pos, inner.model.rotary_emb(h, pos), params).values())

    from ftwizard.core.estimate import _activation_bytes_per_token_layer

    S1, S2, B = 128, 256, 2
    measured = (total(S2) - total(S1)) / (B * (S2 - S1))
    estimated = _activation_bytes_per_token_layer(arch, Settings(method="lora", lora_rank=8, lora_dropout=0.0), S2,
                                                  mask_bytes=4)[0]
    print(f"qwen3-moe lora sdpa: measured {measured:,.0f} B/token/layer, estimated {estimated:,.0f} "
          f"({100 * (estimated - measured) / measured:+.1f}%)")
    assert abs(estimated - measured) / measured <= 0.03, (measured, estimated)
