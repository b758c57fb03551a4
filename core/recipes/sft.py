"""Supervised fine-tuning (training: sft): setup -> train -> save, on the shared set-up of common.py.

Feature -> config key:
    model source, GGUF, revision    model.name_or_path, model.gguf_file, model.revision, model.trust_remote_code
    attention, Unsloth              model.attn_implementation, model.backend
    chat template                   model.chat_template (else the tokenizer's, with generation markers)
    full / LoRA / QLoRA             method, lora.*, quantization.*
    data, masking, validation       dataset.* (assistant_only_loss, validation, validation_path)
    schedule and optimizer          train.learning_rate, lr_scheduler, warmup_ratio, optim, epochs, max_steps
    memory                          train.batch_size, gradient_accumulation_steps, max_length,
                                    gradient_checkpointing, precision
    packing, kernels                train.packing (best-fit, rows kept apart: exact; a step holds at most
                                    train.batch_size rows, schedule.packed_batch), train.use_liger_kernel
    longest batch first             train.longest_first (an OOM shows at step 1, not hours in)
    telemetry                       always events.jsonl; train.logging_steps; train.extra_metrics
    validation and early stop       train.eval_steps, save_steps, save_total_limit, early_stopping_patience
    your callbacks                  train.callbacks
    resume                          --resume: from the newest whole, finite checkpoint in RUN_DIR/checkpoints
    extend a finished run           model.init_adapter (ftwizard resume RUN --extend N)
"""

from __future__ import annotations

from ..config import RunConfig
from . import common
from .common import Outcome, Run


def recipe(cfg: RunConfig, run: Run, resume: bool) -> Outcome:
    # ---- setup
    ckpt = common.resume_checkpoint(run.dir, resume, run)
    common.skip_unneeded_imports(cfg)
    dev = common.device_for(cfg)
    run.events.emit("info", key="device", value=dev.event())
    model, tok, template = common.setup_model(cfg, dev, run)
    train_ds, eval_ds = common.setup_data(cfg, tok, template, run)
    trainer = build_trainer(cfg, run, dev, model, tok, train_ds, eval_ds, resumed=ckpt is not None)
    # ---- train
    trainer.train(resume_from_checkpoint=ckpt)
    # ---- save
    return common.save(trainer, tok, cfg, run)


def build_trainer(cfg: RunConfig, run: Run, dev: common.Device, model, tok, train_ds, eval_ds, resumed: bool = False):
    """TRL's SFTTrainer with the speed patches, on data tokenized already (core/data)."""
    from trl import SFTConfig, SFTTrainer
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from ..speed import PackedRowsCollator, TokenCounter, speed_trainer

    t = cfg.train
    if dev.packing:
        # Best-fit-decreasing packing into max_length rows (defaults.packing_exact says where this is exact).
        # Flash attention: each batch flattened padding-free, its varlen path keeps sequences apart.
        # SDPA/eager: packed rows stay a batch, position_ids restarting per sequence (PackedRowsCollator).
        from trl import pack_dataset

        from ..schedule import packed_batch

        rows = len(train_ds)
        train_ds = pack_dataset(train_ds.select_columns(["input_ids", "labels"]), t.max_length, strategy="bfd")
        # train.batch_size counts rows: a step takes the packed rows holding at most that many (schedule.py)
        per_step, per_pass = packed_batch(t.batch_size, rows, len(train_ds), t.rows_per_pass)
        before = None
        if resumed:  # what the run's earlier starts said (the events fold keeps each info key's last value)
            from ..events import RunFold, read_events

            fold = RunFold()
            fold.apply(read_events(run.dir))
            before = fold.info.get("packing")
        if before is not None:
            # a resumed run goes on with the batch it began with; one packed before this rule has no
            # packed_rows_per_* and took batch_size packed rows a step
            per_step = before.get("packed_rows_per_step", t.batch_size)
            per_pass = before.get("packed_rows_per_pass", t.rows_per_pass)
        run.events.emit("info", key="packing", value={"rows_after_packing": len(train_ds), "rows": rows,
                                                      "packed_rows_per_step": per_step, "packed_rows_per_pass": per_pass,
                                                      "flattened": dev.attn == "flash_attention_2"})
        t = t.model_copy(update={"batch_size": per_step, "micro_batch_size": per_pass})
    run_cfg = cfg.model_copy(update={"train": t})  # the batch in packed rows when packing, else cfg as it is
    steps = common.planned_steps(run_cfg, len(train_ds))  # after packing: the steps the Trainer will take
    targs = common.trainer_arguments(run_cfg, dev, run, steps, eval_ds is not None)
    targs["per_device_eval_batch_size"] = cfg.train.batch_size  # evaluation rows are not packed
    args = SFTConfig(**targs, max_length=t.max_length, packing=False, dataset_kwargs={"skip_prepare_dataset": True})
    if dev.packing and dev.attn != "flash_attention_2":
        collator = TokenCounter(PackedRowsCollator(tok.pad_token_id))
    else:
        collator = TokenCounter(DataCollatorForLanguageModeling(pad_token_id=tok.pad_token_id,
                                                                padding_free=dev.packing))
    trainer = speed_trainer(SFTTrainer, t)(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
                                            processing_class=tok, data_collator=collator)
    common.add_callbacks(trainer, cfg, run, dev, collator)
    return trainer
