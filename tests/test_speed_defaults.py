"""Issue 7's checks that are not timings: extra metrics are opt-in, a second run on the same data
skips tokenization (from the events), and packing runs padding-free."""

from __future__ import annotations

import pytest

from ftwizard.core.events import read_events
from ftwizard.core.tiny import chat_rows, write_jsonl

pytestmark = pytest.mark.slow


def info(run_dir, key):
    return next(e["value"] for e in read_events(run_dir) if e["type"] == "info" and e["key"] == key)


def test_second_run_skips_tokenization_and_extras_are_opt_in(tiny_config, start_run, wait_run, tmp_path):
    data = write_jsonl(chat_rows(40, seed=7), tmp_path / "fresh.jsonl")  # never tokenized before

    first = tiny_config(steps=3)
    first.dataset.path = str(data)
    run1 = start_run(first)
    assert wait_run(run1, 180).state == "completed"

    second = tiny_config(steps=3, extra_metrics=True, packing=True)
    second.dataset.path = str(data)
    run2 = start_run(second)
    assert wait_run(run2, 180).state == "completed", (run2 / "train.log").read_text()[-2000:]

    assert info(run1, "tokenized")["cache"] == "miss"
    assert info(run2, "tokenized")["cache"] == "hit"
    assert info(run2, "tokenized")["cache_key"] == info(run1, "tokenized")["cache_key"]

    train1 = [e for e in read_events(run1) if e["type"] == "train"]
    train2 = [e for e in read_events(run2) if e["type"] == "train"]
    assert train1 and not any("mean_token_accuracy" in e or "entropy" in e for e in train1)
    assert all("mean_token_accuracy" in e and "entropy" in e for e in train2)

    rows = info(run2, "tokenized")["rows"]
    assert info(run2, "packing")["rows_after_packing"] < rows


def test_skipped_module_walks_keep_train_eval_and_zero_grad_exact():
    """skip_module_walks answers model.train() and zero_grad() without walking every module: eval() must
    still reach every submodule, train() after it must too, and only trainable params hold gradients."""
    import torch

    from ftwizard.core.speed import skip_module_walks

    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Dropout(0.5), torch.nn.Linear(3, 1))
    model[0].weight.requires_grad_(False)
    trainable = [p for p in model.parameters() if p.requires_grad]
    skip_module_walks(model, trainable)

    model.eval()
    assert not any(m.training for m in model.modules())
    model.train()
    assert all(m.training for m in model.modules())

    model(torch.ones(2, 3)).sum().backward()
    assert all(p.grad is not None for p in trainable) and model[0].weight.grad is None
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())
    model(torch.ones(2, 3)).sum().backward()
    model.zero_grad(set_to_none=False)
    assert all(torch.count_nonzero(p.grad) == 0 for p in trainable)


def test_skipped_module_walks_still_reach_submodules_left_in_eval_mode():
    """from_pretrained leaves the model in eval mode and get_peft_model wraps it in a root that is in
    training mode: the first train() must walk anyway, or the run trains in eval mode (no dropout, no
    activation checkpointing) until its first evaluation. Seen through the first_step probe."""
    import torch

    from ftwizard.core.speed import skip_module_walks

    inner = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Dropout(0.5)).eval()
    root = torch.nn.Sequential(inner)
    root.training = True  # as a fresh PeftModel around an eval-mode model
    skip_module_walks(root, list(root.parameters()))
    root.train()
    assert all(m.training for m in root.modules())
