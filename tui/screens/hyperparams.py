"""Step 7, Hyperparameters: the preset's (or the defaults') values, one line of explanation per field,
hard errors from the config model's own validation (Next is blocked), and the usual ranges from the
reference recipes as warnings (allowed, but flagged). Below the shared settings, the trained kind's own
(dpo: beta and loss_type; kto: beta and the label weights; grpo: group size, completion length, KL and
temperature, with the rewards chosen on the rewards step; cpt: max length is the block length), each
with its explanation from the config model and its usual range from core/guidance.py."""

from __future__ import annotations

import re
from dataclasses import dataclass

from pydantic import ValidationError
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Input, Label, Static

from ftwizard.core.config import LoraConfig, TrainConfig
from ftwizard.core.errors import UserError
from ftwizard.core.guidance import KIND_RANGES, KIND_USUAL_RANGES, USUAL_RANGES, guidance, kind_guidance
from ftwizard.core.hardware import run_world_size
from ftwizard.core.monitor import KIND_TITLES
from ftwizard.core.schedule import effective_batch

from ..state import WizardState
from .step import WizardStep

HELP = """
# Hyperparameters

Each field says in one line what it does. Values the config cannot accept (a negative rate, a
rank of 0) are errors and block Next. Values outside the usual ranges are warnings: allowed, since
you may know better, but worth a second look. `ftwizard train` prints the same warnings.

Usual ranges (the QLoRA paper, the Llama and Qwen fine-tuning guides, torchtune's recipes):
""" + "".join(f"- {line}\n" for line in USUAL_RANGES) + """
The training kind's own settings (shown below the shared ones for that kind):
""" + "".join(f"- {line}\n" for lines in KIND_USUAL_RANGES.values() for line in lines)


@dataclass(frozen=True)
class Field:
    section: str        # "train", "lora", or a kind's section ("dpo", "kto", "grpo", ...)
    key: str
    label: str
    kind: type          # int, float, or str (a name or a comma-separated list of names)
    lora_only: bool = False


FIELDS = (
    Field("train", "learning_rate", "learning rate", float),
    Field("train", "epochs", "epochs", float),
    Field("train", "max_steps", "max steps", int),
    Field("train", "batch_size", "batch size", int),
    Field("train", "gradient_accumulation_steps", "grad accumulation", int),
    Field("train", "max_length", "max length", int),
    Field("train", "warmup_ratio", "warmup ratio", float),
    Field("lora", "r", "LoRA rank", int, lora_only=True),
    Field("lora", "alpha", "LoRA alpha", int, lora_only=True),
    Field("lora", "dropout", "LoRA dropout", float, lora_only=True),
)

# The settings of each kind's own config section, in the order shown (sft and cpt have none).
KIND_FIELDS = {
    "dpo": (Field("dpo", "beta", "DPO beta", float), Field("dpo", "loss_type", "DPO loss", str)),
    "orpo": (Field("orpo", "beta", "ORPO beta", float),),
    "simpo": (Field("simpo", "beta", "SimPO beta", float), Field("simpo", "gamma", "SimPO gamma", float),
              Field("simpo", "cpo_alpha", "SFT weight", float)),
    "kto": (Field("kto", "beta", "KTO beta", float), Field("kto", "desirable_weight", "good weight", float),
            Field("kto", "undesirable_weight", "bad weight", float)),
    "grpo": (Field("grpo", "num_generations", "group size", int),
             Field("grpo", "max_completion_length", "completion len", int),
             Field("grpo", "beta", "KL beta", float), Field("grpo", "temperature", "temperature", float)),
}
CPT_BLOCK = "Block length in tokens: the raw text is packed into blocks of this many tokens, every one trained"


def first_sentence(text: str) -> str:
    """The description's first sentence, without its full stop (an ellipsis "..." does not end one)."""
    return re.split(r"(?<!\.)\.(?:\s|$)", text, maxsplit=1)[0]


def _parse(text: str, kind: type):
    text = text.strip()
    if kind is int:
        return int(text)
    if kind is str:  # one name, or several separated by commas (dpo.loss_type takes a list)
        names = [n.strip() for n in text.split(",") if n.strip()]
        return names[0] if len(names) == 1 else names
    return float(text)


def _shown(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return ", ".join(value)
    return str(value)


class FieldRow(Horizontal):
    """label · input · one-line help (or the warning / error for this field)."""

    def __init__(self, field: Field, value, description: str):
        super().__init__(classes="hp-row", id=f"row-{field.key}")
        self.field = field
        self._initial = value
        self.description = description

    def compose(self) -> ComposeResult:
        yield Label(self.field.label, classes="hp-label")
        yield Input(_shown(self._initial), id=f"hp-{self.field.key}", compact=True,
                    type={float: "number", int: "integer"}.get(self.field.kind, "text"))
        yield Static(self.description, classes="hp-help")

    def show(self, error: str | None, warning: str | None) -> None:
        self.set_class(bool(error), "-error")
        self.set_class(bool(warning) and not error, "-warning")
        text = f"✗ {error}" if error else (f"⚠ {warning}" if warning else self.description)
        self.query_one(".hp-help", Static).update(text)


class HyperparamsScreen(WizardStep):
    NAME = "hyperparams"
    HELP = HELP

    def compose_body(self) -> ComposeResult:
        s = self.state
        with VerticalScroll(id="hp-form", classes="box") as box:
            box.border_title = f"Settings for {KIND_TITLES[s.training]} with {s.method}" + (
                f" (from preset {s.preset})" if s.preset else "")
            for f in FIELDS:
                if f.lora_only and s.method == "full":
                    continue
                model = self._model(f.section)
                desc = type(model).model_fields[f.key].description or ""
                if s.training == "cpt" and f.key == "max_length":
                    yield FieldRow(Field("train", "max_length", "block length", int), model.max_length, CPT_BLOCK)
                    continue
                yield FieldRow(f, getattr(model, f.key), desc.rstrip("."))
            if s.training in KIND_FIELDS:
                yield Static(f"{KIND_TITLES[s.training]}'s own settings", classes="section", id="hp-kind-title")
                for f in KIND_FIELDS[s.training]:
                    model = self._model(f.section)
                    desc = first_sentence(type(model).model_fields[f.key].description or "")
                    usual = KIND_RANGES.get((s.training, f.key))
                    if usual:  # the usual range beside the explanation (a warning replaces both when outside it)
                        desc += f" · usual {usual[0]:g}-{usual[1]:g}"
                    yield FieldRow(f, getattr(model, f.key), desc)
            if s.training == "grpo":
                yield Static(self._rewards_line(), id="hp-rewards", classes="hp-rewards")
            yield Static("", id="hp-summary", classes="dim")

    def _model(self, section: str):
        """The current values of a section: train, lora, or the trained kind's own."""
        if section == "train":
            return self.state.train_config
        if section == "lora":
            return self.state.lora_config
        return self.state.kind_section(section)

    def _rewards_line(self) -> str:
        g = self.state.kind_section("grpo")
        if not g.rewards:
            return "rewards: none chosen yet (the rewards step, esc)"
        weights = g.reward_weights or [1.0] * len(g.rewards)
        return "rewards (the rewards step sets them): " + ", ".join(
            f"{r.rpartition('/')[2]} x{w:g}" for r, w in zip(g.rewards, weights))

    def on_mount(self) -> None:
        self._errors: dict[str, str] = {}
        self._train, self._lora = self.state.train_config, self.state.lora_config
        self._section = self.state.kind_section()
        self._check()
        self.query(Input).first().focus()

    @on(Input.Changed)
    def _changed(self, event: Input.Changed) -> None:
        if event.input.id and event.input.id.startswith("hp-"):
            self._check()

    def _check(self) -> None:
        """Validate every field with the config model; warnings from the usual ranges."""
        values = {"train": self.state.train_config.model_dump(), "lora": self.state.lora_config.model_dump()}
        kind = self.state.training
        base_section = self.state.kind_section()
        if base_section is not None:
            values[kind] = base_section.model_dump()
        errors: dict[str, str] = {}
        for row in self.query(FieldRow):
            f = row.field
            text = row.query_one(Input).value
            try:
                values[f.section][f.key] = _parse(text, f.kind)
            except ValueError:
                errors[f.key] = f"not a{'n integer' if f.kind is int else ' number'}: {text!r}"
        train = lora = None
        try:
            train = TrainConfig.model_validate(values["train"])
        except ValidationError as exc:
            for e in exc.errors():
                errors.setdefault(str(e["loc"][0]), e["msg"])
        try:
            lora = LoraConfig.model_validate(values["lora"])
        except ValidationError as exc:
            for e in exc.errors():
                errors.setdefault(str(e["loc"][0]), e["msg"])
        section = base_section
        if base_section is not None:
            try:
                section = type(base_section).model_validate(values[kind])
            except ValidationError as exc:
                section = None
                for e in exc.errors():
                    errors.setdefault(str(e["loc"][0]), e["msg"])
        if train and lora and (section is not None or base_section is None) and not errors:
            # what only the whole config can say (GRPO's group size must divide the batch, KTO's batch of 2+)
            candidate = self.state.replace(train=train, lora=lora)
            if section is not None:
                candidate = candidate.with_kind_section(section)
            try:
                candidate.to_config()
            except UserError as exc:
                for p in exc.problems:
                    key = (p.field or "config").rpartition(".")[2]
                    errors.setdefault(key if key in {r.field.key for r in self.query(FieldRow)} else "config",
                                      p.message)
        warnings = guidance(self.state.method, train, lora) if train and lora else {}
        if section is not None and train is not None:
            warnings.update(kind_guidance(kind, section, train))
        for row in self.query(FieldRow):
            row.show(errors.get(row.field.key), warnings.get(row.field.key))
        self._errors = errors
        if section is not None:
            self._section = section
        if train and lora:
            self._train, self._lora = train, lora
            world = run_world_size(self.state.hardware, self.state.distributed)  # the processes a run really trains with
            eff = effective_batch(train.batch_size, train.gradient_accumulation_steps, world)
            self.query_one("#hp-summary", Static).update(
                f"effective batch {eff} (batch {train.batch_size} x accumulation "
                f"{train.gradient_accumulation_steps} x {world} device{'s' if world > 1 else ''}) · "
                f"{len(warnings)} warning{'s' if len(warnings) != 1 else ''}")
        self.validity_changed()

    def is_valid(self) -> bool:
        return not getattr(self, "_errors", {})

    def why_invalid(self) -> str:
        key, msg = next(iter(self._errors.items()))
        return f"{key}: {msg}"

    def commit(self) -> None:
        state = self.state.replace(train=self._train, lora=self._lora)
        if self._section is not None:
            state = state.with_kind_section(self._section)
        self.wizard.set_state(state)

    def on_state(self, state: WizardState) -> None:
        pass
