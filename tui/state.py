"""The wizard's one source of truth: an immutable state object on the App that each step replaces.

Screens read `app.state` and hand back a new one with `app.set_state(state.replace(...))` (elia's
frozen runtime config pattern). Nothing here imports textual or an ML library; `to_config()` builds
the `RunConfig` that core validates, so the rules stay in core.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pydantic costs ~0.2 s to import: not on the way to the first screen
    from ftwizard.core.config import LoraConfig, RunConfig, TrainConfig

# The config sections that belong to one training kind (core/config.py RunConfig): the wizard writes the
# section of the kind it trains and leaves the others at their defaults (core refuses any other).
KIND_SECTIONS = ("dpo", "orpo", "simpo", "kto", "grpo")


@dataclass(frozen=True)
class WizardState:
    """Everything the wizard knows so far. Frozen: replace it, never mutate it."""

    # Questionnaire answers as (question key, answer key) pairs, in the order asked.
    answers: tuple[tuple[str, str], ...] = ()
    recommendation: Any = None          # core.recommend.Recommendation, once asked
    hardware: Any = None                # core.hardware.Hardware, once detected
    gpus: tuple[int, ...] | None = None  # the cards picked in the hardware step (NVML indices); None: auto
    model: str = ""                     # model.name_or_path
    gguf_file: str | None = None
    arch: Any = None                    # core.catalog.ModelArch of the model, once resolved
    method: str = "lora"
    training: str = "sft"
    dataset_path: str = ""
    dataset_format: str = "auto"
    detected_format: str | None = None
    train: "TrainConfig | None" = None  # None: the config model's defaults
    lora: "LoraConfig | None" = None
    # The section of the kind trained (dpo:, orpo:, simpo:, kto:, grpo:), e.g. DpoConfig; None: defaults.
    # Kept per kind, so switching kinds back and forth keeps what was set for each.
    kind_sections: tuple[tuple[str, Any], ...] = ()
    base: "RunConfig | None" = None       # a loaded preset or config file: the keys the steps don't set
    preset: str | None = None
    config_path: str | None = None      # where it was loaded from / saved to
    run_dir: str | None = None

    def replace(self, **changes: Any) -> "WizardState":
        return replace(self, **changes)

    @property
    def train_config(self) -> "TrainConfig":
        from ftwizard.core.config import TrainConfig

        return self.train if self.train is not None else TrainConfig()

    @property
    def lora_config(self) -> "LoraConfig":
        from ftwizard.core.config import LoraConfig

        return self.lora if self.lora is not None else LoraConfig()

    def kind_section(self, kind: str | None = None):
        """The config section of `kind` (default: the kind trained), e.g. a DpoConfig; None for sft and cpt,
        which have none. The preset's (or file's) section, or the config model's defaults, until a step sets it."""
        from ftwizard.core.config import RunConfig

        kind = kind or self.training
        if kind not in KIND_SECTIONS:
            return None
        given = dict(self.kind_sections).get(kind)
        if given is not None:
            return given
        if self.base is not None:
            return getattr(self.base, kind).model_copy()
        return RunConfig.model_fields[kind].default_factory()

    def with_kind_section(self, section, kind: str | None = None) -> "WizardState":
        kind = kind or self.training
        kept = tuple((k, v) for k, v in self.kind_sections if k != kind)
        return self.replace(kind_sections=kept + ((kind, section),))

    def answer(self, key: str) -> str | None:
        return dict(self.answers).get(key)

    def with_answer(self, key: str, value: str) -> "WizardState":
        kept = tuple((k, v) for k, v in self.answers if k != key)
        return self.replace(answers=kept + ((key, value),))

    def to_config(self) -> RunConfig:
        """The `RunConfig` this state describes. Raises `UserError` (core's validation) when invalid."""
        from ftwizard.core.config import parse_config

        data: dict[str, Any] = self.base.model_dump(mode="json") if self.base else {}
        model = dict(data.get("model") or {})
        if self.model:
            model["name_or_path"] = self.model
            model["gguf_file"] = self.gguf_file
        data["model"] = model
        data["method"] = self.method
        data["training"] = self.training
        dataset = dict(data.get("dataset") or {})
        dataset["path"] = self.dataset_path
        dataset["format"] = self.dataset_format
        data["dataset"] = dataset
        data["train"] = self.train_config.model_dump(mode="json")
        data["lora"] = self.lora_config.model_dump(mode="json")
        for kind in KIND_SECTIONS:  # only the trained kind's section: core refuses another kind's settings
            data.pop(kind, None)
        section = self.kind_section()
        if section is not None:
            data[self.training] = section.model_dump(mode="json")
        if self.gpus is not None:
            data["distributed"] = {**(data.get("distributed") or {}), "gpus": list(self.gpus)}
        return parse_config(data)

    @property
    def distributed(self):
        """The `distributed` section a run from this state gets (the picked cards included), for
        core.hardware.run_gpus / run_world_size: the cards and processes the run will really have."""
        from ftwizard.core.config import DistributedConfig

        base = self.base.distributed.model_dump() if self.base else {}
        if self.gpus is not None:
            base["gpus"] = list(self.gpus)
        # not validated: no card picked yet (gpus == ()) is a state the hardware step blocks, not an error
        return DistributedConfig.model_construct(**base)

    @classmethod
    def from_config(cls, cfg: RunConfig, *, preset: str | None = None, config_path: str | None = None,
                    previous: "WizardState | None" = None) -> "WizardState":
        """A state holding a loaded config (a preset or a file), keeping what was already detected."""
        prev = previous or cls()
        return prev.replace(
            model=cfg.model.name_or_path, gguf_file=cfg.model.gguf_file, arch=None, method=cfg.method,
            training=cfg.training, dataset_path=cfg.dataset.path, dataset_format=cfg.dataset.format,
            train=cfg.train.model_copy(), lora=cfg.lora.model_copy(), base=cfg, preset=preset,
            config_path=config_path, kind_sections=(),
            gpus=tuple(cfg.distributed.gpus) if isinstance(cfg.distributed.gpus, list) else None,
        )
