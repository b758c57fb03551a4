"""Step 3, Hardware: the GPUs NVML reports (name, memory in use as a bar, bf16, utilisation,
temperature), RAM and CPU. Detection runs in a worker started by the App; this screen shows at once and
fills in when the answer arrives. A machine without a GPU is stated plainly, never an error.

With several cards the list is a selection: space picks or drops a card, and the choice goes to the
state (`WizardState.gpus`) and so to the config's `distributed.gpus` (every card picked = auto). The
cards a run will use are `core.hardware.run_gpus` of that choice; the verdict says what must fit."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import SelectionList, Static
from textual.widgets.selection_list import Selection

from ftwizard.core.hardware import run_gpus

from ..state import WizardState
from .step import WizardStep

HELP = """
# Hardware

What this machine can train with, read from NVML (the NVIDIA driver's library) and psutil.

- **Free** memory is what the next step's estimates are compared against: close other programs
  that hold GPU memory (the table shows what is in use now).
- **bf16**: Ampere (compute capability 8.0) and newer cards train in bfloat16; older ones (T4, V100)
  use fp16 with loss scaling.
- **Several cards**: pick the cards a run trains on with **space** (arrows move; every card is picked
  at first). The choice is saved as `distributed.gpus` in the config and the run's processes see only
  those cards (CUDA_VISIBLE_DEVICES). One process per card through torchrun: DDP when the method fits
  one card, FSDP when it does not (`distributed.*`); the next steps count the cards a run will use.
- The bar shows each card's memory **in use now** (other programs hold it: close them to free it).
- **No GPU**: CPU training works for tiny models (the `cpu-demo` preset trains SmolLM2-135M in a few
  minutes) and is far too slow for billion-parameter models; the Method step says so.
"""


class HardwareScreen(WizardStep):
    NAME = "hardware"
    HELP = HELP
    BINDINGS = [Binding("r", "redetect", "Detect again", id="hardware.redetect",
                        tooltip="read the GPUs again (after freeing memory, say)")]

    def compose_body(self) -> ComposeResult:
        with VerticalScroll(id="hw-body", classes="box") as box:
            box.border_title = "This machine"
            yield Static("Detecting hardware…", id="hw-status")
            yield SelectionList[int](id="gpu-pick")
            yield Static("", id="hw-system")
            yield Static("", id="hw-verdict")

    def on_mount(self) -> None:
        self.query_one("#gpu-pick").display = False
        self._listed: tuple | None = None  # the cards the list shows (redrawn only when they change)
        self.on_state(self.state)

    def on_state(self, state: WizardState) -> None:
        hw = state.hardware
        status = self.query_one("#hw-status", Static)
        pick = self.query_one("#gpu-pick", SelectionList)
        if hw is None:
            status.update("Detecting hardware…")
            pick.display = False
            self._listed = None
            self.validity_changed()
            return
        if hw.gpus:
            n = len(hw.gpus)
            status.update(f"{n} NVIDIA GPU{'s' if n > 1 else ''}" + (f" · driver {hw.driver}" if hw.driver else "")
                          + (" · space picks the cards a run uses" if n > 1 else ""))
            chosen = set(state.gpus) if state.gpus is not None else {g.index for g in hw.gpus}
            with pick.prevent(SelectionList.SelectedChanged):
                if self._listed != hw.gpus:  # a new reading: new lines (memory in use moved)
                    self._listed = hw.gpus
                    highlighted = pick.highlighted
                    pick.clear_options()
                    pick.add_options([Selection(card_line(g), g.index, g.index in chosen) for g in hw.gpus])
                    pick.highlighted = highlighted if highlighted is not None and highlighted < n else 0
                elif set(pick.selected) != chosen:  # the state moved (a loaded config): follow it
                    pick.deselect_all()
                    for i in chosen:
                        pick.select(i)
            pick.display = True
            used = run_gpus(hw, state.distributed)
            if not used:
                verdict = "No card picked: pick at least one (space), or go back and train on the CPU with a preset."
            else:
                smallest = min(g.free_gib for g in used)
                verdict = (f"What must fit: one card's free memory, {smallest:.1f} GB"
                           + (f" (a run trains on {len(used)} of the {n} cards: "
                              + ", ".join(f"GPU {g.index}" for g in used) + ")." if n > len(used) else "."))
                if not all(g.bf16 for g in used):
                    verdict += " No bf16 on this card: training uses fp16."
        else:
            pick.display = False
            status.update("No NVIDIA GPU found" + (f" ({hw.nvml_error})." if hw.nvml_error else "."))
            verdict = ("Training will run on the CPU. That is fine for tiny models (the cpu-demo preset "
                       "trains SmolLM2-135M in minutes) and far too slow for models of a billion "
                       "parameters or more: use a GPU machine for those, with the config this wizard saves.")
        self.query_one("#hw-system", Static).update(
            f"CPU: {hw.cpu_name or '?'} · {hw.cpu_count} cores\n"
            f"RAM: {hw.ram_available_gib:.1f} GB free of {hw.ram_total_gib:.1f} GB")
        self.query_one("#hw-verdict", Static).update(verdict)
        self.validity_changed()

    @on(SelectionList.SelectedChanged, "#gpu-pick")
    def _picked(self, event: SelectionList.SelectedChanged) -> None:
        hw = self.state.hardware
        if hw is None:
            return
        picked = tuple(sorted(event.selection_list.selected))
        every = tuple(g.index for g in hw.gpus)
        self.wizard.set_state(self.state.replace(gpus=None if picked == every else picked))

    def is_valid(self) -> bool:
        hw = self.state.hardware
        return hw is not None and (not hw.gpus or bool(run_gpus(hw, self.state.distributed)))

    def why_invalid(self) -> str:
        if self.state.hardware is None:
            return "hardware detection has not finished yet"
        return "pick at least one card (space)"

    def action_redetect(self) -> None:  # the picked cards stay picked (state.gpus)
        self.wizard.set_state(self.state.replace(hardware=None))
        self.wizard.detect_hardware()


BAR = 16
EIGHTHS = " ▏▎▍▌▋▊▉"  # a card's memory in use, to an eighth of a cell


def card_line(g) -> Text:
    """One card of the pick list: index, name, memory in use as a bar, used / total, bf16, util, temp."""
    frac = 0.0 if g.total_gib <= 0 else max(0.0, min(1.0, g.used_gib / g.total_gib))
    cells = frac * BAR
    full = int(cells)
    part = EIGHTHS[int((cells - full) * 8)] if full < BAR else ""
    t = Text(no_wrap=True, overflow="ellipsis")
    t.append(f"GPU {g.index} ", style="bold")
    t.append(g.name.replace("NVIDIA ", "").replace("GeForce ", "")[:20].ljust(21))
    t.append("█" * full + part.strip(), style="bold")
    t.append("░" * (BAR - full - len(part.strip())), style="dim")
    t.append(f" {g.used_gib:.1f}/{g.total_gib:.1f} GB")
    extra = ["bf16" if g.bf16 else "fp16"]
    if g.util_pct is not None:
        extra.append(f"{g.util_pct}%")
    if g.temp_c is not None:
        extra.append(f"{g.temp_c}°C")
    t.append("  " + " ".join(extra), style="dim")
    return t
