"""What every training recipe shares: the run directory as the process sees it, the device, the model
and tokenizer, the method (full / LoRA / QLoRA), the data, the Trainer's arguments, the callbacks that
write events.jsonl, and saving.

A recipe (core/recipes/sft.py, later dpo/kto/grpo/cpt) calls these in order: setup -> train -> save.
`config.yaml` is the only input and is used as written: every `auto`/null was made concrete when the
run was created (`defaults.resolve_defaults`, reasons in the file's header). Nothing here detects
hardware or re-resolves a default; where torch contradicts the config (bf16 asked, the GPU lacks it)
the run fails with the reason instead of changing it. Heavy imports stay inside the functions.
"""

from __future__ import annotations

import functools
import math
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..config import RunConfig
from ..errors import UserError
from ..events import EventWriter
from ..runs import RANKS, STATUS, STOP_REQUEST, write_json_atomic
from ..speed import TRAINER_OMP_ENV

# OpenMP threads wait passively in the training process (why, and what it costs: speed.TRAINER_OMP_ENV).
# libgomp reads this when torch loads, so it is set here, before any recipe imports torch (the trainer
# imports this module first); a value already in the environment wins. GPU kernels do not use OpenMP.
for _name, _value in TRAINER_OMP_ENV.items():
    os.environ.setdefault(_name, _value)

NONFINITE_LIMIT = 3  # consecutive NaN/inf losses before a run is ended as failed


class NonFiniteLoss(Exception):
    """The loss stayed NaN/inf: the run ends as failed with the 'nan' diagnosis."""


class StopRequested(Exception):
    """Raised at a phase change when a stop was asked for before training started (nothing to
    checkpoint yet)."""


def log(line: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {line}", flush=True)


class _Silent:
    """The event writer of a rank other than 0: rank 0 alone writes events.jsonl."""

    def emit(self, type_: str, **fields: Any) -> dict:
        return {"type": type_, **fields}

    def close(self) -> None:
        pass


class Run:
    """The run directory as the training process sees it: events, status and the stop flag. In a run
    of several processes (torchrun sets RANK and WORLD_SIZE), rank 0 alone writes events.jsonl and
    status.json; every rank writes its memory to RUN_DIR/ranks/RANK.json and, when it fails, why to
    RANK.end.json (core/distlaunch.py turns that into the run's end)."""

    def __init__(self, run_dir: Path):
        self.dir = run_dir
        self.rank = int(os.environ.get("RANK", 0))
        self.world_size = int(os.environ.get("WORLD_SIZE", 1))
        self.events = EventWriter(run_dir) if self.rank == 0 else _Silent()
        self.stop_requested = False
        self.training_started = False
        self.facts: dict = {}  # facts about the tokenized data, for diagnoses
        self.nonfinite_steps: list[int] = []  # consecutive logged steps whose loss was NaN/inf
        self.estimate_gib: float | None = None  # the run's memory estimate (info event `estimate`)
        self.estimate_warned = False
        self.status = {"pid": os.getpid(), "state": "running", "phase": "started", "step": 0,
                       "started": time.time(), "world_size": self.world_size}
        if self.world_size > 1:
            (run_dir / RANKS).mkdir(exist_ok=True)
            (run_dir / RANKS / f"{self.rank}.end.json").unlink(missing_ok=True)
        self.write_status()

    def write_status(self, throttle: bool = False, **fields) -> None:
        """status.json; with `throttle`, at most once a second (per-step updates: events.jsonl has every
        step already, and the atomic rewrite costs ~0.7 ms)."""
        now = time.time()
        self.status.update(fields)
        if self.rank != 0:
            return
        if throttle and now - self.status.get("updated", 0) < 1.0:
            return
        self.status["updated"] = now
        write_json_atomic(self.dir / STATUS, self.status)

    def phase(self, phase: str, detail: str = "", **extra) -> None:
        self.events.emit("phase", phase=phase, detail=detail, **extra)
        self.write_status(phase=phase)
        log(f"[{phase}] {detail}")
        # With several processes every rank must stop at the same point: they agree at a step end.
        if not self.training_started and self.world_size == 1 and self.should_stop():
            raise StopRequested()  # a stop asked for while starting up: no need to load anything more

    def request_stop(self, *_):
        # Only a flag: raising from a signal handler could land inside any import or C call (seen:
        # numpy's import broken half-way). Before training, the next phase change ends the run;
        # during training, the next step end checkpoints and stops.
        self.stop_requested = True

    def should_stop(self) -> bool:
        return self.stop_requested or (self.dir / STOP_REQUEST).exists()

    def agree_to_stop(self) -> bool:
        """should_stop(), agreed by every rank (a stop seen by any one stops all, at the same step)."""
        mine = self.should_stop()
        if self.world_size == 1:
            return mine
        import torch
        import torch.distributed as dist

        if not dist.is_initialized():
            return mine
        device = f"cuda:{torch.cuda.current_device()}" if dist.get_backend() == "nccl" else "cpu"
        flag = torch.tensor([1 if mine else 0], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    def end_rank(self, reason: str, peer_lost: bool = False) -> None:
        """This rank's failure, for the launcher (distlaunch.py) to name the rank that caused the end."""
        write_json_atomic(self.dir / RANKS / f"{self.rank}.end.json",
                          {"rank": self.rank, "reason": reason, "peer_lost": peer_lost, "t": time.time()})

    def write_memory(self, mem: dict) -> None:
        write_json_atomic(self.dir / RANKS / f"{self.rank}.json", {"rank": self.rank, "t": time.time(), **mem})

    def ranks_memory(self, mine: dict) -> list[dict]:
        """Every rank's latest memory (rank 0's own now, the others' from their last log)."""
        from ..runs import read_json

        out = [{"rank": 0, **mine}]
        for r in range(1, self.world_size):
            other = read_json(self.dir / RANKS / f"{r}.json")
            if other:
                other.pop("t", None)
                out.append(other)
        return out


@dataclass(frozen=True)
class Outcome:
    """How a recipe's training ended: the main program turns it into the `end` event and status."""

    stopped: bool
    output: Path
    step: int


# ---------------------------------------------------------------------------------------- device


@dataclass(frozen=True)
class Device:
    """Where and how this process trains, read from a resolved config.yaml (never detected here)."""

    cuda: bool
    precision: str  # bf16 | fp16 | fp32: autocast dtype (fp32: none)
    attn: str  # sdpa | flash_attention_2 | eager | auto (Unsloth's own kernels)
    liger: bool
    packing: bool
    optim: str
    gradient_checkpointing: bool
    n_gpus: int
    strategy: str = "none"  # distributed.strategy, resolved: none | ddp | fsdp | zero2 | zero3
    world_size: int = 1  # processes training together (torchrun's WORLD_SIZE)
    offload: str = "none"

    def event(self) -> dict:
        return asdict(self)


def device_for(cfg: RunConfig) -> Device:
    """The device a resolved config asks for, checked against what torch can do; never changed."""
    from ..defaults import unresolved_keys

    missing = unresolved_keys(cfg)
    if missing:
        key, value = missing[0]
        raise UserError(f"is {value!r} in the run's config.yaml, but a run's config is resolved when the run "
                        "is created (ftwizard train writes concrete values and why): write a concrete value",
                        field=key)
    import torch

    t = cfg.train
    cuda = t.device == "cuda"
    if cuda and not torch.cuda.is_available():
        raise UserError("train.device is cuda but no CUDA GPU is visible to torch", field="train.device")
    if cuda and t.precision == "bf16" and not torch.cuda.is_bf16_supported():
        raise UserError(f"is bf16 but {torch.cuda.get_device_name(0)} has no bf16 (compute capability < 8.0): "
                        "use fp16", field="train.precision")
    if not cuda and t.precision == "fp16":
        raise UserError("fp16 needs a CUDA GPU (the Trainer has no fp16 autocast on a CPU): use bf16 or fp32",
                        field="train.precision")
    if not cuda and t.use_liger_kernel:
        raise UserError("Liger's kernels need a CUDA GPU: set it to false", field="train.use_liger_kernel")
    world = int(os.environ.get("WORLD_SIZE", 1))
    strategy = cfg.distributed.strategy
    if world > 1 and strategy == "none":
        raise UserError(f"is none but {world} processes were started: use ddp or fsdp", field="distributed.strategy")
    from ..defaults import strategy_refusal

    refusal = strategy_refusal(cfg, strategy, gpu=cuda, world=world)
    if refusal:  # a config.yaml written by hand, or moved to another machine
        raise UserError(refusal[1], field=refusal[0])
    if cuda and world > 1:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    return Device(cuda=cuda, precision=t.precision, attn=cfg.model.attn_implementation,
                  liger=bool(t.use_liger_kernel), packing=bool(t.packing), optim=t.optim,
                  gradient_checkpointing=bool(t.gradient_checkpointing),
                  n_gpus=torch.cuda.device_count() if cuda else 0, strategy=strategy if world > 1 else "none",
                  world_size=world, offload=cfg.distributed.offload)


def skip_unneeded_imports(cfg: RunConfig) -> None:
    """peft imports bitsandbytes eagerly when it is installed (and bitsandbytes pulls in
    torch._inductor: seconds of start-up) only to offer 8/4-bit layers. A run that quantizes nothing
    and uses no 8-bit optimizer never needs it, so it is hidden from this process."""
    needs_bnb = cfg.method == "qlora" or "8bit" in (cfg.train.optim or "")
    if not needs_bnb and "bitsandbytes" not in sys.modules:
        sys.modules["bitsandbytes"] = None  # `import bitsandbytes` now fails fast; find_spec says absent


def resume_checkpoint(run_dir: Path, resume: bool, run: "Run | None" = None) -> str | None:
    """The checkpoint `--resume` continues from: the newest whole and finite one (core/checkpoints.py),
    saying which were skipped and why; refused before anything loads when there is none."""
    if not resume:
        return None
    from ..checkpoints import resume_checkpoint as newest_good

    ckpt, skipped = newest_good(run_dir)
    for name, why in skipped:
        log(f"resume: skipped {name}: {why}")
        if run is not None:
            run.events.emit("warning", code="checkpoint-skipped", message=f"resume skipped {name}: {why}",
                            evidence={"checkpoint": name})
    if ckpt is None:
        raise UserError("no whole, finite checkpoint to resume from in this run", file=str(run_dir / "checkpoints"))
    return ckpt


def last_checkpoint(run_dir: Path) -> str | None:
    ckpts = sorted((run_dir / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
    return str(ckpts[-1]) if ckpts else None


# -------------------------------------------------------------------------- model, tokenizer, method


def setup_model(cfg: RunConfig, dev: Device, run: Run, chat: bool = True):
    """(model with the method applied, tokenizer, chat template): model.*, method, lora.*, quantization.*.
    `chat=False` (raw-text kinds: cpt): the tokenizer as it comes, its own EOS, no template (None)."""
    from transformers import set_seed

    from ..data.tokenize import setup_tokenizer
    from ..models import check_model_source, gguf_checkpoint

    path = check_model_source(cfg.model.name_or_path, cfg.model.gguf_file)
    run.phase("loading_model", cfg.model.gguf_file or cfg.model.name_or_path)
    if cfg.model.gguf_file:
        path = gguf_checkpoint(path, cfg.model.gguf_file, on_progress=lambda m: run.phase("loading_model", m))
    set_seed(cfg.train.seed)  # before the adapters are created: their init must be reproducible too
    if cfg.model.backend == "unsloth":
        tok, model = load_with_unsloth(cfg, dev, path)
    else:
        tok, model = load_tokenizer_and_model(cfg, dev, path)
    eos = tok.eos_token
    template, why = setup_tokenizer(tok, cfg.model.chat_template, cfg.dataset.assistant_only_loss) if chat \
        else (None, "none: raw text")
    if tok.eos_token != eos:  # EOS is now the end-of-turn token: generation must stop there too
        model.generation_config.eos_token_id = tok.eos_token_id
    run.events.emit("info", key="chat_template", value={"why": why, "eos": tok.eos_token})
    emit_estimate(cfg, run, path)
    model = load_start_adapter(cfg, model) if cfg.model.init_adapter else apply_method(cfg, model)
    n_params = sum(p.numel() for p in model.parameters())
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    run.events.emit("info", key="parameters", value={"total": n_params, "trainable": n_train})
    return model, tok, template


def emit_estimate(cfg: RunConfig, run: Run, model_dir: str) -> None:
    """The run's memory estimate (core/estimate.py, the figure the launch check judged) as an `info`
    event `estimate`; every log compares the measured peak with it (events_callback)."""
    from ..estimate import ESTIMATE_TOLERANCE, run_estimate

    est = run_estimate(cfg, model_dir)
    if est is None:
        return
    run.estimate_gib = round(est.total_gib, 3)
    run.events.emit("info", key="estimate", value={
        "total_gib": run.estimate_gib, "device": cfg.train.device, "tolerance": ESTIMATE_TOLERANCE,
        "breakdown_gib": {k: round(v, 3) for k, v in est.breakdown.items()}})


def model_dtype(cfg: RunConfig, dev: Device):
    """The dtype weights are loaded in: full fine-tuning keeps fp32 master weights under autocast;
    LoRA/QLoRA load the frozen base in the precision's dtype."""
    import torch

    if cfg.method == "full":
        return torch.float32
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[dev.precision]


def quant_storage(dev: Device, dtype, compute_dtype):
    """bnb_4bit_quant_storage. Sharded (fsdp, zero3): the dtype of the model's other weights, a floating
    one, so FSDP2 / ZeRO-3 shard the packed 4-bit weights with the rest (with uint8 storage accelerate
    leaves them out of sharding: a whole quantized copy per card) and transformers sets FSDP's mixed
    precision to it. One process or a whole copy per card (ddp, zero2): the compute dtype."""
    return dtype if dev.strategy in ("fsdp", "zero3") else compute_dtype


def load_tokenizer_and_model(cfg: RunConfig, dev: Device, path: str):
    import torch
    from transformers import AutoModelForCausalLM

    from ..data.tokenize import load_tokenizer

    m = cfg.model
    tok = load_tokenizer(path, revision=m.revision, trust_remote_code=m.trust_remote_code)
    dtype = model_dtype(cfg, dev)
    kwargs: dict[str, Any] = {"dtype": dtype, "attn_implementation": dev.attn, "revision": m.revision,
                              "trust_remote_code": m.trust_remote_code}
    if cfg.method == "qlora":
        from transformers import BitsAndBytesConfig

        q = cfg.quantization
        compute_dtype = dtype if q.compute_dtype == "auto" else getattr(torch, q.compute_dtype)
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type=q.quant_type, bnb_4bit_use_double_quant=q.double_quant,
            bnb_4bit_compute_dtype=compute_dtype, bnb_4bit_quant_storage=quant_storage(dev, dtype, compute_dtype))
    if dev.cuda:
        kwargs["device_map"] = {"": int(os.environ.get("LOCAL_RANK", 0))}
    model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    model.config.use_cache = False
    return tok, model


UNSLOTH_ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def unsloth_arguments(cfg: RunConfig, path: str) -> tuple[dict, dict | None]:
    """The keyword arguments of Unsloth's FastLanguageModel.from_pretrained and get_peft_model (None for
    full fine-tuning) for this config. What Unsloth cannot take (DoRA, quantization settings other than
    its NF4 + double quant, an attention choice, fp32) is refused when the config is validated
    (config.unsloth_problems), so every key that reaches here is honoured."""
    import torch

    m, t = cfg.model, cfg.train
    load = {"model_name": path, "max_seq_length": t.max_length,
            "dtype": {"bf16": torch.bfloat16, "fp16": torch.float16}[t.precision],
            "load_in_4bit": cfg.method == "qlora", "full_finetuning": cfg.method == "full",
            "revision": m.revision, "trust_remote_code": m.trust_remote_code}
    if cfg.method == "full":
        return load, None
    targets = cfg.lora.target_modules
    peft = {"r": cfg.lora.r, "lora_alpha": cfg.lora.alpha, "lora_dropout": cfg.lora.dropout, "bias": "none",
            "target_modules": UNSLOTH_ALL_LINEAR if targets == "all-linear" else list(targets),
            "use_gradient_checkpointing": "unsloth" if t.gradient_checkpointing else False,
            "random_state": t.seed, "use_rslora": cfg.lora.use_rslora}
    return load, peft


def load_with_unsloth(cfg: RunConfig, dev: Device, path: str):
    """model.backend: unsloth. Unsloth's loader and LoRA wrapper (its kernels; GPU only).
    Not exercised on CPU: Unsloth refuses to import without a GPU (its arguments are tested)."""
    if not dev.cuda:
        raise UserError("'unsloth' needs a CUDA GPU; use 'transformers'", field="model.backend")
    try:
        from unsloth import FastLanguageModel
    except ImportError:
        raise UserError("is 'unsloth' but unsloth is not installed (pip install unsloth)",
                        field="model.backend") from None
    load, peft = unsloth_arguments(cfg, path)
    model, tok = FastLanguageModel.from_pretrained(**load)
    if peft is not None:
        model = FastLanguageModel.get_peft_model(model, **peft)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok, model


def apply_method(cfg: RunConfig, model):
    """Wrap the model in LoRA adapters for lora/qlora; full fine-tuning trains it as is."""
    if cfg.method == "full" or cfg.model.backend == "unsloth":
        return model  # unsloth's loader has already added its adapters
    from peft import LoraConfig, get_peft_model

    if cfg.method == "qlora":
        model = prepare_kbit(model, cfg.quantization.upcast_fp32)
    lc = LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                    target_modules=cfg.lora.target_modules, use_rslora=cfg.lora.use_rslora,
                    use_dora=cfg.lora.use_dora, task_type="CAUSAL_LM", bias="none")
    return get_peft_model(model, lc)


def load_start_adapter(cfg: RunConfig, model):
    """model.init_adapter (written by `ftwizard resume RUN --extend N`): the finished adapter, loaded
    trainable, instead of fresh LoRA adapters."""
    from peft import PeftModel

    if cfg.method == "qlora":
        model = prepare_kbit(model, cfg.quantization.upcast_fp32)
    return PeftModel.from_pretrained(model, cfg.model.init_adapter, is_trainable=True)


def prepare_kbit(model, upcast_fp32: bool):
    """A 4-bit model made ready for adapters. With `upcast_fp32`, peft's prepare_model_for_kbit_training
    (every non-4-bit weight to fp32); without it the model is left as loaded, embeddings, lm_head and
    norms in the compute dtype, the way LoRA keeps them (get_peft_model freezes the base either way).
    Checkpointing is the Trainer's for every method (`activation_checkpointing`), not peft's."""
    if not upcast_fp32:
        return model
    from peft import prepare_model_for_kbit_training

    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)


# ------------------------------------------------------------------------------------------- data


def setup_data(cfg: RunConfig, tok, template: str | None, run: Run):
    """(train, validation or None) tokenized as the wizard's preview shows them: dataset.*."""
    from ..data.prepare import prepare_training_data

    run.phase("loading_data", cfg.dataset.path)
    train_ds, eval_ds, facts = prepare_training_data(cfg, tok, template, run.events.emit, run.phase)
    run.facts = {**facts, "max_length": cfg.train.max_length}
    if cfg.train.early_stopping_patience and eval_ds is None:
        raise UserError("needs validation rows, but the validation split of this dataset is empty: raise "
                        "dataset.validation or set dataset.validation_path", field="train.early_stopping_patience")
    return train_ds, eval_ds


# ------------------------------------------------------------------------------ Trainer arguments


def planned_steps(cfg: RunConfig, n_rows: int) -> int:
    """Optimizer steps of the run (train.max_steps, else epochs over `n_rows` rows)."""
    from ..schedule import effective_batch, steps_per_epoch, total_steps

    t = cfg.train
    eff = effective_batch(t.batch_size, t.gradient_accumulation_steps, int(os.environ.get("WORLD_SIZE", 1)))
    return total_steps(steps_per_epoch(n_rows, eff), t.epochs, t.max_steps)


def trainer_arguments(cfg: RunConfig, dev: Device, run: Run, steps: int, has_eval: bool) -> dict:
    """TrainingArguments every recipe shares: train.* and the device, exactly as config.yaml says."""
    t = cfg.train
    eval_steps = t.eval_steps or max(1, steps // 10)
    return dict(
        output_dir=str(run.dir / "checkpoints"),
        # train.micro_batch_size rows per pass, the batch's passes accumulated: the same optimizer step
        per_device_train_batch_size=t.rows_per_pass, per_device_eval_batch_size=t.batch_size,
        gradient_accumulation_steps=t.passes_per_step,
        num_train_epochs=t.epochs, max_steps=t.max_steps,
        # transformers 5 takes the warmup ratio as warmup_steps < 1.
        learning_rate=t.learning_rate, lr_scheduler_type=t.lr_scheduler, warmup_steps=t.warmup_ratio,
        weight_decay=t.weight_decay, max_grad_norm=t.max_grad_norm, optim=dev.optim,
        activation_checkpointing=dev.gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False},
        # bf16 on a CPU is CPU autocast (use_cpu); fp16 on a CPU was refused by device_for.
        bf16=dev.precision == "bf16", fp16=dev.precision == "fp16", use_cpu=not dev.cuda,
        seed=t.seed, data_seed=t.seed,
        logging_steps=t.logging_steps, logging_first_step=True,
        logging_nan_inf_filter=False,  # the Trainer would log a NaN loss as 0.0: show the truth
        eval_strategy="steps" if has_eval else "no", eval_steps=eval_steps,
        # Checkpoints at every evaluation unless save_steps says otherwise; the best by validation loss
        # is kept beside the last save_total_limit ones.
        save_strategy="steps", save_steps=t.save_steps or eval_steps, save_total_limit=t.save_total_limit,
        metric_for_best_model="eval_loss" if has_eval else None, greater_is_better=False,
        report_to=tracker_setup(cfg, run), run_name=run.dir.name, disable_tqdm=True,
        remove_unused_columns=True, dataloader_num_workers=0, use_liger_kernel=dev.liger,
        **distributed_arguments(dev),
    )


def tracker_setup(cfg: RunConfig, run: Run) -> list[str] | str:
    """train.report_to for the Trainer, with each tracker's files in the run dir unless the environment
    says otherwise: TensorBoard in tensorboard/, MLflow in mlruns/, W&B offline (WANDB_MODE) in wandb/."""
    names = cfg.train.report_to
    if "tensorboard" in names:
        os.environ.setdefault("TENSORBOARD_LOGGING_DIR", str(run.dir / "tensorboard"))
    if "wandb" in names:
        os.environ.setdefault("WANDB_MODE", "offline")
        os.environ.setdefault("WANDB_DIR", str(run.dir))
        os.environ.setdefault("WANDB_PROJECT", "ftwizard")
    if "mlflow" in names:
        os.environ.setdefault("MLFLOW_TRACKING_URI", (run.dir / "mlruns").as_uri())
        os.environ.setdefault("MLFLOW_EXPERIMENT_NAME", "ftwizard")
    return list(names) or "none"


def distributed_arguments(dev: Device) -> dict:
    """TrainingArguments for distributed.strategy (the Trainer's own DDP, FSDP2 and DeepSpeed paths)."""
    if dev.world_size == 1:
        return {}
    out: dict[str, Any] = {"ddp_backend": "nccl" if dev.cuda else "gloo", "ddp_find_unused_parameters": False}
    if dev.strategy == "fsdp":
        # FSDP2 full shard (reshard after forward), through transformers' `fsdp=True` + fsdp_config (the
        # string form "full_shard auto_wrap offload" is deprecated). Accelerate applies it to GPU process
        # groups only: on CPU processes it would silently train whole DDP copies, so fsdp on a CPU is
        # refused before this (FSDP_NEEDS_GPU).
        out["fsdp"] = True
        out["fsdp_config"] = {"version": 2, "reshard_after_forward": True, "state_dict_type": "SHARDED_STATE_DICT",
                              "cpu_ram_efficient_loading": False, "cpu_offload": dev.offload == "cpu"}
    elif dev.strategy in ("zero2", "zero3"):
        out["deepspeed"] = deepspeed_config(dev)
    return out


def deepspeed_config(dev: Device) -> dict:
    """DeepSpeed's config for zero2 / zero3 ("auto" values are filled in by the Trainer)."""
    zero: dict[str, Any] = {"stage": 2 if dev.strategy == "zero2" else 3, "overlap_comm": True,
                            "contiguous_gradients": True}
    if dev.strategy == "zero3":
        zero["stage3_gather_16bit_weights_on_model_save"] = True
        if dev.offload in ("cpu", "nvme"):
            target = {"device": dev.offload, "pin_memory": True}
            zero["offload_param"] = dict(target)
            zero["offload_optimizer"] = dict(target)
    return {"zero_optimization": zero, "bf16": {"enabled": "auto"}, "fp16": {"enabled": "auto"},
            "train_micro_batch_size_per_gpu": "auto", "gradient_accumulation_steps": "auto",
            "gradient_clipping": "auto", "train_batch_size": "auto"}


def add_callbacks(trainer, cfg: RunConfig, run: Run, dev: Device, counter, metrics: dict | None = None) -> None:
    """events.jsonl, the first-step probe, early stopping and the user's callbacks; the Trainer's
    printers go (they print dicts to stdout every log). `metrics` maps a kind's TRL log names to the
    names its `train` events carry (e.g. rewards/margins -> reward_margin)."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(events_callback(run, dev, counter, metrics))
    trainer.add_callback(first_step_probe(run))
    from ..checkpoints import guard_saves
    from ..doctor import training_callback

    guard_saves(trainer, run.events.emit)  # whole (temp name, then rename) and finite checkpoints only
    trainer.doctor = training_callback(run.events.emit, getattr(trainer.model.config, "vocab_size", None), metrics)
    trainer.add_callback(trainer.doctor)  # diverging / dead model: ends the run (save() checks)
    if cfg.train.early_stopping_patience:
        trainer.add_callback(early_stopping(run, cfg.train.early_stopping_patience))
    if run.rank == 0 and trainer.processing_class is not None:  # forgetting.json: base vs tuned on general text
        from ..forgetting import training_callback as forgetting_check

        tok = getattr(trainer.processing_class, "tokenizer", trainer.processing_class)
        trainer.add_callback(forgetting_check(run.dir, tok, cfg.train.max_length, dev.world_size))
    for ref in cfg.train.callbacks:
        trainer.add_callback(import_callback(ref))


# ------------------------------------------------------------------------------------------- save


def save(trainer, tok, cfg: RunConfig, run: Run) -> Outcome:
    """output/ (adapter or model, and the tokenizer); on a stop, the trainer state and a checkpoint."""
    if len(run.nonfinite_steps) >= NONFINITE_LIMIT:
        raise NonFiniteLoss(f"loss is nan at steps {', '.join(map(str, run.nonfinite_steps))}; "
                            f"training ended at step {trainer.state.global_step}")
    trainer.doctor.check()  # diverged / dead model: failed with the doctor's reason, nothing saved
    stopped = run.stop_requested
    run.phase("saving", "adapter" if cfg.method != "full" else "model")
    out = run.dir / "output"
    if getattr(trainer, "is_fsdp_enabled", False):
        # Checkpoints stay sharded (SHARDED_STATE_DICT); with that type save_model writes no weights at
        # all (transformers saves FSDP weights for FULL_STATE_DICT only): gather them for output/.
        trainer.accelerator.state.fsdp_plugin.set_state_dict_type("FULL_STATE_DICT")
    trainer.save_model(str(out))  # every rank: FSDP / ZeRO-3 gather the shards; rank 0 writes
    if run.rank == 0:
        tok.save_pretrained(str(out))
    if stopped:
        trainer.save_state()
        if not last_checkpoint(run.dir):
            trainer._save_checkpoint(trainer.model, trial=None)
    return Outcome(stopped=stopped, output=out, step=trainer.state.global_step)


# -------------------------------------------------------------------------------------- callbacks


def events_callback(run: Run, dev: Device, counter, metrics: dict | None = None):
    """The TrainerCallback that writes events.jsonl (rank 0 only) and honours stop requests."""
    from transformers import TrainerCallback

    class EventsCallback(TrainerCallback):
        def __init__(self):
            self.t_last = None
            self.tokens_last = 0
            self.t0 = None
            self.timer = None  # several processes: this rank's compute per step, for the monitor's slowest rank

        def on_train_begin(self, args, state, control, model=None, **kw):
            run.training_started = True
            self.t0 = self.t_last = time.time()
            self.tokens_last = counter.tokens
            if run.world_size > 1 and model is not None and self.timer is None:
                self.timer = ComputeTimer(model, dev.cuda, state.global_step)
            if state.is_world_process_zero:
                run.phase("training", f"{state.max_steps} steps", max_steps=state.max_steps,
                          start_step=state.global_step)

        def on_step_end(self, args, state, control, **kw):
            if run.agree_to_stop():
                run.stop_requested = True
                control.should_save = True
                control.should_training_stop = True

        def on_log(self, args, state, control, logs=None, **kw):
            if run.world_size > 1 and logs and "loss" in logs and not state.is_world_process_zero:
                run.write_memory(self.rank_report(state))  # rank 0 folds it into its next train event
                return
            if not state.is_world_process_zero or not logs:
                return
            now = time.time()
            if "loss" in logs:
                dt = max(now - self.t_last, 1e-9)
                tps = (counter.tokens - self.tokens_last) / dt
                self.t_last, self.tokens_last = now, counter.tokens
                ev = {"step": state.global_step, "max_steps": state.max_steps,
                      "epoch": round(state.epoch or 0, 4), "loss": logs["loss"],
                      "lr": logs.get("learning_rate"), "grad_norm": logs.get("grad_norm"),
                      "tokens_per_s": round(tps, 1), "tokens": counter.tokens,
                      "elapsed_s": round(now - self.t0, 3), "mem": memory(dev)}
                if run.world_size > 1:
                    ev["world_size"] = run.world_size
                    mine = self.rank_report(state, ev["mem"])
                    run.write_memory(mine)
                    ev["mem"] = {**ev["mem"], "ranks": run.ranks_memory(mine)}
                for k in ("mean_token_accuracy", "entropy", "perplexity"):
                    if k in logs:
                        ev[k] = logs[k]
                for k, name in (metrics or {}).items():
                    if k in logs:
                        ev[name] = logs[k]
                if getattr(run, "train_metrics", None):  # the kind's own numbers (grpo: rewards)
                    ev.update(run.train_metrics(logs))
                run.events.emit("train", **ev)
                run.write_status(throttle=True, step=state.global_step, max_steps=state.max_steps)
                check_estimate(run, ev["mem"], state.global_step)
                loss = logs["loss"]
                log(f"step {state.global_step}/{state.max_steps} loss {loss:.4f} lr {ev['lr']:.2e} "
                    f"grad {ev['grad_norm'] if ev['grad_norm'] is None else round(ev['grad_norm'], 3)} "
                    f"{tps:.0f} tok/s")
                # A loss that stays NaN/inf only burns compute: end the run as failed after 3 logs.
                grad = ev["grad_norm"]
                if not _finite(loss) or (grad is not None and not _finite(grad)):
                    run.nonfinite_steps.append(state.global_step)
                    if len(run.nonfinite_steps) >= NONFINITE_LIMIT:
                        control.should_training_stop = True
                else:
                    run.nonfinite_steps.clear()
            if "eval_loss" in logs:
                run.events.emit("eval", step=state.global_step, eval_loss=logs["eval_loss"],
                                **({"eval_perplexity": logs["eval_perplexity"]} if "eval_perplexity" in logs else {}))
                log(f"eval step {state.global_step} eval_loss {logs['eval_loss']:.4f}")

        def rank_report(self, state, mem: dict | None = None) -> dict:
            """This rank's memory, the step it reports at and its compute seconds per step since its last report."""
            out = {**(mem or memory(dev)), "step": state.global_step}
            if self.timer is not None:
                out["compute_s"] = self.timer.per_step(state.global_step)
            return out

        def on_save(self, args, state, control, **kw):
            if state.is_world_process_zero:
                run.events.emit("checkpoint", step=state.global_step,
                                path=str(Path(args.output_dir) / f"checkpoint-{state.global_step}"))

    return EventsCallback()


def first_step_probe(run: Run):
    """What the first optimizer step really did, as an `info` event `first_step`: the dtype the LM head
    computed in (bf16 under autocast even with fp32 weights), how often the first decoder layer ran
    forward (x2 per micro-batch when activations are recomputed), the micro-batches per optimizer step,
    and the model's own gradient-checkpointing flag. Hooks live for one step only."""
    from transformers import TrainerCallback

    class FirstStepProbe(TrainerCallback):
        hooks: list = []
        seen: dict = {}

        def on_train_begin(self, args, state, control, model=None, **kw):
            if model is None or not state.is_world_process_zero:
                return
            from transformers.modeling_layers import GradientCheckpointingLayer

            self.seen = {"lm_head_dtype": None, "layer_forwards": 0, "micro_batches": 0}
            self.gc = bool(getattr(model, "is_activation_checkpointing", False))

            def on_head(_m, _i, out):
                self.seen["lm_head_dtype"] = str(out.dtype).removeprefix("torch.")

            def on_layer(*_):
                self.seen["layer_forwards"] += 1

            def on_model(*_):
                self.seen["micro_batches"] += 1

            layer = next((m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)), None)
            # transformers checkpoints a layer's `forward`, not its `__call__`: the layer's own hooks run
            # once either way, a submodule's (its first child) run again when the forward is recomputed.
            inner = next(layer.children(), None) if layer is not None else None
            head = model.get_output_embeddings()
            self.hooks = [model.register_forward_pre_hook(on_model)]
            if head is not None:
                self.hooks.append(head.register_forward_hook(on_head))
            if inner is not None:
                self.hooks.append(inner.register_forward_pre_hook(on_layer))

        def on_step_end(self, args, state, control, **kw):
            if not self.hooks:
                return
            for h in self.hooks:
                h.remove()
            self.hooks = []
            run.events.emit("info", key="first_step", value={"step": state.global_step, **self.seen,
                                                              "gradient_checkpointing": self.gc})

    return FirstStepProbe()


def check_estimate(run: Run, mem: dict, step: int) -> None:
    """Once per run: a `warning` event when the measured peak exceeds the launch estimate by more than
    the stated tolerance, so an estimator error surfaces on real hardware instead of in a table."""
    from ..estimate import ESTIMATE_TOLERANCE, exceeds_estimate
    from ..events import mem_peak_gib

    peak = mem_peak_gib(mem)
    if run.estimate_warned or not exceeds_estimate(peak, run.estimate_gib):
        return
    run.estimate_warned = True
    run.events.emit("warning", code="estimate-exceeded",
                    message=f"measured peak {peak:.2f} GiB is above the estimate {run.estimate_gib:.2f} GiB by more "
                            f"than {ESTIMATE_TOLERANCE:.0%}: the estimator is off for this run",
                    evidence={"step": step, "peak_gib": peak, "estimate_gib": run.estimate_gib},
                    advice=["leave more headroom than the estimate says for this model",
                            "report the run's config and peak so the estimator can be calibrated"])


def _finite(x) -> bool:
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def memory(dev: Device) -> dict:
    """This process's memory: per CUDA device it trains on (several processes: its own card only, each
    rank reports its own), with `gpu`, the card's NVML index, when CUDA_VISIBLE_DEVICES names the
    cards by index (so the monitor puts it on the right card's meter); on a CPU its resident memory."""
    if dev.cuda:
        import torch

        gib = 1024 ** 3
        visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
        mine = [torch.cuda.current_device()] if dev.world_size > 1 else range(torch.cuda.device_count())
        return {"cuda": [{"device": i, **({"gpu": int(visible[i])} if i < len(visible) and visible[i].isdigit()
                                          else {}),
                          "allocated_gib": round(torch.cuda.memory_allocated(i) / gib, 3),
                          "reserved_gib": round(torch.cuda.memory_reserved(i) / gib, 3),
                          "peak_gib": round(torch.cuda.max_memory_allocated(i) / gib, 3),
                          "peak_reserved_gib": round(torch.cuda.max_memory_reserved(i) / gib, 3)}
                         for i in mine]}
    return {"rss_gib": round(_this_process().memory_info().rss / 1024 ** 3, 3), "peak_rss_gib": peak_rss_gib()}


class ComputeTimer:
    """Seconds this rank spends per optimizer step in the model's forward passes while training (GRPO's
    generation included; evaluation not). Under DDP that is the part of a step with no collective in
    it (gradients are all-reduced in backward, where a fast rank waits for the slow one), so a rank the
    others wait for shows here and not in the step time, which is the same on every rank. With FSDP the
    forward's all-gathers are inside: a coarser sign. On a GPU it reads CUDA events at log time (no
    synchronisation per step)."""

    def __init__(self, model, cuda: bool, step: int):
        self.cuda = cuda
        self.last_step = step
        self.total = 0.0
        self.pending: list = []  # (start, end) CUDA events not read yet
        self._start = None
        model.register_forward_pre_hook(self._pre)
        model.register_forward_hook(self._post)

    def _pre(self, module, *_):
        if not module.training:
            self._start = None
        elif self.cuda:
            import torch

            self._start = torch.cuda.Event(enable_timing=True)
            self._start.record()
        else:
            self._start = time.perf_counter()

    def _post(self, *_):
        if self._start is None:
            return
        if self.cuda:
            import torch

            end = torch.cuda.Event(enable_timing=True)
            end.record()
            self.pending.append((self._start, end))
        else:
            self.total += time.perf_counter() - self._start
        self._start = None

    def per_step(self, step: int) -> float | None:
        for start, end in self.pending:
            end.synchronize()
            self.total += start.elapsed_time(end) / 1000
        self.pending.clear()
        n, self.last_step = step - self.last_step, step
        out = round(self.total / n, 5) if n > 0 else None
        self.total = 0.0
        return out


def peak_rss_gib() -> float | None:
    """This process's peak resident memory so far: the kernel's high-water mark of this address space
    (VmHWM), not a sample. Not getrusage's ru_maxrss: Linux carries that over from the parent across
    fork and exec, so a trainer started by a large process (a test session, the wizard) reported the
    parent's size (1.68 GiB for a 0.5 GiB tiny run)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) * 1024 / 1024 ** 3, 3)  # kB
    except (OSError, ValueError):
        pass
    return None


@functools.cache
def _this_process():
    import psutil

    return psutil.Process()


def early_stopping(run: Run, patience: int):
    """Stop when validation loss has not improved for `patience` evaluations (train.early_stopping_patience)."""
    from transformers import TrainerCallback

    class EarlyStopping(TrainerCallback):
        best = math.inf
        bad = 0

        def on_evaluate(self, args, state, control, metrics=None, **kw):
            loss = (metrics or {}).get("eval_loss")
            if loss is None:
                return
            if loss < self.best - 1e-4:
                self.best, self.bad = loss, 0
                return
            self.bad += 1
            if self.bad >= patience:
                control.should_training_stop = True
                control.should_save = True
                if state.is_world_process_zero:
                    run.events.emit("warning", code="early-stop",
                                    message=f"validation loss has not improved for {patience} evaluations "
                                            f"(best {self.best:.4f}); stopping early",
                                    evidence={"step": state.global_step, "eval_loss": loss, "best": self.best})

    return EarlyStopping()


def import_callback(ref: str):
    """'module:Class' -> an instance of that TrainerCallback (train.callbacks)."""
    import importlib

    module, _, attr = ref.partition(":")
    try:
        obj = getattr(importlib.import_module(module), attr or "Callback")
    except (ImportError, AttributeError) as exc:
        raise UserError(f"cannot import callback '{ref}': {exc}", field="train.callbacks") from None
    return obj() if isinstance(obj, type) else obj
