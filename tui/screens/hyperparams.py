"""Step 7, Hyperparameters: the preset's (or the defaults') values, one line of explanation per field,
hard errors from the config model's own validation (Next is blocked), and the usual ranges from the
reference recipes as warnings (allowed, but flagged)."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ValidationError
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Input, Label, Static

from ftwizard.core.config import LoraConfig, TrainConfig
from ftwizard.core.guidance import USUAL_RANGES, guidance
from ftwizard.core.hardware import run_world_size
from ftwizard.core.schedule import effective_batch

from ..state import WizardState
from .step import WizardStep

HELP = """
# Hyperparameters

Each field says in one line what it does. Values the config cannot accept (a negative rate, a
rank of 0) are errors and block Next. Values outside the usual ranges are warnings: allowed, since
you may know better, but worth a second look. `ftwizard train` prints the same warnings.

Usual ranges (the QLoRA paper, the Llama and Qwen fine-tuning guides, torchtune's recipes):
""" + "".join(f"- {line}\n" for line in USUAL_RANGES)


@dataclass(frozen=True)
class Field:
    section: str        # "train" or "lora"
    key: str
    label: str
    kind: type          # int or float
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


def _parse(text: str, kind: type):
    text = text.strip()
    if kind is int:
        return int(text)
    return float(text)


class FieldRow(Horizontal):
    """label · input · one-line help (or the warning / error for this field)."""

    def __init__(self, field: Field, value, description: str):
        super().__init__(classes="hp-row", id=f"row-{field.key}")
        self.field = field
        self._initial = value
        self.description = description

    def compose(self) -> ComposeResult:
        yield Label(self.field.label, classes="hp-label")
        yield Input(f"{self._initial:g}" if isinstance(self._initial, float) else str(self._initial),
                    id=f"hp-{self.field.key}", compact=True,
                    type="number" if self.field.kind is float else "integer")
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
            box.border_title = f"Settings for {s.method}" + (f" (from preset {s.preset})" if s.preset else "")
            for f in FIELDS:
                if f.lora_only and s.method == "full":
                    continue
                model = s.train_config if f.section == "train" else s.lora_config
                desc = type(model).model_fields[f.key].description or ""
                yield FieldRow(f, getattr(model, f.key), desc.rstrip("."))
            yield Static("", id="hp-summary", classes="dim")

    def on_mount(self) -> None:
        self._errors: dict[str, str] = {}
        self._train, self._lora = self.state.train_config, self.state.lora_config
        self._check()
        self.query(Input).first().focus()

    @on(Input.Changed)
    def _changed(self, event: Input.Changed) -> None:
        if event.input.id and event.input.id.startswith("hp-"):
            self._check()

    def _check(self) -> None:
        """Validate every field with the config model; warnings from the usual ranges."""
        values = {"train": self.state.train_config.model_dump(), "lora": self.state.lora_config.model_dump()}
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
        warnings = guidance(self.state.method, train, lora) if train and lora else {}
        for row in self.query(FieldRow):
            row.show(errors.get(row.field.key), warnings.get(row.field.key))
        self._errors = errors
        if train and lora:
            self._train, self._lora = train, lora
            world = run_world_size(self.state.hardware)  # the processes a run really trains with
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
        self.wizard.set_state(self.state.replace(train=self._train, lora=self._lora))

    def on_state(self, state: WizardState) -> None:
        pass
