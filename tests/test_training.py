"""Real training on the tiny offline model through the detached launch path (never a mocked trainer)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ftwizard.core.config import save_config
from ftwizard.core.events import read_events
from ftwizard.core.launch import create_run, stop
from ftwizard.core.runs import read_json, run_info

pytestmark = pytest.mark.slow
CLI = [sys.executable, "-m", "ftwizard.core.cli"]


def wait_until(pred, timeout=120, poll=0.1):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(poll)
    return False


def losses(run_dir):
    return [e["loss"] for e in read_events(run_dir) if e["type"] == "train"]


def test_lora_run_via_cli_detached(tiny_config, tiny_work, tmp_path, wait_run):
    cfg = tiny_config(steps=20)
    path = tmp_path / "lora.yaml"
    save_config(cfg, path)
    r = subprocess.run(CLI + ["train", str(path), "--detach"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    run_dir = Path(r.stdout.strip().splitlines()[-1])
    assert (run_dir / "config.yaml").exists() and (run_dir / "launch.json").exists()
    info = wait_run(run_dir, 180)
    assert info.state == "completed", (info.reason, (run_dir / "train.log").read_text()[-2000:])

    events = read_events(run_dir)
    phases = [e["phase"] for e in events if e["type"] == "phase"]
    assert phases[:2] == ["started", "loading_model"] and "tokenizing" in phases and "training" in phases
    train = [e for e in events if e["type"] == "train"]
    assert [e["step"] for e in train] == list(range(1, 21))  # logging_steps=1: every step
    for key in ("epoch", "loss", "lr", "grad_norm", "tokens_per_s", "tokens", "elapsed_s", "mem", "max_steps"):
        assert key in train[-1], key
    assert train[-1]["mem"]["rss_gib"] > 0.05
    assert train[-1]["tokens"] > train[0]["tokens"] > 0
    assert [e["step"] for e in events if e["type"] == "eval"] == [10, 20]
    assert events[-1]["type"] == "end" and events[-1]["state"] == "completed"
    ls = losses(run_dir)
    assert sum(ls[-5:]) / 5 < sum(ls[:5]) / 5 - 0.1  # it learned something
    # No dict printer in the log, one readable line per step.
    log = (run_dir / "train.log").read_text()
    assert "{'loss'" not in log and "step 20/20 loss" in log

    # The saved adapter loads back with peft on the base model and generates.
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = AutoModelForCausalLM.from_pretrained(str(tiny_work / "tiny-model"))
    model = PeftModel.from_pretrained(base, str(run_dir / "output"))
    tok = AutoTokenizer.from_pretrained(str(run_dir / "output"))
    ids = tok.apply_chat_template([{"role": "user", "content": "What is two plus two?"}],
                                  add_generation_prompt=True, return_tensors="pt", return_dict=True)["input_ids"]
    with torch.no_grad():
        lora_logits = model(ids).logits
        with model.disable_adapter():
            base_logits = model(ids).logits
    assert not torch.allclose(lora_logits, base_logits)  # the adapter changes the model

    status = json.loads(subprocess.run(CLI + ["status", str(run_dir), "--json"], capture_output=True,
                                       text=True).stdout)
    assert status["state"] == "completed" and status["step"] == 20 and status["id"] == run_dir.name
    runs = json.loads(subprocess.run(CLI + ["runs", "--json", "--runs-dir", str(run_dir.parent)],
                                     capture_output=True, text=True).stdout)
    assert [r["id"] for r in runs] == [run_dir.name]
    for key in ("id", "path", "state", "created", "model", "method", "step"):
        assert key in runs[0]


def test_full_finetune_follows_in_terminal(tiny_config, tmp_path):
    cfg = tiny_config(steps=12, method="full")
    path = tmp_path / "full.yaml"
    save_config(cfg, path)
    r = subprocess.run(CLI + ["train", str(path)], capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "completed" in r.stdout
    run_dir = next((tmp_path / "runs").iterdir())
    out = run_dir / "output"
    assert (out / "config.json").exists() and list(out.glob("*.safetensors"))
    ls = losses(run_dir)
    assert len(ls) == 12 and ls[-1] < ls[0]
    from transformers import AutoModelForCausalLM

    m = AutoModelForCausalLM.from_pretrained(str(out))
    assert m.config.num_hidden_layers == 2
    params = next(e for e in read_events(run_dir) if e["type"] == "info" and e["key"] == "parameters")["value"]
    assert params["trainable"] == params["total"]


@pytest.mark.parametrize("upcast", [False, True], ids=["compute-dtype", "upcast-fp32"])
def test_qlora_trains_through_bitsandbytes_on_cpu_in_bf16(tiny_config, start_run, wait_run, upcast):
    """Both ways of readying the 4-bit model (core.recipes.common.prepare_kbit), in bf16 (CPU autocast:
    precision bf16 is honoured on a CPU) with the Trainer's checkpointing, as the run's events show."""
    cfg = tiny_config(steps=6, method="qlora", precision="bf16", gradient_checkpointing=True)
    cfg.quantization.upcast_fp32 = upcast
    run_dir = start_run(cfg)
    info = wait_run(run_dir, 180)
    assert info.state == "completed", (info.reason, (run_dir / "train.log").read_text()[-3000:])
    assert (run_dir / "output" / "adapter_config.json").exists()
    assert len(losses(run_dir)) == 6
    events = read_events(run_dir)
    device = next(e["value"] for e in events if e["type"] == "info" and e["key"] == "device")
    probe = next(e["value"] for e in events if e["type"] == "info" and e["key"] == "first_step")
    assert device["precision"] == "bf16" and probe["lm_head_dtype"] == "bfloat16"
    assert probe["gradient_checkpointing"] is True and probe["layer_forwards"] == 2  # recomputed


def test_killed_process_is_reported_failed_not_running(tiny_config, start_run, wait_run):
    run_dir = start_run(tiny_config(steps=5000))
    assert wait_until(lambda: len(losses(run_dir)) >= 2)
    pid = read_json(run_dir / "launch.json")["pid"]
    os.kill(pid, signal.SIGKILL)
    info = wait_run(run_dir, 30)
    assert info.state == "failed"
    assert info.reason.startswith("killed")
    r = subprocess.run(CLI + ["status", str(run_dir)], capture_output=True, text=True)
    assert "failed (killed" in r.stdout


def test_stop_saves_a_checkpoint_and_the_adapter(tiny_config, start_run, wait_run):
    run_dir = start_run(tiny_config(steps=5000))
    assert wait_until(lambda: len(losses(run_dir)) >= 3)
    r = subprocess.run(CLI + ["stop", str(run_dir)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    info = run_info(run_dir)
    assert info.state == "stopped" and "checkpoint" in info.reason
    ckpts = list((run_dir / "checkpoints").glob("checkpoint-*"))
    assert len(ckpts) == 1 and (ckpts[0] / "optimizer.pt").exists() and (ckpts[0] / "trainer_state.json").exists()
    assert (run_dir / "output" / "adapter_config.json").exists()
    step = int(ckpts[0].name.split("-")[1])
    assert step == info.step and step < 5000


def test_two_runs_started_at_once_get_distinct_directories(tiny_config):
    cfg = tiny_config(steps=1)
    dirs = []
    threads = [threading.Thread(target=lambda: dirs.append(create_run(cfg))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(dirs)) == 4
    assert all((d / "config.yaml").exists() for d in dirs)


def test_stop_on_a_finished_run_changes_nothing(tiny_config, start_run, wait_run):
    run_dir = start_run(tiny_config(steps=2))
    assert wait_run(run_dir, 120).state == "completed"
    before = (run_dir / "events.jsonl").read_bytes()
    assert stop(run_dir) is False
    assert (run_dir / "events.jsonl").read_bytes() == before


def test_selftest_command_passes():
    r = subprocess.run(CLI + ["selftest"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "loss went down" in r.stdout and "PASSED" in r.stdout


def test_stop_right_after_start_is_a_stop_not_a_kill(tiny_config, start_run, wait_run):
    run_dir = start_run(tiny_config(steps=5000))
    assert stop(run_dir)  # before the process has even imported its modules
    info = wait_run(run_dir, 120)
    assert info.state == "stopped", info.reason
    assert not any(e["type"] == "train" for e in read_events(run_dir))
