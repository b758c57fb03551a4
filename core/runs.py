"""Run directories: creating them, finding them wherever they live, and deriving their state.

A run is a directory `<runs root>/<YYYYmmdd-HHMMSS>-<label>`:

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

Where runs live. The runs root is, first found: `--runs-dir`; the config's `runs_dir` (relative to
the config file); `$FTWIZARD_RUNS_DIR`; the user data dir (`~/.local/share/ftwizard/runs` on Linux,
through platformdirs). It never depends on the current directory. Every run directory made here is
also written to a registry, `<user data dir>/runs.txt` (one absolute path a line, appended under a
lock), so `ftwizard runs`, `attach`, `status`, `stop`, `resume`, `delete` and the wizard find every run
of this user from anywhere. A registered directory that was deleted or moved drops out of the list with
a note (`list_runs(missing=...)`), never an error.
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
from .events import RunFold, read_events

STATUS = "status.json"
LAUNCH = "launch.json"
CONFIG = "config.yaml"
LOG = "train.log"
STOP_REQUEST = "stop.request"
RANKS = "ranks"  # per-rank files of a run of several processes (memory, how a rank ended)
TERMINAL_STATES = ("completed", "failed", "stopped")  # the one home of this tuple
LIVE_STATES = ("starting", "running")
RUNS_ENV = "FTWIZARD_RUNS_DIR"
REGISTRY = "runs.txt"


def user_data_dir() -> Path:
    """ftwizard's per-user data directory (`$XDG_DATA_HOME/ftwizard` on Linux)."""
    import platformdirs

    return platformdirs.user_data_path("ftwizard", appauthor=False)


def default_runs_root() -> Path:
    """Where runs go when neither the command line nor the config says: `$FTWIZARD_RUNS_DIR`, else the
    user data dir. Never relative to the current directory."""
    env = os.environ.get(RUNS_ENV)
    if env:
        return Path(env).expanduser()  # relative: to the current directory, as any path typed in a shell
    return user_data_dir() / "runs"


def runs_root(runs_dir: str | Path | None = None) -> Path:
    """`runs_dir` when given (relative: to the current directory, as a command-line path is), else the
    default runs root. Shown as given; make_run_dir and the listing resolve it."""
    if runs_dir:
        return Path(runs_dir).expanduser()
    return default_runs_root()


# -------------------------------------------------------------------------------------- registry


def registry_path() -> Path:
    return user_data_dir() / REGISTRY


class _RegistryLock:
    """An exclusive lock on `<registry>.lock` (flock): appends and rewrites never interleave."""

    def __init__(self, path: Path):
        self.path = path.with_name(path.name + ".lock")

    def __enter__(self):
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        os.close(self._fd)  # closing releases the lock


def register_run(run_dir: str | Path) -> None:
    """Add a run directory to this user's registry. Never fails the caller: the run exists either way
    (without the entry it is still found under its runs root)."""
    line = str(Path(run_dir).absolute()) + "\n"
    if "\n" in line[:-1]:
        return
    path = registry_path()
    try:
        with _RegistryLock(path):
            with open(path, "a", encoding="utf-8") as fh:  # O_APPEND: one write, one line
                fh.write(line)
    except OSError:
        pass


def registered_runs() -> list[Path]:
    """The registry's run directories, in order, without duplicates (whether they exist or not)."""
    try:
        text = registry_path().read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return []
    seen: dict[str, None] = {}
    for line in text.splitlines():
        if line.strip():
            seen.setdefault(line.strip(), None)
    return [Path(p) for p in seen]


def unregister_runs(run_dirs: list[Path]) -> None:
    """Remove these run directories from the registry (rewritten under the lock, replaced atomically)."""
    drop = {str(Path(p).absolute()) for p in run_dirs}
    path = registry_path()
    if not drop or not path.exists():
        return
    try:
        with _RegistryLock(path):
            lines = path.read_text(encoding="utf-8").splitlines()
            keep = [ln for ln in lines if ln.strip() and ln.strip() not in drop]
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_text("".join(f"{ln}\n" for ln in keep), encoding="utf-8")
            os.replace(tmp, path)
    except OSError:
        pass


def is_run_dir(path: Path) -> bool:
    return path.is_dir() and ((path / CONFIG).exists() or (path / LAUNCH).exists())


def _slug(text: str) -> str:
    text = text.rsplit("/", 1)[-1]
    text = re.sub(r"\.gguf$", "", text, flags=re.I)
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()[:40] or "run"


def make_run_dir(runs_dir: str | Path | None, label: str) -> Path:
    """Create a new, empty run directory under `runs_dir` (None: the default runs root) and register it;
    never reuse an existing one."""
    root = runs_root(runs_dir).resolve()  # absolute: the trainer runs with the run dir as cwd
    root.mkdir(parents=True, exist_ok=True)
    stem = f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{_slug(label)}"
    for n in range(1, 1000):
        path = root / (stem if n == 1 else f"{stem}-{n}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        register_run(path)
        return path
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
    estimate_gib: float | None = None  # the memory estimate the run was launched with
    peak_gib: float | None = None      # the measured peak (peak RSS on a CPU, peak reserved per GPU)
    world_size: int = 1  # processes training together (distributed.nproc_per_node x nnodes)
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _run_dirs(runs_dir: str | Path | None = None) -> tuple[list[Path], list[Path]]:
    """(run directories, registered directories that no longer exist). With `runs_dir`: the runs under
    that root only; without: the default root's and every registered one, once each."""
    found: dict[Path, None] = {}
    gone: list[Path] = []
    root = runs_root(runs_dir)
    if root.is_dir():
        for d in root.iterdir():
            if is_run_dir(d):
                found.setdefault(d.resolve(), None)
    if not runs_dir:
        for p in registered_runs():
            if is_run_dir(p):
                found.setdefault(p.resolve(), None)
            elif not p.exists():  # a directory without config.yaml yet is a run being created
                gone.append(p)
    return sorted(found, key=lambda d: (d.name, str(d))), gone


def resolve_run(ref: str, runs_dir: str | Path | None = None) -> Path:
    """A run directory, a run id (its directory name, or a unique prefix of it) under the runs root or
    in the registry, or a path to a run directory."""
    p = Path(ref).expanduser()
    if is_run_dir(p):
        return p.resolve()
    dirs, _gone = _run_dirs(runs_dir)
    matches = [d for d in dirs if d.name == ref] or [d for d in dirs if d.name.startswith(ref)]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        same = all(m.name == matches[0].name for m in matches)
        shown = ", ".join(str(m) if same else m.name for m in matches[:3])
        raise UserError(f"'{ref}' matches {len(matches)} runs ({shown}{', ...' if len(matches) > 3 else ''}); "
                        + ("give the run directory" if same else "give more of the id"), field="RUN")
    where = f"under {runs_root(runs_dir)}/" + ("" if runs_dir else " and among the runs registered in "
                                                                       f"{registry_path()}")
    raise UserError(f"no run '{ref}' (looked for a run directory at that path, {where})", field="RUN")


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
    dist = data.get("distributed") or {}
    procs = dist.get("nproc_per_node")
    world = (procs if isinstance(procs, int) and dist.get("strategy") != "none" else 1) * int(dist.get("nnodes") or 1)
    return {"model": name, "method": data.get("method"), "training": data.get("training"), "world_size": world}


@dataclass
class RunState:
    state: str  # starting | running | completed | failed | stopped
    reason: str | None = None
    output: str | None = None
    diagnosis: dict | None = None


def derive_state(run_dir: Path, *, status: dict, launch: dict, end, step: int = 0) -> RunState:
    """The one place a run's state is decided, from its latest `end` event (events.py's fold), its
    status.json, its launch.json and whether its process lives.

    The end event wins, then a terminal status.json; either only counts when written after the latest
    launch (a resumed run's earlier end is history). A live process is running (or starting before its
    first step); a process gone without saying how it ended failed, and the log tells why when it can.
    """
    # When the latest process was started. Not its create_time: psutil derives that from the boot time in
    # whole seconds, so it can read up to a second early and an end written just before a resume would
    # count as the resumed process's own end.
    launched = launch.get("launched_at") or launch.get("create_time") or 0
    if end is not None and (end.t or 0) >= launched and end.state in TERMINAL_STATES:
        return RunState(end.state, end.reason, end.output, end.diagnosis)
    state = status.get("state")
    if state in TERMINAL_STATES and status.get("updated", 0) >= launched:
        return RunState(state, status.get("reason"), diagnosis=status.get("diagnosis"))
    if launch.get("slurm_job"):
        return _slurm_state(run_dir, launch, state, step)
    pid = launch.get("pid") or status.get("pid")
    if process_alive(pid, launch.get("create_time")):
        return RunState("running" if state == "running" or step else "starting")
    # The process is gone without saying how it ended: find out what we can.
    from .diagnose import diagnose_log

    diag = diagnose_log(run_dir / LOG)
    if diag and diag.get("kind") != "killed":
        return RunState("failed", diag["message"], diagnosis=diag)
    if not pid:
        return RunState("failed", "never started: no training process was recorded (launch interrupted?)",
                        diagnosis=diag)
    reason = ("killed: the training process ended without a final event "
              "(kill -9, the out-of-memory killer, or a reboot)")
    return RunState("failed", reason, diagnosis=diag or {"kind": "killed", "message": reason, "fixes": []})


def _slurm_state(run_dir: Path, launch: dict, state: str | None, step: int) -> RunState:
    """A run submitted to Slurm that has not said how it ended: no local pid means anything here (its
    processes are on the nodes), so Slurm is asked. A live job is starting (pending, or before step 1)
    or running; Slurm that cannot be asked from here never makes a run dead; a job that ended without
    the trainer's final event failed, with Slurm's state (or stopped, when `ftwizard stop` cancelled it
    after its grace period)."""
    from .slurm import job_state

    job = launch["slurm_job"]
    js = job_state(job)
    if js is None:
        live = "running" if state == "running" or step else "starting"
        return RunState(live, f"Slurm job {job}: Slurm cannot be asked from here (squeue); as its status.json says")
    if js.live:
        if js.state == "PENDING":
            return RunState("starting", f"Slurm job {job} pending" + (f" ({js.reason})" if js.reason else ""))
        return RunState("running" if state == "running" or step else "starting")
    if launch.get("cancelled_after_stop"):
        return RunState("stopped", f"Slurm job {job} cancelled by ftwizard stop after its grace period; resume "
                        "continues from the newest checkpoint")
    from .diagnose import diagnose_log

    diag = diagnose_log(run_dir / LOG)
    if diag and diag.get("kind") != "killed":
        return RunState("failed", diag["message"], diagnosis=diag)
    reason = f"Slurm job {job} ended {js.state} without the trainer's final event" + (
        f" ({js.reason})" if js.reason else "")
    return RunState("failed", reason, diagnosis={"kind": "slurm", "message": reason, "slurm_state": js.state,
                                                 "fixes": ["see train.log", f"sacct -j {job} (if accounting is on)"]})


def run_info(run_dir: str | Path, events: list[dict] | None = None, *, fold: RunFold | None = None) -> RunInfo:
    """Everything known about a run, rebuilt from its directory. `fold`: the caller's own fold of the
    run's events (the monitor's view), so the file is not read twice; `events`: the events to fold."""
    run_dir = Path(run_dir)
    status = read_json(run_dir / STATUS) or {}
    launch = read_json(run_dir / LAUNCH) or {}
    if fold is None:
        fold = RunFold()
        fold.apply(read_events(run_dir) if events is None else events)
    info = RunInfo(id=run_dir.name, path=str(run_dir.resolve()), state="starting", **_config_summary(run_dir))
    info.created = launch.get("created") or datetime.fromtimestamp(
        run_dir.stat().st_mtime, timezone.utc).isoformat(timespec="seconds")
    info.pid = launch.get("pid") or status.get("pid")  # launch.json names the latest process (torchrun's)
    if launch.get("slurm_job"):  # its processes are on the nodes: a pid means nothing here
        info.pid, info.extra["slurm_job"] = None, launch["slurm_job"]
    if status.get("world_size"):
        info.world_size = status["world_size"]
    info.phase, info.step, info.max_steps, info.last_loss = fold.phase, fold.step, fold.max_steps, fold.loss
    info.best_eval_loss = fold.best_eval[1] if fold.best_eval else None
    info.estimate_gib, info.peak_gib = fold.estimate_gib, fold.peak_gib
    if fold.kind_metrics:  # the training kind's latest numbers (grpo: reward_mean, rewards, ...)
        info.extra["metrics"] = dict(fold.kind_metrics)
    info.updated = fold.last_t
    if fold.first_t is not None and fold.last_t is not None:
        info.elapsed_s = round(fold.last_t - fold.first_t, 1)
    st = derive_state(run_dir, status=status, launch=launch, end=fold.end, step=fold.step)
    info.state, info.reason, info.output, info.diagnosis = st.state, st.reason, st.output, st.diagnosis
    return info


def list_runs(runs_dir: str | Path | None = None, *, missing: list[Path] | None = None) -> list[RunInfo]:
    """Every run of this user, oldest first (with `runs_dir`: the runs under that root only).

    Registered run directories that no longer exist are left out; when `missing` is a list they are
    added to it and removed from the registry (the caller says so to the user)."""
    dirs, gone = _run_dirs(runs_dir)
    if missing is not None and gone:
        missing.extend(gone)
        unregister_runs(gone)
    return [run_info(d) for d in dirs]


def missing_note(missing: list[Path]) -> str:
    """The one-line note for registered run directories that are gone."""
    if len(missing) == 1:
        return f"1 run directory no longer exists: {missing[0]} (removed from the list)"
    return (f"{len(missing)} run directories no longer exist: {', '.join(map(str, missing[:3]))}"
            + (", ..." if len(missing) > 3 else "") + " (removed from the list)")


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
    if info.state in LIVE_STATES:
        raise UserError(f"run {info.id} is still {info.state}: stop it first (ftwizard stop {info.id})",
                        field="RUN")
    if not is_run_dir(run_dir):
        raise UserError("not a run directory (no config.yaml)", file=str(run_dir), field="RUN")
    registered = [run_dir.absolute(), run_dir.resolve()]
    shutil.rmtree(run_dir)
    unregister_runs(registered)


def fmt_bytes(n: int | None, unknown: str = "?") -> str:
    if n is None:
        return unknown
    for unit, size in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"
