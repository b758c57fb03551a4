"""The training monitor's model: events folded into a `RunView`, with no UI in sight.

The wizard's monitor screen, `ftwizard attach` and the tests all read a run the same way: tail
`events.jsonl` and `apply()` each batch of new events to one `RunView`, which is the one fold of
events.py (`RunFold`, also behind `runs.run_info` and `ftwizard train`'s progress) with curves added.
Attaching to a run that finished hours ago is the same code path as watching it live: the whole file
is one batch.

What the view keeps:

- series (step -> value) for the training loss, validation loss, learning rate, grad norm and
  tokens/s, in `Series` objects that hold at most `Series.cap` points: past the cap a series halves
  itself by keeping the min and the max of each pair of buckets, so memory stays bounded and the
  shape (spikes included) survives;
- from `RunFold`: the latest numbers, the best validation loss, the phase and its detail before the
  first step, and how the process ended (its `end` event; the run's state is `runs.run_info`'s);
- the trainer's memory per device, the run's own warnings and checkpoints;
- the training kind's own numbers as series (`kind_series`: DPO's rewards of chosen and rejected,
  margin and accuracy, KTO's per label, GRPO's reward mean/std, each reward function's mean
  (`rewards/<name>`), completion length and the share of groups with no reward spread, CPT's
  perplexity) and `kind_rows()`, which says which of them to show for a kind, in what order, how;
- in a run of several processes, every rank's latest report (`ranks`: its device memory and the
  compute seconds per step it measured) and `slowest_rank()`, the rank the others wait for;
- the times of recent steps, from which `eta_s()` is computed (event time stamps only: the same
  events always give the same ETA, which keeps the screen deterministic).

A resumed run starts again from its last checkpoint, so steps after that checkpoint may arrive a
second time: a step at or below the last one rewinds the series to before it, and the curve shows the
run as it actually continued.

`downsample(xs, ys, n)` reduces a long series to at most `n` points for drawing (min/max per bucket,
in order, so a spike stays visible); on 100k points it takes a few milliseconds.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections import deque
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from .events import KIND_METRICS, CheckpointEvent, EvalEvent, PhaseEvent, RunFold, TrainEvent, WarningEvent, \
    as_number, finite

_finite = finite


class Series:
    """Points (x, y) in increasing x, bounded to `cap` points by halving with min/max buckets."""

    __slots__ = ("xs", "ys", "cap", "min_y", "max_y", "compactions", "generation")

    def __init__(self, cap: int = 200_000):
        self.xs: list[float] = []
        self.ys: list[float] = []
        self.cap = max(8, cap)
        self.min_y: float | None = None
        self.max_y: float | None = None
        self.compactions = 0
        self.generation = 0  # bumped whenever existing points change (truncation, compaction)

    def __len__(self) -> int:
        return len(self.xs)

    def __bool__(self) -> bool:
        return bool(self.xs)

    @property
    def last(self) -> tuple[float, float] | None:
        return (self.xs[-1], self.ys[-1]) if self.xs else None

    def append(self, x: float, y: float) -> None:
        if self.xs and x <= self.xs[-1]:
            self.truncate_from(x)
        self.xs.append(x)
        self.ys.append(y)
        self.min_y = y if self.min_y is None or y < self.min_y else self.min_y
        self.max_y = y if self.max_y is None or y > self.max_y else self.max_y
        if len(self.xs) > self.cap:
            self._compact()

    def truncate_from(self, x: float) -> None:
        """Drop every point with x >= `x` (a resumed run repeats the steps after its checkpoint)."""
        i = bisect_left(self.xs, x)
        if i < len(self.xs):
            del self.xs[i:], self.ys[i:]
            self.generation += 1
            self.min_y = min(self.ys) if self.ys else None
            self.max_y = max(self.ys) if self.ys else None

    def _compact(self) -> None:
        """Past the cap: the newest half stays at full resolution (the doctor reads recent windows);
        the older part shrinks to a quarter of the cap by min/max buckets."""
        keep = self.cap // 2
        old_n = len(self.xs) - keep
        ox, oy = downsample(self.xs[:old_n], self.ys[:old_n], self.cap // 4)
        self.xs = ox + self.xs[old_n:]
        self.ys = oy + self.ys[old_n:]
        self.compactions += 1
        self.generation += 1

    def window(self, n: int) -> tuple[list[float], list[float]]:
        """The last `n` points."""
        return self.xs[-n:], self.ys[-n:]

    def head(self, n: int) -> tuple[list[float], list[float]]:
        return self.xs[:n], self.ys[:n]


def _min_max(xs, chunk, lo: int, out_x: list, out_y: list) -> None:
    """Append a bucket's minimum and maximum (one point when they coincide), in x order."""
    vmin, vmax = min(chunk), max(chunk)
    _emit(xs, lo + chunk.index(vmin), vmin, lo + chunk.index(vmax), vmax, out_x, out_y)


def _emit(xs, imin: int, vmin: float, imax: int, vmax: float, out_x: list, out_y: list) -> None:
    if imin == imax:
        out_x.append(xs[imin])
        out_y.append(vmin)
    elif imin < imax:
        out_x += (xs[imin], xs[imax])
        out_y += (vmin, vmax)
    else:
        out_x += (xs[imax], xs[imin])
        out_y += (vmax, vmin)


def downsample(xs: Sequence[float], ys: Sequence[float], n: int) -> tuple[list[float], list[float]]:
    """At most `n` points that keep the shape: for each of n/2 buckets its min and its max, in x order.

    Slicing and the builtin min/max run in C, so 100k points reduce in a few ms in pure Python.
    """
    total = len(xs)
    if n <= 0 or total == 0:
        return [], []
    if total <= n:
        return list(xs), list(ys)
    if n < 4:
        idx = sorted({0, total - 1})[:n]
        return [xs[i] for i in idx], [ys[i] for i in idx]
    buckets = n // 2
    out_x: list[float] = []
    out_y: list[float] = []
    size = total / buckets
    ys_list = ys if isinstance(ys, list) else list(ys)
    for b in range(buckets):
        lo = int(b * size)
        hi = int((b + 1) * size) if b < buckets - 1 else total
        if hi <= lo:
            continue
        _min_max(xs, ys_list[lo:hi], lo, out_x, out_y)
    return out_x, out_y


class Downsampler:
    """`downsample` for a series that only grows at its end: each point is read once, when it arrives.

    Buckets hold a power-of-two number of points, chosen so that there are between n/4 and n/2 of
    them (so 2 points per bucket gives at most n points, plus the latest point). The open last bucket
    keeps its running min and max (with their positions); a call reads only the points that arrived
    since the last one, closes the buckets they complete and copies the <= n kept points. So a frame
    costs O(new points + n) whatever the history (`touched`: the series elements the last call read).
    A truncated or compacted series (its `generation` moved) or a new bucket size starts over.
    """

    def __init__(self):
        self._key = None
        self._scan = 0  # points folded so far (complete buckets + the open one)
        self._open: tuple[int, float, int, float] | None = None  # the open bucket's (imin, min, imax, max)
        self._xs: list[float] = []
        self._ys: list[float] = []
        self.touched = 0

    def points(self, series: Series, n: int) -> tuple[list[float], list[float]]:
        xs, ys = series.xs, series.ys
        total = len(xs)
        if total <= n:
            self.touched = total
            return list(xs), list(ys)
        size = 1
        while total / size > n // 2:
            size *= 2
        key = (id(series), series.generation, size)
        if key != self._key or self._scan > total:
            self._key, self._scan, self._open, self._xs, self._ys = key, 0, None, [], []
        self.touched = 0
        while self._scan < total:
            lo = self._scan
            end = (lo // size + 1) * size
            hi = min(end, total)
            chunk = ys[lo:hi]
            vmin, vmax = min(chunk), max(chunk)
            imin, imax = lo + chunk.index(vmin), lo + chunk.index(vmax)
            if self._open is not None:  # the bucket's earlier points (the first of equal values wins)
                oimin, omin, oimax, omax = self._open
                if omin <= vmin:
                    imin, vmin = oimin, omin
                if omax >= vmax:
                    imax, vmax = oimax, omax
            self.touched += hi - lo
            self._scan = hi
            if hi == end:
                _emit(xs, imin, vmin, imax, vmax, self._xs, self._ys)
                self._open = None
            else:
                self._open = (imin, vmin, imax, vmax)
        out_x, out_y = list(self._xs), list(self._ys)
        if self._open is not None:
            _emit(xs, *self._open, out_x, out_y)
        if out_x[-1] != xs[-1]:  # the line always ends at the latest point
            out_x.append(xs[-1])
            out_y.append(ys[-1])
        return out_x, out_y


@dataclass
class DeviceMemory:
    """What the trainer reported about one device's memory (from `train` events' `mem`)."""

    device: str  # "cuda:0" or "cpu"
    allocated_gib: float | None = None
    reserved_gib: float | None = None
    peak_gib: float | None = None  # max over the run


# A rank lags when its typical compute per step (the median of its last LAG_WINDOW reports, at least
# LAG_MIN_REPORTS of them) exceeds the median of the others' by LAG_RATIO and by LAG_MIN_S seconds.
# Measured on 2 gloo CPU processes of the tiny model (2 shared cores): single reports of the same rank
# ranged 3-43 ms, so one report says nothing: the monitor goes by the median of the last 5.
LAG_RATIO = 1.2
LAG_WINDOW = 5
LAG_MIN_REPORTS = 3
LAG_MIN_S = 0.005


@dataclass
class RankStats:
    """One process of a distributed run, from the `ranks` list of rank 0's latest `train` event."""

    rank: int
    device: str = "cpu"  # "cuda:N" (N: the NVML index when the trainer knew it) or "cpu"
    memory_gib: float | None = None  # now: allocated on a GPU, resident on a CPU
    peak_gib: float | None = None  # max over the run
    compute_s: float | None = None  # forward compute seconds per optimizer step (the trainer's timing)
    step: int | None = None  # the step of this rank's report (another rank's file may lag one log)
    recent: deque = field(default_factory=lambda: deque(maxlen=LAG_WINDOW), repr=False)  # compute_s, one per report

    @property
    def typical_s(self) -> float | None:
        """The median of its last LAG_WINDOW reports (one noisy step never names a rank)."""
        if len(self.recent) < LAG_MIN_REPORTS:
            return None
        vals = sorted(self.recent)
        n = len(vals)
        return vals[n // 2] if n % 2 else (vals[n // 2 - 1] + vals[n // 2]) / 2


@dataclass
class RunView(RunFold):
    """Everything the monitor shows about a run: the fold of events.py (`RunFold`: phase, step, latest
    numbers, best validation loss, end) plus curves, memory, warnings and the step rate. `apply()` is
    incremental."""

    series_cap: int = 200_000  # training and validation loss (drawn)
    aux_cap: int = 4_096  # lr, grad norm, tokens/s
    rate_window: int = 50  # steps used for the step rate behind the ETA
    phases: list[tuple[str, str]] = field(default_factory=list)  # (phase, detail) in order, bounded
    best_loss: tuple[int, float] | None = None
    memory: dict[str, DeviceMemory] = field(default_factory=dict)
    warnings: list[dict] = field(default_factory=list)  # `warning` events, deduplicated
    nonfinite: list[tuple[int, str, float]] = field(default_factory=list)  # (step, metric, value)
    checkpoints: list[tuple[int, str]] = field(default_factory=list)
    ranks: dict[int, RankStats] = field(default_factory=dict)  # world size > 1: every rank's latest report
    world_size: int = 1

    def __post_init__(self):
        RunFold.__post_init__(self)
        cap = self.series_cap
        self.train_loss = Series(cap)
        self.eval_series = Series(cap)
        # drawn only as numbers; the doctor reads their recent windows: a small cap is enough
        self.lr_series = Series(self.aux_cap)
        self.grad_series = Series(self.aux_cap)
        self.tps_series = Series(self.aux_cap)
        self._rate: deque[tuple[float, int]] = deque(maxlen=self.rate_window + 1)
        self._warning_keys: set[tuple] = set()
        self.kind_series: dict[str, Series] = {}  # KIND_METRICS (numbers) and rewards/<name>, by step

    # -------------------------------------------------------------------------------- folding

    def _on_phase(self, ev: PhaseEvent) -> None:
        RunFold._on_phase(self, ev)
        if self.phase == "training":
            self._rate.clear()
        if self.phases and self.phases[-1][0] == self.phase:
            self.phases[-1] = (self.phase, self.phase_detail)
        else:
            self.phases.append((self.phase, self.phase_detail))
            del self.phases[:-20]

    def _on_train(self, ev: TrainEvent) -> None:
        RunFold._on_train(self, ev)
        step = ev.step
        if not isinstance(step, int) or isinstance(step, bool):
            return
        for key, series in (("loss", self.train_loss), ("lr", self.lr_series), ("grad_norm", self.grad_series),
                            ("tokens_per_s", self.tps_series)):
            v = as_number(getattr(ev, key))
            if v is None:
                continue
            if math.isfinite(v):
                series.append(step, v)
            else:
                self.nonfinite.append((step, key, v))
                del self.nonfinite[:-100]
        if _finite(ev.loss) and (self.best_loss is None or ev.loss < self.best_loss[1]):
            self.best_loss = (step, float(ev.loss))
        if _finite(ev.t):
            self._rate.append((ev.t, step))
        self._on_kind(step, ev)
        if isinstance(ev.world_size, int) and ev.world_size > 0:
            self.world_size = ev.world_size
        self._on_mem(ev.mem)

    def _on_kind(self, step: int, ev: TrainEvent) -> None:
        for name in KIND_METRICS:
            v = getattr(ev, name)
            if name == "rewards":
                if isinstance(v, dict):
                    for fn, mean in v.items():
                        self._kind_point(f"rewards/{fn}", step, mean)
            else:
                self._kind_point(name, step, v)

    def _kind_point(self, name: str, step: int, v) -> None:
        if not _finite(v):
            return
        series = self.kind_series.get(name)
        if series is None:
            series = self.kind_series[name] = Series(self.aux_cap)
        series.append(step, float(v))

    def _rewind(self, step: int) -> None:
        RunFold._rewind(self, step)
        for s in (self.train_loss, self.lr_series, self.grad_series, self.tps_series, *self.kind_series.values()):
            s.truncate_from(step)
        self.eval_series.truncate_from(step)
        self.nonfinite = [n for n in self.nonfinite if n[0] < step]
        for st in self.ranks.values():  # a resumed run is new processes: their timings start again
            st.recent.clear()
        ys = self.train_loss.ys
        if ys:
            i = ys.index(min(ys))
            self.best_loss = (int(self.train_loss.xs[i]), ys[i])
        else:
            self.best_loss = None
        self._rate.clear()

    def _on_mem(self, mem) -> None:
        if not isinstance(mem, dict):
            return
        ranks = mem.get("ranks")
        if isinstance(ranks, list) and ranks:
            # every rank's own report (rank 0's is `mem` itself): each GPU's memory comes from the rank on it
            for r in ranks:
                if isinstance(r, dict) and isinstance(r.get("rank"), int):
                    self._on_rank(r)
                    self._on_devices(r, cpu=False)
            self._on_devices(mem, cpu=True)  # the host memory of rank 0 (the CPU meter)
            return
        self._on_devices(mem, cpu=True)

    def _on_devices(self, mem: dict, cpu: bool) -> None:
        for dev in mem.get("cuda") or []:
            if not isinstance(dev, dict):
                continue
            key = _gpu_key(dev)
            m = self.memory.setdefault(key, DeviceMemory(key))
            m.allocated_gib = dev.get("allocated_gib", m.allocated_gib)
            m.reserved_gib = dev.get("reserved_gib", m.reserved_gib)
            peak = dev.get("peak_gib")
            if _finite(peak):
                m.peak_gib = peak if m.peak_gib is None else max(m.peak_gib, peak)
        rss = mem.get("rss_gib")
        if cpu and _finite(rss):
            m = self.memory.setdefault("cpu", DeviceMemory("cpu"))
            m.allocated_gib = rss
            m.peak_gib = rss if m.peak_gib is None else max(m.peak_gib, rss)

    def _on_rank(self, r: dict) -> None:
        rank = r["rank"]
        st = self.ranks.get(rank)
        if st is None:
            st = self.ranks[rank] = RankStats(rank)
        cuda = [d for d in r.get("cuda") or [] if isinstance(d, dict)]
        if cuda:
            d = cuda[0]  # a rank trains on one card
            st.device = _gpu_key(d)
            now, peak = d.get("allocated_gib"), d.get("peak_reserved_gib", d.get("peak_gib"))
        else:
            st.device = "cpu"
            now, peak = r.get("rss_gib"), r.get("peak_rss_gib", r.get("rss_gib"))
        if _finite(now):
            st.memory_gib = float(now)
        if _finite(peak):
            st.peak_gib = float(peak) if st.peak_gib is None else max(st.peak_gib, float(peak))
        step = r.get("step") if isinstance(r.get("step"), int) else None
        if _finite(r.get("compute_s")) and (step is None or step != st.step):  # a stale file is read again
            st.compute_s = float(r["compute_s"])
            st.recent.append(st.compute_s)
        if step is not None:
            st.step = step

    def _on_eval(self, ev: EvalEvent) -> None:
        step, v = ev.step, ev.eval_loss
        if not isinstance(step, int) or v is None:
            return
        if not _finite(v):
            n = as_number(v)
            if n is not None:
                self.nonfinite.append((step, "eval_loss", n))
            return
        RunFold._on_eval(self, ev)
        self.eval_series.append(step, float(v))

    def _on_warning(self, ev: WarningEvent) -> None:
        key = (ev.code, ev.message)
        if key in self._warning_keys:
            return
        self._warning_keys.add(key)
        self.warnings.append({"code": ev.code, "message": ev.message, "evidence": ev.evidence, "advice": ev.advice})
        del self.warnings[:-50]

    def _on_checkpoint(self, ev: CheckpointEvent) -> None:
        if isinstance(ev.step, int):
            self.checkpoints.append((ev.step, str(ev.path or "")))
            del self.checkpoints[:-50]

    # ------------------------------------------------------------------------------ derived

    @property
    def started_training(self) -> bool:
        return bool(self.train_loss) or self.step > 0

    def steps_per_s(self) -> float | None:
        """Recent step rate from the last `rate_window` logged steps (event time stamps)."""
        if len(self._rate) < 2:
            return None
        (t0, s0), (t1, s1) = self._rate[0], self._rate[-1]
        if t1 <= t0 or s1 <= s0:
            return None
        return (s1 - s0) / (t1 - t0)

    def eta_s(self) -> float | None:
        """Seconds left at the recent step rate; None before two steps or without max_steps."""
        rate = self.steps_per_s()
        if rate is None or not self.max_steps:
            return None
        return max(0.0, (self.max_steps - self.step) / rate)

    def slowest_rank(self, ratio: float = LAG_RATIO) -> tuple[int, float] | None:
        """(rank, how many times the others' median compute per step it takes) of the rank that lags,
        when one does: in DDP/FSDP every rank waits at each step for the slowest, so one slow card
        (throttled, shared, a bad link) slows them all. None with fewer than two timed ranks."""
        timed = sorted((st.typical_s, st.rank) for st in self.ranks.values() if st.typical_s)
        if len(timed) < 2:
            return None
        worst_s, worst = timed[-1]
        others = [t for t, _ in timed[:-1]]
        mid = others[len(others) // 2] if len(others) % 2 else (others[len(others) // 2 - 1] + others[len(others) // 2]) / 2
        if mid <= 0 or worst_s < ratio * mid or worst_s - mid < LAG_MIN_S:
            return None
        return worst, worst_s / mid

    @property
    def peak_memory_gib(self) -> float | None:
        peaks = [m.peak_gib for m in self.memory.values() if m.peak_gib is not None]
        if self.peak_gib is not None:  # the process's high-water mark (RunFold), when the trainer reports it
            peaks.append(self.peak_gib)
        return max(peaks) if peaks else None


def _gpu_key(dev: dict) -> str:
    """"cuda:N" for a device entry of `mem`: N is the NVML index (`gpu`, written when the trainer knew
    which cards CUDA_VISIBLE_DEVICES gave it) else torch's device index, so the meter of card N shows
    the trainer's memory on card N."""
    idx = dev.get("gpu", dev.get("device", 0))
    return f"cuda:{idx}"


# ------------------------------------------------------------------------------ per kind

@dataclass(frozen=True)
class KindRow:
    """One number of the training kind's panel: its series (by step), its latest value and how to show it."""

    key: str  # the train event's field (or rewards/<name>)
    label: str
    series: Series
    fmt: str = "num"  # num | pct | int

    @property
    def latest(self) -> float | None:
        last = self.series.last
        return last[1] if last else None

    def text(self, v: float | None = None) -> str:
        return fmt_kind(self.latest if v is None else v, self.fmt)


def fmt_kind(v: float | None, fmt: str = "num") -> str:
    """A kind number as the monitor and `ftwizard status` show it (pct: 0.875 -> 88%)."""
    if v is None:
        return "-"
    if fmt == "pct":
        return f"{v:.0%}"
    if fmt == "int":
        return f"{v:,.0f}"
    return f"{v:.3f}" if abs(v) < 100 else f"{v:,.1f}"


# The numbers each training kind shows beside the loss, in order: (train event field, label, format).
# GRPO's per-function means (rewards/<name>) go after reward_std; a kind not listed shows whatever
# kind numbers its events carry, in KIND_METRICS order.
_PAIR = (("reward_chosen", "chosen reward", "num"), ("reward_rejected", "rejected reward", "num"),
         ("reward_margin", "margin", "num"), ("reward_accuracy", "accuracy", "pct"))
KIND_PANELS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "dpo": _PAIR,
    "orpo": _PAIR + (("nll_loss", "SFT loss (chosen)", "num"), ("log_odds_ratio", "log-odds ratio", "num")),
    "simpo": _PAIR + (("nll_loss", "SFT loss (chosen)", "num"),),
    "kto": (("reward_desirable", "desirable reward", "num"), ("reward_undesirable", "undesirable rew.", "num"),
            ("reward_margin", "margin", "num"), ("kl", "KL to reference", "num")),
    "grpo": (("reward_mean", "reward mean", "num"), ("reward_std", "reward std", "num"), ("rewards/*", "", "num"),
             ("completion_length_mean", "completion len", "int"), ("zero_std_ratio", "no-spread groups", "pct"),
             ("clipped_ratio", "cut at max len", "pct")),
    "cpt": (("perplexity", "perplexity", "num"),),
}
KIND_TITLES = {"dpo": "DPO", "orpo": "ORPO", "simpo": "SimPO", "kto": "KTO", "grpo": "GRPO", "cpt": "CPT",
               "sft": "SFT"}


def kind_rows(view: RunView, kind: str | None) -> list[KindRow]:
    """The rows of the kind's panel that the run's events have numbers for, in the kind's order."""
    series = view.kind_series
    spec = KIND_PANELS.get(kind or "")
    if spec is None:
        spec = tuple((name, name.replace("_", " "), "num") for name in KIND_METRICS if name != "rewards") \
            + (("rewards/*", "", "num"),)
    rows = []
    for key, label, fmt in spec:
        if key == "rewards/*":
            for name in sorted(k for k in series if k.startswith("rewards/")):
                rows.append(KindRow(name, "· " + name[len("rewards/"):], series[name], fmt))
        elif key in series:
            rows.append(KindRow(key, label, series[key], fmt))
    return rows


def kind_summary(kind: str | None, metrics: dict) -> str:
    """The kind's latest numbers on one line (`ftwizard status`): "margin 1.656 · accuracy 100% · ..."."""
    spec = KIND_PANELS.get(kind or "") or tuple((n, n.replace("_", " "), "num") for n in KIND_METRICS)
    parts = []
    for key, label, fmt in spec:
        if key in ("rewards/*", "rewards"):
            per = metrics.get("rewards")
            if isinstance(per, dict):
                parts += [f"{name} {fmt_kind(v)}" for name, v in sorted(per.items()) if finite(v)]
        elif finite(metrics.get(key)):
            parts.append(f"{label} {fmt_kind(float(metrics[key]), fmt)}")
    return " · ".join(parts)


def view_from_events(events: Iterable[dict], **kw) -> RunView:
    view = RunView(**kw)
    view.apply(events)
    return view


# ------------------------------------------------------------------------------ formatting


def fmt_duration(s: float | None) -> str:
    """'45 s', '12 min', '3 h 05 min'; '-' when unknown."""
    if s is None or not math.isfinite(s):
        return "-"
    s = int(round(s))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s" if s < 600 else f"{round(s / 60)} min"
    h, m = divmod(round(s / 60), 60)
    return f"{h} h {m:02d} min"


def fmt_num(v: float | None, kind: str = "loss") -> str:
    if v is None:
        return "-"
    if not math.isfinite(v):
        return str(v)
    if kind == "lr":
        return f"{v:.1e}"
    if kind == "tps":
        return f"{v:,.0f}"
    if kind == "grad":
        return f"{v:.2f}" if v < 100 else f"{v:.3g}"
    return f"{v:.4f}" if abs(v) < 10 else f"{v:.3g}"


# ------------------------------------------------------------------------------ doctor


def diagnose_view(view: RunView) -> list:
    """The training doctor's warnings for this view (doctor.py), most serious first, followed by the
    run's own `warning` events whose code the doctor did not already raise."""
    from .doctor import KIND_CURVES, DoctorWarning, diagnose_kind, diagnose_series, is_grpo

    s = view
    kind = {k: (s.kind_series[k].xs, s.kind_series[k].ys) for k in KIND_CURVES if k in s.kind_series}
    grpo = is_grpo(kind)
    # GRPO: a loss and grad norm near 0 are normal; its no-signal case has its own rule (as diagnose_events)
    empty = ((), ())
    found = diagnose_series(train=empty if grpo else (s.train_loss.xs, s.train_loss.ys),
                            evals=(s.eval_series.xs, s.eval_series.ys),
                            grad=empty if grpo else (s.grad_series.xs, s.grad_series.ys),
                            tps=(s.tps_series.xs, s.tps_series.ys), nonfinite=s.nonfinite, max_steps=s.max_steps,
                            train_min=None if grpo else s.train_loss.min_y)
    found += diagnose_kind(kind)  # GRPO, preference and KTO rules
    slow = view.slowest_rank()
    if slow is not None:
        rank, ratio = slow
        st = view.ranks[rank]
        found.append(DoctorWarning(
            "slow-rank", "warning",
            f"rank {rank} ({st.device}) is the slowest: {ratio:.1f}x the others' compute per step "
            f"({st.typical_s:.2f} s); every rank waits for it at each step",
            {"rank": rank, "device": st.device, "compute_s": st.typical_s, "ratio": round(ratio, 2),
             "step": st.step},
            ("look at that card in nvidia-smi: clocks, temperature, power cap, other processes on it",
             "a card on a slower link or another CPU socket: pick cards on one switch in the hardware step "
             "(distributed.gpus)",
             "rows of very different lengths on different ranks: train.packing evens the tokens per batch")))
    codes = {w.code for w in found}
    for w in view.warnings:
        code = w.get("code") or "warning"
        if code in codes:
            continue
        codes.add(code)
        advice = w.get("advice") or ()
        found.append(DoctorWarning(code, "warning", str(w.get("message") or code),
                                   w.get("evidence") if isinstance(w.get("evidence"), dict) else {},
                                   tuple(advice) if isinstance(advice, (list, tuple)) else ()))
    return found
