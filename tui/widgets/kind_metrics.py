"""The training kind's own numbers beside the loss chart, one line each: a label, a sparkline of the
run so far (scaled to the series' own min..max) and the latest value. DPO/ORPO/SimPO: the implicit
rewards of chosen and rejected answers, their margin and the accuracy; KTO: the same per label; GRPO:
reward mean and std, each reward function's mean, completion length, the share of groups with no
reward spread; CPT: perplexity. Which rows, in what order and how they read: `core.monitor.kind_rows`.

Also the GRPO completions panel: the latest `sample` events with what each reward gave them, newest
first, in a scrollable pane (arrows / page keys once focused).

Both take a snapshot of the series when the owner says the data moved (under the owner's lock) and
draw from it, so a resize never reads a series another thread is appending to."""

from __future__ import annotations

from rich.text import Text
from textual.containers import VerticalScroll
from textual.widget import Widget
from textual.widgets import Static

from ftwizard.core.monitor import KindRow

BARS = "▁▂▃▄▅▆▇█"
LABEL_W = 17
VALUE_W = 8
KEEP_POINTS = 240  # per row, downsampled: enough for any width the pane gets


def sparkline_range(values, width: int) -> str:
    """The last `width` values as block characters scaled to their own min..max (a flat series: mid)."""
    vals = list(values)[-width:]
    if not vals:
        return ""
    lo, hi = min(vals), max(vals)
    if hi - lo <= 1e-12 * max(1.0, abs(hi)):
        return BARS[3] * len(vals)
    top = len(BARS) - 1
    return "".join(BARS[int((v - lo) / (hi - lo) * top + 0.5)] for v in vals)


def bucket_means(ys: list[float], n: int) -> list[float]:
    """`ys` in at most `n` equal buckets, each its mean: a whole run in n columns (trend, not wobble)."""
    total = len(ys)
    if total <= n:
        return list(ys)
    out = []
    for b in range(n):
        lo, hi = b * total // n, (b + 1) * total // n
        if hi > lo:
            out.append(sum(ys[lo:hi]) / (hi - lo))
    return out


class KindMetrics(Widget):
    DEFAULT_CSS = """
    KindMetrics {
        height: auto;
        padding: 0 1;
        border-top: solid $primary 30%;
        border-title-color: $text-primary;
    }
    KindMetrics.-empty {
        display: none;
    }
    KindMetrics > .kind-metrics--label {
        color: $text-muted;
    }
    KindMetrics > .kind-metrics--spark {
        color: $accent;
    }
    KindMetrics > .kind-metrics--value {
        text-style: bold;
    }
    """
    COMPONENT_CLASSES = {"kind-metrics--label", "kind-metrics--spark", "kind-metrics--value"}

    def __init__(self, *, id: str | None = None):
        super().__init__(id=id)
        self.rows: list[tuple[str, list[float], str]] = []  # (label, bucket means of the run, latest as text)

    def on_mount(self) -> None:
        self.set_class(not self.rows, "-empty")

    def set_rows(self, rows: list[KindRow]) -> None:
        """Snapshot `rows` (call it holding the lock the series are appended under) and redraw."""
        snap = [(r.label, bucket_means(r.series.ys, KEEP_POINTS), r.text()) for r in rows]
        if snap != self.rows:
            self.rows = snap
            self.set_class(not snap, "-empty")
            self.refresh(layout=True)

    def render(self) -> Text:
        width = max(24, self.size.width or 60)
        spark_w = max(4, width - LABEL_W - VALUE_W - 1)
        t = Text(no_wrap=True, overflow="crop")
        style = self.get_component_rich_style
        for i, (label, ys, value) in enumerate(self.rows):
            if i:
                t.append("\n")
            t.append(label[:LABEL_W - 1].ljust(LABEL_W), style=style("kind-metrics--label", partial=True))
            # the whole run so far, one bucket mean per column
            t.append(sparkline_range(bucket_means(ys, spark_w), spark_w).ljust(spark_w),
                     style=style("kind-metrics--spark", partial=True))
            t.append(value.rjust(VALUE_W + 1), style=style("kind-metrics--value", partial=True))
        return t


def printable(text: str) -> str:
    """A model's completion as safe terminal text: control characters (a random model writes ESC and
    friends) shown as escapes, newlines and tabs kept."""
    return "".join(c if c.isprintable() or c in "\n\t" else repr(c)[1:-1] for c in text)


def _as_text(v) -> str:
    """A prompt or completion as text: a string, or the last message's content of a conversation."""
    if isinstance(v, list) and v:
        last = v[-1]
        return str(last.get("content", "")) if isinstance(last, dict) else str(last)
    return "" if v is None else str(v)


class SamplesPanel(VerticalScroll):
    """GRPO's latest completions (the run's `sample` events), newest first, with each reward's score."""

    DEFAULT_CSS = """
    SamplesPanel {
        height: 1fr;
        padding: 0 1;
    }
    SamplesPanel > Static {
        height: auto;
    }
    """

    def __init__(self, *, id: str | None = None):
        super().__init__(id=id)
        self.shown_key: tuple | None = None
        self.count = 0

    def compose(self):
        yield Static("no completions yet: GRPO logs some at every logged step", id="samples-text")

    def set_samples(self, samples: list) -> None:
        """`samples`: RunFold.samples (SampleEvent, oldest first); redrawn only when they changed."""
        key = (len(samples), id(samples[-1]) if samples else None)
        if key == self.shown_key:
            return
        self.shown_key = key
        self.count = len(samples)
        if not samples:
            return
        t = Text()
        for i, s in enumerate(reversed(samples)):
            if i:
                t.append("\n\n")
            t.append(f"step {s.step}", style="bold")
            rewards = s.rewards if isinstance(s.rewards, dict) else {}
            for name, v in rewards.items():
                t.append(f"  {name} ")
                t.append("-" if v is None else f"{v:.2f}", style="bold")
            if isinstance(s.advantage, (int, float)):
                t.append(f"  adv {s.advantage:+.2f}", style="dim")
            t.append("\n> " + printable(_as_text(s.prompt)).replace("\n", " ")[:200], style="dim")
            t.append("\n" + (printable(_as_text(s.completion)) or "(empty)"))
        self.query_one("#samples-text", Static).update(t)
