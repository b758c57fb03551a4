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


def _rise(step: int, scale: float) -> float:
    return 1 - math.exp(-step / scale)


QUESTIONS = [(17, 25), (8, 9), (123, 77), (46, 5), (12, 12), (99, 1), (31, 44), (250, 250)]


def kind_metrics(kind: str, s: int) -> dict:
    """The numbers a `training: KIND` run's train event carries at step s (core/events.py names), smooth
    closed forms with a little deterministic wobble: what the monitor's kind panel draws."""
    w = math.sin(s * 1.7)
    if kind in ("dpo", "orpo", "simpo"):
        chosen = round(0.35 * _rise(s, 120) + 0.02 * w, 4)
        rejected = round(-1.4 * _rise(s, 100) + 0.03 * math.sin(s * 1.3), 4)
        out = {"reward_chosen": chosen, "reward_rejected": rejected, "reward_margin": round(chosen - rejected, 4),
               "reward_accuracy": round((0.5 + 0.45 * _rise(s, 60) + 0.05 * w) * 8) / 8}
        if kind != "dpo":
            out["nll_loss"] = round(1.9 - 0.6 * _rise(s, 150) + 0.02 * w, 4)
        if kind == "orpo":
            out["log_odds_ratio"] = round(-0.8 + 0.6 * _rise(s, 90), 4)
        return out
    if kind == "kto":
        d = round(0.3 * _rise(s, 100) + 0.02 * w, 4)
        u = round(-0.9 * _rise(s, 100) + 0.02 * math.cos(s), 4)
        return {"reward_desirable": d, "reward_undesirable": u, "reward_margin": round(d - u, 4),
                "kl": round(0.05 + 0.2 * _rise(s, 200), 4)}
    if kind == "grpo":
        numeric = round(min(1.0, 0.1 + 0.55 * _rise(s, 150) + 0.05 * w), 4)
        fmt = round(min(1.0, 0.2 + 0.75 * _rise(s, 60) + 0.04 * math.cos(s)), 4)
        return {"reward_mean": round(numeric + fmt, 4), "reward_std": round(0.45 - 0.15 * _rise(s, 120), 4),
                "rewards": {"numeric_match": numeric, "think_format": fmt},
                "completion_length_mean": round(190 - 70 * _rise(s, 100) + 4 * w, 2),
                "zero_std_ratio": round(0.05 + 0.45 * math.exp(-s / 80), 4),
                "clipped_ratio": round(0.3 * math.exp(-s / 50), 4)}
    if kind == "cpt":
        return {}  # perplexity = exp(loss), added where the loss is known
    return {}


def kind_loss(kind: str, s: int) -> float:
    if kind in ("dpo", "kto"):
        margin = kind_metrics(kind, s)["reward_margin"]
        return round(math.log1p(math.exp(-margin)) + 0.02 * math.sin(s * 1.7), 4)
    if kind == "grpo":
        return round(0.02 * math.sin(s * 0.9), 4)
    return loss_at(s)


def samples_for(s: int, t: float) -> list[dict]:
    """GRPO `sample` events of step s: two of the step's completions with what each reward gave them."""
    out = []
    for j in range(2):
        a, b = QUESTIONS[(s + j) % len(QUESTIONS)]
        right = (s + j) % 3 != 0
        answer = a + b if right else a + b + 10
        fmt = (s + j) % 4 != 0
        text = (f"<think>{a} + {b}: add the units, carry, then the tens.</think>\n<answer>{answer}</answer>" if fmt
                else f"The answer is {answer}.")
        out.append({"type": "sample", "t": round(t, 3), "step": s, "prompt": [{"role": "user", "content": f"What is {a} + {b}?"}],
                    "completion": [{"role": "assistant", "content": text}],
                    "rewards": {"numeric_match": 1.0 if right else 0.0, "think_format": 1.0 if fmt else 0.0},
                    "advantage": round((1.0 if right else 0.0) + (1.0 if fmt else 0.0) - 1.3, 4)})
    return out


def ranks_mem(s: int, gpu: bool, world_size: int, slow_rank: int | None) -> dict:
    """Rank 0's `mem` with every rank's report (core/recipes/common.py), GPUs 0..world_size-1."""
    reports = []
    for r in range(world_size):
        compute = 0.62 if r == slow_rank else 0.41 + 0.01 * r
        if gpu:
            peak = 18.6 + 0.4 * r + (s % 7) * 0.07
            reports.append({"rank": r, "step": s, "compute_s": compute, "cuda": [
                {"device": 0, "gpu": r, "allocated_gib": round(peak - 1.4, 3), "reserved_gib": round(peak + 0.4, 3),
                 "peak_gib": round(peak, 3), "peak_reserved_gib": round(peak + 0.4, 3)}]})
        else:
            reports.append({"rank": r, "step": s, "compute_s": compute, "rss_gib": 0.52 + 0.01 * r,
                            "peak_rss_gib": 0.55 + 0.01 * r})
    mine = {k: v for k, v in reports[0].items() if k not in ("rank", "step", "compute_s")}
    return {**mine, "ranks": reports}


def events_for(steps: int, max_steps: int, *, eval_every: int = 50, overfit_from: int | None = None,
               gpu: bool = True, end: dict | None = None, sec_per_step: float = 1.5, kind: str = "sft",
               world_size: int = 1, slow_rank: int | None = None) -> list[dict]:
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
        if world_size > 1:
            mem = ranks_mem(s, gpu, world_size, slow_rank)
        loss = kind_loss(kind, s)
        ev = {"type": "train", "t": round(t, 3), "step": s, "max_steps": max_steps, "epoch": round(s / 400, 4),
              "loss": loss, "lr": 2e-4 if s > 10 else 2e-5 * s, "grad_norm": round(0.6 + 0.1 * math.cos(s), 4),
              "tokens_per_s": 2310.0 + (s % 5) * 10, "tokens": s * 3500, "elapsed_s": round(s * sec_per_step, 3),
              "mem": mem, **kind_metrics(kind, s)}
        if kind == "cpt":
            ev["perplexity"] = round(math.exp(loss), 4)
        if world_size > 1:
            ev["world_size"] = world_size
        evs.append(ev)
        if kind == "grpo":
            evs += samples_for(s, t)
        if eval_every and s % eval_every == 0:
            val = eval_at(s, overfit_from) if kind == "sft" else round(kind_loss(kind, s) + 0.05, 4)
            evs.append({"type": "eval", "t": round(t + 0.5, 3), "step": s, "eval_loss": val})
    if end is not None:
        if end.get("state") != "failed":
            evs.append({"type": "phase", "t": round(t + 1, 3), "phase": "saving", "detail": "adapter"})
        evs.append({"type": "end", "t": round(t + 5, 3), **end})
    return evs


def make_run(root: Path, name: str, *, state: str = "completed", steps: int = 200, max_steps: int = 200,
             model: str = "meta-llama/Llama-3.1-8B", method: str = "lora", overfit_from: int | None = None,
             gpu: bool = True, diagnosis: dict | None = None, reason: str | None = None,
             eval_every: int = 50, kind: str = "sft", world_size: int = 1, slow_rank: int | None = None) -> Path:
    """A run directory as a real run leaves it. state: running | completed | stopped | failed | killed."""
    run = root / name
    (run / "output").mkdir(parents=True, exist_ok=True)
    (run / "config.yaml").write_text(
        f"model:\n  name_or_path: {model}\nmethod: {method}\ntraining: {kind}\n"
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
    evs = events_for(steps, max_steps, overfit_from=overfit_from, gpu=gpu, end=end, eval_every=eval_every, kind=kind,
                     world_size=world_size, slow_rank=slow_rank)
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
