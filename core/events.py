"""`events.jsonl`: the append-only telemetry of a run: its schema, its one reader and its one fold.

Written only by the training process (rank 0) through `EventWriter`, flushed after every line; read by
the CLI and the wizard, which tail it from a byte offset (`EventTail`) and tolerate a half-written last
line. Everything the UI shows about a run is rebuilt from this file plus `status.json` (runs.py).

**Schema.** One dataclass per event type, below: `PhaseEvent`, `TrainEvent`, `EvalEvent`, `InfoEvent`,
`WarningEvent`, `CheckpointEvent`, `EndEvent`, `SampleEvent` (GRPO). On disk an event is one flat JSON
object: `type`, `t` (unix time) and the event's fields; a field left out means None. `parse_event` turns such an object back
into its dataclass. Reading is tolerant, so that old runs and newer writers both load: a field the
schema does not name is kept in `extra`, a value of the wrong kind is kept as written (the fold checks
what it uses), and an unknown `type` becomes an `UnknownEvent` (counted, otherwise ignored).

**Fold.** `RunFold.apply(events)` folds a run's events, raw or typed, into what every reader needs:
the phase, the step, the latest numbers, the best validation loss and how the run ended.
`runs.run_info` (hence `ftwizard runs`, `status`, `follow`) uses it as it is; the monitor's `RunView`
(monitor.py) extends it with curves, memory and warnings. A resumed run starts again from its last
checkpoint: its `phase: started` clears the earlier end, its `phase: training` names the step it
resumed from, and a step at or below the last one rewinds everything to before that step.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, Iterable, Iterator

EVENTS = "events.jsonl"

PHASE_LABELS = {
    "started": "starting the training process",
    "loading_model": "loading the model",
    "loading_data": "loading the dataset",
    "tokenizing": "tokenizing",
    "training": "training",
    "saving": "saving",
}


# ----------------------------------------------------------------------------------------- schema


@dataclass(slots=True)
class Event:
    """Fields every event has. `extra` holds fields this schema does not name (never written by `write`
    unless set on purpose)."""

    TYPE: ClassVar[str] = ""
    NAMES: ClassVar[frozenset[str]] = frozenset()  # the field names read from disk (set below)

    t: float | None = None  # unix time the event was written
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    def to_json(self) -> dict[str, Any]:
        """The on-disk object: `type`, `t`, then every field that is not None, then `extra`."""
        out: dict[str, Any] = {"type": self.TYPE, "t": self.t}
        for name in self.NAMES:
            if name != "t":
                v = getattr(self, name)
                if v is not None:
                    out[name] = v
        out.update(self.extra)
        return out


@dataclass(slots=True)
class PhaseEvent(Event):
    """What the training process is doing before, around and after the steps."""

    TYPE: ClassVar[str] = "phase"
    phase: str | None = None  # started | loading_model | loading_data | tokenizing | training | saving
    detail: str | None = None  # free text: "pid 123", the model path, "200 steps"
    progress: float | None = None  # 0..1 within the phase, when known
    max_steps: int | None = None  # on `training`: the steps this process will reach
    start_step: int | None = None  # on `training`: the step it starts from (>0 when resumed)


@dataclass(slots=True)
class TrainEvent(Event):
    """One logged training step (every train.logging_steps steps)."""

    TYPE: ClassVar[str] = "train"
    step: int | None = None
    max_steps: int | None = None
    epoch: float | None = None
    loss: float | None = None  # may be NaN/inf (written as JSON NaN/Infinity)
    lr: float | None = None
    grad_norm: float | None = None
    tokens_per_s: float | None = None  # trained tokens per second since the previous train event
    tokens: int | None = None  # trained tokens so far
    elapsed_s: float | None = None  # seconds since training (this process) began
    mem: dict | None = None  # {"rss_gib": ..} on CPU; {"cuda": [{device, allocated_gib, reserved_gib, peak_gib}]}
    # processes training together when > 1; then mem["ranks"] holds each rank's latest report: its memory,
    # the `step` it reported at and `compute_s`, its forward compute seconds per step (the slowest rank)
    world_size: int | None = None
    mean_token_accuracy: float | None = None  # with train.extra_metrics
    entropy: float | None = None  # with train.extra_metrics
    # Preference kinds (dpo, orpo, simpo), from TRL's rewards/*: the implicit reward of each answer,
    # chosen minus rejected, and the share of pairs where chosen scores higher.
    reward_chosen: float | None = None
    reward_rejected: float | None = None
    reward_margin: float | None = None
    reward_accuracy: float | None = None
    nll_loss: float | None = None  # orpo/simpo: the SFT loss on the chosen answers
    log_odds_ratio: float | None = None  # orpo
    # KTO, per label: the implicit reward of desirable and undesirable rows, their difference, the KL term.
    reward_desirable: float | None = None
    reward_undesirable: float | None = None
    kl: float | None = None
    perplexity: float | None = None  # training: cpt: exp(loss)
    # training: grpo (TRL's names in brackets)
    reward_mean: float | None = None  # weighted sum of the rewards, mean over the step's completions [reward]
    reward_std: float | None = None  # [reward_std]
    rewards: dict | None = None  # {reward name: mean} [rewards/<name>/mean]
    completion_length_mean: float | None = None  # tokens [completions/mean_length]
    clipped_ratio: float | None = None  # share of completions cut at grpo.max_completion_length
    zero_std_ratio: float | None = None  # share of groups whose rewards are all equal [frac_reward_zero_std]


@dataclass(slots=True)
class EvalEvent(Event):
    """A validation pass."""

    TYPE: ClassVar[str] = "eval"
    step: int | None = None
    eval_loss: float | None = None
    eval_perplexity: float | None = None  # training: cpt: exp(eval_loss)


@dataclass(slots=True)
class InfoEvent(Event):
    """A fact about the run: parameters, device, dataset rows, chat template, resolved defaults."""

    TYPE: ClassVar[str] = "info"
    key: str | None = None
    value: Any = None


@dataclass(slots=True)
class WarningEvent(Event):
    """Something the user should know (the training doctor, data warnings, early stopping)."""

    TYPE: ClassVar[str] = "warning"
    code: str | None = None  # stable, kebab-case: "early-stop", "dataset-dpo-as-sft", ...
    message: str | None = None
    evidence: dict | None = None  # the numbers behind it
    advice: list | None = None  # what to try, in order


@dataclass(slots=True)
class CheckpointEvent(Event):
    """A checkpoint (a resume point) was saved."""

    TYPE: ClassVar[str] = "checkpoint"
    step: int | None = None
    path: str | None = None


@dataclass(slots=True)
class EndEvent(Event):
    """How the process ended: the last event of a run (until a resume)."""

    TYPE: ClassVar[str] = "end"
    state: str | None = None  # completed | failed | stopped (runs.TERMINAL_STATES)
    reason: str | None = None
    output: str | None = None  # the adapter or model directory
    diagnosis: dict | None = None  # on failure: {kind, message, fixes}
    elapsed_s: float | None = None
    step: int | None = None


@dataclass(slots=True)
class SampleEvent(Event):
    """training: grpo: one of the latest completions and what each reward gave it (a few per log step)."""

    TYPE: ClassVar[str] = "sample"
    step: int | None = None
    prompt: Any = None  # a string, or a list of messages (conversational)
    completion: Any = None
    rewards: dict | None = None  # {reward name: value or None}
    advantage: float | None = None


@dataclass(slots=True)
class UnknownEvent(Event):
    """An event of a type this schema does not know (a newer writer): counted, otherwise ignored."""

    TYPE: ClassVar[str] = "unknown"
    type: Any = None  # the type as written


EVENT_TYPES: dict[str, type[Event]] = {
    cls.TYPE: cls for cls in (PhaseEvent, TrainEvent, EvalEvent, InfoEvent, WarningEvent, CheckpointEvent, EndEvent,
                              SampleEvent)
}
for _cls in (*EVENT_TYPES.values(), UnknownEvent):
    _cls.NAMES = frozenset(f.name for f in fields(_cls) if f.name != "extra")


def parse_event(raw: Any) -> Event:
    """The typed event for one on-disk object (see the module docstring for what is tolerated)."""
    if not isinstance(raw, dict):
        return UnknownEvent(type=None, extra={"value": raw})
    kind = raw.get("type")
    cls = EVENT_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        cls = UnknownEvent
    elif "extra" not in raw:  # the common case, every field known: a third faster than the loop below
        kw = dict(raw)
        del kw["type"]
        try:
            return cls(**kw)
        except TypeError:
            pass
    names = cls.NAMES
    kw = {}
    extra = None
    for k, v in raw.items():
        if k in names:
            kw[k] = v
        elif k != "type":
            if extra is None:
                extra = {}
            extra[k] = v
    if cls is UnknownEvent:
        kw["type"] = kind
    ev = cls(**kw)
    if extra:
        ev.extra = extra
    return ev


# ----------------------------------------------------------------------------------------- writer


class EventWriter:
    """Appends events; each `emit`/`write` is one line, flushed (and the line is never split).

    `emit(type, **fields)` is the trainer's call shape; `write(TrainEvent(...))` the typed one. Neither
    refuses an unknown type or field (telemetry never fails a run): tests check that a real run's events
    parse into the schema with nothing left over."""

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / EVENTS
        self._fh = open(self.path, "a", encoding="utf-8", buffering=1)

    def emit(self, type_: str, **fields: Any) -> dict:
        return self._line({"type": type_, "t": round(time.time(), 3), **fields})

    def write(self, event: Event) -> dict:
        if event.t is None:
            event.t = round(time.time(), 3)
        return self._line(event.to_json())

    def _line(self, event: dict) -> dict:
        # One write call per line so that a reader never sees two events interleaved.
        self._fh.write(json.dumps(event, allow_nan=True, default=str) + "\n")
        self._fh.flush()
        return event

    def close(self) -> None:
        try:
            self._fh.flush()
            os.fsync(self._fh.fileno())
        except (OSError, ValueError):
            pass
        self._fh.close()


# ----------------------------------------------------------------------------------------- reader


@dataclass
class EventTail:
    """Reads new complete lines from an events file, remembering where it stopped. Returns the on-disk
    objects (dicts); `RunFold.apply` types them."""

    path: Path
    offset: int = 0
    bad_lines: int = 0
    _partial: bytes = field(default=b"", repr=False)

    def read_new(self, max_bytes: int = -1) -> list[dict]:
        """Complete events appended since the last call; at most `max_bytes` read per call when given
        (the monitor folds a run with millions of events in bounded slices)."""
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                chunk = fh.read(max_bytes)
        except FileNotFoundError:
            return []
        if not chunk:
            return []
        self.offset += len(chunk)
        data = self._partial + chunk
        lines = data.split(b"\n")
        self._partial = lines.pop()  # an incomplete last line waits for the next read
        out = []
        for line in lines:
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except ValueError:
                self.bad_lines += 1
        return out


def read_events(run_dir: str | Path) -> list[dict]:
    """Every complete event of a run, as written."""
    return EventTail(Path(run_dir) / EVENTS).read_new()


def iter_events(run_dir: str | Path) -> Iterator[dict]:
    yield from read_events(run_dir)


# ------------------------------------------------------------------------------------------- fold


def finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


NONFINITE_TEXT = ("NaN", "nan", "inf", "-inf", "Infinity", "-Infinity")


def as_number(v: Any) -> float | None:
    """A metric as a float (NaN and inf included, also when written as text); None if it is not one."""
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    if v in NONFINITE_TEXT:
        return float(v)
    return None


def mem_peak_gib(mem: Any) -> float | None:
    """The measured peak a `train` event's `mem` holds: the process's peak RSS on a CPU
    (`peak_rss_gib`), the largest card's peak reserved memory on GPUs (else its peak allocated)."""
    if not isinstance(mem, dict):
        return None
    if isinstance(mem.get("cuda"), list):
        vals = [d.get("peak_reserved_gib", d.get("peak_gib")) for d in mem["cuda"] if isinstance(d, dict)]
        vals = [float(v) for v in vals if finite(v)]
        return max(vals) if vals else None
    v = mem.get("peak_rss_gib")
    return float(v) if finite(v) else None


# The training kinds' own numbers, kept latest-first by the fold and carried by `status --json` (extra.metrics).
KIND_METRICS = ("reward_mean", "reward_std", "rewards", "completion_length_mean", "clipped_ratio", "zero_std_ratio",
                "reward_chosen", "reward_rejected", "reward_margin", "reward_accuracy", "nll_loss", "log_odds_ratio",
                "reward_desirable", "reward_undesirable", "kl", "perplexity")
SAMPLES_KEPT = 50


@dataclass
class RunFold:
    """A run as its events tell it. `apply()` is incremental: a batch at a time, in file order."""

    phase: str | None = None
    phase_detail: str = ""
    phase_progress: float | None = None
    step: int = 0  # the last logged step (after a resume's rewind: the step it resumed from)
    max_steps: int | None = None
    start_step: int = 0
    epoch: float | None = None
    loss: float | None = None  # latest values (NaN/inf kept: they are news)
    lr: float | None = None
    grad_norm: float | None = None
    tokens_per_s: float | None = None
    tokens: int | None = None
    train_elapsed_s: float | None = None
    eval_loss: float | None = None  # latest finite validation loss
    best_eval: tuple[int, float] | None = None  # (step, loss), the earliest on a tie
    first_t: float | None = None
    last_t: float | None = None
    info: dict = field(default_factory=dict)  # `info` events: key -> value
    estimate_gib: float | None = None  # the run's memory estimate (info `estimate`)
    peak_gib: float | None = None  # the highest measured peak in `train` events' `mem`
    kind_metrics: dict = field(default_factory=dict)  # the training kind's latest numbers (GRPO: reward_mean, ...)
    samples: list = field(default_factory=list)  # GRPO: the latest SAMPLES_KEPT `sample` events, newest last
    end: EndEvent | None = None  # the latest end, None while the latest process has not ended
    n_events: int = 0
    version: int = 0  # bumped by every apply() that folded something

    def __post_init__(self):
        self._evals: list[tuple[int, float]] = []  # finite validation losses kept by rewinds
        self._handlers = {cls: getattr(self, f"_on_{cls.TYPE}") for cls in (*EVENT_TYPES.values(), UnknownEvent)}

    def apply(self, events: Iterable[dict | Event]) -> bool:
        """Fold new events in (on-disk dicts or typed events); True if there were any."""
        changed = False
        handlers = self._handlers
        for raw in events:
            ev = raw if isinstance(raw, Event) else parse_event(raw)
            changed = True
            self.n_events += 1
            t = ev.t
            if finite(t):
                if self.first_t is None:
                    self.first_t = t
                self.last_t = t
            handlers[type(ev)](ev)
        if changed:
            self.version += 1
        return changed

    # ---------------------------------------------------------------------------- one per type

    def _on_phase(self, ev: PhaseEvent) -> None:
        phase = ev.phase
        if phase == "started":
            self.end = None  # a resumed run starts again after its earlier end
        self.phase = phase
        self.phase_detail = str(ev.detail or "")
        self.phase_progress = ev.progress if finite(ev.progress) else None
        if isinstance(ev.max_steps, int) and ev.max_steps:
            self.max_steps = ev.max_steps
        if phase == "training":
            self.start_step = int(ev.start_step or 0)
            if self.step > self.start_step:
                self._rewind(self.start_step + 1)  # resumed from an earlier checkpoint
                self.step = self.start_step

    def _on_train(self, ev: TrainEvent) -> None:
        step = ev.step
        if not isinstance(step, int) or isinstance(step, bool):
            return
        if step <= self.step:
            self._rewind(step)
        self.step = step
        if isinstance(ev.max_steps, int) and ev.max_steps:
            self.max_steps = ev.max_steps
        if finite(ev.epoch):
            self.epoch = ev.epoch
        for name in ("loss", "lr", "grad_norm", "tokens_per_s"):
            v = as_number(getattr(ev, name))
            if v is not None:
                setattr(self, name, v)
        if isinstance(ev.tokens, int):
            self.tokens = ev.tokens
        if finite(ev.elapsed_s):
            self.train_elapsed_s = ev.elapsed_s
        peak = mem_peak_gib(ev.mem)
        if peak is not None and (self.peak_gib is None or peak > self.peak_gib):
            self.peak_gib = peak
        for name in KIND_METRICS:
            v = getattr(ev, name)
            if v is not None:
                self.kind_metrics[name] = v

    def _on_sample(self, ev: SampleEvent) -> None:
        self.samples.append(ev)
        del self.samples[:-SAMPLES_KEPT]

    def _on_eval(self, ev: EvalEvent) -> None:
        step, v = ev.step, ev.eval_loss
        if not isinstance(step, int) or not finite(v):
            return
        if self._evals and step <= self._evals[-1][0]:
            self._drop_evals_from(step)
        v = float(v)
        self._evals.append((step, v))
        self.eval_loss = v
        if self.best_eval is None or v < self.best_eval[1]:
            self.best_eval = (step, v)

    def _on_info(self, ev: InfoEvent) -> None:
        if ev.key:
            self.info[str(ev.key)] = ev.value
        if ev.key == "estimate" and isinstance(ev.value, dict) and finite(ev.value.get("total_gib")):
            self.estimate_gib = float(ev.value["total_gib"])

    def _on_warning(self, ev: WarningEvent) -> None:
        pass

    def _on_checkpoint(self, ev: CheckpointEvent) -> None:
        pass

    def _on_end(self, ev: EndEvent) -> None:
        self.end = ev

    def _on_unknown(self, ev: UnknownEvent) -> None:
        pass

    def _rewind(self, step: int) -> None:
        """Forget everything logged at `step` or later (a resumed run repeats those steps)."""
        self._drop_evals_from(step)

    def _drop_evals_from(self, step: int) -> None:
        if self._evals and self._evals[-1][0] >= step:
            self._evals = [e for e in self._evals if e[0] < step]
            self.best_eval = min(self._evals, key=lambda e: e[1]) if self._evals else None
            self.eval_loss = self._evals[-1][1] if self._evals else None

    # ---------------------------------------------------------------------------------- derived

    @property
    def started_training(self) -> bool:
        return self.step > 0

    @property
    def progress(self) -> float | None:
        if not self.max_steps:
            return None
        return min(1.0, self.step / self.max_steps)

    @property
    def elapsed_s(self) -> float | None:
        if self.end is not None and finite(self.end.elapsed_s):
            return self.end.elapsed_s
        if self.first_t is None or self.last_t is None:
            return None
        return self.last_t - self.first_t

    def phase_text(self) -> str:
        """What the process is doing, in words, for the screen before step 1."""
        if self.phase is None:
            return "waiting for the training process to start"
        text = PHASE_LABELS.get(self.phase, str(self.phase).replace("_", " "))
        if self.phase_progress is not None:
            text += f" {self.phase_progress:.0%}"
        if self.phase_detail:
            text += f": {self.phase_detail}"
        return text


def fold_events(run_dir: str | Path) -> RunFold:
    """A run's whole events file, folded."""
    fold = RunFold()
    fold.apply(read_events(run_dir))
    return fold
