"""Run directories: creating them, finding them, and deriving their state.

A run is a directory `<runs_dir>/<YYYYmmdd-HHMMSS>-<label>`:

    config.yaml    the training process's only input (absolute paths)
    launch.json    written once by the launcher: pid, process start time, command
    status.json    written only by the training process: state, phase, step, reason
    events.jsonl   append-only telemetry (see events.py)
    train.log      the process's stdout and stderr
    checkpoints/   Trainer checkpoints (resume points)
    output/        the trained adapter or model, with the tokenizer and chat template

The state shown to a user is *derived*: a run whose status says "running" but whose process is gone
(kill -9, the OOM killer, a machine reboot) is reported as failed with the reason, never as running
forever. A run directory is created with `mkdir` (atomic), so two runs started in the same second get
distinct names, and an existing directory is never reused or overwritten.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .errors import UserError
from .events import read_events

STATUS = "status.json"
LAUNCH = "launch.json"
CONFIG = "config.yaml"
LOG = "train.log"
STOP_REQUEST = "stop.request"
TERMINAL_STATES = ("completed", "failed", "stopped")
DEFAULT_RUNS_DIR = "runs"


def runs_root(runs_dir: str | Path | None = None) -> Path:
    return Path(runs_dir or os.environ.get("FTWIZARD_RUNS_DIR") or DEFAULT_RUNS_DIR).expanduser()


def _slug(text: str) -> str:
    text = text.rsplit("/", 1)[-1]
    text = re.sub(r"\.gguf$", "", text, flags=re.I)
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()[:40] or "run"


def make_run_dir(runs_dir: str | Path, label: str) -> Path:
    """Create a new, empty run directory; never reuse an existing one."""
    root = Path(runs_dir).expanduser().resolve()  # absolute: the trainer runs with the run dir as cwd
    root.mkdir(parents=True, exist_ok=True)
    stem = f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{_slug(label)}"
    for n in range(1, 1000):
        path = root / (stem if n == 1 else f"{stem}-{n}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise UserError("could not find a free run directory name", file=str(root))


def write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str), encoding="utf-8")
    os.replace(tmp, path)


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return None


# ------------------------------------------------------------------------------ process liveness


def process_alive(pid: int | None, create_time: float | None = None) -> bool:
    """True if `pid` is a live (not zombie) process started at `create_time` (pid reuse guard)."""
    if not pid:
        return False
    import psutil

    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        if create_time is not None and abs(proc.create_time() - create_time) > 2.0:
            return False
        return True
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


# ------------------------------------------------------------------------------------ run info


@dataclass
class RunInfo:
    id: str
    path: str
    state: str  # starting | running | completed | failed | stopped
    created: str | None = None
    model: str | None = None
    method: str | None = None
    training: str | None = None
    phase: str | None = None
    step: int = 0
    max_steps: int | None = None
    last_loss: float | None = None
    best_eval_loss: float | None = None
    pid: int | None = None
    reason: str | None = None
    diagnosis: dict | None = None
    output: str | None = None
    elapsed_s: float | None = None
    updated: float | None = None
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def resolve_run(ref: str, runs_dir: str | Path | None = None) -> Path:
    """A run id (directory name under the runs root, or a unique prefix) or a path to a run dir."""
    p = Path(ref).expanduser()
    if (p / CONFIG).exists() or (p / LAUNCH).exists():
        return p.resolve()
    root = runs_root(runs_dir)
    if (root / ref / CONFIG).exists():
        return (root / ref).resolve()
    if root.is_dir():
        matches = sorted(d for d in root.iterdir() if d.name.startswith(ref) and (d / CONFIG).exists())
        if len(matches) == 1:
            return matches[0].resolve()
        if len(matches) > 1:
            raise UserError(f"'{ref}' matches {len(matches)} runs ({', '.join(m.name for m in matches[:3])}, ...); "
                            "give more of the id", field="RUN")
    raise UserError(f"no run '{ref}' (looked for a run directory at that path and under {root}/)", field="RUN")


def _config_summary(run_dir: Path) -> dict:
    import yaml

    try:
        data = yaml.safe_load((run_dir / CONFIG).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return {}
    model = (data.get("model") or {})
    name = model.get("name_or_path")
    if model.get("gguf_file"):
        name = model["gguf_file"]
    return {"model": name, "method": data.get("method"), "training": data.get("training")}


def run_info(run_dir: str | Path, events: list[dict] | None = None) -> RunInfo:
    """Everything known about a run, rebuilt from its directory."""
    run_dir = Path(run_dir)
    status = read_json(run_dir / STATUS) or {}
    launch = read_json(run_dir / LAUNCH) or {}
    if events is None:
        events = read_events(run_dir)
    info = RunInfo(id=run_dir.name, path=str(run_dir.resolve()), state="starting",
                   **_config_summary(run_dir))
    info.created = launch.get("created") or datetime.fromtimestamp(
        run_dir.stat().st_mtime, timezone.utc).isoformat(timespec="seconds")
    info.pid = launch.get("pid") or status.get("pid")  # launch.json names the latest process
    evals = []
    end = None
    first_t = None
    for ev in events:
        first_t = first_t if first_t is not None else ev.get("t")
        kind = ev.get("type")
        if kind == "train":
            info.step = ev.get("step", info.step)
            info.max_steps = ev.get("max_steps", info.max_steps)
            if ev.get("loss") is not None:
                info.last_loss = ev["loss"]
        elif kind == "eval" and ev.get("eval_loss") is not None:
            evals.append(ev["eval_loss"])
        elif kind == "phase":
            info.phase = ev.get("phase")
            if info.phase == "started":
                end = None  # a resumed run starts again after its earlier end
            if ev.get("max_steps"):
                info.max_steps = ev["max_steps"]
        elif kind == "end":
            end = ev
        info.updated = ev.get("t", info.updated)
    if evals:
        info.best_eval_loss = min(evals)
    if first_t is not None and info.updated is not None:
        info.elapsed_s = round(info.updated - first_t, 1)

    state = status.get("state")
    # When the latest process was started. Not its create_time: psutil derives that from the boot time in
    # whole seconds, so it can read up to a second early and an end written just before a resume would
    # count as the resumed process's own end.
    launched = launch.get("launched_at") or launch.get("create_time") or 0
    if end is not None and end.get("t", 0) < launched:
        end = None  # relaunched (resume) after that end: the new process has not spoken yet
    if state in TERMINAL_STATES and status.get("updated", 0) < launched:
        state = "starting"
    if end is not None and end.get("state") in TERMINAL_STATES:
        info.state, info.reason = end["state"], end.get("reason")
        info.output, info.diagnosis = end.get("output"), end.get("diagnosis")
        return info
    if state in TERMINAL_STATES:
        info.state, info.reason = state, status.get("reason")
        info.diagnosis = status.get("diagnosis")
        return info
    alive = process_alive(info.pid, launch.get("create_time"))
    if alive:
        info.state = "running" if state == "running" or info.step else "starting"
        return info
    # The process is gone without saying how it ended: find out what we can.
    from .diagnose import diagnose_log

    diag = diagnose_log(run_dir / LOG)
    info.state = "failed"
    info.diagnosis = diag
    if diag and diag.get("kind") != "killed":
        info.reason = diag["message"]
    elif not info.pid:
        info.reason = "never started: no training process was recorded (launch interrupted?)"
    else:
        info.reason = ("killed: the training process ended without a final event "
                       "(kill -9, the out-of-memory killer, or a reboot)")
        info.diagnosis = diag or {"kind": "killed", "message": info.reason, "fixes": []}
    return info


def list_runs(runs_dir: str | Path | None = None) -> list[RunInfo]:
    root = runs_root(runs_dir)
    if not root.is_dir():
        return []
    out = []
    for d in sorted(root.iterdir()):
        if d.is_dir() and ((d / CONFIG).exists() or (d / LAUNCH).exists()):
            out.append(run_info(d))
    return out


def age(info: RunInfo) -> str:
    try:
        t = datetime.fromisoformat(info.created).timestamp()
    except (TypeError, ValueError):
        return "?"
    s = max(0, time.time() - t)
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= n:
            return f"{int(s // n)}{unit}"
    return f"{int(s)}s"


def disk_usage(run_dir: str | Path) -> int:
    """Bytes used by a run directory (checkpoints dominate)."""
    total = 0
    for root, _dirs, files in os.walk(run_dir):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


def delete_run(run_dir: str | Path) -> None:
    """Delete a run directory. Refuses a run that is still running (stop it first)."""
    import shutil

    run_dir = Path(run_dir)
    info = run_info(run_dir)
    if info.state in ("running", "starting"):
        raise UserError(f"run {info.id} is still {info.state}: stop it first (ftwizard stop {info.id})",
                        field="RUN")
    if not ((run_dir / CONFIG).exists() or (run_dir / LAUNCH).exists()):
        raise UserError("not a run directory (no config.yaml)", file=str(run_dir), field="RUN")
    shutil.rmtree(run_dir)


def fmt_bytes(n: int | None, unknown: str = "?") -> str:
    if n is None:
        return unknown
    for unit, size in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"
