"""A small panel per GPU: memory used / total from NVML, a history bar of it, utilisation and
temperature, and the trainer's own peak memory for that device (from the run's events). Without a
GPU the panel says so and shows the trainer's host memory instead.

Samples arrive about once a second; the history is a bounded deque."""

from __future__ import annotations

from collections import deque

from rich.text import Text
from textual.widgets import Static

BARS = "▁▂▃▄▅▆▇█"


def sparkline(values, top: float, width: int) -> str:
    """The last `width` values as block characters scaled to 0..top."""
    vals = list(values)[-width:]
    if not vals or top <= 0:
        return ""
    out = []
    for v in vals:
        frac = max(0.0, min(1.0, v / top))
        out.append(BARS[min(len(BARS) - 1, int(frac * (len(BARS) - 1) + 0.5))])
    return "".join(out)


class GpuMeter(Static):
    DEFAULT_CSS = """
    GpuMeter {
        height: auto;
        border: round $primary 50%;
        border-title-color: $text-primary;
        padding: 0 1;
    }
    GpuMeter.-hot, GpuMeter.-slow {
        border: round $warning;
    }
    """

    HISTORY = 120

    def __init__(self, device: str, *, id: str | None = None):
        super().__init__("", id=id)
        self.device = device  # "cuda:0" or "cpu"
        self.history: deque[float] = deque(maxlen=self.HISTORY)
        self.gpu = None
        self.trainer_peak_gib: float | None = None
        self.trainer_now_gib: float | None = None
        self.note = ""
        self.rank: tuple[int, float | None, bool] | None = None  # (rank on this card, compute s/step, slowest)

    def on_mount(self) -> None:
        self._update_title()
        self._draw()

    def _update_title(self) -> None:
        if self.device == "cpu":
            self.border_title = "CPU"
        elif self.gpu is not None:
            name = self.gpu.name.replace("NVIDIA ", "").replace("GeForce ", "")
            self.border_title = f"GPU {self.gpu.index} · {name}"[:30]
        else:
            self.border_title = f"GPU {self.device.split(':')[-1]}"

    def add_sample(self, gpu) -> None:
        self.gpu = gpu
        self.history.append(gpu.used_gib)
        self.set_class(gpu.total_gib > 0 and gpu.used_gib / gpu.total_gib > 0.95, "-hot")
        self._update_title()
        self._draw()

    def set_trainer_memory(self, now_gib: float | None, peak_gib: float | None) -> None:
        if (now_gib, peak_gib) != (self.trainer_now_gib, self.trainer_peak_gib):
            self.trainer_now_gib, self.trainer_peak_gib = now_gib, peak_gib
            self._draw()

    def set_rank(self, rank: int, compute_s: float | None, slowest: bool) -> None:
        """The process of a distributed run that trains on this card, and whether the others wait for it."""
        if (rank, compute_s, slowest) != self.rank:
            self.rank = (rank, compute_s, slowest)
            self.set_class(slowest, "-slow")
            self._draw()

    def set_note(self, note: str) -> None:
        self.note = note
        self._draw()

    def _draw(self) -> None:
        t = Text()
        width = max(8, (self.size.width or 24) - 4)
        if self.device == "cpu":
            t.append(self.note or "no GPU: training on the CPU", style="dim")
            if self.trainer_now_gib is not None:
                t.append(f"\ntrainer RAM {self.trainer_now_gib:.2f} GB")
            if self.trainer_peak_gib is not None:
                t.append(f"\npeak {self.trainer_peak_gib:.2f} GB")
        else:
            g = self.gpu
            if g is None:
                t.append("waiting for NVML", style="dim")
            else:
                t.append(f"{g.used_gib:.1f} / {g.total_gib:.1f} GB", style="bold")
                t.append("\n" + sparkline(self.history, g.total_gib, width))
                bits = []
                if g.util_pct is not None:
                    bits.append(f"util {g.util_pct}%")
                if g.temp_c is not None:
                    bits.append(f"{g.temp_c} °C")
                if bits:
                    t.append("\n" + " · ".join(bits), style="dim")
            if self.trainer_peak_gib is not None:
                t.append(f"\ntrainer peak {self.trainer_peak_gib:.1f} GB")
            if self.rank is not None:
                rank, secs, slowest = self.rank
                t.append(f"\nrank {rank}" + (f" · {secs:.2f} s/step" if secs is not None else ""),
                         style="bold" if slowest else "")
                if slowest:
                    t.append(" slowest", style="bold")
        self.update(t)

    def on_resize(self) -> None:
        self._draw()
