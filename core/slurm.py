"""Slurm: the job script of a run on one or several machines, and what Slurm says about its job.

`ftwizard slurm CONFIG --nodes N --gpus-per-node G` (core/commands/slurm.py) creates the run through the
same path as `ftwizard train` and writes RUN_DIR/job.sbatch (`job_script`): one Slurm task per node, each
running torchrun (through core/distlaunch.py, SIGHUP ignored, the failing rank named) with a c10d
rendezvous on the job's first node, and the same trainer entry point (`-m ftwizard.core.trainer RUN_DIR`).
The run directory and the Python environment must be on a filesystem every node sees at the same path.

A Slurm run's launch.json names its job (`slurm_job`) instead of a pid: where there is no local process
(the login node), its state comes from Slurm (`job_state`: squeue, then sacct, then scontrol), so a live
job is never called dead and a job Slurm ended without the trainer's final event is failed with Slurm's
word for it (TIMEOUT, CANCELLED, NODE_FAIL, ...). Nothing here reads or writes the run directory.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from dataclasses import asdict, dataclass

SCRIPT = "job.sbatch"
SLURM_FILE = "slurm.json"  # the job spec the run was made with, and its jobs (resume reuses the spec)
# Job states in which the job may still run (squeue's long names). Anything else has ended.
LIVE_JOB_STATES = frozenset({"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED",
                             "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED",
                             "RESV_DEL_HOLD"})
HEAD, PORT, JOB = "@HEAD_NODE@", "@RDZV_PORT@", "@SLURM_JOB_ID@"  # filled in by the script at run time
_UNSAFE_DIRECTIVE = re.compile(r"[\s'\"\\%$`]")


@dataclass(frozen=True)
class JobSpec:
    """What `ftwizard slurm` asks Slurm for. procs_per_node: torchrun's processes on each node (one per
    GPU; on a CPU-only cluster, gloo processes)."""

    nodes: int
    gpus_per_node: int
    procs_per_node: int
    partition: str | None = None
    time: str | None = None
    account: str | None = None
    cpus_per_task: int | None = None
    port: int | None = None  # rendezvous port on the first node; None: 29500 + job id % 1000

    def to_json(self) -> dict:
        return asdict(self)


def directive_problem(value: str) -> str | None:
    """Why `value` cannot go into an #SBATCH line (sbatch reads those lines without a shell), or None."""
    if _UNSAFE_DIRECTIVE.search(value):
        return "has a space, quote, backslash, % or $, which an #SBATCH line cannot carry"
    return None


def job_script(run_dir: str, run_id: str, spec: JobSpec, node_command: list[str], python_env: dict[str, str]) -> str:
    """The text of job.sbatch. `node_command`: torchrun's command line for one node, with HEAD, PORT and
    JOB standing for the first node's host name, the rendezvous port and the job id."""
    sb = [f"--job-name=ftw-{run_id}", f"--nodes={spec.nodes}", "--ntasks-per-node=1",
          f"--output={run_dir}/train.log", "--open-mode=append"]
    if spec.gpus_per_node:
        sb.append(f"--gpus-per-node={spec.gpus_per_node}")
    if spec.cpus_per_task:
        sb.append(f"--cpus-per-task={spec.cpus_per_task}")
    for key in ("partition", "time", "account"):
        if getattr(spec, key):
            sb.append(f"--{key}={getattr(spec, key)}")
    line = shlex.join(node_command)
    for token, shell in ((HEAD, '"${head_node}"'), (PORT, '"${port}"'), (JOB, '"${SLURM_JOB_ID}"')):
        line = line.replace(token, shell)
    port = str(spec.port) if spec.port else "$((29500 + SLURM_JOB_ID % 1000))"
    exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in python_env.items())
    what = f"{spec.nodes} node(s) x {spec.procs_per_node} process(es)" + (
        f", {spec.gpus_per_node} GPU(s) per node" if spec.gpus_per_node else ", CPU only (gloo)")
    return "\n".join([
        "#!/bin/bash",
        f"# ftwizard run {run_id} on Slurm: {what}.",
        "# Written by `ftwizard slurm`; submitted by its --submit or by `sbatch job.sbatch`; then",
        "# `ftwizard status|attach|stop|resume RUN` from the login node.",
        "# The run directory and this Python environment must be at the same path on every node.",
        *(f"#SBATCH {s}" for s in sb),
        "",
        "set -euo pipefail",
        f"RUN_DIR={shlex.quote(run_dir)}",
        'cd "$RUN_DIR"',
        f"export {exports}",
        "# The job records itself in the run (launch.json), also when submitted by hand.",
        f"{shlex.quote(node_command[0])} -m ftwizard.core.launch slurm-started \"$RUN_DIR\" \"$SLURM_JOB_ID\"",
        'head_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)',
        f"port={port}",
        'echo "ftwizard: Slurm job ${SLURM_JOB_ID} on ${SLURM_JOB_NODELIST}, rendezvous on ${head_node}:${port}"',
        "# One task per node: torchrun starts this node's processes and meets the others on the first node.",
        f"srun --kill-on-bad-exit=1 --ntasks-per-node=1 {line}",
        "",
    ])


# ---------------------------------------------------------------------------------------- asking Slurm


@dataclass(frozen=True)
class JobState:
    state: str  # Slurm's long name (PENDING, RUNNING, COMPLETED, TIMEOUT, ...); UNKNOWN: Slurm forgot it
    reason: str | None
    source: str  # squeue | sacct | scontrol

    @property
    def live(self) -> bool:
        return self.state in LIVE_JOB_STATES


class SlurmError(Exception):
    """A Slurm command failed; the message is its own (one line)."""


def _run(cmd: list[str], timeout: float = 15) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None


def job_state(job_id: str | int) -> JobState | None:
    """Slurm's state of a job, or None when Slurm cannot be asked from here (no squeue, no controller).
    A job Slurm answers for but no longer knows (purged, no accounting) is UNKNOWN, never live. Asked
    afresh each time (squeue is one RPC): a cached answer would show a cancelled job as pending."""
    return _ask(str(job_id))


def _ask(job: str) -> JobState | None:
    q = _run(["squeue", "-h", "-j", job, "--states=all", "-o", "%T|%r"])
    if q is None:
        return None
    if q.returncode == 0 and q.stdout.strip():
        state, _, reason = q.stdout.strip().splitlines()[0].partition("|")
        return JobState(state.strip(), None if reason.strip() in ("", "None") else reason.strip(), "squeue")
    answered = q.returncode == 0 or "invalid job id" in (q.stderr or "").lower()
    if not answered:
        return None  # the controller did not answer: say nothing rather than call the job dead
    a = _run(["sacct", "-n", "-X", "-P", "-j", job, "-o", "State"])
    if a is not None and a.returncode == 0 and a.stdout.strip():
        return JobState(a.stdout.split()[0].strip(), None, "sacct")  # "CANCELLED by 0" -> CANCELLED
    c = _run(["scontrol", "show", "job", "-o", job])
    if c is not None and c.returncode == 0:
        m = re.search(r"\bJobState=(\S+)", c.stdout)
        r = re.search(r"\bReason=(\S+)", c.stdout)
        if m:
            reason = r.group(1) if r and r.group(1) != "None" else None
            return JobState(m.group(1), reason, "scontrol")
    return JobState("UNKNOWN", "Slurm no longer knows this job", "squeue")


def submit(script: str, cwd: str) -> str:
    """sbatch the script; its job id. A refusal by sbatch raises SlurmError with sbatch's own words."""
    r = _run(["sbatch", "--parsable", script], timeout=60)
    if r is None:
        raise SlurmError("sbatch could not be run (is Slurm installed and on PATH here?)")
    if r.returncode != 0:
        raise SlurmError(" ".join((r.stderr or r.stdout).split()) or f"sbatch exited with {r.returncode}")
    return r.stdout.strip().split(";")[0]  # "ID" or "ID;cluster"


def cancel(job_id: str | int) -> None:
    r = _run(["scancel", str(job_id)])
    if r is None or r.returncode != 0:
        raise SlurmError("scancel failed: " + (" ".join((r.stderr or "").split()) if r else "not runnable here"))
