"""Does `strategy: fsdp` shard on CPU processes? The probe behind the refusal (defaults.FSDP_NEEDS_GPU).

A run of the tiny model (LoRA, 3 steps) is made as ddp with 2 processes, its config.yaml switched to
fsdp, and the real trainer entry point started by torchrun with 2 gloo processes, with the refusal
lifted in this process only. Each rank prints what accelerate made of the Trainer's FSDP plugin: the
distributed type, the wrapper, how many parameters are DTensors and the elements it holds.

    python tests/benchmarks/fsdp_on_cpu.py               # as ftwizard would run it
    python tests/benchmarks/fsdp_on_cpu.py --force-fsdp  # accelerate's state forced to FSDP (a probe)

Measured here (torch 2.13 CPU, accelerate 1.15, transformers 5.23, peft 0.21): as run, MULTI_CPU,
DistributedDataParallel, 0/49 DTensors (DDP in disguise). Forced: 49/49 DTensors, 77,984 of 155,968
elements per rank, losses 6.2772, 6.1819, 6.0710 (the DDP run's), then the adapter save failed in peft
("Attempted to access the data pointer on an invalid python storage").
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

RANK_PROBE = r'''
import os, sys
import accelerate
from accelerate.utils import DistributedType
import ftwizard.core.defaults as defaults
defaults.strategy_refusal = lambda *a, **k: None  # this probe only
if sys.argv.pop(1) == "force":
    init = accelerate.Accelerator.__init__
    def forced(self, *a, **k):
        init(self, *a, **k)
        if k.get("fsdp_plugin") is not None and self.state.distributed_type == DistributedType.MULTI_CPU:
            self.state.distributed_type, self.state.fsdp_plugin = DistributedType.FSDP, k["fsdp_plugin"]
    accelerate.Accelerator.__init__ = forced
prepare = accelerate.Accelerator.prepare
def reporting(self, *args, **k):
    import torch
    from torch.distributed.tensor import DTensor
    res = prepare(self, *args, **k)
    models = [m for m in (res if isinstance(res, (tuple, list)) else (res,)) if isinstance(m, torch.nn.Module)]
    for m in models:
        ps = list(m.parameters())
        local = sum((p.to_local() if isinstance(p, DTensor) else p).numel() for p in ps)
        print(f"PROBE rank {os.environ.get('RANK')}: {self.state.distributed_type} {type(m).__name__} "
              f"DTensors {sum(isinstance(p, DTensor) for p in ps)}/{len(ps)} elements {local}/"
              f"{sum(p.numel() for p in ps)}", flush=True)
    return res
accelerate.Accelerator.prepare = reporting
from ftwizard.core.trainer import main
sys.exit(main(sys.argv[1:]))
'''


def main() -> int:
    from ftwizard.core.config import DistributedConfig
    from ftwizard.core.launch import create_run
    from ftwizard.core.selftest import make_tiny_setup

    work = Path(tempfile.mkdtemp(prefix="fsdp-cpu-"))
    cfg = make_tiny_setup(work, steps=3, eval_steps=3, save_steps=3)
    cfg.dataset.validation = 0.0
    cfg.distributed = DistributedConfig(strategy="ddp", nproc_per_node=2)
    run_dir = create_run(cfg, work / "runs", force=True)
    conf = run_dir / "config.yaml"
    conf.write_text(conf.read_text().replace("strategy: ddp", "strategy: fsdp"))
    probe = work / "probe.py"
    probe.write_text(RANK_PROBE)
    mode = "force" if "--force-fsdp" in sys.argv else "as-is"
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", str(probe), mode,
                        str(run_dir)], capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    out = r.stdout + r.stderr
    for line in out.splitlines():
        if line.startswith("PROBE") or " step " in line or "Error:" in line:
            print(line)
    saved = sorted(p.name for p in (run_dir / "output").glob("*")) if (run_dir / "output").exists() else []
    print(f"exit {r.returncode}; output/: {', '.join(saved) or 'nothing'}; run: {run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
