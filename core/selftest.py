"""The selftest: a tiny offline model trained for real through the detached launch path.

Also the backbone of the test fixtures (`make_tiny_setup` builds the model, data and config).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from .config import DatasetConfig, LoraConfig, ModelConfig, RunConfig, TrainConfig


def make_tiny_setup(work: Path, *, steps: int = 20, method: str = "lora", rows: int = 64,
                    **train_overrides) -> RunConfig:
    """Build a tiny model + data under `work` and return a config that trains it."""
    from .tiny import build_tiny_model, chat_rows, write_jsonl

    model_dir = work / "tiny-model"
    if not (model_dir / "config.json").exists():
        build_tiny_model(model_dir)
    data = work / "data" / "chat.jsonl"
    if not data.exists():
        write_jsonl(chat_rows(rows), data)
    train = dict(max_steps=steps, batch_size=4, learning_rate=5e-3 if method != "full" else 1e-3,
                 max_length=128, warmup_ratio=0.0, lr_scheduler="constant", gradient_checkpointing=False,
                 eval_steps=max(1, steps // 2), seed=0)
    train.update(train_overrides)
    return RunConfig(
        model=ModelConfig(name_or_path=str(model_dir)), method=method,
        lora=LoraConfig(r=8, alpha=16, dropout=0.0),
        dataset=DatasetConfig(path=str(data), validation=0.1),
        train=TrainConfig(**train), runs_dir=str(work / "runs"), name="selftest",
    )


def wait_for_end(run_dir: Path, timeout: float = 300, poll: float = 0.2):
    from .launch import reap
    from .runs import TERMINAL_STATES, run_info

    deadline = time.time() + timeout
    while time.time() < deadline:
        reap()
        info = run_info(run_dir)
        if info.state in TERMINAL_STATES:
            return info
        time.sleep(poll)
    return run_info(run_dir)


def run_selftest(work: Path, *, steps: int = 20, timeout: float = 300,
                 echo: Callable[[str], None] = print) -> bool:
    from .events import read_events
    from .launch import create_run, start

    t0 = time.time()
    checks: list[tuple[str, bool, str]] = []

    def check(name: str, ok: bool, detail: str = "") -> bool:
        checks.append((name, ok, detail))
        echo(f"  {'ok  ' if ok else 'FAIL'} {name}" + (f" ({detail})" if detail else ""))
        return ok

    echo("ftwizard selftest: a tiny Llama, trained for real, offline")
    cfg = make_tiny_setup(work, steps=steps)
    check("tiny model and tokenizer built offline", (work / "tiny-model" / "config.json").exists(),
          f"{time.time() - t0:.1f} s")
    run_dir = create_run(cfg)
    t_launch = time.time()
    pid = start(run_dir)
    check("training process started detached", pid > 0, f"pid {pid}, run {run_dir}")
    info = wait_for_end(run_dir, timeout)
    elapsed = time.time() - t_launch
    ok = check("run completed", info.state == "completed", f"{info.state}"
               + (f": {info.reason}" if info.reason else "") + f", {elapsed:.1f} s")
    events = read_events(run_dir)
    losses = [e["loss"] for e in events if e.get("type") == "train" and e.get("loss") is not None]
    first = next((e for e in events if e.get("type") == "train"), None)
    if first:
        phase_t = next(e["t"] for e in events if e.get("type") == "phase")
        echo(f"  ..   first step logged {first['t'] - phase_t:.1f} s after the process started")
    ok &= check(f"{steps} steps logged to events.jsonl", len(losses) >= steps, f"{len(losses)} loss events")
    if len(losses) >= 4:
        k = max(2, len(losses) // 4)
        a, b = sum(losses[:k]) / k, sum(losses[-k:]) / k
        ok &= check("loss went down", b < a, f"first {k} steps {a:.3f} -> last {k} steps {b:.3f}")
    else:
        ok &= check("loss went down", False, "too few loss events")
    ok &= check("adapter saved", (run_dir / "output" / "adapter_config.json").exists(), str(run_dir / "output"))
    echo(f"{'PASSED' if ok else 'FAILED'} in {time.time() - t0:.1f} s")
    if not ok:
        echo(f"log: {run_dir / 'train.log'}")
    return ok
