"""The loss chart: training loss (a braille line) and validation loss (dots) against the step.

It holds references to the monitor's `Series` (never copies) and draws them downsampled to two points
per column (min/max buckets: `core.monitor.downsample`), so a 100k-point run costs the same to draw as
a 100-point one. The owner calls `refresh_series()` when the data moved; drawing happens on Textual's
next repaint, at most once per refresh however many events arrived.
"""

from __future__ import annotations

import time
from contextlib import nullcontext

from rich.text import Text
from textual_plotext import PlotextPlot

from ftwizard.core.monitor import Series, downsample


class LossChart(PlotextPlot):
    DEFAULT_CSS = """
    LossChart {
        width: 1fr;
        height: 1fr;
        min-height: 6;
    }
    """

    def __init__(self, train: Series | None = None, evals: Series | None = None, *, id: str | None = None,
                 classes: str | None = None):
        super().__init__(id=id, classes=classes)
        self.train = train if train is not None else Series()
        self.evals = evals if evals is not None else Series()
        self.x_max: float | None = None  # the run's max_steps: the x axis spans the whole run
        self.last_draw_ms: float | None = None
        self.draws = 0
        self.points_drawn = 0
        self.lock = None  # the owner's lock around the series, if another thread appends to them

    def set_series(self, train: Series, evals: Series) -> None:
        self.train, self.evals = train, evals
        self.refresh()

    def refresh_series(self, x_max: float | None = None) -> None:
        self.x_max = x_max
        self.refresh()

    def prepare(self, width: int, height: int) -> None:
        """Load the (downsampled) data into the plotext figure for a canvas of width x height."""
        plt = self.plt
        plt.clear_data()
        n = max(8, 2 * max(1, width - 8))  # braille: two x sub-cells per column, minus the y labels
        tx, ty = downsample(self.train.xs, self.train.ys, n)
        ex, ey = self.evals.xs, self.evals.ys
        if len(ex) > n:
            ex, ey = downsample(ex, ey, n)
        self.points_drawn = len(tx) + len(ex)
        if tx:
            plt.plot(tx, ty, marker="braille", color="cyan", label="train")
        if ex:
            plt.scatter(list(ex), list(ey), marker="●", color="orange", label="val")
        lo_x = min([x for x in (tx[:1] + list(ex[:1]))] or [0])
        hi_x = max([x for x in (tx[-1:] + list(ex[-1:]))] or [1])
        if self.x_max and self.x_max > hi_x:
            hi_x = self.x_max
        if hi_x <= lo_x:
            hi_x = lo_x + 1
        plt.xlim(lo_x, hi_x)
        ticks = sorted({int(round(lo_x + (hi_x - lo_x) * i / 4)) for i in range(5)})
        plt.xticks(ticks, [f"{t:,}" for t in ticks])
        ys = list(ty) + list(ey)
        if ys:
            lo, hi = min(ys), max(ys)
            pad = (hi - lo) * 0.05 or max(abs(hi) * 0.05, 0.01)
            plt.ylim(lo - pad, hi + pad)
        plt.xlabel("step")
        plt.frame(False)

    def render(self):
        t0 = time.perf_counter()
        if not self.train and not self.evals:
            return Text("no steps yet", style="dim")
        with self.lock or nullcontext():
            self.prepare(self.size.width, self.size.height)
        out = super().render()
        self.last_draw_ms = (time.perf_counter() - t0) * 1000
        self.draws += 1
        return out
