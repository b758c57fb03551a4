"""Several runs' loss curves on one set of axes: one braille line per run (training loss) and its
validation losses as dots, each run in its own theme colour. The curves are downsampled to two points
per column (`core.monitor.downsample`) like the monitor's chart; runs share the x (step) and y scales."""

from __future__ import annotations

from typing import Sequence

from rich.text import Text
from textual.widget import Widget

from ftwizard.core.monitor import downsample
from ftwizard.tui.widgets.loss_chart import _DOTS, _fmt_y

Curve = tuple[Sequence[float], Sequence[float]]
MARKS = "●◆▲■"


def render_overlay(width: int, height: int, runs: list[tuple[Curve, Curve]], styles: list[str],
                   axis_style: str = "dim") -> Text:
    """`runs` = [(train (xs, ys), eval (xs, ys)), ...] drawn in `styles[i]`; axes included."""
    pts = [(x, y) for tr, ev in runs for xs, ys in (tr, ev) for x, y in zip(xs, ys)]
    if width < 16 or height < 3 or not pts:
        return Text("no steps yet", style="dim")
    y_lo, y_hi = min(p[1] for p in pts), max(p[1] for p in pts)
    pad = (y_hi - y_lo) * 0.05 or max(abs(y_hi) * 0.05, 0.01)
    y_lo, y_hi = y_lo - pad, y_hi + pad
    x_lo, x_hi = min(p[0] for p in pts), max(p[0] for p in pts)
    x_hi = x_hi if x_hi > x_lo else x_lo + 1
    rows = height - 1
    labels = {0: _fmt_y(y_hi, y_hi - y_lo), rows - 1: _fmt_y(y_lo, y_hi - y_lo),
              (rows - 1) // 2: _fmt_y((y_hi + y_lo) / 2, y_hi - y_lo)}
    lw = max(len(s) for s in labels.values()) + 1
    cols = width - lw - 1
    pw, ph = cols * 2, rows * 4
    sx, sy = (pw - 1) / (x_hi - x_lo), (ph - 1) / (y_hi - y_lo)
    owner: dict[tuple[int, int], int] = {}  # cell -> the run drawn there last
    bits: dict[tuple[int, int], int] = {}
    marks: dict[tuple[int, int], int] = {}
    for i, ((tx, ty), (ex, ey)) in enumerate(runs):
        dx, dy = downsample(list(tx), list(ty), pw) if len(tx) > pw else (tx, ty)
        prev = None
        for x, y in zip(dx, dy):
            cx, cy = int(round((x - x_lo) * sx)), int(round((y_hi - y) * sy))
            steps = 1 if prev is None else max(abs(cx - prev[0]), abs(cy - prev[1]), 1)
            for k in range(1, steps + 1) if prev is not None else (0,):
                px = cx if prev is None else prev[0] + (cx - prev[0]) * k // steps
                py = cy if prev is None else prev[1] + (cy - prev[1]) * k // steps
                if 0 <= px < pw and 0 <= py < ph:
                    cell = (py >> 2, px >> 1)
                    if owner.get(cell) != i:
                        bits[cell] = 0
                    owner[cell] = i
                    bits[cell] = bits.get(cell, 0) | _DOTS[py & 3][px & 1]
            prev = (cx, cy)
        for x, y in zip(ex, ey):
            cx, cy = int(round((x - x_lo) * sx)), int(round((y_hi - y) * sy))
            if 0 <= cx < pw and 0 <= cy < ph:
                marks[(cy >> 2, cx >> 1)] = i
    text = Text(no_wrap=True, overflow="crop")
    for r in range(rows):
        text.append(labels.get(r, "").rjust(lw - 1) + (" ┤" if r in labels else "  "), style=axis_style)
        for c in range(cols):
            if (r, c) in marks:
                i = marks[(r, c)]
                text.append(MARKS[i % len(MARKS)], style=styles[i % len(styles)])
            elif (r, c) in bits:
                text.append(chr(0x2800 + bits[(r, c)]), style=styles[owner[(r, c)] % len(styles)])
            else:
                text.append(" ")
        text.append("\n")
    lo, hi = f"{int(x_lo):,}", f"{int(round(x_hi)):,}"
    text.append(" " * (lw + 1) + lo + hi.rjust(max(1, cols - len(lo))), style=axis_style)
    return text


class OverlayChart(Widget):
    COMPONENT_CLASSES = {"overlay--0", "overlay--1", "overlay--2", "overlay--3", "overlay--axis"}
    DEFAULT_CSS = """
    OverlayChart { width: 1fr; height: 1fr; min-height: 6; }
    OverlayChart > .overlay--0 { color: $accent; }
    OverlayChart > .overlay--1 { color: $warning; }
    OverlayChart > .overlay--2 { color: $success; }
    OverlayChart > .overlay--3 { color: $error; }
    OverlayChart > .overlay--axis { color: $text-muted; }
    """

    def __init__(self, *, id: str | None = None):
        super().__init__(id=id)
        self.runs: list[tuple[Curve, Curve]] = []

    def set_runs(self, runs: list[tuple[Curve, Curve]]) -> None:
        self.runs = runs
        self.refresh()

    def render(self) -> Text:
        styles = [self.get_component_rich_style(f"overlay--{i}", partial=True) for i in range(4)]
        return render_overlay(self.size.width, self.size.height, self.runs, styles,
                              self.get_component_rich_style("overlay--axis", partial=True))
