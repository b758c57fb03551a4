"""The GPU version of train_speed.py: tokens/s and peak memory on a ~0.5B instruct model, ftwizard
against a plain TRL SFTTrainer script, bf16, gradient checkpointing, same data, steps and seed.

Needs a CUDA GPU and a local copy of the model (no hub download happens here):

    huggingface-cli download Qwen/Qwen2.5-0.5B-Instruct --local-dir /data/qwen2.5-0.5b
    python tests/benchmarks/train_speed_gpu.py /data/qwen2.5-0.5b [--runs 3] [--steps 60]

NOT RUN on the development machine (it has no GPU): the numbers in the README are from the CPU script.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1].startswith("-"):
        raise SystemExit(__doc__)
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU visible: this benchmark needs one")
    sys.path.insert(0, str(Path(__file__).parent))
    import train_speed

    sys.argv = [sys.argv[0], "--gpu", "--model", sys.argv[1], *sys.argv[2:]]
    train_speed.main()
