"""Continued pretraining (training: cpt): setup -> train -> save, on the shared set-up of common.py.

Raw text, no chat template, every token trained: each document is tokenized as is, ends with EOS, and
the documents are concatenated and cut into blocks of train.max_length tokens, the classic run_clm way
(core/data/corpus.py: built on disk in one streaming pass and memory-mapped, so a multi-GB corpus
trains with bounded RAM). Metrics: loss and perplexity (exp(loss)) in every `train` event.

Feature -> config key:
    model source, GGUF, revision    model.name_or_path, model.gguf_file, model.revision, model.trust_remote_code
    attention, Unsloth              model.attn_implementation, model.backend
    full / LoRA / QLoRA             method, lora.*, quantization.*
    corpus                          dataset.path (raw text: format text), columns, split, max_rows
    validation                      dataset.validation (a seeded share of the blocks) or validation_path
    block length                    train.max_length
    schedule and optimizer          train.learning_rate, lr_scheduler, warmup_ratio, optim, epochs, max_steps
    memory                          train.batch_size, gradient_accumulation_steps, gradient_checkpointing,
                                    precision
    padding-free batches, kernels   train.packing (blocks are full already: same loss), train.use_liger_kernel
    telemetry                       always events.jsonl; train.logging_steps; train.extra_metrics
    validation and early stop       train.eval_steps, save_steps, save_total_limit, early_stopping_patience
    your callbacks                  train.callbacks
    resume                          --resume: from the newest whole, finite checkpoint in RUN_DIR/checkpoints
    extend a finished run           model.init_adapter (ftwizard resume RUN --extend N)
Refused: model.chat_template (no template on raw text). Moot: dataset.assistant_only_loss (no prompt to
mask), train.longest_first (every block is max_length long: the plain seeded shuffle, and
no block is read to learn that: speed.row_lengths reads the Arrow offsets only).
"""

from __future__ import annotations

import math

from ..config import RunConfig
from . import common
from .common import Outcome, Run


def recipe(cfg: RunConfig, run: Run, resume: bool) -> Outcome:
    # ---- setup
    ckpt = common.resume_checkpoint(run.dir, resume, run)
    common.skip_unneeded_imports(cfg)
    dev = common.device_for(cfg)
    run.events.emit("info", key="device", value=dev.event())
    model, tok, _ = common.setup_model(cfg, dev, run, chat=False)
    train_ds, eval_ds = setup_data(cfg, tok, run)
    trainer = build_trainer(cfg, run, dev, model, tok, train_ds, eval_ds)
    # ---- train
    trainer.train(resume_from_checkpoint=ckpt)
    # ---- save
    return common.save(trainer, tok, cfg, run)


def setup_data(cfg: RunConfig, tok, run: Run):
    """(train blocks, validation blocks or None), memory-mapped from the corpus cache."""
    from ..data.corpus import prepare_cpt_data
    from ..errors import UserError

    run.phase("loading_data", cfg.dataset.path)
    train_ds, eval_ds, facts = prepare_cpt_data(cfg, tok, run.events.emit, run.phase)
    run.facts = {**facts, "max_length": cfg.train.max_length}
    if cfg.train.early_stopping_patience and eval_ds is None:
        raise UserError("needs validation blocks, but none were held out: raise dataset.validation or set "
                        "dataset.validation_path", field="train.early_stopping_patience")
    return train_ds, eval_ds


def perplexity(loss) -> float | None:
    """exp(loss); inf past float range, None for a missing loss (NaN stays NaN)."""
    try:
        x = float(loss)
    except (TypeError, ValueError):
        return None
    return math.exp(x) if x < 700 else math.inf


def build_trainer(cfg: RunConfig, run: Run, dev: common.Device, model, tok, train_ds, eval_ds):
    """TRL's SFTTrainer on the packed blocks (labels = input_ids, set by the collator), with the speed
    patches, and `perplexity` beside every logged loss."""
    from trl import SFTConfig, SFTTrainer
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from ..speed import TokenCounter, speed_trainer

    t = cfg.train
    steps = common.planned_steps(cfg, len(train_ds))
    args = SFTConfig(**common.trainer_arguments(cfg, dev, run, steps, eval_ds is not None),
                     max_length=t.max_length, packing=False, dataset_kwargs={"skip_prepare_dataset": True})
    collator = TokenCounter(DataCollatorForLanguageModeling(pad_token_id=tok.pad_token_id,
                                                            padding_free=dev.packing))

    class CPTTrainer(speed_trainer(SFTTrainer, t)):
        def log(self, logs, *a, **kw):
            if "loss" in logs:
                logs["perplexity"] = perplexity(logs["loss"])
            if "eval_loss" in logs:
                logs["eval_perplexity"] = perplexity(logs["eval_loss"])
            return super().log(logs, *a, **kw)

    trainer = CPTTrainer(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
                         processing_class=tok, data_collator=collator)
    common.add_callbacks(trainer, cfg, run, dev, collator)
    return trainer
