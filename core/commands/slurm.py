"""Create a run for a Slurm cluster and write its job script, RUN_DIR/job.sbatch; --submit hands it to sbatch.

The run is made exactly as `ftwizard train` makes one (the same pre-flight; nothing is created when a
check fails), for N nodes of G GPUs each (distributed.nnodes N, nproc_per_node G), or with
--gpus-per-node 0 for a CPU-only cluster, where torchrun starts --procs-per-node gloo processes on each
node. The script runs one Slurm task per node: torchrun with a c10d rendezvous on the job's first node,
then the same training process as every run (`python -m ftwizard.core.trainer RUN_DIR`). The run
directory and this Python environment must be on a filesystem the nodes share, at the same paths.

Prints the run directory. Without --submit nothing is submitted (`sbatch RUN_DIR/job.sbatch` later
works too). `ftwizard runs/status/attach/stop/resume` work on the run from the login node: they read the
run directory and ask Slurm (squeue, sacct) about its job; stop asks the run to checkpoint and end, then
scancels the job after --grace seconds; resume submits a new job from the newest checkpoint.
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", metavar="CONFIG", help="a run config (YAML), or a preset name (ftwizard presets)")
    p.add_argument("--nodes", type=int, required=True, help="machines (Slurm nodes) training together")
    p.add_argument("--gpus-per-node", type=int, required=True, metavar="G",
                   help="GPUs per node, one process each; 0: a CPU-only cluster (see --procs-per-node)")
    p.add_argument("--procs-per-node", type=int, metavar="K", help="CPU-only cluster: gloo processes per node "
                   "(default: the config's distributed.nproc_per_node, else 1)")
    p.add_argument("--cpus-per-task", type=int, metavar="C", help="CPUs Slurm gives each node's task "
                   "(default on a CPU-only cluster: one per process; on GPUs: Slurm's default)")
    p.add_argument("--partition", help="Slurm partition (sbatch --partition)")
    p.add_argument("--time", help="time limit (sbatch --time, e.g. 04:00:00)")
    p.add_argument("--account", help="account to charge (sbatch --account)")
    p.add_argument("--port", type=int, help="rendezvous port on the first node (default: 29500 + job id %% 1000)")
    p.add_argument("--gpu-memory", type=float, metavar="GIB", help="memory of one node GPU, for the memory "
                   "check and `auto` choices when this machine (the login node) has no such GPU")
    p.add_argument("--submit", action="store_true", help="submit the job with sbatch and record its id")
    p.add_argument("--runs-dir", help="where to create the run: a filesystem every node sees (default: the "
                   "config's runs_dir, else $FTWIZARD_RUNS_DIR, else the user data dir)")
    p.add_argument("--name", help="a label for the run directory")
    p.add_argument("--force", action="store_true", help="create despite a pre-flight judgement (see train --force)")


def node_hardware(args, local):
    """The hardware of one node, for resolving the config and the pre-flight: this machine's own cards
    when it has enough of them, else --gpu-memory's; on a CPU-only cluster no card at all."""
    import dataclasses

    from ..errors import UserError
    from ..hardware import GPU

    if args.gpus_per_node == 0:
        return dataclasses.replace(local, gpus=())
    if len(local.gpus) >= args.gpus_per_node and args.gpu_memory is None:
        return dataclasses.replace(local, gpus=local.gpus[:args.gpus_per_node])
    if args.gpu_memory is None:
        raise UserError(f"this machine has {len(local.gpus)} GPU(s), so the nodes' cards are unknown here: give "
                        "--gpu-memory GIB (one node GPU's memory) for the memory check", field="--gpu-memory")
    if args.gpu_memory <= 0:
        raise UserError("must be a positive number of GiB", field="--gpu-memory")
    gpus = tuple(GPU(i, "Slurm node GPU", args.gpu_memory, args.gpu_memory, (8, 0)) for i in range(args.gpus_per_node))
    return dataclasses.replace(local, gpus=gpus)


def check_arguments(args) -> None:
    from ..errors import UserError
    from ..slurm import directive_problem

    if args.nodes < 1:
        raise UserError("must be at least 1", field="--nodes")
    if args.gpus_per_node < 0:
        raise UserError("must be 0 (CPU only) or more", field="--gpus-per-node")
    if args.procs_per_node is not None and args.procs_per_node < 1:
        raise UserError("must be at least 1", field="--procs-per-node")
    if args.procs_per_node is not None and args.gpus_per_node and args.procs_per_node != args.gpus_per_node:
        raise UserError(f"is one process per GPU with GPUs ({args.gpus_per_node}); leave it out",
                        field="--procs-per-node")
    if args.cpus_per_task is not None and args.cpus_per_task < 1:
        raise UserError("must be at least 1", field="--cpus-per-task")
    for key in ("partition", "time", "account"):
        value = getattr(args, key)
        why = value is not None and (directive_problem(value) or (not value and "is empty"))
        if why:
            raise UserError(why, field=f"--{key}")


def run(args) -> int:
    from pathlib import Path

    from ..config import load_config
    from ..errors import UserError
    from ..hardware import detect
    from ..launch import create_run, submit_slurm, write_slurm_job
    from ..preflight import print_warnings
    from ..runs import runs_root
    from ..slurm import SCRIPT, JobSpec, directive_problem
    from .train import config_path

    check_arguments(args)
    path = config_path(args.config)
    cfg = load_config(path)
    if args.name:
        cfg.name = args.name
    d, gpus = cfg.distributed, args.gpus_per_node
    if gpus == 0 and cfg.train.device == "cuda":
        raise UserError("is cuda but --gpus-per-node is 0 (a CPU-only cluster): use auto or cpu",
                        file=str(path), field="train.device")
    if gpus and cfg.train.device == "cpu":
        raise UserError(f"is cpu but --gpus-per-node is {gpus}: use auto or cuda", file=str(path), field="train.device")
    if isinstance(d.gpus, list):  # the local launcher sets CUDA_VISIBLE_DEVICES; in a job Slurm does
        raise UserError(f"names cards {d.gpus} of one machine, but a Slurm job trains on the cards Slurm gives "
                        "it (--gpus-per-node): set it to auto", file=str(path), field="distributed.gpus")
    if d.rdzv_endpoint is not None:
        raise UserError("is set, but a Slurm job's processes meet on its first node, known only when it runs: "
                        "remove it", file=str(path), field="distributed.rdzv_endpoint")
    if d.rdzv_backend != "c10d":
        raise UserError(f"is {d.rdzv_backend}, which needs each node's rank given; a Slurm job's nodes get theirs "
                        "from the c10d rendezvous: use c10d", file=str(path), field="distributed.rdzv_backend")
    config_procs = d.nproc_per_node if isinstance(d.nproc_per_node, int) else None
    procs = gpus or args.procs_per_node or config_procs or 1
    d.nnodes, d.nproc_per_node = args.nodes, procs
    root = runs_root(args.runs_dir or cfg.runs_dir).expanduser().absolute()
    why = directive_problem(str(root))
    if why:  # job.sbatch names train.log in an #SBATCH line
        raise UserError(f"{why}: choose a runs folder without them for a Slurm run", file=str(root), field="runs_dir")

    def one_world(resolved) -> None:
        if resolved.distributed.strategy == "none" and args.nodes * procs > 1:
            raise UserError("is none but the job runs several processes", field="distributed.strategy")

    hw = node_hardware(args, detect())
    run_dir = create_run(cfg, args.runs_dir, force=args.force, config_file=path, hardware=hw,
                         before_create=one_world)
    spec = JobSpec(nodes=args.nodes, gpus_per_node=gpus, procs_per_node=procs, partition=args.partition,
                   time=args.time, account=args.account, port=args.port,
                   cpus_per_task=args.cpus_per_task or (None if gpus else procs))
    write_slurm_job(Path(run_dir), spec)
    print_warnings(run_dir)
    print(run_dir)
    if args.submit:
        job = submit_slurm(Path(run_dir))
        print(f"ftwizard: submitted Slurm job {job}; follow it with: ftwizard attach {run_dir.name}", file=sys.stderr)
    else:
        print(f"ftwizard: not submitted; submit with: sbatch {run_dir / SCRIPT}", file=sys.stderr)
    return 0
