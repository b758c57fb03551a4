"""`events.jsonl`: the append-only telemetry of a run, one JSON object per line.

Written only by the training process (rank 0), flushed after every line; read by the CLI and the
wizard, which tail it from a byte offset and tolerate a half-written last line. Everything the UI
shows about a run is rebuilt from this file plus `status.json`.

Event types (every event has `type` and `t`, a unix time):

- `phase`:  `phase` in started | loading_model | loading_data | tokenizing | training | saving,
            `detail` (free text), optional `progress` (0..1)
- `train`:  `step`, `max_steps`, `epoch`, `loss`, `lr`, `grad_norm`, `tokens_per_s`, `tokens`,
            `elapsed_s`, `mem` ({"rss_gib": ..} on CPU; {"cuda": [{device, allocated_gib,
            reserved_gib, peak_gib}]} on GPU)
- `eval`:   `step`, `eval_loss`
- `info`:   `key`, `value` (facts about the run: parameters, trainable parameters, dataset rows,
            resolved defaults)
- `warning`: `code`, `message`, `evidence` (the training doctor; also data warnings)
- `end`:    `state` in completed | failed | stopped, `reason`, `output` (adapter/model dir), and for
            failures `diagnosis` ({kind, message, fixes})
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

EVENTS = "events.jsonl"


class EventWriter:
    """Appends events; each `emit` is one line, flushed (and the line is never split)."""

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / EVENTS
        self._fh = open(self.path, "a", encoding="utf-8", buffering=1)

    def emit(self, type_: str, **fields: Any) -> dict:
        event = {"type": type_, "t": round(time.time(), 3), **fields}
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


@dataclass
class EventTail:
    """Reads new complete lines from an events file, remembering where it stopped."""

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
    return EventTail(Path(run_dir) / EVENTS).read_new()


def iter_events(run_dir: str | Path) -> Iterator[dict]:
    yield from read_events(run_dir)
