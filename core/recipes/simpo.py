"""Simple preference optimisation (training: simpo): setup -> train -> save, on
trl.experimental.cpo.CPOTrainer with loss_type "simpo" (experimental in TRL: pinned below 1.17) and
common.py's set-up.

Feature -> config key:
    model, template, method         as sft (model.*, method, lora.*, quantization.*)
    pairs                           dataset.* as dpo (formats.to_trl); no reference model (the reward is
                                    the length-normalised log-probability)
    SimPO                           simpo.beta, simpo.gamma (TRL's simpo_gamma), simpo.cpo_alpha
    telemetry                       events carry reward_chosen, reward_rejected, reward_margin,
                                    reward_accuracy, nll_loss
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
    from trl.experimental.cpo import CPOConfig, CPOTrainer

    s = cfg.simpo
    steps = common.planned_steps(cfg, len(train_ds))
    args = CPOConfig(**common.trainer_arguments(cfg, dev, run, steps, eval_ds is not None),
                     max_length=cfg.train.max_length, loss_type="simpo", beta=s.beta, simpo_gamma=s.gamma,
                     cpo_alpha=s.cpo_alpha)
    trainer = CPOTrainer(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
                         processing_class=tok)
    preference.finish(trainer, cfg, run, dev, preference.PAIR_METRICS)
    return trainer
