"""Hyperparameter guidance: the usual ranges from the reference recipes, as warnings.

A value outside a usual range is allowed (you may know better) but flagged. The wizard's
Hyperparameters step shows these beside each field, and `ftwizard train` prints the same lines on
stderr before it starts a run: one home for the ranges, so the CLI warns as the wizard does.
Hard errors (a negative rate, a rank of 0) are the config model's, not this module's.

Sources: the QLoRA paper, the Llama and Qwen fine-tuning guides, torchtune's recipes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pydantic is not needed to read the ranges
    from .config import LoraConfig, RunConfig, TrainConfig

LR_ADAPTER = (1e-4, 3e-4)   # LoRA / QLoRA
LR_FULL = (1e-5, 5e-5)      # full fine-tuning
EPOCHS = (1, 3)
LORA_RANK = (8, 64)
EFFECTIVE_BATCH = (8, 64)   # batch x accumulation x processes (advice only: not warned about)



def _rate(x: float) -> str:
    """1e-4, not 0.0001: rates as the guides write them."""
    return f"{x:.0e}".replace("e-0", "e-")


USUAL_RANGES = (
    f"learning rate: LoRA/QLoRA {_rate(LR_ADAPTER[0])} to {_rate(LR_ADAPTER[1])}; full fine-tuning "
    f"{_rate(LR_FULL[0])} to {_rate(LR_FULL[1])}",
    f"LoRA rank {LORA_RANK[0]}-{LORA_RANK[1]}; alpha 1-2x the rank",
    f"epochs {EPOCHS[0]}-{EPOCHS[1]} (more overfits small datasets)",
    f"effective batch (batch x accumulation x processes) {EFFECTIVE_BATCH[0]}-{EFFECTIVE_BATCH[1]}",
)


def guidance(method: str, train: "TrainConfig", lora: "LoraConfig") -> dict[str, str]:
    """Warnings for values outside the usual ranges, keyed by field name (`learning_rate`, `epochs`,
    `r`, `alpha`). Empty when all is usual."""
    out: dict[str, str] = {}
    lr = train.learning_rate
    if method == "full" and not LR_FULL[0] <= lr <= LR_FULL[1]:
        out["learning_rate"] = (f"{lr:g} is outside the usual {_rate(LR_FULL[0])}..{_rate(LR_FULL[1])} "
                                "for full fine-tuning")
    elif method != "full" and not LR_ADAPTER[0] <= lr <= LR_ADAPTER[1]:
        out["learning_rate"] = (f"{lr:g} is outside the usual {_rate(LR_ADAPTER[0])}..{_rate(LR_ADAPTER[1])} "
                                "for LoRA/QLoRA")
    if train.max_steps <= 0 and not EPOCHS[0] <= train.epochs <= EPOCHS[1]:
        out["epochs"] = f"{train.epochs:g} epochs: {EPOCHS[0]}-{EPOCHS[1]} is usual; more tends to overfit"
    if method != "full":
        if not LORA_RANK[0] <= lora.r <= LORA_RANK[1]:
            out["r"] = f"rank {lora.r}: {LORA_RANK[0]}-{LORA_RANK[1]} is usual"
        if not lora.r <= lora.alpha <= 2 * lora.r:
            out["alpha"] = f"alpha {lora.alpha}: 1-2x the rank ({lora.r}..{2 * lora.r}) is usual"
    return out


# field name -> its key in a config file
CONFIG_KEYS = {"learning_rate": "train.learning_rate", "epochs": "train.epochs", "r": "lora.r",
               "alpha": "lora.alpha"}


def config_guidance(cfg: "RunConfig") -> list[tuple[str, str]]:
    """The same warnings for a whole run config, as (config key, message) pairs."""
    return [(CONFIG_KEYS.get(k, k), msg) for k, msg in guidance(cfg.method, cfg.train, cfg.lora).items()]
