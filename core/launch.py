"""Starting runs: make the run directory, write its config, and start the training process detached.

The process gets its own session (`start_new_session`), stdin from /dev/null and stdout/stderr into
`train.log`, so closing the terminal, the wizard or the SSH connection never stops it. Nothing here
waits for it: the CLI and the wizard follow the run by reading its directory.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from .config import RunConfig, dump_config
from .errors import UserError
from .runs import CONFIG, LAUNCH, LIVE_STATES, LOG, STATUS, STOP_REQUEST, make_run_dir, process_alive, read_json, run_info, \
    runs_root, write_json_atomic


def create_run(cfg: RunConfig, runs_dir: str | Path | None = None) -> Path:
    """A new run directory holding the config, every `auto` resolved for this machine with the reasons
    as a header comment (the training process uses it as written). Fails early (exit 2, no directory
    made) on a missing model, a revision given for a local model, a local dataset that cannot be read
    or whose format is unknown, or a setting this machine cannot honour (defaults.resolve_defaults)."""
    from .data.preview import detect_source
    from .data.read import local_files
    from .models import check_model_source, is_local_model

    model_path = check_model_source(cfg.model.name_or_path, cfg.model.gguf_file)
    if cfg.model.revision and is_local_model(model_path):
        raise UserError("a local model directory has no revisions (only hub ids do): remove it, or point "
                        "model.name_or_path at the hub id", field="model.revision")
    d = cfg.dataset
    for path in (d.path, d.validation_path):
        # A local dataset must be readable and of a known format before a run exists (hub ids are
        # checked by the training process, which may be the only one with network access).
        if path and local_files(path) is not None:
            detect_source(path, columns=d.columns, format=d.format, split=d.split, n=20)
    from .defaults import resolve_defaults
    from .hardware import detect

    cfg, notes = resolve_defaults(cfg, detect())
    root = runs_root(runs_dir or cfg.runs_dir)
    label = f"{cfg.name or cfg.model.gguf_file or cfg.model.name_or_path}-{cfg.method}"
    run_dir = make_run_dir(root, label)
    header = "".join(f"# {n}\n" for n in ["ftwizard run config: the training process's only input.",
                                           "Resolved for this machine when the run was created:", *notes])
    (run_dir / CONFIG).write_text(header + dump_config(cfg), encoding="utf-8")
    return run_dir


def start(run_dir: Path, *, resume: bool = False) -> int:
    """Start the training process on `run_dir`, detached. Returns its pid."""
    import psutil

    cmd = [sys.executable, "-m", "ftwizard.core.trainer", str(run_dir)] + (["--resume"] if resume else [])
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false",
           "HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
           "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1"}
    log = open(run_dir / LOG, "ab")
    launched_at = time.time()  # before the process exists: every event it writes comes after this
    try:
        proc = subprocess.Popen(cmd, cwd=run_dir, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True, close_fds=True)
    finally:
        log.close()
    try:
        created = psutil.Process(proc.pid).create_time()
    except psutil.NoSuchProcess:
        created = None
    launches = (read_json(run_dir / LAUNCH) or {}).get("history", [])
    record = {"pid": proc.pid, "create_time": created, "launched_at": launched_at, "command": cmd,
              "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    prev = read_json(run_dir / LAUNCH)
    if prev:
        record["created"] = prev.get("created", record["created"])
        launches = prev.get("history", []) + [{k: prev[k] for k in ("pid", "create_time") if k in prev}]
    record["history"] = launches
    write_json_atomic(run_dir / LAUNCH, record)
    # Keep a handle so that a parent that lives on (tests, the wizard) reaps the child when it ends.
    _children.append(proc)
    return proc.pid


_children: list[subprocess.Popen] = []


def reap() -> None:
    for p in list(_children):
        if p.poll() is not None:
            _children.remove(p)


def stop(run_dir: Path) -> bool:
    """Ask a run to stop: it checkpoints, saves and ends as 'stopped'. False if it is not running."""
    info = run_info(run_dir)
    if info.state not in LIVE_STATES:
        return False
    (run_dir / STOP_REQUEST).write_text(datetime.now(timezone.utc).isoformat(), encoding="utf-8")
    launch = read_json(run_dir / LAUNCH) or {}
    status = read_json(run_dir / STATUS) or {}
    # Signal only a process that has installed its handler (it writes its pid to status.json right
    # after); before that, the stop.request file is seen at its next phase.
    if status.get("pid") == info.pid and process_alive(info.pid, launch.get("create_time")):
        try:
            os.kill(info.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    return True


def resume(run_dir: Path) -> int:
    info = run_info(run_dir)
    if info.state in LIVE_STATES:
        raise UserError(f"run {info.id} is still {info.state}", field="RUN")
    from .recipes.common import last_checkpoint

    if last_checkpoint(run_dir) is None:
        raise UserError("no checkpoint to resume from", file=str(run_dir / "checkpoints"))
    (run_dir / STOP_REQUEST).unlink(missing_ok=True)
    return start(run_dir, resume=True)
