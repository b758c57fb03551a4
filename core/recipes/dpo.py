"""Direct preference optimisation (training: dpo): setup -> train -> save, on TRL's DPOTrainer (stable)
and the shared set-up of common.py.

Feature -> config key:
    model, template, method         as sft (model.*, method, lora.*, quantization.*)
    pairs                           dataset.* : prompt/chosen/rejected (plain or conversational) or
                                    ShareGPT-style conversations + chosen/rejected turns (formats.to_trl);
                                    TRL renders message lists with the run's chat template
    DPO                             dpo.beta, dpo.loss_type (one name or a list: sigmoid, ipo, hinge, ...)
    reference model                 LoRA/QLoRA: the base, adapter disabled; full: a frozen copy (preference.py)
    schedule, memory, telemetry     train.* as sft (no packing); events carry reward_chosen,
                                    reward_rejected, reward_margin, reward_accuracy
    resume                          --resume: from the newest whole, finite checkpoint
"""

from __future__ import annotations

from ..config import RunConfig
from . import common, preference
from .common import Outcome, Run


def recipe(cfg: RunConfig, run: Run, resume: bool) -> Outcome:
    # ---- setup
    ckpt = common.resume_checkpoint(run.dir, resume, run)
    common.skip_unneeded_imports(cfg)
    dev = common.device_for(cfg)
    run.events.emit("info", key="device", value=dev.event())
    model, tok, _template = common.setup_model(cfg, dev, run)
    train_ds, eval_ds = preference.setup_data(cfg, run, tok)
    trainer = build_trainer(cfg, run, dev, model, tok, train_ds, eval_ds)
    # ---- train
    trainer.train(resume_from_checkpoint=ckpt)
    # ---- save
    return common.save(trainer, tok, cfg, run)


def build_trainer(cfg: RunConfig, run: Run, dev: common.Device, model, tok, train_ds, eval_ds):
    from trl import DPOConfig, DPOTrainer

    t = cfg.train
    steps = common.planned_steps(cfg, len(train_ds))
    loss = [cfg.dpo.loss_type] if isinstance(cfg.dpo.loss_type, str) else list(cfg.dpo.loss_type)
    args = DPOConfig(**common.trainer_arguments(cfg, dev, run, steps, eval_ds is not None),
                     max_length=t.max_length, beta=cfg.dpo.beta, loss_type=loss)
    trainer = DPOTrainer(model=model, ref_model=preference.reference_copy(cfg, model), args=args,
                         train_dataset=train_ds, eval_dataset=eval_ds, processing_class=tok)
    preference.finish(trainer, cfg, run, dev, preference.PAIR_METRICS)
    return trainer
