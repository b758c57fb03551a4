"""Starting runs: make the run directory, write its config, and start the training process detached.

The process gets its own session (`start_new_session`), stdin from /dev/null and stdout/stderr into
`train.log`, so closing the terminal, the wizard or the SSH connection never stops it. Nothing here
waits for it: the CLI and the wizard follow the run by reading its directory.

A run of several processes (distributed.nproc_per_node > 1) is started the same way, through torchrun
(`python -m ftwizard.core.distlaunch RUN_DIR --standalone --nproc_per_node N -m ftwizard.core.trainer
RUN_DIR`: PyTorch's launcher with SIGHUP ignored and the failing rank named); launch.json records the
launcher's pid, so the run lives while torchrun does. Several machines: `ftwizard launch-command` and
`ftwizard slurm` print or write the line to run on each.
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


def create_run(cfg: RunConfig, runs_dir: str | Path | None = None, *, force: bool = False,
               config_file: str | Path | None = None) -> Path:
    """A new run directory holding the config, made only after the pre-flight (preflight.py) passed:
    any error is a one-line `UserError` and no directory is made. `force` overrides the judgements
    (too few rows, tight memory). The pre-flight's warnings are stored in the run (preflight.json)."""
    from . import preflight
    from .defaults import resolve_defaults
    from .hardware import detect

    hw = detect()
    cfg, notes = resolve_defaults(cfg, hw)
    root = runs_root(runs_dir or cfg.runs_dir)
    report = preflight.preflight(cfg, runs_root=root, config_file=config_file, force=force, hardware=hw)
    label = f"{cfg.name or cfg.model.gguf_file or cfg.model.name_or_path}-{cfg.method}"
    try:
        run_dir = make_run_dir(root, label)
    except OSError as exc:  # a race with the pre-flight's probe, or a full disk
        raise UserError(f"cannot create a run directory: {exc.strerror or exc}", file=str(root),
                        field="runs_dir") from None
    header = "".join(f"# {n}\n" for n in ["ftwizard run config: the training process's only input.",
                                           "Resolved for this machine when the run was created:", *notes])
    (run_dir / CONFIG).write_text(header + dump_config(cfg), encoding="utf-8")
    preflight.record(run_dir, report)
    return run_dir


def start(run_dir: Path, *, resume: bool = False) -> int:
    """Start the training process on `run_dir`, detached. Returns its pid. A completed run is never
    started again (nothing is written to it: launch.json would make it look relaunched)."""
    import psutil

    if resume:
        from .checkpoints import final_reason

        why = final_reason(run_dir)
        if why:
            raise UserError(why, field="RUN")

    cmd = command(run_dir, resume=resume)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false",
           "HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
           "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1", **chosen_cards_env(run_dir)}
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


def command(run_dir: Path, *, resume: bool = False) -> list[str]:
    """The command that trains `run_dir` on this machine: the trainer itself for one process, torchrun
    (through distlaunch) for several. Several machines are refused here: each node runs its own line."""
    trainer = ["-m", "ftwizard.core.trainer", str(run_dir)] + (["--resume"] if resume else [])
    procs, nnodes = world_of(run_dir)
    if nnodes > 1:
        raise UserError(f"is {nnodes}: a run on several machines is started on each of them (ftwizard "
                        "launch-command RUN --nodes N --node-rank K --master HOST, or ftwizard slurm)",
                        file=str(run_dir / CONFIG), field="distributed.nnodes")
    if procs == 1:
        return [sys.executable] + trainer
    return [sys.executable, "-m", "ftwizard.core.distlaunch", str(run_dir), "--standalone", "--nnodes", "1",
            "--nproc_per_node", str(procs)] + trainer


def chosen_cards_env(run_dir: Path) -> dict[str, str]:
    """CUDA_VISIBLE_DEVICES for the run's distributed.gpus (hardware.cuda_env); nothing for auto."""
    from .config import load_config
    from .hardware import cuda_env

    return cuda_env(load_config(run_dir / CONFIG, resolve_paths=False).distributed)


def world_of(run_dir: Path) -> tuple[int, int]:
    """(processes per node, nodes) of a run, from its resolved config.yaml."""
    from .config import load_config

    d = load_config(run_dir / CONFIG, resolve_paths=False).distributed
    procs = d.nproc_per_node if isinstance(d.nproc_per_node, int) else 1
    return (procs if d.strategy != "none" else 1), d.nnodes


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


def resume(run_dir: Path, *, force: bool = False) -> int:
    """Start the training process again on a stopped or failed run, from its newest whole and finite
    checkpoint. A completed run is final: refused (see `checkpoints.final_reason`)."""
    from . import preflight
    from .checkpoints import final_reason, resume_checkpoint

    info = run_info(run_dir)
    if info.state in LIVE_STATES:
        raise UserError(f"run {info.id} is still {info.state}", field="RUN")
    why = final_reason(run_dir, info)
    if why:
        raise UserError(why, field="RUN")
    ckpt, skipped = resume_checkpoint(run_dir)
    if ckpt is None:
        because = "; ".join(f"{name}: {reason}" for name, reason in skipped)
        raise UserError("no checkpoint to resume from" + (f" (skipped {because})" if because else ""),
                        file=str(run_dir / "checkpoints"))
    from .config import load_config

    cfg = load_config(run_dir / CONFIG, resolve_paths=False)
    report = preflight.preflight(cfg, config_file=run_dir / CONFIG, force=force)
    (run_dir / STOP_REQUEST).unlink(missing_ok=True)
    preflight.record(run_dir, report)
    return start(run_dir, resume=True)


def extend(run_dir: Path, steps: int, runs_dir: str | Path | None = None, *, force: bool = False) -> Path:
    """A NEW run that trains `steps` more steps starting from a finished run's adapter (or full model);
    the finished run is only read. Its config records where it started (model.init_adapter, or
    model.name_or_path for full fine-tuning) and the header says which run it extends."""
    from .checkpoints import extension_config

    cfg, note = extension_config(run_dir, steps)
    new = create_run(cfg, runs_dir or Path(run_dir).parent, force=force)
    text = (new / CONFIG).read_text(encoding="utf-8")
    (new / CONFIG).write_text(f"# {note}\n" + text, encoding="utf-8")
    return new
