"""The training process as a recipe, on real tiny runs: config.yaml used as written (nothing auto left,
bf16 honoured on a CPU), and what each training setting really does in a run, read from its events
(the `first_step` probe counts forward calls and records the LM head's dtype)."""

from __future__ import annotations

import math
import shutil
import subprocess
import sys

import pytest

from ftwizard.core.events import read_events
from ftwizard.core.launch import create_run, start

pytestmark = pytest.mark.slow
CLI = [sys.executable, "-m", "ftwizard.core.cli"]


def info(run_dir, key):
    return next(e["value"] for e in read_events(run_dir) if e["type"] == "info" and e["key"] == key)


def train_events(run_dir):
    return [e for e in read_events(run_dir) if e["type"] == "train"]


def finished(run_dir, wait_run, state="completed"):
    end = wait_run(run_dir, 240)
    assert end.state == state, (end.state, end.reason, (run_dir / "train.log").read_text()[-3000:])
    return end


def test_a_config_left_auto_fails_the_run_naming_the_key(tiny_config, wait_run):
    run_dir = create_run(tiny_config(steps=2))
    text = (run_dir / "config.yaml").read_text()
    assert "precision: fp32" in text and "# precision fp32: CPU training" in text  # resolved, with why
    (run_dir / "config.yaml").write_text(text.replace("precision: fp32", "precision: auto"))
    start(run_dir)
    end = finished(run_dir, wait_run, "failed")
    assert end.reason.startswith("train.precision: is 'auto' in the run's config.yaml")
    assert not any(e["type"] == "phase" and e["phase"] == "loading_model" for e in read_events(run_dir))


def test_bf16_on_a_cpu_is_honoured_as_autocast(tiny_config, start_run, wait_run):
    """Full fine-tuning keeps fp32 weights: a bf16 LM head output can only come from autocast."""
    run_dir = start_run(tiny_config(steps=2, method="full", precision="bf16"))
    finished(run_dir, wait_run)
    assert info(run_dir, "device")["precision"] == "bf16"
    probe = info(run_dir, "first_step")
    assert probe["lm_head_dtype"] == "bfloat16"
    import torch
    from transformers import AutoConfig

    assert AutoConfig.from_pretrained(str(run_dir / "output")).dtype == torch.float32  # fp32 master weights


@pytest.mark.parametrize("checkpointing", [False, True], ids=["off", "on"])
def test_gradient_checkpointing_really_recomputes(tiny_config, start_run, wait_run, checkpointing):
    run_dir = start_run(tiny_config(steps=2, gradient_checkpointing=checkpointing))
    finished(run_dir, wait_run)
    probe = info(run_dir, "first_step")
    assert probe["gradient_checkpointing"] is checkpointing
    # the first decoder layer runs forward once per micro-batch, twice when its activations are recomputed
    # (the tiny model's batch is one pass: too few activations for train.micro_batch_size to split it)
    assert probe["micro_batches"] == 1
    assert probe["layer_forwards"] == (2 if checkpointing else 1)
    assert probe["lm_head_dtype"] == "float32"  # fp32 on a CPU by default: no autocast


def test_early_stopping_stops_before_max_steps_with_its_warning(tiny_config, start_run, wait_run):
    # A learning rate too small to move the validation loss by 1e-4: no improvement at the 2nd evaluation.
    run_dir = start_run(tiny_config(steps=40, learning_rate=1e-12, eval_steps=1, early_stopping_patience=1))
    end = finished(run_dir, wait_run)
    events = read_events(run_dir)
    assert [e["step"] for e in events if e["type"] == "eval"] == [1, 2]
    warning = next(e for e in events if e["type"] == "warning" and e["code"] == "early-stop")
    assert warning["evidence"]["step"] == 2
    assert end.step == 2 and [e["step"] for e in train_events(run_dir)] == [1, 2]


def test_epoch_based_run_takes_steps_per_epoch_times_epochs(tiny_config, start_run, wait_run):
    run_dir = start_run(tiny_config(steps=-1, epochs=2, eval_steps=1000))
    finished(run_dir, wait_run)
    # the rows the Trainer iterates: after packing (on by default where exact) when it packed
    packing = [e["value"] for e in read_events(run_dir) if e["type"] == "info" and e["key"] == "packing"]
    # (then a step takes the packed rows holding at most batch_size rows: schedule.packed_batch)
    rows = packing[0]["rows_after_packing"] if packing else info(run_dir, "tokenized")["rows"]
    per_step = packing[0]["packed_rows_per_step"] if packing else 4  # batch 4, no accumulation, one process
    per_epoch = math.ceil(rows / per_step)
    train = train_events(run_dir)
    assert [e["step"] for e in train] == list(range(1, 2 * per_epoch + 1))
    assert train[-1]["max_steps"] == 2 * per_epoch and train[-1]["epoch"] == pytest.approx(2.0)
    assert train[per_epoch - 1]["epoch"] == pytest.approx(1.0)


def test_gradient_accumulation_matches_the_larger_batch(tiny_config, start_run, wait_run):
    """4 rows x 2 accumulated = one batch of 8: same rows (a plain seeded order), same loss per step."""
    common = dict(steps=3, longest_first=False, eval_steps=1000)
    # whole batches per pass (a CPU would take them a row at a time: tests/test_micro_batch.py)
    acc = start_run(tiny_config(batch_size=4, micro_batch_size=4, gradient_accumulation_steps=2, **common))
    big = start_run(tiny_config(batch_size=8, micro_batch_size=8, **common))
    finished(acc, wait_run)
    finished(big, wait_run)
    assert info(acc, "first_step")["micro_batches"] == 2 and info(big, "first_step")["micro_batches"] == 1
    a, b = train_events(acc), train_events(big)
    assert [e["step"] for e in a] == [e["step"] for e in b] == [1, 2, 3]
    for x, y in zip(a, b):
        assert x["loss"] == pytest.approx(y["loss"], rel=1e-4), (x["step"], x["loss"], y["loss"])


# ----------------------------------------------------------------------------------- model.revision


def _hub_cache_with_two_revisions(cache, work):
    """An offline hub cache holding `ftw-test/tiny` at `main` (hidden 64) and at tag `v1` (hidden 32),
    laid out as huggingface_hub leaves it (refs/NAME -> commit, snapshots/COMMIT/files)."""
    from ftwizard.core.tiny import build_tiny_model

    repo = cache / "models--ftw-test--tiny"
    for ref, commit, hidden in (("main", "a" * 40, 64), ("v1", "b" * 40, 32)):
        src = build_tiny_model(work / f"src-{ref}", hidden=hidden)
        shutil.copytree(src, repo / "snapshots" / commit)
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / ref).write_text(commit)


def test_revision_reaches_training_chat_evaluate_and_merge(tiny_config, wait_run, tmp_path, monkeypatch):
    cache = tmp_path / "hub"
    _hub_cache_with_two_revisions(cache, tmp_path)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = tiny_config(steps=3)
    cfg.model.name_or_path, cfg.model.revision = "ftw-test/tiny", "v1"
    run_dir = create_run(cfg)
    start(run_dir)
    finished(run_dir, wait_run)
    # LoRA on the 32-wide v1, all-linear r8, 2 layers: far fewer adapter weights than on the 64-wide main
    trainable = info(run_dir, "parameters")["trainable"]
    per_layer = lambda h: 8 * (h + h) * 2 + 8 * (h + h // 2) * 2 + 8 * (h + 2 * h) * 3  # q,o  k,v  gate,up,down
    assert trainable == 2 * per_layer(32)

    # The adapter only fits the v1 base: chat, evaluate and merge must load that one.
    r = subprocess.run(CLI + ["evaluate", str(run_dir), "--json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    r = subprocess.run(CLI + ["chat", str(run_dir), "--prompt", "What is one plus one?", "--max-new-tokens", "4"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    r = subprocess.run(CLI + ["merge", str(run_dir), "--out", str(tmp_path / "merged")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    import json

    assert json.loads((tmp_path / "merged" / "config.json").read_text())["hidden_size"] == 32
