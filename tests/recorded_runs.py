"""Recorded run directories for monitor, runs-screen and snapshot tests: the same files a real run
writes (config.yaml, launch.json, status.json, events.jsonl, train.log), generated deterministically
(fixed time stamps, a closed-form loss curve), so screens drawn from them never change between runs.

A "running" recording points its launch.json at the test process itself (pid and start time), so
`core.runs.run_info` sees a live process and derives "running", exactly as for a real run."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

T0 = 1_795_480_000.0  # a fixed time stamp: no clock in recorded runs


def loss_at(step: int, overfit_from: int | None = None) -> float:
    base = 2.2 * math.exp(-step / 90) + 0.9 + 0.04 * math.sin(step * 1.7)
    return round(base, 4)


def eval_at(step: int, overfit_from: int | None = None) -> float:
    v = 2.2 * math.exp(-step / 90) + 1.0
    if overfit_from is not None and step > overfit_from:
        v = 2.2 * math.exp(-overfit_from / 90) + 1.0 + 0.0015 * (step - overfit_from)
    return round(v, 4)


def events_for(steps: int, max_steps: int, *, eval_every: int = 50, overfit_from: int | None = None,
               gpu: bool = True, end: dict | None = None, sec_per_step: float = 1.5) -> list[dict]:
    t = T0
    evs = [{"type": "phase", "t": t, "phase": "started", "detail": "pid 4242"},
           {"type": "phase", "t": t + 0.1, "phase": "loading_model", "detail": "meta-llama/Llama-3.1-8B"},
           {"type": "info", "t": t + 30, "key": "parameters", "value": {"total": 8_051_232_768, "trainable": 20_971_520}},
           {"type": "phase", "t": t + 30, "phase": "loading_data", "detail": "data/support.jsonl"},
           {"type": "phase", "t": t + 31, "phase": "tokenizing", "detail": "1204 rows, max_length 2048"},
           {"type": "info", "t": t + 35, "key": "tokenized", "value": {"rows": 1084, "tokens": 203_117}}]
    if steps == 0 and max_steps == 0:
        return evs
    t += 40
    evs.append({"type": "phase", "t": t, "phase": "training", "detail": f"{max_steps} steps",
                "max_steps": max_steps, "start_step": 0})
    for s in range(1, steps + 1):
        t = T0 + 40 + s * sec_per_step
        mem = ({"cuda": [{"device": 0, "allocated_gib": 17.2, "reserved_gib": 19.0, "peak_gib": 18.6 + (s % 7) * 0.07}]}
               if gpu else {"rss_gib": 0.52})
        evs.append({"type": "train", "t": round(t, 3), "step": s, "max_steps": max_steps, "epoch": round(s / 400, 4),
                    "loss": loss_at(s), "lr": 2e-4 if s > 10 else 2e-5 * s, "grad_norm": round(0.6 + 0.1 * math.cos(s), 4),
                    "tokens_per_s": 2310.0 + (s % 5) * 10, "tokens": s * 3500, "elapsed_s": round(s * sec_per_step, 3),
                    "mem": mem})
        if eval_every and s % eval_every == 0:
            evs.append({"type": "eval", "t": round(t + 0.5, 3), "step": s, "eval_loss": eval_at(s, overfit_from)})
    if end is not None:
        if end.get("state") != "failed":
            evs.append({"type": "phase", "t": round(t + 1, 3), "phase": "saving", "detail": "adapter"})
        evs.append({"type": "end", "t": round(t + 5, 3), **end})
    return evs


def make_run(root: Path, name: str, *, state: str = "completed", steps: int = 200, max_steps: int = 200,
             model: str = "meta-llama/Llama-3.1-8B", method: str = "lora", overfit_from: int | None = None,
             gpu: bool = True, diagnosis: dict | None = None, reason: str | None = None,
             eval_every: int = 50) -> Path:
    """A run directory as a real run leaves it. state: running | completed | stopped | failed | killed."""
    run = root / name
    (run / "output").mkdir(parents=True, exist_ok=True)
    (run / "config.yaml").write_text(
        f"model:\n  name_or_path: {model}\nmethod: {method}\ntraining: sft\n"
        f"dataset:\n  path: data/support.jsonl\ntrain:\n  max_steps: {max_steps}\n", encoding="utf-8")
    running = state == "running"
    pid = os.getpid() if running else 999_999
    create_time = None
    if running:
        import psutil

        create_time = psutil.Process(pid).create_time()
    (run / "launch.json").write_text(json.dumps({"pid": pid, "create_time": create_time, "command": [],
                                                 "created": "2026-11-24T01:00:00+00:00", "history": []}))
    end = None
    if state in ("completed", "stopped", "failed"):
        end = {"state": state, "reason": reason, "output": str(run / "output") if state != "failed" else None,
               "elapsed_s": round(40 + steps * 1.5 + 5, 2), "step": steps}
        if diagnosis:
            end["diagnosis"] = diagnosis
    evs = events_for(steps, max_steps, overfit_from=overfit_from, gpu=gpu, end=end, eval_every=eval_every)
    with open(run / "events.jsonl", "w", encoding="utf-8") as fh:
        for ev in evs:
            fh.write(json.dumps(ev) + "\n")
    status_state = state if state in ("completed", "stopped", "failed") else "running"
    (run / "status.json").write_text(json.dumps({"pid": pid, "state": status_state, "step": steps,
                                                 "max_steps": max_steps, "reason": reason}))
    (run / "train.log").write_text("".join(f"step {s}/{max_steps} loss {loss_at(s):.4f}\n" for s in range(1, steps + 1)))
    if state == "killed":
        with open(run / "train.log", "a") as fh:
            fh.write("Killed\n")
    (run / "output" / "adapter_model.safetensors").write_bytes(b"\0" * 4096)
    return run


OOM = {"kind": "oom", "message": "out of memory: torch.OutOfMemoryError: CUDA out of memory. Tried to allocate "
       "2.00 GiB (at step 1)", "fixes": [
           "halve train.batch_size and double train.gradient_accumulation_steps (same effective batch)",
           "lower train.max_length (the longest rows dominate peak memory)",
           "turn on train.gradient_checkpointing",
           "switch method to qlora (4-bit base weights)",
           "use train.optim: adamw_8bit (8-bit optimizer states)"]}
