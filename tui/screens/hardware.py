"""Step 3, Hardware: the GPUs NVML reports (name, total/free memory, bf16), RAM and CPU. Detection runs
in a worker started by the App; this screen shows at once and fills in when the answer arrives.
A machine without a GPU is stated plainly, never an error."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Static

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
- **Several cards**: a run trains on every visible card (CUDA_VISIBLE_DEVICES picks them), one process
  per card through torchrun: DDP when the method fits one card, FSDP when it does not
  (`distributed.*` in the config); the next steps count the cards a run will use.
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
            yield DataTable(id="gpu-table", cursor_type="row", zebra_stripes=False)
            yield Static("", id="hw-system")
            yield Static("", id="hw-verdict")

    def on_mount(self) -> None:
        table = self.query_one("#gpu-table", DataTable)
        table.add_columns("#", "GPU", "total", "free", "bf16", "util", "temp")
        table.display = False
        self.on_state(self.state)

    def on_state(self, state: WizardState) -> None:
        hw = state.hardware
        status = self.query_one("#hw-status", Static)
        table = self.query_one("#gpu-table", DataTable)
        if hw is None:
            status.update("Detecting hardware…")
            self.validity_changed()
            return
        table.clear()
        if hw.gpus:
            n = len(hw.gpus)
            status.update(f"{n} NVIDIA GPU{'s' if n > 1 else ''}" + (f" · driver {hw.driver}" if hw.driver else ""))
            for g in hw.gpus:
                table.add_row(str(g.index), g.name, f"{g.total_gib:.1f} GB", f"{g.free_gib:.1f} GB",
                              "yes" if g.bf16 else "no (fp16)",
                              "-" if g.util_pct is None else f"{g.util_pct}%",
                              "-" if g.temp_c is None else f"{g.temp_c} °C")
            table.display = True
            used = run_gpus(hw)
            smallest = min(g.free_gib for g in used)
            verdict = (f"What must fit: one card's free memory, {smallest:.1f} GB"
                       + (f" (a run trains on {len(used)} of the {n} cards: "
                          + ", ".join(f"GPU {g.index}" for g in used) + ")." if n > len(used) else "."))
            if not all(g.bf16 for g in used):
                verdict += " No bf16 on this card: training uses fp16."
        else:
            table.display = False
            status.update("No NVIDIA GPU found" + (f" ({hw.nvml_error})." if hw.nvml_error else "."))
            verdict = ("Training will run on the CPU. That is fine for tiny models (the cpu-demo preset "
                       "trains SmolLM2-135M in minutes) and far too slow for models of a billion "
                       "parameters or more: use a GPU machine for those, with the config this wizard saves.")
        self.query_one("#hw-system", Static).update(
            f"CPU: {hw.cpu_name or '?'} · {hw.cpu_count} cores\n"
            f"RAM: {hw.ram_available_gib:.1f} GB free of {hw.ram_total_gib:.1f} GB")
        self.query_one("#hw-verdict", Static).update(verdict)
        self.validity_changed()

    def is_valid(self) -> bool:
        return self.state.hardware is not None

    def why_invalid(self) -> str:
        return "hardware detection has not finished yet"

    def action_redetect(self) -> None:
        self.wizard.set_state(self.state.replace(hardware=None))
        self.wizard.detect_hardware()
