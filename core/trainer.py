"""The training process: `python -m ftwizard.core.trainer RUN_DIR [--resume]`.

Reads `RUN_DIR/config.yaml` and nothing else; writes `events.jsonl`, `status.json`, checkpoints and
`output/`. It is started detached by `ftwizard train` (own session, stdout/stderr to `train.log`) so it
survives the terminal. Read top to bottom: setup -> train -> cleanup.

Feature -> config key:
    model source, GGUF, attention   model.name_or_path, model.gguf_file, model.attn_implementation
    chat template                   model.chat_template (else the tokenizer's, with generation markers)
    full / LoRA / QLoRA             method, lora.*, quantization.*
    data, masking, validation       dataset.* (assistant_only_loss, validation, validation_path)
    schedule and optimizer          train.learning_rate, lr_scheduler, warmup_ratio, optim, epochs, max_steps
    memory                          train.batch_size, gradient_accumulation_steps, max_length,
                                    gradient_checkpointing, precision
    longest batch first             train.longest_first (an OOM shows at step 1, not hours in)
    telemetry                       always events.jsonl; train.logging_steps; train.extra_metrics
    stop                            SIGTERM or RUN_DIR/stop.request: checkpoint, save, state "stopped"
    resume                          --resume: from the last checkpoint in RUN_DIR/checkpoints
"""

from __future__ import annotations

import functools
import math
import os
import signal
import sys
import time
import traceback
from pathlib import Path

from .checkpoints import guard_saves, load_start_adapter, refuse_final, resume_checkpoint  # i12 hooks
from .config import RunConfig, load_config
from .doctor import training_callback  # i12 hook
from .errors import UserError
from .events import EventWriter
from .runs import CONFIG, STATUS, STOP_REQUEST, write_json_atomic


NONFINITE_LIMIT = 3  # consecutive NaN/inf losses before a run is ended as failed


class NonFiniteLoss(Exception):
    """The loss stayed NaN/inf: the run ends as failed with the 'nan' diagnosis."""


class StopRequested(Exception):
    """Raised at a phase change when a stop was asked for before training started (nothing to
    checkpoint yet)."""


class Run:
    """The run directory as the training process sees it: events, status and the stop flag."""

    def __init__(self, run_dir: Path):
        self.dir = run_dir
        self.events = EventWriter(run_dir)
        self.stop_requested = False
        self.training_started = False
        self.facts: dict = {}  # facts about the tokenized data, for diagnoses
        self.nonfinite_steps: list[int] = []  # consecutive logged steps whose loss was NaN/inf
        self.status = {"pid": os.getpid(), "state": "running", "phase": "started", "step": 0,
                       "started": time.time()}
        self.write_status()

    def write_status(self, throttle: bool = False, **fields) -> None:
        """status.json; with `throttle`, at most once a second (per-step updates: events.jsonl has every
        step already, and the atomic rewrite costs ~0.7 ms)."""
        now = time.time()
        self.status.update(fields)
        if throttle and now - self.status.get("updated", 0) < 1.0:
            return
        self.status["updated"] = now
        write_json_atomic(self.dir / STATUS, self.status)

    def phase(self, phase: str, detail: str = "", **extra) -> None:
        self.events.emit("phase", phase=phase, detail=detail, **extra)
        self.write_status(phase=phase)
        log(f"[{phase}] {detail}")
        if not self.training_started and self.should_stop():
            raise StopRequested()  # a stop asked for while starting up: no need to load anything more

    def request_stop(self, *_):
        # Only a flag: raising from a signal handler could land inside any import or C call (seen:
        # numpy's import broken half-way). Before training, the next phase change ends the run;
        # during training, the next step end checkpoints and stops.
        self.stop_requested = True

    def should_stop(self) -> bool:
        return self.stop_requested or (self.dir / STOP_REQUEST).exists()


def log(line: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {line}", flush=True)


# ----------------------------------------------------------------------------------------- setup


def skip_unneeded_imports(cfg: RunConfig) -> None:
    """peft imports bitsandbytes eagerly when it is installed (and bitsandbytes pulls in
    torch._inductor: seconds of start-up) only to offer 8/4-bit layers. A run that quantizes nothing
    and uses no 8-bit optimizer never needs it, so it is hidden from this process."""
    needs_bnb = cfg.method == "qlora" or "8bit" in (cfg.train.optim or "")
    if not needs_bnb and "bitsandbytes" not in sys.modules:
        sys.modules["bitsandbytes"] = None  # `import bitsandbytes` now fails fast; find_spec says absent


def pick_device(cfg: RunConfig) -> dict:
    """Device, precision, attention, kernels and optimizer for this process, from a config whose `auto`
    values `defaults.resolve_defaults` made concrete; torch has the last word on what CUDA can do."""
    import torch

    t = cfg.train
    if t.device == "cuda" and not torch.cuda.is_available():
        raise UserError("train.device is cuda but no CUDA GPU is visible to torch", field="train.device")
    cuda = t.device == "cuda"
    precision = t.precision
    if not cuda:
        precision = "fp32"  # CPU training: mixed precision brings nothing but errors here
    elif precision == "bf16" and not torch.cuda.is_bf16_supported():
        precision = "fp16"
    return {"cuda": cuda, "precision": precision, "attn": cfg.model.attn_implementation,
            "liger": bool(t.use_liger_kernel and cuda), "packing": bool(t.packing), "optim": t.optim,
            "n_gpus": torch.cuda.device_count() if cuda else 0}


def load_tokenizer_and_model(cfg: RunConfig, dev: dict, run: Run, resolved_path: str):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(resolved_path, revision=cfg.model.revision,
                                        trust_remote_code=cfg.model.trust_remote_code)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[dev["precision"]]
    if cfg.method == "full" and dev["cuda"]:
        dtype = torch.float32  # mixed precision keeps fp32 master weights; autocast does the rest
    kwargs = {"dtype": dtype, "attn_implementation": dev["attn"], "revision": cfg.model.revision,
              "trust_remote_code": cfg.model.trust_remote_code}
    if cfg.method == "qlora":
        from transformers import BitsAndBytesConfig

        compute = cfg.quantization.compute_dtype
        compute_dtype = dtype if compute == "auto" else getattr(torch, compute)
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type=cfg.quantization.quant_type,
            bnb_4bit_use_double_quant=cfg.quantization.double_quant, bnb_4bit_compute_dtype=compute_dtype,
            bnb_4bit_quant_storage=compute_dtype)
    if dev["cuda"]:
        kwargs["device_map"] = {"": int(os.environ.get("LOCAL_RANK", 0))}
    model = AutoModelForCausalLM.from_pretrained(resolved_path, **kwargs)
    model.config.use_cache = False
    return tok, model


UNSLOTH_ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def load_with_unsloth(cfg: RunConfig, dev: dict, resolved_path: str):
    """model.backend: unsloth. Unsloth's loader and LoRA wrapper (its kernels; GPU only).
    Not exercised on CPU: Unsloth refuses to import without a GPU."""
    if not dev["cuda"]:
        raise UserError("model.backend 'unsloth' needs a CUDA GPU; use 'transformers'", field="model.backend")
    try:
        from unsloth import FastLanguageModel
    except ImportError:
        raise UserError("model.backend is 'unsloth' but unsloth is not installed (pip install unsloth)",
                        field="model.backend") from None
    model, tok = FastLanguageModel.from_pretrained(
        model_name=resolved_path, max_seq_length=cfg.train.max_length, dtype=None,
        load_in_4bit=cfg.method == "qlora", full_finetuning=cfg.method == "full")
    if cfg.method != "full":
        targets = cfg.lora.target_modules
        model = FastLanguageModel.get_peft_model(
            model, r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout, bias="none",
            target_modules=UNSLOTH_ALL_LINEAR if targets == "all-linear" else targets,
            use_gradient_checkpointing="unsloth" if cfg.train.gradient_checkpointing else False,
            random_state=cfg.train.seed, use_rslora=cfg.lora.use_rslora)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok, model


def apply_method(cfg: RunConfig, model, dev: dict):
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


def prepare_kbit(model, upcast_fp32: bool):
    """A 4-bit model made ready for adapters. With `upcast_fp32`, peft's prepare_model_for_kbit_training
    (every non-4-bit weight to fp32); without it the model is left as loaded, embeddings, lm_head and
    norms in the compute dtype, the way LoRA keeps them (get_peft_model freezes the base either way).
    Checkpointing is the Trainer's for every method (`activation_checkpointing`), not peft's."""
    if not upcast_fp32:
        return model
    from peft import prepare_model_for_kbit_training

    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)


def make_callback(run: Run, cfg: RunConfig, dev: dict, counter):
    """The TrainerCallback that writes events.jsonl (rank 0 only) and honours stop requests."""
    from transformers import TrainerCallback

    class EventsCallback(TrainerCallback):
        def __init__(self):
            self.t_last = None
            self.tokens_last = 0
            self.t0 = None

        def on_train_begin(self, args, state, control, **kw):
            run.training_started = True
            self.t0 = self.t_last = time.time()
            self.tokens_last = counter.tokens
            if state.is_world_process_zero:
                run.phase("training", f"{state.max_steps} steps", max_steps=state.max_steps,
                          start_step=state.global_step)

        def on_step_end(self, args, state, control, **kw):
            if run.should_stop():
                run.stop_requested = True
                control.should_save = True
                control.should_training_stop = True

        def on_log(self, args, state, control, logs=None, **kw):
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
                for k in ("mean_token_accuracy", "entropy"):
                    if k in logs:
                        ev[k] = logs[k]
                run.events.emit("train", **ev)
                run.write_status(throttle=True, step=state.global_step, max_steps=state.max_steps)
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
                run.events.emit("eval", step=state.global_step, eval_loss=logs["eval_loss"])
                log(f"eval step {state.global_step} eval_loss {logs['eval_loss']:.4f}")

        def on_save(self, args, state, control, **kw):
            if state.is_world_process_zero:
                run.events.emit("checkpoint", step=state.global_step,
                                path=str(Path(args.output_dir) / f"checkpoint-{state.global_step}"))

    return EventsCallback()


def _finite(x) -> bool:
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def memory(dev: dict) -> dict:
    if dev["cuda"]:
        import torch

        gib = 1024 ** 3
        return {"cuda": [{"device": i, "allocated_gib": round(torch.cuda.memory_allocated(i) / gib, 3),
                          "reserved_gib": round(torch.cuda.memory_reserved(i) / gib, 3),
                          "peak_gib": round(torch.cuda.max_memory_allocated(i) / gib, 3)}
                         for i in range(torch.cuda.device_count())]}
    return {"rss_gib": round(_this_process().memory_info().rss / 1024 ** 3, 3)}


@functools.cache
def _this_process():
    import psutil

    return psutil.Process()


class TokenCounter:
    """Counts non-padding tokens as the collator builds batches, on the CPU: no GPU sync per step."""

    def __init__(self, collator):
        self.collator = collator
        self.tokens = 0

    def __call__(self, examples):
        self.tokens += sum(len(e["input_ids"]) for e in examples)
        return self.collator(examples)


def build_trainer(cfg: RunConfig, run: Run, dev: dict, model, tok, train_ds, eval_ds):
    import torch
    from transformers import Trainer
    from trl import SFTConfig, SFTTrainer
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    t = cfg.train
    n_rows = len(train_ds)  # before packing: the number of steps per epoch is recomputed by the Trainer
    eff_batch = t.batch_size * t.gradient_accumulation_steps * max(1, int(os.environ.get("WORLD_SIZE", 1)))
    steps = t.max_steps if t.max_steps > 0 else max(1, math.ceil(n_rows / eff_batch) * math.ceil(t.epochs))
    eval_steps = t.eval_steps or max(1, steps // 10)
    args = SFTConfig(
        output_dir=str(run.dir / "checkpoints"),
        per_device_train_batch_size=t.batch_size, per_device_eval_batch_size=t.batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        num_train_epochs=t.epochs, max_steps=t.max_steps,
        learning_rate=t.learning_rate, lr_scheduler_type=t.lr_scheduler, warmup_steps=t.warmup_ratio,
        weight_decay=t.weight_decay, max_grad_norm=t.max_grad_norm, optim=dev["optim"],
        activation_checkpointing=t.gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False},
        bf16=dev["precision"] == "bf16", fp16=dev["precision"] == "fp16", use_cpu=not dev["cuda"],
        seed=t.seed, data_seed=t.seed,
        logging_steps=t.logging_steps, logging_first_step=True,
        logging_nan_inf_filter=False,  # the Trainer would log a NaN loss as 0.0: show the truth
        eval_strategy="steps" if eval_ds is not None else "no", eval_steps=eval_steps,
        # Checkpoints at every evaluation unless save_steps says otherwise; the best by validation loss
        # is kept beside the last save_total_limit ones.
        save_strategy="steps", save_steps=t.save_steps or eval_steps, save_total_limit=t.save_total_limit,
        metric_for_best_model="eval_loss" if eval_ds is not None else None, greater_is_better=False,
        report_to=t.report_to or "none", disable_tqdm=True,
        max_length=t.max_length, packing=False,
        dataset_kwargs={"skip_prepare_dataset": True},
        remove_unused_columns=True, dataloader_num_workers=0, use_liger_kernel=dev["liger"],
    )
    # transformers 5 takes the warmup ratio as warmup_steps < 1.
    if dev["packing"]:
        # Best-fit-decreasing packing into max_length rows; the collator flattens each batch
        # padding-free (position_ids restart per sequence, so attention never crosses rows).
        from trl import pack_dataset

        train_ds = pack_dataset(train_ds.select_columns(["input_ids", "labels"]), t.max_length, strategy="bfd")
        run.events.emit("info", key="packing", value={"rows_after_packing": len(train_ds)})
    collator = TokenCounter(DataCollatorForLanguageModeling(pad_token_id=tok.pad_token_id,
                                                            padding_free=dev["packing"]))

    class FtwizardTrainer(SFTTrainer):
        """SFTTrainer without per-step extras unless asked (train.extra_metrics).

        TRL computes entropy and token accuracy for every batch, with three host syncs; the monitor
        shows neither, so by default the loss is computed the way transformers' Trainer does it.
        """

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if t.extra_metrics:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            return Trainer.compute_loss(self, model, inputs, return_outputs, num_items_in_batch)

        # Two per-step costs of the Trainer that buy nothing here: FLOPs are counted by walking every
        # parameter each step (the count per token never changes: computed once), and gradients are
        # clipped over model.parameters(), frozen ones included (LoRA: a few trainable tensors of
        # hundreds). Same results; with FSDP/DeepSpeed the Trainer's own path is kept.
        _flops_per_token = None
        _trainable = None

        def floating_point_ops(self, inputs):
            if self._flops_per_token is None:
                self._flops_per_token = super().floating_point_ops({"input_ids": _ONE_TOKEN})
            ids = inputs.get("input_ids")
            return self._flops_per_token * (ids.numel() if ids is not None else 0)

        def _plain(self) -> bool:
            """One process or plain DDP: parameters are ordinary tensors, no FSDP/DeepSpeed sharding."""
            from accelerate.utils import DistributedType

            return self.accelerator.distributed_type in (DistributedType.NO, DistributedType.MULTI_GPU,
                                                         DistributedType.MULTI_CPU)

        def trainable(self, model) -> list:
            if self._trainable is None:
                self._trainable = [p for p in model.parameters() if p.requires_grad]
            return self._trainable

        def _clip_grad_norm(self, model):
            if not self._plain():
                return super()._clip_grad_norm(model)
            return self.accelerator.clip_grad_norm_(self.trainable(model), self.args.max_grad_norm)

        def train(self, *a, **kw):
            if self._plain():
                skip_module_walks(self.model, self.trainable(self.model))
            return super().train(*a, **kw)

        def _get_train_sampler(self, *a, **kw):
            if not t.longest_first:
                return super()._get_train_sampler(*a, **kw)
            lengths = [len(x) for x in self.train_dataset["input_ids"]]
            return LongestFirstSampler(lengths, t.batch_size, t.seed)

    trainer = FtwizardTrainer(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
                              processing_class=tok, data_collator=collator)
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(make_callback(run, cfg, dev, collator))
    guard_saves(trainer, run.events.emit)  # i12 hook: atomic, finite-only checkpoints (core/checkpoints.py)
    trainer.doctor = training_callback(run.events.emit, getattr(model.config, "vocab_size", None))  # i12 hook: diverging/dead
    trainer.add_callback(trainer.doctor)  # i12 hook (main calls trainer.doctor.check() after training)
    if t.early_stopping_patience and eval_ds is not None:
        trainer.add_callback(early_stopping(run, t.early_stopping_patience))
    for ref in t.callbacks:
        trainer.add_callback(import_callback(ref))
    del torch
    return trainer, steps


def skip_module_walks(model, trainable: list) -> None:
    """Two walks over every module the Trainer makes at each step, answered from what is known.

    `model.train()` before each step recurses through every submodule (hundreds with LoRA wrappers)
    to set a flag already set: only an evaluation clears it, through `model.eval()` on this same root,
    so while the root is in training mode so is every submodule. `model.zero_grad()` after each step
    walks every parameter, frozen ones included; only the trainable ones ever hold a gradient. Per
    instance, same results; eval() and train(False) keep the full walk. (A submodule put in eval
    mode by hand while the root trains would stay so; nothing in the Trainer, TRL or peft does that.)
    """
    full_train = type(model).train

    def train(mode: bool = True):
        if mode and model.training:
            return model
        return full_train(model, mode)

    def zero_grad(set_to_none: bool = True) -> None:
        for p in trainable:
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:  # as torch.nn.Module.zero_grad does it
                if p.grad.grad_fn is not None:
                    p.grad.detach_()
                else:
                    p.grad.requires_grad_(False)
                p.grad.zero_()

    model.train = train
    model.zero_grad = zero_grad


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


class _OneToken:
    """Stands for a 1-token input when asking the Trainer for FLOPs per token."""

    def numel(self) -> int:
        return 1


_ONE_TOKEN = _OneToken()


class LongestFirstSampler:
    """A seeded random order with the longest `batch_size` rows first, so an out-of-memory error shows
    at step 1 instead of hours in (unsloth #1624). Deterministic per (seed, epoch), so resume skips the
    same batches the first run saw."""

    def __init__(self, lengths, batch_size: int, seed: int):
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        import torch

        g = torch.Generator()
        g.manual_seed(self.seed + self.epoch)
        order = torch.randperm(len(self.lengths), generator=g).tolist()
        if self.epoch == 0:
            longest = sorted(range(len(self.lengths)), key=lambda i: -self.lengths[i])[: self.batch_size]
            first = set(longest)
            order = longest + [i for i in order if i not in first]
        return iter(order)


def last_checkpoint(run_dir: Path) -> str | None:
    ckpts = sorted((run_dir / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
    return str(ckpts[-1]) if ckpts else None


# ------------------------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    run_dir = Path(argv[0]).resolve()
    resume = "--resume" in argv
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a dropped SSH session must never end training
    # Handlers first, then status.json (with our pid): `ftwizard stop` only signals a process whose pid
    # is in status.json, so a SIGTERM can never arrive before the handler (it would kill, not stop).
    holder: list[Run] = []
    early_stop = []

    def on_stop(*_):
        if holder:
            holder[0].request_stop()
        else:
            early_stop.append(True)

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    if resume and refuse_final(run_dir):  # i12 hook: a completed run is final (core/checkpoints.py)
        return 2
    run = Run(run_dir)
    holder.append(run)
    t_start = time.time()
    try:
        run.stop_requested = bool(early_stop)
        run.phase("started", f"pid {os.getpid()}" + (" (resume)" if resume else ""))
        cfg = load_config(run_dir / CONFIG, resolve_paths=False)
        from .defaults import resolve_defaults
        from .hardware import detect

        # Made concrete when the run was created; this only fills what a hand-written run dir left auto.
        cfg, _ = resolve_defaults(cfg, detect())
        skip_unneeded_imports(cfg)
        from .models import check_model_source, gguf_checkpoint

        path = check_model_source(cfg.model.name_or_path, cfg.model.gguf_file)
        run.phase("loading_model", cfg.model.gguf_file or cfg.model.name_or_path)
        dev = pick_device(cfg)
        run.events.emit("info", key="device", value=dev)
        if cfg.model.gguf_file:
            path = gguf_checkpoint(path, cfg.model.gguf_file, on_progress=lambda m: run.phase("loading_model", m))
        from transformers import set_seed

        set_seed(cfg.train.seed)  # before the adapters are created: their init must be reproducible too
        if cfg.model.backend == "unsloth":
            tok, model = load_with_unsloth(cfg, dev, path)
        else:
            tok, model = load_tokenizer_and_model(cfg, dev, run, path)
        from .templates import END_OF_TURN, choose_template, family

        template, why = choose_template(tok.chat_template, cfg.model.chat_template, cfg.dataset.assistant_only_loss)
        tok.chat_template = template
        fam = family(template)
        if fam and tok.eos_token != END_OF_TURN[fam] and END_OF_TURN[fam] in tok.get_vocab():
            # generation must stop at the end of the assistant's turn (the "endless output" bug)
            tok.eos_token = END_OF_TURN[fam]
            model.generation_config.eos_token_id = tok.eos_token_id
        run.events.emit("info", key="chat_template", value={"why": why, "eos": tok.eos_token})
        model = load_start_adapter(cfg, model) if cfg.model.init_adapter else apply_method(cfg, model, dev)  # i12 hook
        n_params = sum(p.numel() for p in model.parameters())
        n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
        run.events.emit("info", key="parameters", value={"total": n_params, "trainable": n_train})
        run.phase("loading_data", cfg.dataset.path)
        from .data.prepare import prepare_training_data

        train_ds, eval_ds, facts = prepare_training_data(cfg, tok, template, run.events.emit, run.phase)
        run.facts = {**facts, "max_length": cfg.train.max_length}
        trainer, steps = build_trainer(cfg, run, dev, model, tok, train_ds, eval_ds)
        ckpt = resume_checkpoint(run_dir)[0] if resume else None  # i12 hook: newest whole, finite one
        if resume and ckpt is None:
            raise UserError("no checkpoint to resume from in this run", file=str(run_dir / "checkpoints"))
        trainer.train(resume_from_checkpoint=ckpt)
        if len(run.nonfinite_steps) >= NONFINITE_LIMIT:
            raise NonFiniteLoss(f"loss is nan at steps {', '.join(map(str, run.nonfinite_steps))}; "
                                f"training ended at step {trainer.state.global_step}")
        trainer.doctor.check()  # i12 hook: diverged / dead model -> failed with the doctor's reason
        stopped = run.stop_requested
        run.phase("saving", "adapter" if cfg.method != "full" else "model")
        out = run_dir / "output"
        trainer.save_model(str(out))
        tok.save_pretrained(str(out))
        if stopped:
            trainer.save_state()
        state = "stopped" if stopped else "completed"
        reason = "stopped on request (checkpoint saved)" if stopped else None
        if stopped and not last_checkpoint(run_dir):
            trainer._save_checkpoint(trainer.model, trial=None)
        run.events.emit("end", state=state, reason=reason, output=str(out),
                        elapsed_s=round(time.time() - t_start, 2), step=trainer.state.global_step)
        run.write_status(state=state, reason=reason, step=trainer.state.global_step)
        log(f"{state}: {out}")
        return 0
    except StopRequested:
        reason = "stopped on request before training started"
        run.events.emit("end", state="stopped", reason=reason, output=None)
        run.write_status(state="stopped", reason=reason)
        return 0
    except UserError as exc:
        reason = str(exc).splitlines()[0]
        from .diagnose import diagnose_text

        diag = {"kind": "dataset" if "dataset" in reason else "config", "message": reason, "fixes": []}
        diag = diagnose_text(reason) or diag
        run.events.emit("end", state="failed", reason=reason, diagnosis=diag)
        run.write_status(state="failed", reason=reason, diagnosis=diag)
        log(f"failed: {reason}")
        return 2
    except BaseException as exc:  # noqa: BLE001 - the run must always record how it ended
        tb = traceback.format_exc()
        print(tb, file=sys.stderr, flush=True)
        from .diagnose import diagnose_text

        text = f"{type(exc).__name__}: {exc}"
        diag = diagnose_text(text, exc_type=type(exc).__name__, run_dir=run_dir) or {  # i12 hook: run_dir
            "kind": "error", "message": text.splitlines()[0][:300], "fixes": ["see train.log"]}
        if diag["kind"] == "oom":
            # Where it happened and the longest batch, so the fixes can be judged (with longest_first the
            # longest rows run at step 1: an OOM later means memory grew, e.g. fragmentation or eval).
            step = run.status.get("step") or 0
            where = f"at step {step + 1}" if run.training_started else "before training started"
            longest = run.facts.get("max_length_seen")
            diag["message"] = f"CUDA out of memory {where}" + (
                f"; longest row {longest} tokens (max_length {run.facts.get('max_length')})" if longest else "")
            diag["step"] = step + 1 if run.training_started else None
            diag["longest_row_tokens"] = longest
        run.events.emit("end", state="failed", reason=diag["message"], diagnosis=diag)
        run.write_status(state="failed", reason=diag["message"], diagnosis=diag)
        return 1
    finally:
        run.events.close()


if __name__ == "__main__":
    sys.exit(main())
