"""Hyperparameter guidance: the usual ranges from the reference recipes, as warnings.

A value outside a usual range is allowed (you may know better) but flagged. The wizard's
Hyperparameters step shows these beside each field, and `ftwizard train` prints the same lines on
stderr before it starts a run: one home for the ranges, so the CLI warns as the wizard does.
Hard errors (a negative rate, a rank of 0) are the config model's, not this module's.

Sources: the QLoRA paper, the Llama and Qwen fine-tuning guides, torchtune's recipes; for the kinds'
own settings the DPO, ORPO, SimPO and KTO papers and TRL's GRPO documentation (KIND_RANGES).
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


# (kind, setting) -> (low, high, why): the usual range of a training kind's own settings (its config section).
KIND_RANGES: dict[tuple[str, str], tuple[float, float, str]] = {
    ("dpo", "beta"): (0.01, 0.5, "the DPO paper's 0.1; higher keeps the model closer to the reference"),
    ("orpo", "beta"): (0.05, 0.5, "the ORPO paper's lambda; 0.1 is its default"),
    ("simpo", "beta"): (2.0, 10.0, "the SimPO paper uses 2.0-2.5, and 10 for Llama-3-Instruct"),
    ("kto", "beta"): (0.01, 0.5, "the KTO paper's 0.1; higher keeps the model closer to the reference"),
    ("grpo", "num_generations"): (4, 16, "fewer: a noisy comparison within each group; more: slower generation"),
    ("grpo", "beta"): (0.0, 0.05, "0 (TRL's default) keeps no reference model; 0.01-0.05 holds the model near "
                                  "where it started"),
    ("grpo", "temperature"): (0.6, 1.2, "lower makes the answers of a group alike, and a group whose rewards "
                                        "are all equal teaches nothing"),
}
SIMPO_GAMMA_RATIO = (0.3, 0.8)   # gamma / beta tuned in this range (SimPO paper)
KTO_WEIGHT_RATIO = (1.0, 4 / 3)  # desirable_weight x desirable / (undesirable_weight x undesirable) (KTO paper)

KIND_USUAL_RANGES: dict[str, tuple[str, ...]] = {
    kind: tuple(f"{kind}.{name} {lo:g}-{hi:g}: {why}" for (k, name), (lo, hi, why) in KIND_RANGES.items() if k == kind)
    for kind in ("dpo", "orpo", "simpo", "kto", "grpo")
}
KIND_USUAL_RANGES["simpo"] += (f"simpo.gamma: gamma / beta {SIMPO_GAMMA_RATIO[0]:g}-{SIMPO_GAMMA_RATIO[1]:g} "
                               "(the SimPO paper's tuning range)",)
KIND_USUAL_RANGES["kto"] += ("kto.desirable_weight, kto.undesirable_weight: desirable_weight x desirable rows / "
                             "(undesirable_weight x undesirable rows) within 1 to 4/3 (the KTO paper)",)
KIND_USUAL_RANGES["grpo"] += ("grpo.max_completion_length: long enough for a whole answer (clipped_ratio near 0 "
                              "in the monitor), and below train.max_length, which also holds the prompt",)
KIND_USUAL_RANGES["cpt"] = ("train.max_length is the block length: the text is packed into blocks of it; the "
                            "model's own context (2048-8192) suits a real corpus",)


def kind_guidance(kind: str, section, train: "TrainConfig | None" = None) -> dict[str, str]:
    """Warnings for a kind's own settings (`section`: its config section, e.g. a DpoConfig) outside their
    usual ranges, keyed by setting name. Empty for kinds without a section (sft, cpt) and when all is usual."""
    out: dict[str, str] = {}
    if section is None:
        return out
    for (k, name), (lo, hi, why) in KIND_RANGES.items():
        if k != kind:
            continue
        v = getattr(section, name)
        if not lo <= v <= hi:
            out[name] = f"{name} {v:g}: {lo:g}-{hi:g} is usual ({why})"
    if kind == "simpo":
        ratio = section.gamma / section.beta
        if ratio > SIMPO_GAMMA_RATIO[1]:
            out["gamma"] = (f"gamma {section.gamma:g} is {ratio:.2f}x beta: the SimPO paper tunes gamma / beta in "
                            f"{SIMPO_GAMMA_RATIO[0]:g}-{SIMPO_GAMMA_RATIO[1]:g}")
    if kind == "grpo" and train is not None and section.max_completion_length >= train.max_length:
        out["max_completion_length"] = (f"{section.max_completion_length} leaves no room for the prompt in "
                                        f"train.max_length {train.max_length}: lower it or raise max_length")
    return out


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
    out = [(CONFIG_KEYS.get(k, k), msg) for k, msg in guidance(cfg.method, cfg.train, cfg.lora).items()]
    section = getattr(cfg, cfg.training, None) if cfg.training not in ("sft", "cpt") else None
    out += [(f"{cfg.training}.{k}", msg) for k, msg in kind_guidance(cfg.training, section, cfg.train).items()]
    return out
