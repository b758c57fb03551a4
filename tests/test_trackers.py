"""train.report_to: the Trainer's own trackers, each an optional extra (issue 15, item 7)."""

from __future__ import annotations

import pytest

from ftwizard.core.errors import UserError


def test_unknown_tracker_is_refused_with_the_allowed_names():
    from ftwizard.core.config import parse_config

    with pytest.raises(UserError) as e:
        parse_config({"model": {"name_or_path": "m"}, "dataset": {"path": "d.jsonl"},
                      "train": {"report_to": ["tensorbored"]}})
    msg = str(e.value)
    assert "train.report_to" in msg and "tensorboard" in msg and "mlflow" in msg


def test_a_tracker_that_is_not_installed_is_refused_naming_its_extra(monkeypatch):
    import importlib.util

    from ftwizard.core.config import tracker_problems

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    assert tracker_problems(["wandb"]) == [
        ("train.report_to", "wandb is not installed: pip install 'ftwizard[wandb]' (or remove it)")]


def test_wandb_is_offline_unless_the_environment_says_otherwise(monkeypatch, tiny_config, tmp_path):
    import os

    from ftwizard.core.recipes.common import tracker_setup

    cfg = tiny_config()
    cfg.train.report_to = ["wandb"]
    run = type("R", (), {"dir": tmp_path})()
    # tracker_setup writes os.environ (the training process's own): a copy here, so nothing leaks into the
    # trainers later tests spawn (a leaked WANDB_MODE makes transformers print "offline mode" into train.log)
    monkeypatch.setattr(os, "environ", {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")})
    assert tracker_setup(cfg, run) == ["wandb"] and os.environ["WANDB_MODE"] == "offline"
    monkeypatch.setenv("WANDB_MODE", "online")
    tracker_setup(cfg, run)
    assert os.environ["WANDB_MODE"] == "online"


@pytest.mark.slow
def test_tensorboard_event_files_are_written_and_read_back(tiny_config, start_run, wait_run):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from ftwizard.core.events import read_events

    cfg = tiny_config(steps=4, eval_steps=2)
    cfg.train.report_to = ["tensorboard"]
    run_dir = start_run(cfg)
    assert wait_run(run_dir, 240).state == "completed"
    files = list((run_dir / "tensorboard").rglob("events.out.tfevents.*"))
    assert files, "no TensorBoard event file in the run's tensorboard/"
    acc = EventAccumulator(str(files[0].parent))
    acc.Reload()
    loss = acc.Scalars("train/loss")
    ours = [e for e in read_events(run_dir) if e.get("type") == "train" and e.get("loss") is not None]
    assert [s.step for s in loss] == [e["step"] for e in ours]  # same steps as events.jsonl
    assert loss[-1].value == pytest.approx(ours[-1]["loss"], rel=1e-4)
    assert [s.step for s in acc.Scalars("eval/loss")] == [2, 4]
