"""What the preference recipes (dpo, orpo, simpo, kto) share beyond common.py: their data step, the
reference model, the token count, and the names their metrics get in `train` events.

The reference model (dpo, kto): with LoRA/QLoRA it is the base with the adapter disabled, no second
copy. TRL 1.16 (DPOTrainer/KTOTrainer __init__) copies a PeftModel's adapter into a frozen adapter
named "ref" when no ref_model is given; for fresh adapters (B = 0) that copy computes exactly what the
base computes, so it is dropped and TRL's `use_adapter(model, None)` disables the adapter instead.
A run extending a finished adapter (model.init_adapter) keeps the copy: its reference is where it
starts. A full fine-tune gets a frozen copy of the starting weights (`reference_copy`).
"""

from __future__ import annotations

from ..config import RunConfig
from .common import Device, Run

# TRL's log names -> the names `train` events carry (core/events.py TrainEvent).
PAIR_METRICS = {"rewards/chosen": "reward_chosen", "rewards/rejected": "reward_rejected",
                "rewards/margins": "reward_margin", "rewards/accuracies": "reward_accuracy",
                "nll_loss": "nll_loss", "log_odds_ratio": "log_odds_ratio"}
KTO_METRICS = {"rewards/chosen": "reward_desirable", "rewards/rejected": "reward_undesirable",
               "rewards/margins": "reward_margin", "kl": "kl"}


def setup_data(cfg: RunConfig, run: Run, tok=None):
    """(train, validation or None) in TRL's shape for cfg.training: dataset.*. With the run's tokenizer,
    rows whose prompt fills train.max_length are left out before the validation split (prepare.py)."""
    from ..data.prepare import prepare_preference_data

    run.phase("loading_data", cfg.dataset.path)
    train_ds, eval_ds, facts = prepare_preference_data(cfg, run.events.emit, run.phase, tokenizer=tok)
    run.facts = {**facts, "max_length": cfg.train.max_length}
    if cfg.train.early_stopping_patience and eval_ds is None:
        from ..errors import UserError

        raise UserError("needs validation rows, but the validation split of this dataset is empty: raise "
                        "dataset.validation or set dataset.validation_path", field="train.early_stopping_patience")
    return train_ds, eval_ds


def reference_copy(cfg: RunConfig, model):
    """A frozen copy of a full fine-tune's starting weights (None with adapters: see the module docstring)."""
    if cfg.method != "full":
        return None
    import copy

    ref = copy.deepcopy(model)
    ref.eval()
    ref.requires_grad_(False)
    return ref


def finish(trainer, cfg: RunConfig, run: Run, dev: Device, metrics: dict) -> None:
    """After the TRL trainer is built: the reference adapter dropped for fresh adapters, the token
    counter around TRL's collator, and common's callbacks with this kind's metric names."""
    model = trainer.model
    if cfg.method != "full" and not cfg.model.init_adapter and "ref" in getattr(model, "peft_config", {}):
        model.delete_adapter("ref")
        model.set_adapter("default")
    if cfg.training not in ("dpo", "kto"):
        ref = "none (reference-free loss)"
    elif cfg.method == "full":
        ref = "frozen copy of the starting weights"
    elif "ref" in getattr(model, "peft_config", {}):
        ref = "frozen copy of the starting adapter"
    else:
        ref = "the base model (adapter disabled)"
    run.events.emit("info", key="reference_model", value={"kind": cfg.training, "reference": ref})
    counter = PairTokenCounter(trainer.data_collator)
    trainer.data_collator = counter
    from . import common

    common.add_callbacks(trainer, cfg, run, dev, counter, metrics)


class PairTokenCounter:
    """Counts the tokens of the rows TRL's collator batches (prompt, chosen, rejected or completion ids)."""

    def __init__(self, collator):
        self.collator = collator
        self.tokens = 0

    def __call__(self, examples):
        for e in examples:
            self.tokens += sum(len(v) for k, v in e.items() if k.endswith("_ids") and isinstance(v, (list, tuple)))
        return self.collator(examples)
