"""After training: chat (tuned vs base), evaluate, merge, on a real tiny run."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow
CLI = [sys.executable, "-m", "ftwizard.core.cli"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_work):
    from ftwizard.core.launch import create_run, start
    from ftwizard.core.selftest import make_tiny_setup, wait_for_end

    cfg = make_tiny_setup(tiny_work, steps=40, learning_rate=1e-2)
    cfg.runs_dir = str(tmp_path_factory.mktemp("after") / "runs")
    run_dir = create_run(cfg)
    start(run_dir)
    assert wait_for_end(run_dir, 240).state == "completed"
    return run_dir


def test_evaluate_shows_the_tuned_model_beats_the_base(finished_run):
    r = subprocess.run(CLI + ["evaluate", str(finished_run), "--json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["rows"] > 0 and res["base_loss"] is not None
    assert res["tuned_loss"] < res["base_loss"] - 0.1  # 40 steps on arithmetic-in-words: clearly better


def test_chat_compare_answers_with_both(finished_run):
    r = subprocess.run(CLI + ["chat", str(finished_run), "--prompt", "What is two plus three?", "--compare",
                              "--max-new-tokens", "12"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith(("base :", "tuned:"))]
    assert len(lines) == 2
    assert lines[0] != lines[1].replace("tuned:", "base :")  # the adapter changes the answer


def test_merge_saves_a_standalone_model_and_never_overwrites(finished_run, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    from ftwizard.core.afterwards import load_tuned

    dest = tmp_path / "merged"
    r = subprocess.run(CLI + ["merge", str(finished_run), "--out", str(dest)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    merged = AutoModelForCausalLM.from_pretrained(str(dest), dtype=torch.float32)
    tuned = load_tuned(finished_run, device="cpu")
    ids = torch.tensor([[5, 17, 42, 99, 3]])
    with torch.no_grad():
        a, b = merged(ids).logits, tuned.model(ids).logits
    assert torch.allclose(a, b, atol=0.05)  # bf16 merge of the same weights
    again = subprocess.run(CLI + ["merge", str(finished_run), "--out", str(dest)], capture_output=True, text=True)
    assert again.returncode == 2 and "already exists" in again.stderr and "Traceback" not in again.stderr
