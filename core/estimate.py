"""Peak training memory per GPU for ftwizard's own stack (transformers + peft + trl + bitsandbytes).

Pure arithmetic on the architecture numbers (`catalog.ModelArch`) and the run settings; no ML library
is imported. Every term follows what our stack actually allocates (see docs/estimator.md):

* weights: `full` loads fp32 weights and trains under bf16 autocast (core/trainer.py), so weights are
  4 B/param; `lora` keeps the base in bf16 (2 B/param); `qlora` stores the decoder's linear layers in
  NF4 (0.5 B/param plus the quantization constants: fp32 absmax per 64-block, or with double quant an
  8-bit absmax plus an fp32 one per 256 blocks) and everything else (embeddings, lm_head, norms) in
  the compute dtype, as LoRA keeps them; with `quantization.upcast_fp32` in fp32, because peft's
  `prepare_model_for_kbit_training` upcasts every non-4-bit parameter.
* LoRA adapters: r·(d_in + d_out) per adapted matrix per layer, kept in fp32 by peft
  (`autocast_adapter_dtype`); DoRA adds one magnitude vector of d_out per matrix.
* gradients: one per trainable parameter in its dtype (fp32 here). The Trainer frees them after every
  optimizer step (`zero_grad(set_to_none=True)`), so they are absent at the loss peak unless gradients
  are accumulated over micro-batches.
* optimizer: AdamW 8 B per trainable parameter (exp_avg + exp_avg_sq in fp32), bitsandbytes 8-bit
  AdamW ~2 B (+ an fp32 absmax per 256-block; tensors under 4,096 elements stay 32-bit), paged variants
  the same bytes (they may be evicted to host memory under pressure, which we do not count on),
  Adafactor factored rows + columns, SGD none. torch's foreach AdamW also holds one fp32 temporary as
  big as the trainable parameters during `step()`.
* activations: what autograd saves per token per layer, itemized for HF's Llama-style layer under
  autocast (RMSNorm upcasts to fp32; SDPA / flash attention keep O(s) memory, eager keeps the
  softmax's heads·s² scores); with gradient checkpointing only each layer's input is kept plus one
  layer recomputed during backward.
* logits and loss: HF's loss upcasts the logits to fp32 and log-softmaxes them; at the start of
  backward the fp32 log-probs, their gradient and the incoming gradient are alive together: 12 bytes
  per vocabulary entry per token (128k and 152k vocabularies make this the largest dynamic term).
* autocast weight copies: an fp32 weight used under bf16 autocast is saved for backward as a bf16 copy
  (QLoRA's lm_head when upcast by peft; every linear in full fine-tuning without checkpointing).
* CUDA context and allocator slack.

The peak is the largest of four moments of a step: end of forward, start of backward (loss gradient),
backward through a layer, optimizer step. tests/test_estimate_static_memory.py measures these terms on
CPU with real models (static bytes exact, activations per layer and a whole step's peak within ~2%).

Training kinds (`Settings.kind`, KIND_MEMORY): DPO/ORPO/SimPO run chosen and rejected in one batch
(2x the sequences); DPO/KTO/GRPO use TRL's fused LM head (tiles, no full logits); DPO/KTO run the
reference forward after the policy's (a full fine-tune holds a frozen copy of the weights); GRPO
generates batch x accumulation completions with a KV cache first, and has a reference only when
beta > 0. tests/test_estimate_kinds.py.

Several GPUs (`Settings.gpus`, `strategy`, `offload`): the figure is per device. DDP: everything whole
plus a gradient-sized bucket buffer; FSDP2 full shard: weights, gradients and optimizer states 1/N, the
root unit and the next layer all-gathered; DeepSpeed ZeRO-2: gradients and optimizer states 1/N under
its bf16 engine (2 + 6 + 12 bytes per trainable parameter, as DeepSpeed's own estimators count), ZeRO-3
also the weights, each module gathered as it runs; offload (fsdp/zero3) moves the three to CPU RAM
(`Estimate.offload_ram_gib`, checked against free RAM by check_fits). Activations stay per GPU.
tests/test_estimate_distributed.py checks FSDP2's shards on CPU and DeepSpeed's formulas.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Literal, get_args

from .catalog import ModelArch, display_name
from .config import Method, ModelConfig, Optim, Strategy, TrainingKind

if TYPE_CHECKING:  # pragma: no cover
    from .config import RunConfig

GIB = 1024 ** 3

# Calibrated constants (docs/estimator.md explains each one).
CUDA_CONTEXT_GIB = 0.9   # CUDA context + cuBLAS/cuDNN workspaces outside torch's allocator
ALLOCATOR_SLACK = 0.08   # reserved vs allocated: fragmentation of torch's caching allocator
# CPU runs (no GPU): the trainer's peak RSS. Calibrated on real runs (tests/benchmarks/cpu_rss.py; the
# measurements are CPU_RSS_RUNS below): the interpreter with torch, transformers, peft, trl and
# bitsandbytes imported, and glibc's allocator keeping freed blocks of the dynamic memory.
CPU_PROCESS_GIB = 0.58   # the tiny model's whole run peaks at 0.59-0.61 GiB (0.51 in an older venv): the floor
CPU_LOAD_BYTES = 4.0     # per parameter: loading (16-bit checkpoint cast to fp32) leaves a weights-sized
                         # block in RSS (freed to glibc, not to the OS)
CPU_RSS_SLACK = 0.15     # of the dynamic memory: glibc keeps freed activation blocks
CPU_TOLERANCE = 0.15     # stated tolerance of the CPU figure against measured peak RSS
# A run whose measured peak exceeds its launch estimate by more than this says so in its events
# (`estimate-exceeded`): the CPU figure's stated tolerance, used for GPUs too until measured there.
ESTIMATE_TOLERANCE = CPU_TOLERANCE
# (label, model, seq_len, batch, measured peak RSS GiB, where). LoRA r16 all-linear, fp32, no checkpointing,
# fused AdamW, rows at least max_length long; 2 cores shared with other jobs, torch 2.13 CPU.
CPU_RSS_RUNS = [
    ("tiny Llama (hidden 64, 2 layers) b4 s256", "tiny", 256, 4, 0.61, "tests/benchmarks/cpu_rss.py tiny, 2026-12-01"),
    ("SmolLM2-135M b4 s256", "smollm2-135m", 256, 4, 4.67, "tests/benchmarks/cpu_rss.py (ru_maxrss)"),
    ("SmolLM2-135M b4 s512", "smollm2-135m", 512, 4, 8.12, "tests/benchmarks/cpu_rss.py (ru_maxrss); not "
     "used to set the constants: the independent check"),
    ("SmolLM2-135M b4 s1024", "smollm2-135m", 1024, 4, 13.4e9 / GIB, "ENV-NOTES.md (issue 16)"),
]
LORA_DROPOUT_DEFAULT = 0.05
FITS, TIGHT, NO_FIT = "fits", "tight", "does-not-fit"

OPTIMIZERS = get_args(Optim)  # the allowed values are the config's (core/config.py)
KINDS = get_args(TrainingKind)
STRATEGIES = tuple(x for x in get_args(Strategy) if x != "auto")   # none, ddp, fsdp, zero2, zero3
OFFLOADS = ("none", "cpu", "nvme")


@dataclass(frozen=True)
class KindMemory:
    """What a training kind's TRL trainer holds beyond SFT's step (read from TRL 1.16's trainers).

    rows: sequences per batch row that run the forward with gradients (DPOTrainer, ORPO's and CPO's
      `concatenated_forward` put chosen and rejected in one batch: 2).
    fused_head: the trainer calls the model with TRL's fused LM head (`add_fused_lm_head`,
      `fused_lm_head=True`): per-token log-probs from [4,096 x 32,768] tiles, no [tokens x vocab]
      logits (DPOTrainer, KTOTrainer, GRPOTrainer). ORPO/CPO (trl.experimental) and our SFT loss
      (Trainer.compute_loss, core/speed.py) materialize the logits.
    reference: the reference log-probs: "none" (ORPO, SimPO, SFT, CPT), "always" (DPO, KTO: a no-grad
      forward after the policy's, its activations still held), "beta" (GRPO: only when beta > 0, a
      no-grad forward of the completions before the policy's). With LoRA/QLoRA the reference is the base
      with the adapter disabled (no copy); a full fine-tune holds a frozen copy of the weights
      (core/recipes/preference.reference_copy; GRPOTrainer loads one in the model's dtype).
    ref_rows: sequences per batch row of the largest no-grad forward (DPO: chosen + rejected; KTO: its
      completions, then the mismatched KL completions, one forward each).
    generation: completions sampled with the model's KV cache before the step (GRPO).
    """

    rows: int = 1
    fused_head: bool = False
    reference: Literal["none", "always", "beta"] = "none"
    ref_rows: int = 0
    generation: bool = False


KIND_MEMORY = {
    "sft": KindMemory(), "cpt": KindMemory(),   # CPT: SFT's step on blocks of max_length tokens
    "dpo": KindMemory(rows=2, fused_head=True, reference="always", ref_rows=2),
    "orpo": KindMemory(rows=2), "simpo": KindMemory(rows=2),
    "kto": KindMemory(rows=1, fused_head=True, reference="always", ref_rows=1),
    "grpo": KindMemory(rows=1, fused_head=True, reference="beta", ref_rows=1, generation=True),
}
assert set(KIND_MEMORY) == set(KINDS), "every training kind has its memory rule"
# TRL's fused LM head tiles (trl/kernels/chunked_logprob.py TOKEN_CHUNK_SIZE, trl/trainer/utils.py
# _CHUNKED_LOGPROB_CHUNK_SIZE)
FUSED_TOKENS, FUSED_VOCAB = 4096, 32768
# DeepSpeed communication buffers (Trainer fills reduce_bucket_size "auto" = hidden^2; our config leaves
# allgather_bucket_size at DeepSpeed's default 5e8 elements); overlap_comm: true uses 4.5x the bucket
# sizes (HF transformers DeepSpeed guide: "5e8 x 2Bytes x 2 x 4.5 = 9GB")
DS_ALLGATHER_BUCKET = 5e8
DS_OVERLAP_FACTOR = 4.5
ATTN = tuple(a for a in get_args(ModelConfig.model_fields["attn_implementation"].annotation) if a != "auto")
METHODS = get_args(Method)


def default_optim(method: str) -> tuple[str, str]:
    """The optimizer a run gets when its config leaves `train.optim` null, and why. The one place this
    is decided: core/defaults.py writes it into the run's config, the estimator counts it."""
    if method == "qlora":
        return "adamw_8bit", "QLoRA: 8-bit optimizer states"
    # torch >= 2.4 has the fused kernel for CUDA and CPU; the Trainer's own default since 2.8
    return "adamw_torch_fused", "fused AdamW: one kernel for all tensors, not a Python loop"

# peft target names in other families -> the Llama-style names used by ModelArch.linear_shapes
_TARGET_ALIASES = {
    "c_attn": ("q_proj", "k_proj", "v_proj"), "w1": ("gate_proj",), "w2": ("up_proj",),
    "qkv_proj": ("q_proj", "k_proj", "v_proj", "qkv_proj"), "gate_up_proj": ("gate_proj", "up_proj", "gate_up_proj"),
    "q": ("q_proj",), "k": ("k_proj",), "v": ("v_proj",), "o": ("o_proj",),
    "gate": ("gate_proj",), "up": ("up_proj",), "down": ("down_proj",),
}


@dataclass
class Settings:
    """Run settings the memory depends on. Defaults follow ftwizard's config defaults on a GPU."""

    method: Literal["full", "lora", "qlora"] = "lora"
    seq_len: int = 1024
    batch_size: int = 4
    lora_rank: int = 16
    lora_targets: str | list[str] = "all-linear"
    lora_dropout: float = LORA_DROPOUT_DEFAULT
    use_dora: bool = False
    gradient_checkpointing: bool = True
    optim: str | None = None      # None: the method's default (default_optim), as a run would get
    precision: Literal["bf16", "fp16", "fp32"] = "bf16"
    attn: Literal["sdpa", "flash_attention_2", "eager"] = "sdpa"
    gpus: int = 1
    double_quant: bool = True
    upcast_fp32: bool = False     # qlora: embeddings, lm_head, norms in fp32 (peft's prepare_model_for_kbit_training)
    extra_metrics: bool = False   # TRL's per-step entropy / token accuracy over the logits
    dropout_mask_bytes: int = 1   # bool mask on CUDA; CPU's dropout keeps a float32 mask (4)
    grad_accum: int = 1           # gradients stay allocated across micro-batches when > 1
    cuda_context_gib: float = CUDA_CONTEXT_GIB
    device: Literal["cuda", "cpu"] = "cuda"   # cpu: fp32, no CUDA context, the process's RSS (see CPU_*)
    kind: str = "sft"             # training kind (KIND_MEMORY)
    beta: float = 0.0             # grpo.beta: > 0 adds the reference log-probs (and a full fine-tune's copy)
    num_generations: int = 4      # grpo.num_generations (the group; batch_size counts completions)
    max_completion_length: int = 128  # grpo.max_completion_length (prompt budget = seq_len - this)
    strategy: str = "ddp"         # with gpus > 1: ddp | fsdp | zero2 | zero3 (none = one process)
    offload: str = "none"         # fsdp/zero3: cpu (zero3 also nvme) moves parameters, gradients and
                                  # optimizer states off the GPU

    def check(self) -> None:
        from .errors import UserError

        if self.method not in METHODS:
            raise UserError(f"unknown method '{self.method}' (allowed: {', '.join(METHODS)})", field="method")
        if self.optim is not None and self.optim not in OPTIMIZERS:
            raise UserError(f"unknown optimizer '{self.optim}' (allowed: {', '.join(OPTIMIZERS)})", field="optim")
        if self.attn not in ATTN:
            raise UserError(f"unknown attention '{self.attn}' (allowed: {', '.join(ATTN)})", field="attn")
        if self.device not in ("cuda", "cpu"):
            raise UserError(f"unknown device '{self.device}' (allowed: cuda, cpu)", field="device")
        for name in ("seq_len", "batch_size", "lora_rank", "gpus", "grad_accum", "num_generations",
                     "max_completion_length"):
            if int(getattr(self, name)) < 1:
                raise UserError(f"must be at least 1, got {getattr(self, name)}", field=name.replace("_", "-"))
        if self.kind not in KINDS:
            raise UserError(f"unknown training kind '{self.kind}' (allowed: {', '.join(KINDS)})", field="kind")
        if self.strategy not in STRATEGIES:
            raise UserError(f"unknown strategy '{self.strategy}' (allowed: {', '.join(STRATEGIES)})", field="strategy")
        if self.offload not in OFFLOADS:
            raise UserError(f"unknown offload '{self.offload}' (allowed: {', '.join(OFFLOADS)})", field="offload")
        if self.beta < 0:
            raise UserError(f"must be 0 or more, got {self.beta}", field="beta")



@dataclass
class Estimate:
    total_gib: float
    breakdown: dict[str, float]          # GiB per term, in display order
    assumptions: list[str]
    trainable_params: int = 0
    settings: Settings | None = field(default=None, repr=False)
    peak_phase: str = ""                 # which moment of the step is the peak
    static_gib: dict[str, float] = field(default_factory=dict)  # weights, adapters, gradients, optimizer
    offload_ram_gib: float = 0.0         # CPU RAM the offloaded states take on the machine (all its GPUs)
    # GiB per term at each moment of the step (g gradients, act activations, logit logits and loss, tmp
    # optimizer temporaries, ref no-grad forward, kv/gen generation, gath all-gathered parameters)
    moments: dict[str, dict[str, float]] = field(default_factory=dict, repr=False)

    def verdict(self, vram_gib: float) -> str:
        """`fits` up to 75% of the card, `tight` up to 100%, else `does-not-fit` (Unsloth's bands)."""
        if vram_gib <= 0:
            return NO_FIT
        frac = self.total_gib / vram_gib
        return FITS if frac <= 0.75 else TIGHT if frac <= 1.0 else NO_FIT

    def to_json(self, vram_gib: float | None = None) -> dict:
        out = {"total_gib": round(self.total_gib, 2),
               "breakdown": {k: round(v, 3) for k, v in self.breakdown.items()},
               "assumptions": list(self.assumptions),
               "trainable_params": self.trainable_params,
               "peak_phase": self.peak_phase}
        if vram_gib is not None:
            out["vram_gib"] = vram_gib
            out["verdict"] = self.verdict(vram_gib)
        return out


# ------------------------------------------------------------------------------------------ parts


def adapted_modules(arch: ModelArch, targets: str | list[str]) -> dict[str, tuple[int, int]]:
    """(d_in, d_out) of each linear layer per decoder layer that LoRA adapts."""
    shapes = arch.linear_shapes()
    if isinstance(targets, str):
        if targets == "all-linear":
            return dict(shapes)
        targets = [t.strip() for t in targets.split(",") if t.strip()]
    chosen: dict[str, tuple[int, int]] = {}
    for t in targets:
        names = (t,) + _TARGET_ALIASES.get(t, ()) + _TARGET_ALIASES.get(t.removesuffix("_proj"), ())
        hit = [n for n in names if n in shapes]
        if arch.family == "phi3" and not hit:
            if t in ("q_proj", "k_proj", "v_proj", "q", "k", "v"):
                hit = ["qkv_proj"]
            elif t in ("gate_proj", "up_proj", "gate", "up"):
                hit = ["gate_up_proj"]
        if not hit:
            from .errors import UserError

            raise UserError(f"'{t}' is not a linear layer of {display_name(arch)} (allowed: all-linear or "
                            f"{', '.join(shapes)})", field="lora-targets")
        chosen[hit[0]] = shapes[hit[0]]
    return chosen


def expert_lora_tensors(arch: ModelArch, rank: int, targets: str | list[str]) -> list[int]:
    """LoRA tensors peft 0.21 adds to one MoE layer's router and fused experts under all-linear
    (measured: gate_up_proj gets rank 2·r·E, down_proj r·E, the router a plain rank-r pair)."""
    if not (arch.moe and arch.lora_on_experts and targets == "all-linear"):
        return []
    h, e, i = arch.hidden, arch.experts, arch.expert_intermediate
    return [rank * h, arch.experts * rank, 2 * rank * e * h, 2 * i * 2 * rank * e, rank * e * i, h * rank * e]


def lora_params(arch: ModelArch, rank: int, targets: str | list[str] = "all-linear", dora: bool = False) -> int:
    """Trainable LoRA parameters: r·(d_in + d_out) per adapted matrix per layer (+ d_out for DoRA)."""
    mods = adapted_modules(arch, targets)
    per_layer = sum(rank * (i + o) + (o if dora else 0) for i, o in mods.values())
    return arch.layers * (per_layer + sum(expert_lora_tensors(arch, rank, targets)))


def nf4_bytes(n: int, double_quant: bool) -> float:
    """Bytes of n weights in bitsandbytes NF4 (blocksize 64): packed 4-bit data plus the constants."""
    blocks = n / 64
    if double_quant:  # 8-bit absmax per block, fp32 absmax + offset per 256 blocks
        consts = blocks * 1 + (blocks / 256) * 4
    else:
        consts = blocks * 4
    return n * 0.5 + consts


def trainable_tensors(arch: ModelArch, s: Settings) -> list[int]:
    """Element counts of every trainable tensor (the optimizer keeps state per tensor)."""
    if s.method == "full":
        per_layer = [x * y for x, y in arch.linear_shapes().values()] + [arch.hidden] * arch.norms_per_layer
        if arch.qkv_bias:
            per_layer += [arch.q_dim, arch.kv_dim, arch.kv_dim]
        if arch.qk_norm:
            per_layer += [arch.hd, arch.hd]
        if arch.moe:
            per_layer += [e * a * b for e, a, b in arch.expert_shapes().values()] + [arch.hidden * arch.experts]
        emb = [arch.vocab * arch.hidden] * (1 if arch.tied_embeddings else 2)
        return per_layer * arch.layers + emb + [arch.hidden]
    per_layer = []
    for d_in, d_out in adapted_modules(arch, s.lora_targets).values():
        per_layer += [s.lora_rank * d_in, d_out * s.lora_rank] + ([d_out] if s.use_dora else [])
    per_layer += expert_lora_tensors(arch, s.lora_rank, s.lora_targets)
    return per_layer * arch.layers


def optimizer_bytes(optim: str, tensors: list[int], shapes: list[tuple[int, int]] | None = None) -> float:
    """Optimizer state bytes for trainable tensors of these sizes (plus a 4-byte step counter each)."""
    n = sum(tensors)
    if optim in ("adamw_torch", "adamw_torch_fused", "paged_adamw_32bit"):
        return 8.0 * n + 4 * len(tensors)
    if optim in ("adamw_8bit", "paged_adamw_8bit"):
        # bitsandbytes: tensors under 4,096 elements keep 32-bit states; others 1 B per state plus an
        # fp32 absmax per 256-block (blockwise quantization)
        return sum(8.0 * t if t < 4096 else 2.0 * t + 2 * 4 * -(-t // 256) for t in tensors) + 4 * len(tensors)
    if optim == "adafactor":
        if shapes:
            return 4.0 * sum(a + b for a, b in shapes)
        return 0.05 * n
    return 0.0  # sgd without momentum


def _activation_bytes_per_token_layer(arch: ModelArch, s: Settings, seq: int, *,
                                      mask_bytes: int = 1) -> tuple[float, float, float]:
    """(saved activations of one layer, backward transient of one layer, checkpoint) in bytes per token.

    Itemized from what autograd keeps in HF's decoder layer under autocast; see docs/estimator.md.
    `mask_bytes`: a dropout mask element (bool on CUDA; CPU's dropout keeps a float32 mask, 4).
    """
    h, q, kv, i = arch.hidden, arch.q_dim, arch.kv_dim, arch.intermediate
    a = 4 if s.precision == "fp32" else 2                      # compute dtype
    r = 4 if (s.method == "full" or (s.method == "qlora" and s.upcast_fp32) or a == 4) else 2  # residual stream
    o = r if s.method == "qlora" else a                        # base linear output dtype
    full = s.method == "full"
    lora_mods = {} if full else adapted_modules(arch, s.lora_targets)
    norms = arch.norms_per_layer

    b = 0.0
    # RMSNorm: the fp32 input (or upcast copy) is saved; full FT also saves the normalized fp32 tensor
    # for the weight's gradient.
    b += norms * (4 * h + (4 * h if full else 0))
    if full:  # each linear saves an autocast copy of its input (autocast caches only weight casts)
        casts = lambda d_in, n: (n if r != a else 1) * a * d_in  # noqa: E731
        b += casts(h, 3) + a * q + casts(h, 2) + a * i   # q,k,v | o | gate,up | down
    # attention: q, k, v after RoPE in the compute dtype, the output, logsumexp
    b += a * (q + 2 * kv) + a * q + 4 * arch.heads
    if arch.qk_norm:  # Qwen3 / Gemma 3 RMSNorm q and k per head: the fp32 inputs are saved
        b += 4 * (q + kv)
    if s.attn == "eager":
        b += (4 + a) * arch.heads * seq                 # softmax output fp32 + its cast, per query row
        if arch.family == "gemma2":                      # soft-capping: tanh keeps its output
            b += a * arch.heads * seq
    if arch.moe:
        # router: fp32 softmax over the experts; each of the k routed copies of a token saves its gathered
        # input, the fused gate_up output, act(gate), their product (down's input) and down's output
        k, ie = arch.experts_per_tok, arch.expert_intermediate
        b += 4 * arch.experts + a * arch.experts + k * (2 * a * h + 4 * o * ie)
        if expert_lora_tensors(arch, s.lora_rank, s.lora_targets) and not full:
            b += a * h  # the router's LoRA branch saves its input
    else:
        # MLP: gate, up, act(gate) in the linear output dtype
        b += 3 * o * i
    # LoRA branches: dropout mask (1 B) + the compute-dtype copy lora_A saves, per adapted input
    drop = mask_bytes if s.lora_dropout > 0 else 0
    for d_in, d_out in lora_mods.values():
        b += (drop + a) * d_in
        if s.use_dora:  # DoRA keeps the base output and the LoRA output for the magnitude's gradient
            b += (o + a) * d_out
    ti = arch.experts_per_tok * 2 * arch.expert_intermediate if arch.moe else i
    transient = 2 * r * h + 2 * o * ti  # gradient buffers alive while one layer runs backward
    checkpoint = r * h
    return b, transient, checkpoint


# ----------------------------------------------------------------------------------------- estimate


def estimate(arch: ModelArch, settings: Settings) -> Estimate:
    """Peak memory per GPU for one training step of `arch` with `settings`."""
    s = settings
    s.check()
    if s.optim is None:
        s = replace(s, optim=default_optim(s.method)[0])
    cpu = s.device == "cpu"
    if cpu:  # what core/trainer.py does without a GPU: fp32 throughout, float32 dropout masks
        s = replace(s, precision="fp32", dropout_mask_bytes=4, cuda_context_gib=0.0, gpus=1)
    notes: list[str] = []
    if arch.family == "gemma2" and s.attn == "sdpa":
        s = replace(s, attn="eager")
        notes.append("Gemma 2: transformers has no SDPA path for it (attention soft-capping), so eager "
                     "attention is assumed (use flash_attention_2 to avoid the s^2 scores)")
    if arch.family == "gpt_oss" and s.attn == "sdpa":
        s = replace(s, attn="eager")
        notes.append("gpt-oss: transformers has no SDPA path for it (attention sinks), so eager attention is "
                     "assumed (its s^2 scores per layer; a flash kernel with sinks avoids them)")
    P = arch.params
    T = s.batch_size * s.seq_len
    a = 4 if s.precision == "fp32" else 2
    br: dict[str, float] = {}
    gib = lambda x: x / GIB  # noqa: E731

    # weights
    trainable = 0
    if s.method == "full":
        br["weights (fp32 master, bf16 autocast)" if a == 2 else "weights (fp32)"] = gib(4 * P)
        trainable = P
        notes.append("full: weights loaded in fp32 and trained under bf16 autocast (ftwizard's full "
                     "fine-tuning); 4 B/param weights + 4 grads + optimizer states")
        matrices = [(x, y) for x, y in arch.linear_shapes().values()] * arch.layers
        tensors = trainable_tensors(arch, s)
    else:
        trainable = lora_params(arch, s.lora_rank, s.lora_targets, s.use_dora)
        mods = adapted_modules(arch, s.lora_targets)
        matrices = [(s.lora_rank, x) for x, _ in mods.values()] + [(y, s.lora_rank) for _, y in mods.values()]
        matrices *= arch.layers
        tensors = trainable_tensors(arch, s)
        tgt = "all-linear" if s.lora_targets == "all-linear" else ",".join(mods)
        notes.append(f"LoRA r={s.lora_rank} on {tgt} ({len(mods)} matrices x {arch.layers} layers): "
                     f"{trainable:,} trainable params, fp32 (peft keeps adapters in fp32)"
                     + ("; DoRA magnitude vectors included" if s.use_dora else ""))
        if s.method == "lora":
            wb = 2 if a == 2 else 4
            br[f"weights ({'bf16' if wb == 2 else 'fp32'})"] = gib(wb * P)
        else:
            lin = arch.linear_params
            br["weights NF4 (decoder linears" + (", double quant)" if s.double_quant else ")")] = \
                gib(nf4_bytes(lin, s.double_quant))
            rest = 4 if s.upcast_fp32 else a
            br[f"weights {'fp32' if rest == 4 else 'bf16'} (embeddings, lm_head, norms)"] = gib(rest * (P - lin))
            notes.append("qlora: decoder linears in NF4 (blocksize 64"
                         + (", double quant" if s.double_quant else ", no double quant") + "); embeddings, lm_head "
                         + ("and norms upcast to fp32 (peft's prepare_model_for_kbit_training)" if s.upcast_fp32
                            else "and norms in the compute dtype (quantization.upcast_fp32: false)"))
        br["LoRA adapters (fp32)"] = gib(4 * trainable)

    km = KIND_MEMORY[s.kind]
    n_gpu = s.gpus if s.gpus > 1 else 1
    strategy = s.strategy if n_gpu > 1 else "none"
    if strategy == "none" and n_gpu > 1:
        strategy = "ddp"
    ds = strategy in ("zero2", "zero3")
    grads = 4.0 * trainable
    opt = optimizer_bytes(s.optim, tensors, matrices)
    if s.optim.startswith("paged"):
        notes.append(f"{s.optim}: counted on the GPU; paging can move it to host memory under pressure")
    if ds:  # DeepSpeed's bf16 engine casts the module to bf16 and keeps fp32 master copies in the optimizer
        if s.method == "full":
            br = {"weights (bf16, DeepSpeed)": gib(2.0 * P)}
            notes[:] = [n for n in notes if not n.startswith("full: weights loaded in fp32")]
        else:
            del br["LoRA adapters (fp32)"]
            br["LoRA adapters (bf16, DeepSpeed)"] = gib(2.0 * trainable)
        grads = 6.0 * trainable
        opt += 4.0 * trainable
        notes.append(f"{strategy} (DeepSpeed bf16): trainable weights in bf16; gradients in bf16 plus DeepSpeed's "
                     "fp32 gradient partition; fp32 master copies with the optimizer states: 2 + 6 + 12 bytes per "
                     "trainable parameter with AdamW (DeepSpeed's own estimators count 2 + 18; the ZeRO paper's "
                     "model, Rajbhandari et al. 2020, 2 + 2 + 12)")
    weight_keys = list(br)
    adapter_b = sum(v for k, v in br.items() if k.startswith("LoRA")) * GIB
    weights_b = sum(br.values()) * GIB - adapter_b
    # A full fine-tune's frozen reference: DPO/KTO (preference.reference_copy) and GRPO with beta > 0
    # (GRPOTrainer loads one in the model's dtype); with adapters the reference is the base, adapter off.
    ref_on = km.reference == "always" or (km.reference == "beta" and s.beta > 0)
    ref_copy = weights_b if (ref_on and s.method == "full") else 0.0
    if ref_copy:
        br["reference model (frozen copy)"] = gib(ref_copy)
        weight_keys.append("reference model (frozen copy)")
    if km.reference != "none":
        notes.append(f"{s.kind}: reference log-probs " + (
            "not computed (beta 0)" if not ref_on else
            "from a frozen copy of the starting weights" if s.method == "full" else
            "from the base with the adapter disabled (no copy)"))

    # several GPUs: what each strategy shards (weights: fsdp, zero3; gradients and optimizer states:
    # fsdp, zero2, zero3), and what offload moves to CPU RAM (fsdp/zero3: all three)
    shard_w = n_gpu if strategy in ("fsdp", "zero3") else 1
    shard_go = n_gpu if strategy in ("fsdp", "zero2", "zero3") else 1
    offloaded = s.offload != "none" and strategy in ("fsdp", "zero3")
    offload_b = 0.0
    if offloaded:
        offload_b = sum(br[k] for k in weight_keys) * GIB / shard_w + grads / shard_go + opt / shard_go
        for k in weight_keys:
            del br[k]
        grads_dev, opt_dev = 0.0, 0.0
    else:
        for k in weight_keys:
            br[k if shard_w == 1 else f"{k} 1/{n_gpu}"] = br.pop(k) / shard_w
        grads_dev, opt_dev = grads / shard_go, opt / shard_go

    # dynamic memory: activations and logits at the moments of a step; the peak is the worst one.
    per_layer, transient, ckpt = _activation_bytes_per_token_layer(arch, s, s.seq_len,
                                                                    mask_bytes=s.dropout_mask_bytes)
    V, h = arch.vocab, arch.hidden
    Tp = T * km.rows  # tokens that run the forward with gradients (chosen + rejected in one batch)
    logits_fwd = (8 + a) * V + (8 * V if s.extra_metrics else 0)
    logits_bwd = 12 * V
    if arch.family == "gemma2":  # final logit soft-capping (tanh) keeps one more copy of the logits
        logits_fwd += a * V
        logits_bwd += a * V
    if s.gradient_checkpointing:
        kept = arch.layers * ckpt
        notes.append("gradient checkpointing (non-reentrant): one hidden state kept per layer, one layer "
                     "recomputed at a time")
    else:
        kept = arch.layers * per_layer
        notes.append("no gradient checkpointing: every layer's activations kept until backward")
    # The Trainer frees gradients after each optimizer step (zero_grad(set_to_none=True)); they exist
    # during the forward pass only when gradients are accumulated over several micro-batches.
    g_fwd = grads_dev if s.grad_accum > 1 else 0.0
    # foreach AdamW holds one fp32 temporary as big as the trainable parameters during step()
    step_tmp = (4.0 * trainable / shard_go if s.optim in ("adamw_torch", "paged_adamw_32bit") else 0.0) \
        if not offloaded else 0.0
    layer_bwd = kept + (per_layer if s.gradient_checkpointing else 0) + transient
    # DoRA (peft 0.21) builds each adapted matrix's dense LoRA weight through an identity matrix and
    # keeps, per module, a d_in x d_in identity copy and two d_out x d_in weights for backward
    dora_layer = 0.0
    if s.use_dora and s.method != "full":
        dora_layer = sum(a * i * i + 2 * a * i * o for i, o in adapted_modules(arch, s.lora_targets).values())
    dora_kept = 0.0 if s.gradient_checkpointing else dora_layer * arch.layers
    # fp32 weights under bf16 autocast: the matmul saves its bf16 copy of the weight for backward
    # (qlora: lm_head, when upcast by peft; full: lm_head, and every linear when nothing is recomputed)
    casts = 0.0
    if a == 2 and not ds and (s.method == "full" or (s.method == "qlora" and s.upcast_fp32)):
        casts = 2.0 * V * h
        if s.method == "full" and not s.gradient_checkpointing:
            casts += 2.0 * arch.linear_params
    if km.fused_head:  # TRL's fused LM head: the head's input saved, one [4,096 x 32,768] tile at a time
        def head(n: int) -> float:
            return min(n, FUSED_TOKENS) * min(V, FUSED_VOCAB) * a + (a * h + 32) * n
        head_fwd = head(Tp)
        head_bwd = head(Tp) + 4 * h * Tp + (4.0 * V * h if s.method == "full" else 0.0)
    else:
        def head(n: int) -> float:
            return logits_fwd * n
        head_fwd, head_bwd = logits_fwd * Tp, logits_bwd * Tp
    # the all-gathered parameters while a layer computes: FSDP2 keeps the root unit (embeddings,
    # lm_head, final norm) gathered for the step and prefetches the next layer; ZeRO-3 fetches each
    # module as it runs (the largest, the embedding or lm_head, and the next one prefetched). In the
    # compute dtype; a full fine-tune's unsharded layer gradient (fp32) before its reduce-scatter.
    gathered = 0.0
    if strategy in ("fsdp", "zero3"):
        root = V * h * (1 if arch.tied_embeddings else 2) + h
        layer_b = (weights_b - root * (weights_b / P)) / arch.layers
        conv = (a / 4) if (s.method == "full" and not ds) else 1.0
        if strategy == "fsdp":
            gathered = conv * (root * weights_b / P + 2 * layer_b)
        else:
            gathered = 2 * conv * max(layer_b, V * h * weights_b / P)
        if s.method == "full":
            gathered += 4.0 * layer_b / max(weights_b / P, 1)
    act_fwd = kept * Tp + casts + dora_kept
    moments = {  # name -> {term: bytes}
        "end of forward (logits and loss)": {"g": g_fwd, "act": act_fwd, "logit": head_fwd, "gath": gathered},
        "start of backward (loss gradient)": {"g": g_fwd, "act": act_fwd, "logit": head_bwd, "gath": gathered},
        "backward through a layer": {"g": grads_dev, "act": layer_bwd * Tp + max(dora_kept, dora_layer),
                                     "gath": gathered},
        "optimizer step": {"g": grads_dev, "tmp": step_tmp},
    }
    # no-grad forwards (reference, KTO's KL completions, GRPO's generation): a layer's working set at a time
    nograd_tok = transient + a * (arch.q_dim + 2 * arch.kv_dim)
    if ref_on and km.reference == "always":  # DPO/KTO: after the policy forward, its activations held
        tr = T * km.ref_rows
        moments["reference forward (no gradients)"] = {
            "g": g_fwd, "act": act_fwd + (a * h * Tp if km.fused_head else 0.0), "gath": gathered,
            "ref": nograd_tok * tr + head(tr) - (a * h * tr if km.fused_head else 0.0)}
    if ref_on and km.reference == "beta":  # GRPO: reference log-probs of the completions before the step
        moments["reference log-probs (no gradients)"] = {"gath": gathered, "ref": nograd_tok * T + head(T)}
    if km.generation:
        # GRPOTrainer generates per_device_batch x steps_per_generation (= gradient accumulation) completions
        # at once: batch_size counts completions, (batch x accumulation) / num_generations prompts of
        # num_generations each; each holds a KV cache of prompt + completion tokens in the weights' dtype.
        n_gen = s.batch_size * s.grad_accum
        wdt = 4 if (a == 4 or (s.method == "full" and not ds)) else 2
        kv_tok = 2 * arch.layers * arch.kv_dim * wdt
        prompt = max(0, s.seq_len - s.max_completion_length)
        kv = n_gen * s.seq_len * kv_tok
        # the prompt pass (prefill) runs a layer's working set for every prompt token over the prompts' cache;
        # sampling: the last position's fp32 logits, processed and softmaxed
        prefill = max(0.0, n_gen * prompt * (kv_tok + nograd_tok) - kv)
        moments["generation (KV cache)"] = {"gath": gathered, "kv": kv, "gen": prefill + 3.0 * n_gen * V * 4}
        notes.append(f"grpo: {n_gen} completions generated at once per GPU (batch {s.batch_size} x accumulation "
                     f"{s.grad_accum}; {n_gen // max(1, s.num_generations) or 1} prompts x {s.num_generations} "
                     f"generations), KV cache {gib(kv):.2f} GiB for {s.seq_len:,} tokens each (prompt budget "
                     f"{prompt:,} + completion {s.max_completion_length:,})")
    phase = max(moments, key=lambda k: sum(moments[k].values()))
    m = moments[phase]
    g_now = m.get("g", 0.0)
    where = " (offloaded to CPU)" if offloaded else f" 1/{n_gpu}" if shard_go > 1 else ""
    br[f"gradients ({'bf16' if ds else 'fp32'}){where}"] = gib(g_now)
    br[f"optimizer states ({s.optim}){where}"] = gib(opt_dev)
    br["activations"] = gib(m.get("act", 0.0))
    br["logits and loss"] = gib(m.get("logit", 0.0))
    for key, label in (("tmp", "optimizer step temporaries"), ("ref", "reference / no-grad forward"),
                       ("kv", "generation KV cache"), ("gen", "generation prefill and sampling"),
                       ("gath", "all-gathered parameters (" + strategy + ")")):
        if m.get(key):
            br[label] = gib(m[key])
    dyn = sum(v for k, v in m.items() if k != "g")
    if s.method == "qlora":  # bitsandbytes dequantizes one weight matrix at a time to the compute dtype
        br["dequantization buffer"] = gib(max(x * y for x, y in arch.linear_shapes().values()) * a)
    if dora_layer:
        notes.append(f"DoRA: {gib(dora_layer):.2f} GiB per layer of identity and dense-weight copies kept for "
                     "backward" + ("" if s.gradient_checkpointing else f" ({gib(dora_kept):.2f} GiB for all layers)"))
    if casts and phase.startswith(("start", "end")):
        notes.append(f"activations include {gib(casts):.2f} GiB of bf16 weight copies autocast saves for "
                     "backward (fp32 " + ("lm_head)" if s.method == "qlora" else "weights)"))
    if g_now < grads_dev:
        notes.append(f"peak at the {phase}: gradients ({gib(grads_dev):.2f} GiB) are not allocated yet (they are "
                     "freed after every optimizer step)")
    static_gib = {"weights": gib(weights_b / shard_w) if not offloaded else 0.0,
                  "adapters": gib(adapter_b / shard_w) if not offloaded else 0.0,
                  "gradients": gib(grads_dev), "optimizer": gib(opt_dev)}
    rows = f" x {km.rows} (chosen and rejected in one batch)" if km.rows > 1 else ""
    notes.append(f"batch {s.batch_size}{rows} x sequence {s.seq_len} = {Tp:,} tokens per step per GPU, every row "
                 "padded to the full length (the longest batch runs first)")
    notes.append(f"attention: {s.attn}" + (" (O(s) memory)" if s.attn != "eager" else
                                            " (keeps heads x s^2 scores per layer)"))
    if km.fused_head:
        notes.append(f"logits: TRL's fused LM head ({s.kind}): log-probs from tiles of {FUSED_TOKENS:,} tokens x "
                     f"{min(V, FUSED_VOCAB):,} of the {V:,} vocabulary, never the whole logits")
    else:
        notes.append(f"logits: vocabulary {V:,}; the loss upcasts to fp32 ({logits_bwd * Tp / GIB:.2f} GiB at the "
                     "start of backward)")

    if n_gpu > 1:
        if strategy == "ddp" and trainable:
            br["DDP gradient buckets"] = gib(grads)
        elif ds:
            reduce_b = min(h * h, trainable)
            gather_b = min(DS_ALLGATHER_BUCKET, trainable) if strategy == "zero2" else 0
            br["DeepSpeed communication buckets"] = gib(DS_OVERLAP_FACTOR * 2 * (reduce_b + gather_b))
        what = {"ddp": "each GPU holds the whole model and optimizer, plus a gradient-sized bucket buffer; FSDP or "
                       "ZeRO-3 would shard weights, gradients and optimizer states",
                "fsdp": "FSDP2 full shard: weights, gradients and optimizer states 1/N per GPU, the root unit "
                        "and the next layer all-gathered while computing",
                "zero2": "ZeRO-2: gradients and optimizer states 1/N per GPU, weights whole",
                "zero3": "ZeRO-3: weights, gradients and optimizer states 1/N per GPU, each module gathered as "
                         "it runs"}[strategy]
        notes.append(f"{n_gpu} GPUs, {strategy}: per-GPU figure ({what}); global batch "
                     f"{s.batch_size * n_gpu}; activations stay per GPU")
        if offloaded:
            notes.append(f"offload {s.offload}: weights, gradients and optimizer states leave the GPU "
                         f"({gib(offload_b):.2f} GiB per GPU, {gib(offload_b * n_gpu):.1f} GiB for {n_gpu} GPUs "
                         + ("in CPU RAM" if s.offload == "cpu" else "on NVMe (pinned RAM buffers not counted)")
                         + "); the optimizer step runs on the CPU")
    if arch.moe:
        notes.append(f"MoE: all {arch.experts} experts stored ({gib(arch.expert_params * (2 if a == 2 else 4)):.1f} "
                     f"GiB in {'bf16' if a == 2 else 'fp32'}), {arch.experts_per_tok} routed per token; transformers "
                     "keeps them as fused 3D parameters, so QLoRA's NF4 covers attention only and the experts stay "
                     "16-bit; LoRA on the experts: " + ("yes (peft's all-linear wraps them)" if arch.lora_on_experts
                                                         and s.lora_targets == "all-linear" else "no"))
        if arch.mxfp4:
            notes.append("the experts ship in MXFP4 (4.25 bit/param); training dequantizes them to bf16 "
                         "(Mxfp4Config(dequantize=True), as OpenAI's fine-tuning recipe does): counted in bf16")
    if arch.sliding_layers:
        notes.append(f"{arch.sliding_layers} of {arch.layers} layers attend over a {arch.sliding_window:,}-token "
                     "window: that saves KV cache at inference, not training memory (SDPA keeps O(s) either way)")
    if cpu:
        br["allocator slack"] = gib(CPU_RSS_SLACK * dyn)
        br["process (Python, torch, libraries)"] = CPU_PROCESS_GIB
        br["model load (freed, still in RSS)"] = gib(CPU_LOAD_BYTES * P)
        notes.append(f"CPU: fp32 weights and activations, no CUDA context; the figure is the trainer's RSS: "
                     f"{CPU_PROCESS_GIB} GiB for the interpreter and libraries, a weights-sized block left by "
                     f"loading, and {int(CPU_RSS_SLACK * 100)}% of the dynamic memory for the allocator "
                     "(calibrated on real runs, CPU_RSS_RUNS)")
    else:
        br["allocator slack"] = gib(ALLOCATOR_SLACK * dyn)
        br["CUDA context"] = s.cuda_context_gib
        notes.append(f"precision {s.precision}; CUDA context {s.cuda_context_gib} GiB; allocator slack "
                     f"{int(ALLOCATOR_SLACK * 100)}% of the dynamic memory")
    total = sum(br.values())
    return Estimate(total_gib=total, breakdown=br, assumptions=notes, trainable_params=trainable,
                    settings=s, peak_phase=phase, static_gib=static_gib,
                    offload_ram_gib=gib(offload_b * n_gpu) if s.offload == "cpu" else 0.0,
                    moments={k: {t: gib(v) for t, v in m.items()} for k, m in moments.items()})


# ----------------------------------------------------------------------------------- from a config


def settings_from_config(cfg: "RunConfig", gpus: int = 1) -> Settings:
    """The estimator's settings for a run config, as the training process would run it on a GPU."""
    t = cfg.train
    precision = ("fp32" if t.device == "cpu" else "bf16") if t.precision == "auto" else t.precision
    attn = cfg.model.attn_implementation
    attn = "sdpa" if attn == "auto" else attn
    d = cfg.distributed
    strategy = d.strategy if d.strategy in STRATEGIES else "ddp"   # auto: resolved at run creation
    return Settings(kind=cfg.training, beta=cfg.grpo.beta, num_generations=cfg.grpo.num_generations,
                    max_completion_length=cfg.grpo.max_completion_length,
                    strategy=strategy, offload=d.offload,
                    # activations are one pass's (rows_per_pass); the step's passes accumulate
                    method=cfg.method, seq_len=t.max_length, batch_size=t.rows_per_pass,
                    lora_rank=cfg.lora.r, lora_targets=cfg.lora.target_modules,
                    lora_dropout=cfg.lora.dropout, use_dora=cfg.lora.use_dora,
                    gradient_checkpointing=t.gradient_checkpointing is not False,
                    optim=t.optim,
                    precision=precision, attn=attn, gpus=max(1, gpus),
                    double_quant=cfg.quantization.double_quant, upcast_fp32=cfg.quantization.upcast_fp32,
                    extra_metrics=t.extra_metrics,
                    grad_accum=t.passes_per_step,
                    device="cpu" if t.device == "cpu" else "cuda")


# -------------------------------------------------------------------------------- choose a method


@dataclass
class MethodChoice:
    rows: list[tuple[str, Estimate, str | None]]   # (method, estimate, verdict or None without VRAM)
    recommended: str | None
    reason: str
    proposal: "Proposal | None" = None            # set by callers that searched for the setting that fits

    def row(self, method: str) -> tuple[str, Estimate, str | None]:
        return next(r for r in self.rows if r[0] == method)


def compare_methods(arch: ModelArch, vram_gib: float | None, gpus: int = 1, base: Settings | None = None,
                    *, prefer_full: bool = False, strategies: dict[str, str] | None = None) -> MethodChoice:
    """Estimate full, LoRA and QLoRA with the same settings and pick one. With several GPUs each figure
    is per GPU under `strategies[method]` (the strategy a run of that method would get; default the
    base's), so a method that only fits sharded is judged sharded.

    LoRA when it fits (even tight), QLoRA when only it fits, full only when asked for (`prefer_full`:
    ample VRAM and a large domain shift) and it fits with headroom (Llama guide: start with LoRA,
    QLoRA when resources are tight, full only with the compute and a need for major change).
    """
    base = base or Settings()
    rows = []
    for m in METHODS:
        e = estimate(arch, replace(base, method=m, gpus=gpus, strategy=(strategies or {}).get(m, base.strategy)))
        rows.append((m, e, e.verdict(vram_gib) if vram_gib else None))
    name = display_name(arch)
    if not vram_gib:
        return MethodChoice(rows, None, "no GPU memory given: cannot choose a method")
    v = {m: verdict for m, _, verdict in rows}
    tot = {m: e.total_gib for m, e, _ in rows}
    where = f"{gpus}x {vram_gib:g} GiB" if gpus > 1 else f"{vram_gib:g} GiB"
    src = "(Llama fine-tuning guide; ftwizard estimator)"
    pct = {m: 100 * tot[m] / vram_gib for m in tot}
    if prefer_full and v["full"] == FITS:
        return MethodChoice(rows, "full", f"full fine-tuning fits {where} with headroom ({tot['full']:.1f} GiB, "
                            f"{pct['full']:.0f}%) and the domain shift is large: full only with the compute and "
                            f"a need for major change {src}")
    if v["lora"] == FITS:
        return MethodChoice(rows, "lora", f"LoRA fits {where} ({tot['lora']:.1f} GiB, {pct['lora']:.0f}%): "
                            f"start with LoRA {src}")
    if v["qlora"] == FITS:
        why = "does not fit" if v["lora"] == NO_FIT else f"is tight ({pct['lora']:.0f}%)"
        return MethodChoice(rows, "qlora", f"LoRA {why} on {where} ({tot['lora']:.1f} GiB); QLoRA fits "
                            f"({tot['qlora']:.1f} GiB, {pct['qlora']:.0f}%): QLoRA when resources are tight {src}")
    if v["lora"] == TIGHT and (v["qlora"] != TIGHT or pct["lora"] <= 90):
        return MethodChoice(rows, "lora", f"LoRA is tight on {where} ({tot['lora']:.1f} GiB, {pct['lora']:.0f}%); "
                            f"keep the batch small, or use QLoRA ({tot['qlora']:.1f} GiB) if it runs out of "
                            f"memory {src}")
    if v["qlora"] == TIGHT:
        lead = "only QLoRA fits" if v["lora"] == NO_FIT else \
            f"LoRA would fill {pct['lora']:.0f}% of the card; QLoRA fits"
        return MethodChoice(rows, "qlora", f"{lead} {where}, tightly ({tot['qlora']:.1f} GiB, {pct['qlora']:.0f}%): "
                            f"QLoRA when resources are tight; lower the batch or sequence if it runs out of "
                            f"memory {src}")
    return MethodChoice(rows, None, f"no method fits {name} on {where} (QLoRA needs {tot['qlora']:.1f} GiB): "
                        f"pick a smaller model, shorten the sequence or lower the batch size {src}")


# ------------------------------------------------------------------------------ the setting that fits


# The keys a proposal may change: each is a flag of `ftwizard estimate` (--seq-len, --batch-size,
# --gradient-accumulation-steps, --lora-rank, --optim, --gradient-checkpointing) and a train/lora config key.
SETTING_KEYS = ("seq_len", "batch_size", "gradient_accumulation_steps", "lora_rank", "optim",
                "gradient_checkpointing")
CONFIG_KEYS = {"seq_len": "train.max_length", "batch_size": "train.batch_size",
               "gradient_accumulation_steps": "train.gradient_accumulation_steps", "lora_rank": "lora.r",
               "optim": "train.optim", "gradient_checkpointing": "train.gradient_checkpointing"}
MIN_RANK = 4


@dataclass
class Proposal:
    """The nearest setting that fits: the method, what changed (by `SETTING_KEYS`), and its estimate."""

    method: str
    settings: Settings
    estimate: Estimate
    verdict: str
    capacity_gib: float
    changes: dict[str, object] = field(default_factory=dict)
    steps: list[str] = field(default_factory=list)     # each lever pulled, in order, in words
    rows_cut_pct: float | None = None                  # rows longer than the proposed max_length
    more_cards: str | None = None                      # when nothing fits on one card: how many would
    split_batch: bool = False                          # the config runs its batch in passes (micro_batch_size)

    def config_changes(self) -> dict[str, object]:
        """The changes as config keys. The estimator's batch is the rows of one pass: a config that sets
        train.micro_batch_size gets a smaller one, its batch and accumulation kept; otherwise batch_size and
        gradient_accumulation_steps (the same step either way)."""
        out: dict[str, object] = {}
        for key, value in self.changes.items():
            if self.split_batch and key == "batch_size":
                out["train.micro_batch_size"] = value
            elif not (self.split_batch and key == "gradient_accumulation_steps"):
                out[CONFIG_KEYS[key]] = value
        return out

    @property
    def fits(self) -> bool:
        return self.verdict in (FITS, TIGHT)

    def describe(self) -> str:
        """ "fits at max_length 1,536, batch 1 x accumulation 8: 44.1 GiB of 48; rows longer than 1,536
        tokens: 3%" """
        s = self.settings
        where = "RAM" if s.device == "cpu" else ""
        head = {FITS: "fits", TIGHT: "fits tightly"}.get(self.verdict, "does not fit")
        parts = [f"{self.method}" + (" " if self.method else "") + f"{head} at max_length {s.seq_len:,}, "
                 f"batch {s.batch_size} x accumulation {s.grad_accum}"]
        if "lora_rank" in self.changes:
            parts[0] += f", LoRA rank {s.lora_rank}"
        if "optim" in self.changes:
            parts[0] += f", {s.optim}"
        if "gradient_checkpointing" in self.changes:
            parts[0] += ", gradient checkpointing " + ("on" if s.gradient_checkpointing else "off")
        text = f"{parts[0]}: {self.estimate.total_gib:.1f} GiB of {self.capacity_gib:g}" + (" GiB free RAM" if where else "")
        if self.rows_cut_pct is not None:
            text += f"; rows longer than {s.seq_len:,} tokens: {self.rows_cut_pct:.0f}%"
        return text

    def to_json(self) -> dict:
        return {"method": self.method, "settings": dict(self.changes), "verdict": self.verdict,
                "total_gib": round(self.estimate.total_gib, 2), "capacity_gib": self.capacity_gib,
                "steps": list(self.steps), "summary": self.describe(),
                "rows_cut_pct": self.rows_cut_pct, "more_cards": self.more_cards}


def _changes(base: Settings, s: Settings) -> dict[str, object]:
    out: dict[str, object] = {}
    for key in SETTING_KEYS:
        attr = "grad_accum" if key == "gradient_accumulation_steps" else key
        if getattr(s, attr) != getattr(base, attr):
            out[key] = getattr(s, attr)
    return out


def _percentile(lengths: list[int], q: float) -> int:
    xs = sorted(lengths)
    return xs[min(len(xs) - 1, max(0, int(round(q * (len(xs) - 1)))))]


def find_fitting(arch: ModelArch, capacity_gib: float, base: Settings | None = None, *,
                 lengths: list[int] | None = None, methods: tuple[str, ...] | None = None) -> Proposal:
    """Search the levers in a practitioner's order and return the nearest setting that fits.

    Order (each lever is kept once pulled): gradient checkpointing on; an 8-bit optimizer; a smaller
    batch with gradient accumulation keeping the effective batch (halving down to 1); max_length down
    to the data's 95th percentile when the row lengths are known; LoRA rank halved down to 4; then
    QLoRA (the same levers again from the asked settings); then more cards (a hint only: one process
    trains today). The first setting that `fits` (<= 75%), or is `tight` but within 90%, wins; failing
    that, the first `tight` one; failing that, the last tried, with `more_cards` saying what would.
    """
    base = base or Settings()
    base = replace(base, optim=base.optim or default_optim(base.method)[0])
    cpu = base.device == "cpu"
    methods = methods or ((base.method,) if base.method == "qlora" else (base.method, "qlora"))
    first_tight: Proposal | None = None
    last: Proposal | None = None

    def make(s: Settings, steps: list[str]) -> Proposal:
        e = estimate(arch, s)
        cut = None
        if lengths and s.seq_len < max(lengths):
            cut = 100.0 * sum(n > s.seq_len for n in lengths) / len(lengths)
        return Proposal(s.method, s, e, e.verdict(capacity_gib), capacity_gib, _changes(base, s), list(steps), cut)

    for method in methods:
        s = replace(base, method=method, optim=base.optim if method == base.method else default_optim(method)[0])
        steps = [] if method == base.method else [f"{method} instead of {base.method}"]
        candidates: list[tuple[Settings, str]] = [(s, "")]

        def pull(new: Settings, why: str) -> None:
            candidates.append((new, why))

        cur = s
        if not cur.gradient_checkpointing and not cpu:
            cur = replace(cur, gradient_checkpointing=True)
            pull(cur, "gradient checkpointing on")
        if cur.optim in ("adamw_torch", "adamw_torch_fused", "paged_adamw_32bit", "adafactor") and cur.method != "full" \
                or cur.optim in ("adamw_torch", "adamw_torch_fused", "paged_adamw_32bit"):
            cur = replace(cur, optim="adamw_8bit")
            pull(cur, "8-bit AdamW states")
        while cur.batch_size > 1:
            b = cur.batch_size // 2
            cur = replace(cur, batch_size=b, grad_accum=cur.grad_accum * cur.batch_size // b)
            pull(cur, f"batch {b} x accumulation {cur.grad_accum} (same effective batch)")
        if lengths:
            p95 = _percentile(lengths, 0.95)
            target = max(64, -(-p95 // 64) * 64)
            if target < cur.seq_len:
                cur = replace(cur, seq_len=target)
                pull(cur, f"max_length {target:,} (the data's 95th percentile)")
        if cur.method != "full":
            while cur.lora_rank > MIN_RANK:
                cur = replace(cur, lora_rank=max(MIN_RANK, cur.lora_rank // 2))
                pull(cur, f"LoRA rank {cur.lora_rank}")
        done: list[str] = list(steps)
        for cand, why in candidates:
            if why:
                done.append(why)
            p = make(cand, done)
            last = p
            # fits with headroom, or tight but within 90% of it (compare_methods' line between a tight
            # LoRA and QLoRA): the practitioner's order wins over a roomier setting further down
            if p.verdict == FITS or (p.verdict == TIGHT and p.estimate.total_gib <= 0.9 * capacity_gib):
                return p
            if p.verdict == TIGHT and first_tight is None:
                first_tight = p
    if first_tight is not None:
        return first_tight
    assert last is not None
    if not cpu:
        last.more_cards = _more_cards(arch, last.settings, capacity_gib)
    return last


def _more_cards(arch: ModelArch, s: Settings, capacity_gib: float) -> str | None:
    """How many cards of this size FSDP full shard would need: the per-GPU estimate with strategy fsdp."""
    for n in (2, 4, 8, 16, 32, 64):
        e = estimate(arch, replace(s, gpus=n, strategy="fsdp", offload="none"))
        if e.total_gib <= capacity_gib:
            return (f"{n} cards of {capacity_gib:g} GiB with FSDP (weights, gradients and optimizer states sharded: "
                    f"~{e.total_gib:.1f} GiB each; distributed.strategy: fsdp, nproc_per_node: {n} or nodes x GPUs)")
    return None


# ------------------------------------------------------------------------------- the launch check


@dataclass
class FitCheck:
    """The verdict of a run's settings on this machine, and the nearest setting that fits when it does not."""

    device: str                    # cuda | cpu
    capacity_gib: float            # the smallest GPU's free memory, or free RAM
    estimate: Estimate
    verdict: str
    proposal: Proposal | None      # None when the asked settings fit
    ram_short: str | None = None   # offload: the CPU RAM it needs is not there

    @property
    def ok(self) -> bool:
        return self.verdict != NO_FIT

    def reason(self) -> str:
        if self.ram_short:
            return self.ram_short
        where = "free RAM" if self.device == "cpu" else "free GPU memory"
        if self.estimate.settings is not None and self.estimate.settings.gpus > 1:
            st = self.estimate.settings
            where += f" on the smallest card ({st.gpus} GPUs, {st.strategy}"
            where += f", offload {st.offload})" if st.offload != "none" else ")"
        text = (f"the run needs ~{self.estimate.total_gib:.1f} GiB and this machine has {self.capacity_gib:.1f} GiB "
                f"of {where} ({self.verdict})")
        if self.proposal is not None and self.proposal.fits:
            keys = ", ".join(f"{k}: {v}" for k, v in self.proposal.config_changes().items())
            text += f"; {self.proposal.describe()}" + (f" ({keys})" if keys else "")
        elif self.proposal is not None and self.proposal.more_cards:
            text += f"; it would take {self.proposal.more_cards}"
        return text


def run_world(cfg: "RunConfig") -> int:
    """The processes a resolved run config trains with (distributed.nproc_per_node x nnodes; 1 while
    nproc_per_node is still auto or the strategy is none)."""
    d = cfg.distributed
    if d.strategy == "none" or not isinstance(d.nproc_per_node, int):
        return 1
    return max(1, d.nproc_per_node) * d.nnodes


SPLIT_BATCH_GIB = 0.5  # a whole batch's activations and logits above which a CPU runs it in passes
CPU_PASS_TOKENS = 512  # tokens per pass that trained fastest on a CPU (tests/benchmarks/micro_batch.py)


def default_micro_batch(cfg: "RunConfig", gpu: bool) -> tuple[int, str]:
    """Rows per forward pass when train.micro_batch_size is null, and why. On a CPU, sft and cpt take a
    batch in passes of about CPU_PASS_TOKENS tokens (max_length x rows, at least one row), accumulating
    its gradients (the same step: the loss is averaged over the whole batch's tokens), when the whole
    batch's activations and logits would pass SPLIT_BATCH_GIB. Measured on SmolLM2-135M, 4 packed rows a
    step: at max_length 512, one row per pass peaked at 3.1 GiB against 8.4 in one pass and took less CPU;
    at 256, two rows per pass peaked at 3.0 GiB against 4.6 and stepped within 6% of one pass (one row:
    2.1 GiB, 15% slower). Below the threshold (the tiny test model) extra passes cost more than they save.
    On a GPU whole batches keep the card busy."""
    from .catalog import known_arch
    from .config import MICRO_BATCH_KINDS

    b, length = cfg.train.batch_size, cfg.train.max_length
    if gpu:
        return b, "the whole batch in one pass (GPU)"
    if cfg.training not in MICRO_BATCH_KINDS:
        return b, f"the whole batch in one pass ({cfg.training} computes its loss over the whole batch)"
    arch = known_arch(cfg.model.name_or_path)
    act = None
    if arch is not None:
        whole = cfg.model_copy(deep=True)
        whole.train.micro_batch_size = b
        br = estimate(arch, run_settings(whole, False)).breakdown
        act = br.get("activations", 0.0) + br.get("logits and loss", 0.0)
        if act < SPLIT_BATCH_GIB:
            return b, (f"the whole batch in one pass: its activations are ~{act * 1024:.0f} MiB, too little for "
                       "extra passes to pay")
    fit = max(1, CPU_PASS_TOKENS // length)
    micro = max(d for d in range(1, min(b, fit) + 1) if b % d == 0)
    if micro == b:
        return b, f"the whole batch in one pass: {b} x {length} tokens is a pass of the size a CPU trains fastest"
    held = (f"~{act * micro / b:.1f} of the batch's {act:.1f} GiB of activations" if act is not None
            else "a fraction of the activations (the estimator cannot size this model)")
    return micro, (f"{micro} row{'s' if micro > 1 else ''} per pass on a CPU ({micro * length} tokens), the batch's "
                   f"gradients accumulated: the same step with {held}; passes of ~{CPU_PASS_TOKENS} tokens "
                   "trained fastest here")


def run_settings(cfg: "RunConfig", gpu: bool) -> Settings:
    """The estimator's settings for a run config on its device: the one rule the launch check and the
    training process's own estimate share. On a GPU the figure is per GPU for the run's world size and
    distributed.strategy (and offload); on a CPU: fp32, no CUDA context, one process's RSS."""
    if cfg.train.micro_batch_size is None:  # a config not yet resolved: the micro-batch it would get here
        cfg = cfg.model_copy(deep=True)
        cfg.train.micro_batch_size = default_micro_batch(cfg, gpu)[0]
    s = settings_from_config(cfg, gpus=run_world(cfg) if gpu else 1)
    if not gpu:
        s = replace(s, device="cpu", gradient_checkpointing=cfg.train.gradient_checkpointing is True)
    return s


def run_estimate(cfg: "RunConfig", model_dir: str) -> Estimate | None:
    """The estimate of a resolved run config (config.yaml) for the model in `model_dir` (a directory
    with config.json, or a catalog name); None when the estimator cannot size it."""
    from .catalog import known_arch

    arch = known_arch(model_dir)
    if arch is None:
        return None
    return estimate(arch, run_settings(cfg, cfg.train.device == "cuda"))


def exceeds_estimate(peak_gib: float | None, estimate_gib: float | None) -> bool:
    """True when a measured peak is above its estimate by more than ESTIMATE_TOLERANCE."""
    return bool(peak_gib and estimate_gib) and peak_gib > estimate_gib * (1 + ESTIMATE_TOLERANCE)


def check_fits(cfg: "RunConfig", hardware, *, arch: ModelArch | None = None,
               lengths: list[int] | None = None) -> FitCheck:
    """Does this run fit the machine it will run on? On a GPU: the estimate per GPU against the smallest
    card's free memory; without one (or with `train.device: cpu`): the CPU estimate (fp32, no CUDA
    context, the process's RSS) against free RAM (psutil). When it does not fit, the nearest setting
    that does (`find_fitting`). `hardware` is a `hardware.Hardware` (tests pass a fake reading)."""
    from .catalog import resolve_arch

    from .hardware import run_gpus

    arch = arch or resolve_arch(cfg.model.name_or_path)
    cards = run_gpus(hardware, cfg.distributed)
    gpu = bool(cards) and cfg.train.device != "cpu"
    s = run_settings(cfg, gpu)
    if gpu:
        capacity = min(g.free_gib for g in cards)
        if not all(g.bf16 for g in cards) and s.precision == "bf16":
            s = replace(s, precision="fp16")
    else:
        capacity = hardware.ram_available_gib
    est = estimate(arch, s)
    verdict = est.verdict(capacity)
    ram_short = None
    if est.offload_ram_gib and est.offload_ram_gib > hardware.ram_available_gib:
        # offload moves the states to CPU RAM: the machine's free RAM must hold them
        verdict = NO_FIT
        ram_short = (f"offload {s.offload} puts ~{est.offload_ram_gib:.1f} GiB of weights, gradients and optimizer "
                     f"states in CPU RAM and this machine has {hardware.ram_available_gib:.1f} GiB free")
        return FitCheck("cuda", capacity, est, verdict, None, ram_short)
    proposal = None if verdict != NO_FIT else find_fitting(arch, capacity, s, lengths=lengths)
    if proposal is not None:
        # a micro_batch_size the config gives is what the proposal's rows per pass change (null: resolved
        # afresh, so batch_size with accumulation is as good)
        proposal.split_batch = cfg.train.micro_batch_size is not None
    return FitCheck("cuda" if gpu else "cpu", capacity, est, verdict, proposal)
