"""Longest batch first and checkpoint retention (issue: runs that outlive the terminal)."""

from __future__ import annotations

import json

import pytest

from ftwizard.core.speed import LongestFirstSampler


def test_longest_rows_come_first_then_a_seeded_shuffle():
    lengths = [5, 90, 7, 12, 88, 3, 40, 91, 6, 60]
    s = LongestFirstSampler(lengths, batch_size=3, seed=1)
    order = list(s)
    assert sorted(order) == list(range(10))  # every row once
    assert order[:3] == [7, 1, 4]  # 91, 90, 88 tokens: an OOM shows at step 1
    assert order == list(LongestFirstSampler(lengths, 3, 1))  # deterministic: resume skips the same batches
    s.set_epoch(1)
    later = list(s)
    assert sorted(later) == list(range(10)) and later != order  # later epochs: a plain seeded shuffle


@pytest.mark.slow
def test_checkpoints_keep_the_last_and_the_best(tiny_config, start_run, wait_run):
    # eval (and checkpoint) every 2 steps, keep 1 + the best by validation loss
    run_dir = start_run(tiny_config(steps=12, eval_steps=2, save_total_limit=1))
    assert wait_run(run_dir, 180).state == "completed"
    kept = sorted(int(p.name.split("-")[1]) for p in (run_dir / "checkpoints").glob("checkpoint-*"))
    state = json.loads((run_dir / "checkpoints" / f"checkpoint-{kept[-1]}" / "trainer_state.json").read_text())
    best = int(state["best_model_checkpoint"].rsplit("-", 1)[1])
    assert kept[-1] == 12 and best in kept and len(kept) <= 2
