"""The torchrun line to run on each machine of a run on several machines (clusters without Slurm)."""

from __future__ import annotations

import argparse
import shlex

from . import add_run_arguments


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_run_arguments(p)
    p.add_argument("--nodes", type=int, required=True, help="machines training together")
    p.add_argument("--node-rank", type=int, help="print only this machine's line (0 = the first)")
    p.add_argument("--master", help="host name or address of the first machine (rendezvous; default: the "
                   "host of the config's distributed.rdzv_endpoint)")
    p.add_argument("--port", type=int, help="rendezvous port on the first machine (default: the port of "
                   "distributed.rdzv_endpoint, else 29500)")
    p.add_argument("--resume", action="store_true", help="continue from the run's newest checkpoint")


def node_command(run_dir, *, nodes: int, node_rank: int, master: str, port: int, procs: int,
                 resume: bool = False, backend: str = "c10d", rdzv_id: str | None = None) -> list[str]:
    """One machine's command: torchrun (through distlaunch) with a c10d rendezvous on `master`. The run
    directory must be on a filesystem every machine sees at the same path. A GPU run starts with the
    environment the local launcher gives it (launch.chosen_cards_env: distributed.gpus as
    CUDA_VISIBLE_DEVICES, in NVML's card order), as shell assignments before the command."""
    from ..config import load_config
    from ..launch import chosen_cards_env, torchrun_command
    from ..runs import CONFIG

    cmd = torchrun_command(run_dir, nodes=nodes, procs=procs, endpoint=f"{master}:{port}",
                           rdzv_id=rdzv_id or run_dir.name, node_rank=node_rank, resume=resume, python="python",
                           backend=backend)
    if load_config(run_dir / CONFIG, resolve_paths=False).train.device != "cuda":
        return cmd
    return [f"{k}={v}" for k, v in sorted(chosen_cards_env(run_dir).items())] + cmd


def run(args) -> int:
    from ..config import load_config
    from ..errors import UserError
    from ..launch import world_of
    from ..runs import CONFIG, resolve_run

    run_dir = resolve_run(args.run, args.runs_dir)
    if args.nodes < 1:
        raise UserError("must be at least 1", field="--nodes")
    ranks = range(args.nodes) if args.node_rank is None else [args.node_rank]
    if args.node_rank is not None and not 0 <= args.node_rank < args.nodes:
        raise UserError(f"must be between 0 and {args.nodes - 1}", field="--node-rank")
    procs, _nodes = world_of(run_dir)
    d = load_config(run_dir / CONFIG, resolve_paths=False).distributed
    endpoint = d.rdzv_endpoint or ""
    host, sep, port = endpoint.rpartition(":")
    if not sep:
        host, port = endpoint, ""
    master = args.master or host
    if not master:
        raise UserError("is needed: the first machine's host name (the run's distributed.rdzv_endpoint is not set)",
                        field="--master")
    if args.port is None and port and not port.isdigit():
        raise UserError(f"has port {port!r}, not a number", file=str(run_dir / CONFIG),
                        field="distributed.rdzv_endpoint")
    port = args.port or (int(port) if port else 29500)
    for k in ranks:
        line = shlex.join(node_command(run_dir, nodes=args.nodes, node_rank=k, master=master, port=port,
                                       procs=procs, resume=args.resume, backend=d.rdzv_backend, rdzv_id=d.rdzv_id))
        print(f"# node {k}\n{line}" if args.node_rank is None else line)
    return 0
