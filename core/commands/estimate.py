"""Peak GPU memory of a training run, per GPU, with the breakdown and the assumptions behind it.

M is a catalog name (llama-3.1-8b, qwen2.5-7b, smollm2-135m, ...), the hub id of one, or a directory
holding config.json. The figure is for ftwizard's own stack (transformers + peft + trl +
bitsandbytes); see docs/estimator.md for the method and its measured error.
"""

from __future__ import annotations

import argparse
import json


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..estimate import ATTN, KINDS, OPTIMIZERS, STRATEGIES

    p.add_argument("--model", required=True, metavar="M", help="catalog name, hub id, or directory with config.json")
    p.add_argument("--method", required=True, choices=["full", "lora", "qlora"])
    p.add_argument("--seq-len", type=int, default=1024, metavar="N", help="tokens per row (default 1024)")
    p.add_argument("--batch-size", type=int, default=4, metavar="B", help="rows per GPU per step (default 4)")
    p.add_argument("--lora-rank", type=int, default=16, metavar="R", help="LoRA rank (default 16)")
    p.add_argument("--lora-targets", default="all-linear", metavar="T",
                   help="all-linear (default) or a comma list such as q_proj,v_proj (q,v works too)")
    p.add_argument("--dora", action="store_true", help="DoRA adapters")
    p.add_argument("--gradient-accumulation-steps", type=int, default=1, metavar="N",
                   help="micro-batches per optimizer step (default 1; > 1 keeps gradients alive in the forward)")
    p.add_argument("--gradient-checkpointing", action=argparse.BooleanOptionalAction, default=True,
                   help="recompute activations in backward (default on; --no-gradient-checkpointing keeps them)")
    p.add_argument("--optim", choices=list(OPTIMIZERS),
                   help="default: what a run gets (adamw_torch_fused; adamw_8bit for qlora)")
    p.add_argument("--attn", default="sdpa", choices=list(ATTN), help="attention implementation (default sdpa)")
    p.add_argument("--precision", default="bf16", choices=["bf16", "fp16", "fp32"])
    p.add_argument("--no-double-quant", action="store_true", help="QLoRA without double quantization")
    p.add_argument("--upcast-fp32", action="store_true",
                   help="QLoRA with embeddings, lm_head and norms in fp32 (peft's prepare_model_for_kbit_training)")
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"],
                   help="cpu: the trainer's RAM without a GPU (fp32, no CUDA context); default cuda")
    p.add_argument("--vram-gb", type=float, metavar="X",
                   help="GPU memory (GiB, as nvidia-smi shows), or free RAM with --device cpu: a verdict, and the "
                        "nearest setting that fits when it does not")
    p.add_argument("--kind", default="sft", choices=list(KINDS),
                   help="training kind (default sft): dpo/orpo/simpo put chosen and rejected in one batch; dpo/kto "
                        "add the reference forward (a full fine-tune's frozen copy); grpo adds generation")
    p.add_argument("--beta", type=float, default=0.0, metavar="B",
                   help="grpo: the KL weight; > 0 adds the reference log-probs (a copy for a full fine-tune). "
                        "Default 0 (TRL's); dpo/kto always have a reference, orpo/simpo never")
    p.add_argument("--num-generations", type=int, default=4, metavar="G",
                   help="grpo: completions per prompt (default 4); --batch-size counts completions")
    p.add_argument("--max-completion-length", type=int, default=128, metavar="N",
                   help="grpo: completion tokens (default 128); prompts get --seq-len minus this")
    p.add_argument("--gpus", type=int, default=1, metavar="N", help="GPUs (the figure is per GPU)")
    p.add_argument("--strategy", default="ddp", choices=[s for s in STRATEGIES if s != "none"],
                   help="with --gpus > 1: ddp (a whole copy per GPU; default), fsdp (FSDP2 full shard), "
                        "zero2 / zero3 (DeepSpeed ZeRO)")
    p.add_argument("--offload", action="store_true",
                   help="fsdp/zero3: weights, gradients and optimizer states in CPU RAM (checked with --ram-gb)")
    p.add_argument("--ram-gb", type=float, metavar="X",
                   help="free CPU RAM (GiB) the offloaded states must fit in")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run(args) -> int:
    from ..catalog import display_name, resolve_arch
    from ..errors import UserError
    from ..estimate import NO_FIT, Settings, estimate, find_fitting

    if args.vram_gb is not None and args.vram_gb <= 0:
        raise UserError(f"must be positive, got {args.vram_gb}", field="--vram-gb")
    targets = args.lora_targets
    if targets != "all-linear":
        targets = [t.strip() for t in targets.split(",") if t.strip()]
        if not targets:
            raise UserError("empty target list (use all-linear or e.g. q_proj,v_proj)", field="--lora-targets")
    if args.kind == "grpo" and args.max_completion_length >= args.seq_len:
        raise UserError(f"leaves no room for prompts in --seq-len {args.seq_len} (prompt budget = seq-len minus "
                        "this)", field="--max-completion-length")
    offload = "cpu" if args.offload else "none"
    if args.gpus > 1 or args.offload:
        _check_distributed(args.strategy if args.gpus > 1 else "none", offload)
    arch = resolve_arch(args.model)
    s = Settings(kind=args.kind, beta=args.beta, num_generations=args.num_generations,
                 max_completion_length=args.max_completion_length, strategy=args.strategy, offload=offload,
                 method=args.method, seq_len=args.seq_len, batch_size=args.batch_size,
                 lora_rank=args.lora_rank, lora_targets=targets, use_dora=args.dora,
                 gradient_checkpointing=args.gradient_checkpointing, optim=args.optim,
                 attn=args.attn, precision=args.precision, gpus=args.gpus,
                 double_quant=not args.no_double_quant, upcast_fp32=args.upcast_fp32,
                 grad_accum=args.gradient_accumulation_steps, device=args.device)
    est = estimate(arch, s)
    proposal = None
    if args.vram_gb and est.verdict(args.vram_gb) == NO_FIT:
        proposal = find_fitting(arch, args.vram_gb, s)
    if args.json:
        out = {"model": display_name(arch), "params": arch.params, "method": args.method, "kind": args.kind,
               "gpus": args.gpus, "strategy": args.strategy if args.gpus > 1 else "none", "offload": offload,
               **est.to_json(args.vram_gb)}
        if est.offload_ram_gib:
            out["offload_ram_gib"] = round(est.offload_ram_gib, 2)
            if args.ram_gb is not None:
                out["offload_ram_fits"] = est.offload_ram_gib <= args.ram_gb
        if proposal is not None:
            out["proposal"] = proposal.to_json()
        print(json.dumps(out))
        return 0
    _print_table(arch, est, args, proposal)
    return 0


def _check_distributed(strategy: str, offload: str) -> None:
    """The config's own rule for strategy and offload (config.distributed_problems): refused the same way."""
    from ..config import DatasetConfig, DistributedConfig, RunConfig, distributed_problems
    from ..errors import UserError

    cfg = RunConfig(dataset=DatasetConfig(path="-"), distributed=DistributedConfig(strategy=strategy, offload=offload))
    for key, why in distributed_problems(cfg):
        raise UserError(why, field="--offload" if key.endswith("offload") else "--strategy")


def _print_table(arch, est, args, proposal=None) -> None:
    print(render(arch, est, method=args.method, vram_gib=args.vram_gb, device=args.device, proposal=proposal,
                 model_arg=args.model, ram_gib=args.ram_gb))


def render(arch, est, *, method: str, vram_gib: float | None = None, device: str = "cuda", proposal=None,
           model_arg: str | None = None, assumptions: int | None = None, ram_gib: float | None = None) -> str:
    """The text `ftwizard estimate` prints (and README.md shows between its estimate-example markers)."""
    from ..catalog import display_name

    s = est.settings
    per = "CPU (RAM)" if device == "cpu" else "per GPU"
    if s is not None and s.gpus > 1:
        per += f" of {s.gpus} ({s.strategy}" + (f", offload {s.offload})" if s.offload != "none" else ")")
    kind = f" · {s.kind}" if s is not None and s.kind != "sft" else ""
    lines = [f"  {display_name(arch)} ({arch.params / 1e9:.2f}B) · {method}{kind} · {per}"]
    width = max(len(k) for k in est.breakdown) + 2
    for k, v in est.breakdown.items():
        lines.append(f" {k:<{width}}{v:6.2f}")
    lines.append(f" {'total':<{width}}{est.total_gib:6.2f}")
    if vram_gib:
        v = est.verdict(vram_gib)
        what = "of free RAM" if device == "cpu" else "of the card"
        lines.append(f"{v} on {vram_gib:g} GiB ({100 * est.total_gib / vram_gib:.0f}% {what})")
    lines.append(f"peak: {est.peak_phase}")
    if est.offload_ram_gib:
        line = f"offloaded to CPU RAM: {est.offload_ram_gib:.1f} GiB (all GPUs of the machine)"
        if ram_gib is not None:
            line += " · " + ("fits" if est.offload_ram_gib <= ram_gib else "does not fit") + f" {ram_gib:g} GiB free RAM"
        lines.append(line)
    if proposal is not None:
        flags = " ".join(f"--{k.replace('_', '-')} {v}" if not isinstance(v, bool) else
                         f"--{'' if v else 'no-'}{k.replace('_', '-')}" for k, v in proposal.changes.items())
        if proposal.fits:
            lines.append(f"the setting that fits: {proposal.describe()}")
            lines.append(f"  the same command with: --method {proposal.method} {flags}")
        elif proposal.more_cards:
            lines.append(f"no setting fits one card; it would take {proposal.more_cards}")
    for a in est.assumptions[:assumptions]:
        lines.append(f" · {a}")
    return "\n".join(lines)
