"""Bad inputs and faults: each gives a clear one-line message naming the place, the right exit code,
no traceback, and never loses or overwrites a run directory."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from ftwizard.core.config import save_config
from ftwizard.core.events import read_events
from ftwizard.core.launch import create_run
from ftwizard.core.runs import read_json, run_info

CLI = [sys.executable, "-m", "ftwizard.core.cli"]


def cli(*args, cwd=None, timeout=120):
    return subprocess.run(CLI + [str(a) for a in args], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout, env={**os.environ, "FTWIZARD_RUNS_DIR": str(cwd or ".") + "/runs"})


def snapshot(root: Path) -> dict:
    """Every file under root with its size and mtime: a run dir lost or rewritten shows here."""
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in root.rglob("*") if p.is_file()}


# ------------------------------------------------------------------------------------ bad inputs


@pytest.fixture
def world(tmp_path, tiny_work):
    """A working config next to a finished run that must survive every bad command untouched."""
    from ftwizard.core.selftest import make_tiny_setup

    cfg = make_tiny_setup(tiny_work)
    cfg.runs_dir = str(tmp_path / "runs")
    existing = create_run(cfg)  # a run that exists before every bad command
    (existing / "events.jsonl").write_text('{"type": "phase", "t": 1, "phase": "started"}\n')
    data = cfg.model_dump(mode="json")
    return tmp_path, data, existing


def put(tmp_path, name, text):
    p = tmp_path / name
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    return p


def cfg_with(tmp_path, data, name="c.yaml", **changes):
    d = json.loads(json.dumps(data))
    for dotted, value in changes.items():
        node = d
        *parents, leaf = dotted.split("__")
        for k in parents:
            node = node[k]
        node[leaf] = value
    return put(tmp_path, name, yaml.safe_dump(d, sort_keys=False))


ANSWERS = """goal: task
facts_change_often: false
needs_citations: false
prompting_tried: inconsistent
examples: 800
data_kind: pairs
latency_or_cost_critical: false
"""

BAD_INPUTS = {
    # name: (build args from (tmp_path, data, existing_run), words the one line must contain)
    "config file missing": (lambda t, d, r: ["train", t / "nope.yaml"], ["nope.yaml", "no such config file"]),
    "broken yaml": (lambda t, d, r: ["train", put(t, "b.yaml", "dataset:\n  path: [x\n")], ["b.yaml:", "not valid YAML"]),
    "unknown key": (lambda t, d, r: ["train", put(t, "k.yaml", f"dataset: {{path: {d['dataset']['path']}}}\ntrain:\n  batchsize: 2\n")],
                    ["k.yaml:3: train.batchsize: unknown key", "batch_size"]),
    "bad method": (lambda t, d, r: ["train", cfg_with(t, d, method="qlora4")], ["c.yaml:", "method:", "'qlora4'"]),
    "learning rate out of range": (lambda t, d, r: ["train", cfg_with(t, d, train__learning_rate=5)],
                                   ["train.learning_rate", "less than 1"]),
    "unknown training kind": (lambda t, d, r: ["train", cfg_with(t, d, training="ppo")], ["training:", "grpo"]),
    "dataset file missing": (lambda t, d, r: ["train", cfg_with(t, d, dataset__path=str(t / "gone.jsonl"))],
                             ["gone.jsonl", "dataset.path", "no such file"]),
    "dataset unsupported type": (lambda t, d, r: ["train", cfg_with(t, d, dataset__path=str(put(t, "d.txt", "hi")))],
                                 ["d.txt", "unsupported file type"]),
    "dataset unknown columns": (lambda t, d, r: ["train", cfg_with(t, d, dataset__path=str(put(t, "u.jsonl", '{"foo": 1}\n')))],
                                ["u.jsonl:1", "format"]),
    "dataset not json": (lambda t, d, r: ["train", cfg_with(t, d, dataset__path=str(put(t, "n.jsonl", "not json\nstill not\n")))],
                         ["n.jsonl:1"]),
    "dataset not utf-8": (lambda t, d, r: ["train", cfg_with(t, d, dataset__path=str(put(t, "l.jsonl", b'{"text": "caf\xe9"}\n')))],
                          ["l.jsonl:1"]),
    "model dir missing": (lambda t, d, r: ["train", cfg_with(t, d, model__name_or_path=str(t / "no-model"))],
                          ["no-model", "model.name_or_path", "no such model directory"]),
    "model dir without config.json": (lambda t, d, r: (os.makedirs(t / "empty", exist_ok=True),
                                                        ["train", cfg_with(t, d, model__name_or_path=str(t / "empty"))])[1],
                                      ["empty", "model.name_or_path", "config.json"]),
    "gguf file missing": (lambda t, d, r: ["train", cfg_with(t, d, model__name_or_path=str(t), model__gguf_file="m.gguf")],
                          ["model.gguf_file", "m.gguf"]),
    "model package missing": (lambda t, d, r: ["train", cfg_with(t, d, model__name_or_path="pkg:no_such_pkg_ftw")],
                              ["model.name_or_path", "no_such_pkg_ftw", "not installed"]),
    "status of unknown run": (lambda t, d, r: ["status", "no-such-run"], ["RUN", "no run 'no-such-run'"]),
    "stop unknown run": (lambda t, d, r: ["stop", t / "nowhere"], ["RUN", "nowhere"]),
    "resume without checkpoint": (lambda t, d, r: ["resume", r], ["checkpoints", "no checkpoint"]),
    "unknown command": (lambda t, d, r: ["trian", "x.yaml"], ["invalid choice", "trian"]),
    "bad option type": (lambda t, d, r: ["estimate", "--model", "qwen2.5-0.5b", "--method", "lora", "--seq-len", "abc"],
                        ["--seq-len", "abc"]),
    "unknown model for estimate": (lambda t, d, r: ["estimate", "--model", "no-such-model-xyz", "--method", "lora"],
                                   ["no-such-model-xyz"]),
    "bad answers file": (lambda t, d, r: ["recommend", "--answers", put(t, "a.yaml", ANSWERS.replace("task", "fame"))],
                         ["a.yaml:1: goal", "fame", "knowledge"]),
    "inspect binary file": (lambda t, d, r: ["inspect", put(t, "bin.jsonl", bytes(range(256)) * 4)], ["bin.jsonl:1"]),
    "delete without confirmation": (lambda t, d, r: ["delete", r], ["--yes"]),
}


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_bad_input(name, world):
    tmp_path, data, existing = world
    build, words = BAD_INPUTS[name]
    args = build(tmp_path, data, existing)
    before = snapshot(tmp_path / "runs")
    r = cli(*args, cwd=tmp_path)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    err = r.stderr.strip()
    assert err and "\n" not in err, err  # exactly one line
    assert "Traceback" not in r.stderr + r.stdout
    for w in words:
        assert w in err, (w, err)
    assert snapshot(tmp_path / "runs") == before  # nothing created, lost or overwritten
    assert (existing / "config.yaml").exists()


def test_there_are_at_least_twenty_bad_inputs():
    assert len(BAD_INPUTS) >= 20


# ---------------------------------------------------------------------------------------- faults

FAULTS = '''
import errno
from transformers import TrainerCallback


class OOMAtStep3(TrainerCallback):
    def on_step_end(self, args, state, control, **kw):
        if state.global_step == 3:
            import torch
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB. GPU 0 has a "
                                         "total capacity of 23.69 GiB of which 1.2 GiB is free.")


class NaNAtStep3(TrainerCallback):
    # A planted NaN: one trainable weight becomes NaN, as a diverging learning rate would make it.
    def on_step_end(self, args, state, control, model=None, **kw):
        if state.global_step == 3:
            import torch
            with torch.no_grad():
                next(p for p in model.parameters() if p.requires_grad).fill_(float("nan"))


class DiskFullAtStep2(TrainerCallback):
    def on_step_end(self, args, state, control, **kw):
        if state.global_step == 2:
            raise OSError(errno.ENOSPC, "No space left on device", "checkpoints/checkpoint-2/optimizer.pt")
'''


@pytest.fixture
def faults(tmp_path, monkeypatch):
    (tmp_path / "ftw_faults.py").write_text(FAULTS)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))


def wait_until(pred, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(0.1)
    return False


def intact(run_dir: Path):
    assert (run_dir / "config.yaml").exists() and (run_dir / "events.jsonl").exists()
    assert (run_dir / "train.log").exists() and (run_dir / "status.json").exists()


@pytest.mark.slow
def test_fault_out_of_memory_is_diagnosed_with_ranked_fixes(faults, tiny_config, start_run, wait_run):
    run_dir = start_run(tiny_config(steps=50, callbacks=["ftw_faults:OOMAtStep3"]))
    info = wait_run(run_dir, 180)
    assert info.state == "failed"
    d = info.diagnosis
    assert d["kind"] == "oom" and d["step"] == 3 and "at step 3" in info.reason
    assert d["longest_row_tokens"] > 0 and "longest row" in info.reason
    assert d["fixes"][0].startswith("halve train.batch_size")
    assert any("gradient_checkpointing" in f for f in d["fixes"]) and any("qlora" in f for f in d["fixes"])
    r = cli("status", run_dir)
    assert r.returncode == 0 and "out of memory at step 3" in r.stdout and "halve train.batch_size" in r.stdout
    intact(run_dir)


@pytest.mark.slow
def test_fault_nan_loss_ends_the_run_and_the_doctor_says_why(faults, tiny_config, start_run, wait_run):
    from ftwizard.core.doctor import diagnose_events

    run_dir = start_run(tiny_config(steps=60, callbacks=["ftw_faults:NaNAtStep3"]))
    info = wait_run(run_dir, 180)
    assert info.state == "failed" and info.diagnosis["kind"] == "nan", info.reason
    assert "nan" in info.reason.lower()
    assert info.step == 6  # NaN from step 4 on: three NaN logs end it, not the remaining 54 steps
    codes = {w.code for w in diagnose_events(read_events(run_dir))}
    assert "nan-loss" in codes
    intact(run_dir)


@pytest.mark.slow
def test_fault_disk_full(faults, tiny_config, start_run, wait_run):
    run_dir = start_run(tiny_config(steps=50, callbacks=["ftw_faults:DiskFullAtStep2"]))
    info = wait_run(run_dir, 180)
    assert info.state == "failed" and info.diagnosis["kind"] == "disk-full"
    assert any("disk" in f for f in info.diagnosis["fixes"])
    intact(run_dir)


@pytest.mark.slow
def test_fault_dataset_removed_after_the_run_was_created(tiny_config, tmp_path, wait_run):
    from ftwizard.core.launch import start

    data = tmp_path / "chat.jsonl"
    cfg = tiny_config(steps=5)
    data.write_text(Path(cfg.dataset.path).read_text())
    cfg.dataset.path = str(data)
    run_dir = create_run(cfg)
    data.unlink()
    start(run_dir)
    info = wait_run(run_dir, 180)
    assert info.state == "failed" and "chat.jsonl" in info.reason
    assert "Traceback" not in info.reason
    intact(run_dir)


@pytest.mark.slow
def test_fault_model_removed_after_the_run_was_created(tiny_work, tiny_config, tmp_path, wait_run):
    import shutil

    from ftwizard.core.launch import start

    model = tmp_path / "model-copy"
    shutil.copytree(tiny_work / "tiny-model", model)
    cfg = tiny_config(steps=5)
    cfg.model.name_or_path = str(model)
    run_dir = create_run(cfg)
    shutil.rmtree(model)
    start(run_dir)
    info = wait_run(run_dir, 180)
    assert info.state == "failed" and "model-copy" in info.reason and "model.name_or_path" in info.reason
    intact(run_dir)


@pytest.mark.slow
def test_fault_terminal_hangup_and_killed_follower_do_not_stop_training(tiny_config, tmp_path, wait_run):
    """`ftwizard train` in the foreground, then its terminal goes away (SIGHUP to its whole process
    group, then SIGKILL): the detached training process carries on and completes."""
    cfg = tiny_config(steps=30)
    path = tmp_path / "c.yaml"
    save_config(cfg, path)
    follower = subprocess.Popen(CLI + ["train", str(path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=tmp_path)
    runs = tmp_path / "runs"
    assert wait_until(lambda: runs.exists() and any(runs.iterdir()))
    run_dir = next(runs.iterdir())
    assert wait_until(lambda: (run_dir / "launch.json").exists())
    assert wait_until(lambda: any(e["type"] == "train" for e in read_events(run_dir)), 180)
    os.killpg(follower.pid, signal.SIGHUP)  # the terminal hangs up on the follower's session
    os.kill(read_json(run_dir / "launch.json")["pid"], signal.SIGHUP)  # and, for good measure, on the trainer
    follower.kill()
    follower.wait()
    info = wait_run(run_dir, 240)
    assert info.state == "completed", info.reason
    assert max(e["step"] for e in read_events(run_dir) if e["type"] == "train") == 30


def test_fault_half_written_event_line_is_tolerated(tmp_path, tiny_config):
    cfg = tiny_config()
    run_dir = create_run(cfg)
    (run_dir / "events.jsonl").write_text(
        '{"type": "phase", "t": 1, "phase": "started"}\n{"type": "train", "t": 2, "step": 1, "loss": 2.5}\n{"type": "tr')
    info = run_info(run_dir)
    assert info.step == 1 and info.last_loss == 2.5


def test_relative_runs_dir_gives_an_absolute_run_directory(tiny_config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = tiny_config()
    cfg.runs_dir = "rel-runs"
    run_dir = create_run(cfg)
    assert run_dir.is_absolute() and run_dir.parent == tmp_path / "rel-runs"
