"""The loss chart: training loss (a braille line) and validation loss (dots) against the step.

It holds references to the monitor's `Series` (never copies) and draws them downsampled to two points
per column (min/max buckets: `core.monitor.downsample`), so a 100k-point run costs the same to draw as
a 100-point one. The owner calls `refresh_series()` when the data moved; drawing happens on Textual's
next repaint, at most once per refresh however many events arrived.

The canvas is drawn here, straight into a Rich `Text` (braille cells, 2x4 dots each), rather than with
plotext: plotext's build plus parsing its ANSI output took 15-30 ms per frame on the 2-core test
machine, over the 20 ms budget; this takes ~2-5 ms for the same picture (docs/monitor.md).

The same widget shows the run's phase before the first step (`set_phase`) and the tail of train.log in
the chart's place (`show_log`, the monitor's `l`): one widget whose content changes, because in
Textual 8 any change of a widget's `display` re-arranges the screen and re-renders every visible widget
(16-19 ms of a key's ~20 ms at 80x24 here), where a content change repaints this widget alone.
"""

from __future__ import annotations

import math
import time
from collections import deque
from contextlib import nullcontext
from typing import Iterable, Sequence

from rich.text import Text
from textual.widget import Widget

from ftwizard.core.monitor import Downsampler, Series, downsample

# braille dot bits by (row 0..3, column 0..1) inside a cell
_DOTS = ((0x01, 0x08), (0x02, 0x10), (0x04, 0x20), (0x40, 0x80))


def _fmt_y(v: float, span: float) -> str:
    if span == 0 or not math.isfinite(v):
        return f"{v:.3g}"
    digits = max(0, min(4, 2 - int(math.floor(math.log10(abs(span) or 1)))))
    return f"{v:.{digits}f}"


def render_chart(width: int, height: int, train: tuple[Sequence[float], Sequence[float]],
                 evals: tuple[Sequence[float], Sequence[float]], x_max: float | None = None,
                 line_style: str = "cyan", point_style: str = "bold yellow", axis_style: str = "dim") -> Text:
    """A braille line chart of `train` with `evals` as dots, `width` x `height` cells, axes included."""
    tx, ty = train
    ex, ey = evals
    if width < 12 or height < 3 or (not tx and not ex):
        return Text("no steps yet", style="dim")
    ys = list(ty) + list(ey)
    y_lo, y_hi = min(ys), max(ys)
    pad = (y_hi - y_lo) * 0.05 or max(abs(y_hi) * 0.05, 0.01)
    y_lo, y_hi = y_lo - pad, y_hi + pad
    xs_all = [v for v in (tx[:1] + tx[-1:] + list(ex[:1]) + list(ex[-1:]))]
    x_lo, x_hi = min(xs_all), max(xs_all)
    if x_max and x_max > x_hi:
        x_hi = x_max
    if x_hi <= x_lo:
        x_hi = x_lo + 1

    rows = height - 1  # the last row holds the x labels
    n_labels = max(2, min(5, rows // 3 + 1))
    label_rows = {round(i * (rows - 1) / (n_labels - 1)): y_hi - (y_hi - y_lo) * (i * (rows - 1) / (n_labels - 1)) / max(1, rows - 1)
                  for i in range(n_labels)}
    labels = {r: _fmt_y(v, y_hi - y_lo) for r, v in label_rows.items()}
    lw = max(len(s) for s in labels.values()) + 1
    cols = width - lw - 1
    if cols < 4:
        return Text("too narrow", style="dim")
    pw, ph = cols * 2, rows * 4
    sx = (pw - 1) / (x_hi - x_lo)
    sy = (ph - 1) / (y_hi - y_lo)
    cells = [[0] * cols for _ in range(rows)]

    def px(x: float, y: float) -> tuple[int, int]:
        return int(round((x - x_lo) * sx)), int(round((y_hi - y) * sy))

    def dot(cx: int, cy: int) -> None:
        if 0 <= cx < pw and 0 <= cy < ph:
            cells[cy >> 2][cx >> 1] |= _DOTS[cy & 3][cx & 1]

    prev = None
    for x, y in zip(tx, ty):
        p = px(x, y)
        if prev is None:
            dot(*p)
        else:  # Bresenham from prev to p
            x0, y0 = prev
            x1, y1 = p
            dx, dy = abs(x1 - x0), -abs(y1 - y0)
            stx, sty = (1 if x0 < x1 else -1), (1 if y0 < y1 else -1)
            err = dx + dy
            while True:
                dot(x0, y0)
                if x0 == x1 and y0 == y1:
                    break
                e2 = 2 * err
                if e2 >= dy:
                    err += dy
                    x0 += stx
                if e2 <= dx:
                    err += dx
                    y0 += sty
        prev = p
    points: set[tuple[int, int]] = set()
    for x, y in zip(ex, ey):
        cx, cy = px(x, y)
        if 0 <= cx < pw and 0 <= cy < ph:
            points.add((cy >> 2, cx >> 1))

    text = Text(no_wrap=True, overflow="crop")
    for r in range(rows):
        text.append((labels.get(r, "")).rjust(lw - 1) + (" ┤" if r in labels else "  ")[: 2], style=axis_style)
        row = cells[r]
        run: list[str] = []
        run_style = None
        for c in range(cols):
            if (r, c) in points:
                ch, st = "●", point_style
            elif row[c]:
                ch, st = chr(0x2800 + row[c]), line_style
            else:
                ch, st = " ", None
            if st != run_style and run:
                text.append("".join(run), style=run_style)
                run = []
            run_style = st
            run.append(ch)
        if run:
            text.append("".join(run), style=run_style)
        text.append("\n")
    # x labels: the first, the last and up to three in between where they fit
    axis = [" "] * (cols + lw + 1)
    n_ticks = max(2, min(5, cols // 12))
    placed_until = -1
    for i in range(n_ticks):
        v = x_lo + (x_hi - x_lo) * i / (n_ticks - 1)
        s = f"{int(round(v)):,}"
        c = lw + 1 + int(round((v - x_lo) * sx / 2))
        start = min(max(c - len(s) // 2, lw + 1), len(axis) - len(s))
        if start <= placed_until + 1:
            continue
        axis[start:start + len(s)] = list(s)
        placed_until = start + len(s)
    text.append("".join(axis)[:width], style=axis_style)
    return text


LOG_LINES = 2000  # train.log lines kept for the log view


class LossChart(Widget):
    COMPONENT_CLASSES = {"loss-chart--train", "loss-chart--val", "loss-chart--axis"}
    DEFAULT_CSS = """
    LossChart {
        width: 1fr;
        height: 1fr;
        min-height: 6;
    }
    LossChart > .loss-chart--train {
        color: $accent;
    }
    LossChart > .loss-chart--val {
        color: $warning;
        text-style: bold;
    }
    LossChart > .loss-chart--axis {
        color: $text-muted;
    }
    """

    def __init__(self, train: Series | None = None, evals: Series | None = None, *, id: str | None = None,
                 classes: str | None = None):
        super().__init__(id=id, classes=classes)
        self.train = train if train is not None else Series()
        self.evals = evals if evals is not None else Series()
        self.x_max: float | None = None  # the run's max_steps: the x axis spans the whole run
        self.lock = None  # the owner's lock around the series, if another thread appends to them
        self.last_draw_ms: float | None = None
        self.draws = 0
        self.points_drawn = 0
        self._sampler = Downsampler()  # keeps the complete buckets: O(new points) per frame
        self.phase: str | None = None  # markup shown instead of the chart until the first step
        self.showing_log = False
        self.log_lines: deque[str] = deque(maxlen=LOG_LINES)

    def set_phase(self, markup: str | None) -> None:
        """The phase text (console markup) in the chart's place, or None once training has started."""
        if markup != self.phase:
            self.phase = markup
            self.refresh()

    def show_log(self, on: bool) -> None:
        """The tail of train.log in the chart's place (on) or the chart again."""
        if on != self.showing_log:
            self.showing_log = on
            self.refresh()

    def add_log_lines(self, lines: Iterable[str]) -> None:
        self.log_lines.extend(lines)
        if self.showing_log:
            self.refresh()

    def set_series(self, train: Series, evals: Series) -> None:
        self.train, self.evals = train, evals
        self.refresh()

    def refresh_series(self, x_max: float | None = None) -> None:
        self.x_max = x_max
        self.refresh()

    def snapshot(self, width: int) -> tuple[tuple[list, list], tuple[list, list]]:
        """The points to draw for a canvas `width` cells wide: two per column at most."""
        n = max(8, 2 * max(1, width - 8))
        with self.lock or nullcontext():
            train = self._sampler.points(self.train, n)
            ex, ey = self.evals.xs, self.evals.ys
            evals = downsample(ex, ey, n) if len(ex) > n else (list(ex), list(ey))
        return train, evals

    def render(self) -> Text:
        if self.showing_log:
            # the newest lines that fit, cut (not wrapped) at the width, as the Log widget showed them
            h, w = self.size.height, self.size.width
            tail = list(self.log_lines)[-h:] if h > 0 else []
            return Text("\n".join(line[:w] for line in tail) or "train.log is empty so far", no_wrap=True,
                        overflow="crop", style="" if tail else "dim")
        if self.phase is not None:  # a blank line above, two spaces before each line
            out = Text("\n")
            for line in Text.from_markup(self.phase).split("\n"):
                out.append("  ")
                out.append_text(line)
                out.append("\n")
            return out
        t0 = time.perf_counter()
        if not self.train and not self.evals:
            return Text("no steps yet", style="dim")
        train, evals = self.snapshot(self.size.width)
        self.points_drawn = len(train[0]) + len(evals[0])
        style = self.get_component_rich_style
        out = render_chart(self.size.width, self.size.height, train, evals, self.x_max,
                           line_style=style("loss-chart--train", partial=True),
                           point_style=style("loss-chart--val", partial=True),
                           axis_style=style("loss-chart--axis", partial=True))
        self.last_draw_ms = (time.perf_counter() - t0) * 1000
        self.draws += 1
        return out
