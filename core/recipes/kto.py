"""Kahneman-Tversky optimisation (training: kto): setup -> train -> save, on TRL's KTOTrainer (stable)
and the shared set-up of common.py.

Feature -> config key:
    model, template, method         as sft (model.*, method, lora.*, quantization.*)
    rows                            dataset.* : prompt/completion/label, messages + label, or preference
                                    pairs split into a desirable and an undesirable row; a set with one
                                    label only is refused (nothing to contrast)
    KTO                             kto.beta, kto.desirable_weight, kto.undesirable_weight
    reference model                 LoRA/QLoRA: the base, adapter disabled; full: a frozen copy
    batches                         train.batch_size >= 2 (the KL term is estimated within a batch);
                                    TRL's sequential sampling (the KL pairing needs a fixed order)
    telemetry                       events carry reward_desirable, reward_undesirable, reward_margin, kl
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
    from trl import KTOConfig, KTOTrainer

    k = cfg.kto
    steps = common.planned_steps(cfg, len(train_ds))
    args = KTOConfig(**common.trainer_arguments(cfg, dev, run, steps, eval_ds is not None),
                     max_length=cfg.train.max_length, beta=k.beta, desirable_weight=k.desirable_weight,
                     undesirable_weight=k.undesirable_weight)
    trainer = KTOTrainer(model=model, ref_model=preference.reference_copy(cfg, model), args=args,
                         train_dataset=train_ds, eval_dataset=eval_ds, processing_class=tok)
    preference.finish(trainer, cfg, run, dev, preference.KTO_METRICS)
    return trainer
