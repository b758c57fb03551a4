"""Rules with one home in core, and their users agreeing with it: the hyperparameter guidance (the
wizard and `ftwizard train`), effective batch and steps per epoch (the dataset statistics), the world
size a run really has, and the allowed enums (config Literals vs the estimator and the formats)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import get_args

import pytest

from ftwizard.core.config import LoraConfig, ModelConfig, RunConfig, TrainConfig, save_config
from ftwizard.core.guidance import config_guidance, guidance
from ftwizard.core.hardware import GPU, Hardware, run_gpus, run_world_size
from ftwizard.core.schedule import effective_batch, steps_per_epoch, total_steps

CLI = [sys.executable, "-m", "ftwizard.core.cli"]


# ------------------------------------------------------------------------------------- guidance

def test_guidance_is_quiet_for_the_defaults():
    assert guidance("lora", TrainConfig(), LoraConfig()) == {}
    assert guidance("full", TrainConfig(learning_rate=2e-5), LoraConfig()) == {}


def test_guidance_ranges_depend_on_the_method():
    lr = TrainConfig(learning_rate=2e-5)
    assert "1e-4..3e-4" in guidance("lora", lr, LoraConfig())["learning_rate"]
    assert "learning_rate" not in guidance("full", lr, LoraConfig())
    assert "1e-5..5e-5" in guidance("full", TrainConfig(), LoraConfig())["learning_rate"]


def test_guidance_flags_epochs_only_without_max_steps_and_rank_only_with_adapters():
    train = TrainConfig(epochs=10)
    assert "epochs" in guidance("lora", train, LoraConfig())
    assert "epochs" not in guidance("lora", train.model_copy(update={"max_steps": 100}), LoraConfig())
    odd = LoraConfig(r=128, alpha=16)
    assert set(guidance("qlora", TrainConfig(), odd)) == {"r", "alpha"}
    assert not set(guidance("full", TrainConfig(learning_rate=2e-5), odd)) & {"r", "alpha"}


def test_config_guidance_names_config_keys():
    cfg = RunConfig(train=TrainConfig(learning_rate=0.01), lora=LoraConfig(r=4, alpha=8),
                    dataset={"path": "x.jsonl"})
    assert [k for k, _ in config_guidance(cfg)] == ["train.learning_rate", "lora.r"]


@pytest.mark.slow
def test_train_prints_the_wizards_warnings_and_still_starts(tiny_config, tmp_path):
    from ftwizard.core.launch import stop
    from ftwizard.core.selftest import wait_for_end

    cfg = tiny_config(steps=3)
    cfg.train.learning_rate = 0.01
    path = tmp_path / "unusual.yaml"
    save_config(cfg, path)
    r = subprocess.run(CLI + ["train", str(path), "--detach"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    expected = guidance(cfg.method, cfg.train, cfg.lora)["learning_rate"]  # what the wizard shows
    assert f"ftwizard: warning: train.learning_rate: {expected}\n" in r.stderr
    run_dir = r.stdout.strip().splitlines()[-1]
    try:
        assert (tmp_path / "runs").is_dir() and run_dir  # a warning does not stop the run
    finally:
        stop(Path(run_dir))
        wait_for_end(Path(run_dir), timeout=120)


def test_defaults_are_within_the_usual_ranges(tmp_path):
    """The config's defaults draw no guidance warning: a newcomer's first `train` prints none (the
    pre-flight adds each guidance line as a run warning, printed once the run exists)."""
    from ftwizard.core.guidance import config_guidance

    for method in ("lora", "qlora", "full"):
        cfg = RunConfig(method=method, dataset={"path": str(tmp_path / "d.jsonl")})
        if method == "full":
            cfg.train.learning_rate = 2e-5  # full fine-tuning's own usual rate (the LoRA default is 1e-4..3e-4)
        assert config_guidance(cfg) == [], method


# ------------------------------------------------------------------------------------- schedule

def test_effective_batch_and_steps():
    assert effective_batch(4, 2) == 8
    assert effective_batch(4, 2, world_size=2) == 16
    assert steps_per_epoch(100, 8) == 13  # the last partial batch is a step
    assert steps_per_epoch(0, 8) == 0
    assert total_steps(13, 2.5) == 39     # whole epochs, rounded up
    assert total_steps(13, 1, max_steps=5) == 5


def test_dataset_statistics_count_steps_with_the_schedule(tiny_work):
    from ftwizard.core.data.stats import compute_stats

    data = str(tiny_work / "data" / "chat.jsonl")
    st = compute_stats(data, batch_size=3, gradient_accumulation_steps=2)
    assert st.used_rows > 6
    train_rows = st.used_rows - st.zero_trained_rows
    assert st.steps_per_epoch == steps_per_epoch(train_rows, effective_batch(3, 2))


# ------------------------------------------------------------------------------------- world size

CARD = GPU(0, "NVIDIA L4", 22.5, 22.0, (8, 9))


def test_a_run_trains_on_the_cards_its_distributed_config_chooses(monkeypatch):
    from ftwizard.core.config import DistributedConfig

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    two = Hardware(gpus=(CARD, GPU(1, "NVIDIA L4", 22.5, 10.0, (8, 9))))
    assert len(run_gpus(two)) == 2 and run_world_size(two) == 2  # auto: one process per card
    one = DistributedConfig(strategy="none")
    assert run_gpus(two, one) == (CARD,) and run_world_size(two, one) == 1
    assert run_gpus(Hardware()) == () and run_world_size(Hardware()) == 1  # CPU
    assert run_gpus(None) == () and run_world_size(None) == 1  # not detected yet


# ------------------------------------------------------------------------------------- enums

def test_estimator_and_formats_allow_exactly_the_config_values():
    from ftwizard.core.config import DatasetFormat, Method, Optim
    from ftwizard.core.data.formats import FORMATS
    from ftwizard.core.estimate import ATTN, METHODS, OPTIMIZERS

    assert set(OPTIMIZERS) == set(get_args(Optim))
    assert set(METHODS) == set(get_args(Method))
    assert set(FORMATS) | {"auto"} == set(get_args(DatasetFormat))
    attn = get_args(ModelConfig.model_fields["attn_implementation"].annotation)
    assert set(ATTN) | {"auto"} == set(attn)


def test_estimate_command_offers_every_config_optimizer():
    from ftwizard.core.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._subparsers._group_actions if a.dest == "command").choices["estimate"]
    optim = next(a for a in sub._actions if a.dest == "optim")
    from ftwizard.core.config import Optim

    assert set(optim.choices) == set(get_args(Optim))
