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
               config_file: str | Path | None = None, hardware=None,
               before_create=None) -> Path:
    """A new run directory holding the config, made only after the pre-flight (preflight.py) passed:
    any error is a one-line `UserError` and no directory is made. `force` overrides the judgements
    (too few rows, tight memory). The pre-flight's warnings are stored in the run (preflight.json).
    `hardware`: the machine the run will train on when it is not this one (a Slurm node's cards);
    `before_create(cfg)`: a last check of the resolved config (UserError) before the directory exists."""
    from . import preflight
    from .defaults import resolve_defaults
    from .hardware import detect

    hw = hardware or detect()
    cfg, notes = resolve_defaults(cfg, hw)
    root = runs_root(runs_dir or cfg.runs_dir)
    report = preflight.preflight(cfg, runs_root=root, config_file=config_file, force=force, hardware=hw)
    if before_create is not None:
        before_create(cfg)
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
    env = {**os.environ, **TRAINER_ENV, **chosen_cards_env(run_dir)}
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
    record_launch(run_dir, {"pid": proc.pid, "create_time": created, "launched_at": launched_at, "command": cmd})
    # Keep a handle so that a parent that lives on (tests, the wizard) reaps the child when it ends.
    _children.append(proc)
    return proc.pid


TRAINER_ENV = {"PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
               "HF_DATASETS_DISABLE_PROGRESS_BARS": "1", "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1"}


def record_launch(run_dir: Path, record: dict) -> None:
    """launch.json: the latest launch (a pid, or a Slurm job), the earlier ones in `history`."""
    record = {**record, "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    prev = read_json(run_dir / LAUNCH)
    launches = []
    if prev:
        record["created"] = prev.get("created", record["created"])
        launches = prev.get("history", []) + [{k: prev[k] for k in ("pid", "create_time", "slurm_job") if k in prev}]
    record["history"] = launches
    write_json_atomic(run_dir / LAUNCH, record)


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


def torchrun_command(run_dir: Path, *, nodes: int, procs: int, endpoint: str, rdzv_id: str,
                     node_rank: int | None = None, resume: bool = False, python: str = sys.executable,
                     backend: str = "c10d") -> list[str]:
    """One machine's command of a run on several: torchrun (through distlaunch) with a rendezvous (c10d,
    or static with node ranks) at `endpoint` (HOST:PORT of the first machine). node_rank None: the
    rendezvous assigns it (Slurm)."""
    rank = [] if node_rank is None else ["--node_rank", str(node_rank)]
    return [python, "-m", "ftwizard.core.distlaunch", str(run_dir), "--nnodes", str(nodes), *rank,
            "--nproc_per_node", str(procs), "--rdzv_backend", backend, "--rdzv_endpoint", endpoint,
            "--rdzv_id", rdzv_id, "-m", "ftwizard.core.trainer", str(run_dir)] + (["--resume"] if resume else [])


# ------------------------------------------------------------------------------------------- Slurm


def is_slurm_run(run_dir: Path) -> bool:
    from .slurm import SLURM_FILE

    return (Path(run_dir) / SLURM_FILE).exists()


def write_slurm_job(run_dir: Path, spec, *, resume: bool = False) -> Path:
    """RUN_DIR/job.sbatch for `spec` (slurm.JobSpec), and slurm.json recording the spec (kept by resume)."""
    from .slurm import HEAD, JOB, PORT, SCRIPT, SLURM_FILE, job_script

    from .config import load_config

    rdzv_id = load_config(run_dir / CONFIG, resolve_paths=False).distributed.rdzv_id  # null: the job id
    node = torchrun_command(run_dir, nodes=spec.nodes, procs=spec.procs_per_node, endpoint=f"{HEAD}:{PORT}",
                            rdzv_id=rdzv_id or JOB, resume=resume)
    path = run_dir / SCRIPT
    path.write_text(job_script(str(run_dir), run_dir.name, spec, node, TRAINER_ENV), encoding="utf-8")
    path.chmod(0o755)
    record = read_json(run_dir / SLURM_FILE) or {"jobs": []}
    record["spec"] = spec.to_json()
    write_json_atomic(run_dir / SLURM_FILE, record)
    return path


def cancel_slurm(run_dir: Path) -> str:
    """scancel the run's Slurm job (after `stop` asked it to end and its grace period passed, or while it
    is still pending); the run then reads as stopped, resumable from its newest checkpoint."""
    from .slurm import SlurmError, cancel

    launch = read_json(run_dir / LAUNCH) or {}
    job = launch.get("slurm_job")
    if not job:
        raise UserError("is not a Slurm run: nothing to scancel", field="RUN")
    write_json_atomic(run_dir / LAUNCH, {**launch, "cancelled_after_stop": True})
    try:
        cancel(job)
    except SlurmError as exc:
        write_json_atomic(run_dir / LAUNCH, launch)
        raise UserError(str(exc), field="RUN") from None
    return job


def slurm_job_spec(run_dir: Path):
    from .slurm import SLURM_FILE, JobSpec

    return JobSpec(**(read_json(run_dir / SLURM_FILE) or {})["spec"])


def submit_slurm(run_dir: Path) -> str:
    """sbatch RUN_DIR/job.sbatch and record the job (launch.json, slurm.json). Its job id."""
    from .slurm import SCRIPT, SlurmError, submit

    launched_at = time.time()
    try:
        job = submit(str(run_dir / SCRIPT), cwd=str(run_dir))
    except SlurmError as exc:
        raise UserError(f"sbatch refused the job: {exc}", file=str(run_dir / SCRIPT)) from None
    slurm_started(run_dir, job, launched_at=launched_at, command=["sbatch", "--parsable", str(run_dir / SCRIPT)])
    return job


def slurm_started(run_dir: Path, job: str, *, launched_at: float | None = None, command: list[str] | None = None) -> None:
    """Record Slurm job `job` as the run's latest launch, once (the submitter and the job script both call
    this; the first one wins, so a job submitted by hand with sbatch is known too)."""
    from .slurm import SLURM_FILE

    if str((read_json(run_dir / LAUNCH) or {}).get("slurm_job")) == str(job):
        return
    record_launch(run_dir, {"slurm_job": str(job), "launched_at": launched_at or time.time(),
                            "command": command or ["sbatch", str(run_dir)]})
    record = read_json(run_dir / SLURM_FILE) or {"jobs": []}
    record.setdefault("jobs", []).append(str(job))
    write_json_atomic(run_dir / SLURM_FILE, record)


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
    if launch.get("slurm_job"):
        return True  # every rank sees stop.request on the shared filesystem; no local pid to signal
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
    checkpoint; its pid (a Slurm run: the id of the new job submitted from the checkpoint). A completed
    run is final: refused (see `checkpoints.final_reason`)."""
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
    if is_slurm_run(run_dir):  # a new job from the checkpoint, with the spec the run was made with
        write_slurm_job(run_dir, slurm_job_spec(run_dir), resume=True)
        return int(submit_slurm(run_dir))
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


def main(argv: list[str] | None = None) -> int:
    """`python -m ftwizard.core.launch slurm-started RUN_DIR JOB_ID`: job.sbatch records its own job."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 3 and argv[0] == "slurm-started":
        slurm_started(Path(argv[1]), argv[2])
        return 0
    print("usage: python -m ftwizard.core.launch slurm-started RUN_DIR JOB_ID", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
