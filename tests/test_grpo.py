"""training: grpo on the tiny model, for real: rewards (built-in and a user's file) in the train events,
`sample` events, a saved adapter, stop and resume onto the same curve; and every bad input a one-line
error, exit 2, with no run directory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ftwizard.core.config import dump_config
from ftwizard.core.events import parse_event, read_events

CLI = [sys.executable, "-m", "ftwizard.core.cli"]

USER_REWARD = '''
def longer(prompts, completions, **kwargs):
    # Longer text = better: a reward the tiny model's random completions always spread over.
    return [len(c) / 50.0 for c in completions]
'''


def prompt_rows(n: int = 24) -> list[dict]:
    words = ["one", "two", "three", "four", "five", "six"]
    return [{"prompt": f"what is {words[i % 6]} plus {words[(i * 5) % 6]}",
             "answer": str(i % 6 + 1 + (i * 5) % 6 + 1)} for i in range(n)]


@pytest.fixture
def grpo_config(tiny_config, tmp_path):
    """A factory: (config file path) of a GRPO run on the tiny model; `grpo` and `train` overrides."""
    data = tmp_path / "prompts.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in prompt_rows()))
    (tmp_path / "my_reward.py").write_text(USER_REWARD)

    def make(rewards=("numeric_match",), steps=6, grpo=None, name="grpo.yaml", **train):
        cfg = tiny_config(steps=steps, **{"batch_size": 4, "max_length": 64, **train})
        data_cfg = yaml.safe_load(dump_config(cfg))
        data_cfg["training"] = "grpo"
        data_cfg["dataset"]["path"] = str(data)
        data_cfg["dataset"]["validation"] = 0.0
        data_cfg["grpo"] = {"num_generations": 4, "max_completion_length": 12, "rewards": list(rewards),
                            **(grpo or {})}
        path = tmp_path / name
        path.write_text(yaml.safe_dump(data_cfg, sort_keys=False))
        return path

    return make


def train(config: Path, *extra: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(CLI + ["train", str(config), "--detach", *extra], capture_output=True, text=True,
                          env=env)


def run_dir_of(r: subprocess.CompletedProcess) -> Path:
    assert r.returncode == 0, r.stderr
    return Path(r.stdout.strip().splitlines()[-1])


def trains(run_dir):
    return [e for e in read_events(run_dir) if e["type"] == "train"]


@pytest.mark.slow
def test_grpo_lora_with_a_builtin_reward_logs_reward_metrics_samples_and_saves_an_adapter(grpo_config, wait_run):
    run_dir = run_dir_of(train(grpo_config(rewards=["numeric_match", "length_penalty"])))
    info = wait_run(run_dir, 300)
    assert info.state == "completed", (info.reason, (run_dir / "train.log").read_text()[-2000:])
    evs = trains(run_dir)
    assert [e["step"] for e in evs] == list(range(1, 7))
    for e in evs:
        assert {"reward_mean", "reward_std", "completion_length_mean", "clipped_ratio", "zero_std_ratio"} <= set(e)
        assert set(e["rewards"]) == {"numeric_match", "length_penalty"}
        assert -1.0 <= e["rewards"]["length_penalty"] < 0.0 and 0.0 <= e["clipped_ratio"] <= 1.0
    samples = [e for e in read_events(run_dir) if e["type"] == "sample"]
    assert all(not parse_event(e).extra for e in evs + samples)  # every field written is in the schema
    assert samples and {"prompt", "completion", "rewards", "step"} <= set(samples[0])
    assert samples[0]["prompt"].startswith("what is") and set(samples[0]["rewards"]) == {"numeric_match",
                                                                                          "length_penalty"}
    assert (run_dir / "output" / "adapter_config.json").exists()
    status = json.loads(subprocess.run(CLI + ["status", str(run_dir), "--json"], capture_output=True, text=True,
                                       check=True).stdout)
    assert status["state"] == "completed"
    assert status["extra"]["metrics"]["reward_mean"] == evs[-1]["reward_mean"]
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert cfg["grpo"]["use_vllm"] is False and cfg["train"]["packing"] is False  # resolved at creation


@pytest.mark.slow
def test_grpo_with_a_user_reward_file_relative_to_the_config(grpo_config, wait_run, tmp_path):
    config = grpo_config(rewards=["my_reward.py:longer"])
    raw = yaml.safe_load(config.read_text())
    assert raw["grpo"]["rewards"] == ["my_reward.py:longer"]  # relative, read from the config's folder
    run_dir = run_dir_of(train(config))
    info = wait_run(run_dir, 300)
    assert info.state == "completed", (info.reason, (run_dir / "train.log").read_text()[-2000:])
    evs = trains(run_dir)
    assert all(set(e["rewards"]) == {"longer"} for e in evs)
    assert any(e["reward_std"] > 0 for e in evs)  # the completions differ in length: a signal to learn from
    assert (run_dir / "output" / "adapter_config.json").exists()
    written = yaml.safe_load((run_dir / "config.yaml").read_text())["grpo"]["rewards"][0]
    assert written == f"{tmp_path / 'my_reward.py'}:longer"  # the run's copy stands on its own


@pytest.mark.slow
def test_grpo_full_fine_tune_saves_a_model_and_counts_tokens(grpo_config, wait_run):
    run_dir = run_dir_of(train(grpo_config(rewards=["my_reward.py:longer"], steps=3, method="full")))
    info = wait_run(run_dir, 300)
    assert info.state == "completed", (info.reason, (run_dir / "train.log").read_text()[-2000:])
    evs = trains(run_dir)
    assert [e["step"] for e in evs] == [1, 2, 3] and all("reward_mean" in e for e in evs)
    assert evs[-1]["tokens"] > evs[0]["tokens"] > 0  # prompt + completion tokens, as TRL counts them
    assert (run_dir / "output" / "model.safetensors").exists() and not (run_dir / "output" / "adapter_config.json").exists()


STOP_AT = """
from pathlib import Path
from transformers import TrainerCallback


class StopAt(TrainerCallback):
    def on_step_end(self, args, state, control, **kw):
        if state.global_step == 4:
            Path("stop.request").write_text("test")
"""


@pytest.mark.slow
def test_grpo_stop_then_resume_continues_the_same_curve(grpo_config, wait_run, tmp_path, monkeypatch):
    (tmp_path / "stop_at_grpo.py").write_text(STOP_AT)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    kw = dict(rewards=["my_reward.py:longer"], steps=8, save_steps=4)
    ref_dir = run_dir_of(train(grpo_config(name="ref.yaml", **kw)))
    run_dir = run_dir_of(train(grpo_config(name="stopped.yaml", callbacks=["stop_at_grpo:StopAt"], **kw)))
    assert wait_run(ref_dir, 300).state == "completed"
    info = wait_run(run_dir, 300)
    assert info.state == "stopped" and info.step == 5, (info.state, info.step, info.reason)
    r = subprocess.run(CLI + ["resume", str(run_dir), "--detach"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    info = wait_run(run_dir, 300)
    assert info.state == "completed", info.reason
    got = [(e["step"], e["loss"], e["reward_mean"]) for e in trains(run_dir)]
    assert [s for s, _, _ in got] == list(range(1, 9))
    ref = {e["step"]: (e["loss"], e["reward_mean"]) for e in trains(ref_dir)}
    for step, loss, reward in got:
        assert reward == pytest.approx(ref[step][1], abs=1e-6), (step, reward, ref[step])
        assert loss == pytest.approx(ref[step][0], rel=1e-4, abs=1e-5), (step, loss, ref[step])


# ------------------------------------------------------------------------------------ bad inputs


def refused(r: subprocess.CompletedProcess, runs_root: Path, *words: str) -> str:
    err = r.stderr.strip()
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    for w in words:
        assert w in err, err
    assert not runs_root.exists() or not any(runs_root.iterdir())
    return err


def test_grpo_without_rewards_is_refused_with_the_line(grpo_config, tmp_path):
    config = grpo_config(rewards=[])
    err = refused(train(config), tmp_path / "runs", "grpo.rewards", "at least one reward")
    assert err.startswith(f"ftwizard: {config}:")


def test_a_reward_file_that_does_not_import_is_refused(grpo_config, tmp_path):
    (tmp_path / "broken.py").write_text("import no_such_module_anywhere\n")
    err = refused(train(grpo_config(rewards=["broken.py:score"])), tmp_path / "runs", "grpo.rewards",
                  "does not import", "no_such_module_anywhere")
    assert err.startswith(f"ftwizard: {tmp_path / 'grpo.yaml'}:")


def test_a_reward_with_the_wrong_signature_is_refused(grpo_config, tmp_path):
    (tmp_path / "sig.py").write_text("def score(completion):\n    return 1.0\n")
    refused(train(grpo_config(rewards=["sig.py:score"])), tmp_path / "runs", "grpo.rewards", "signature",
            "f(prompts, completions, **kwargs)")


def test_a_reward_returning_the_wrong_length_is_refused(grpo_config, tmp_path):
    (tmp_path / "short.py").write_text("def score(prompts, completions, **kw):\n    return [1.0]\n")
    refused(train(grpo_config(rewards=["short.py:score"])), tmp_path / "runs", "grpo.rewards",
            "returned 1 values for 2 completions")


def test_a_reward_needing_a_missing_column_is_refused(grpo_config, tmp_path):
    refused(train(grpo_config(rewards=["code"])), tmp_path / "runs", "grpo.rewards", "'tests'")


def test_a_grpo_section_on_an_sft_run_is_refused(tiny_config, tmp_path):
    data = yaml.safe_load(dump_config(tiny_config()))
    data["grpo"] = {"rewards": ["format"]}
    (tmp_path / "sft.yaml").write_text(yaml.safe_dump(data))
    refused(train(tmp_path / "sft.yaml"), tmp_path / "runs", "grpo.rewards", "only by training: grpo")


@pytest.mark.parametrize("change, key, words", [
    ({"dataset": {"path": "p.jsonl", "format": "messages"}}, "dataset.format", "prompt-only rows"),
    ({"train": {"packing": True}}, "train.packing", "does not pack"),
    ({"grpo": {"rewards": ["format"], "reward_weights": [1.0, 2.0]}}, "grpo.reward_weights", "2 weights for 1"),
    ({"grpo": {"rewards": ["format"], "num_generations": 3}}, "grpo.num_generations", "must divide"),
    ({"grpo": {"rewards": ["format"], "format_pattern": "(<think>"}}, "grpo.format_pattern", "not a regular"),
])
def test_grpo_settings_it_cannot_honour_are_refused(change, key, words):
    from ftwizard.core.config import parse_config
    from ftwizard.core.errors import UserError

    data = {"training": "grpo", "dataset": {"path": "p.jsonl"}, "grpo": {"rewards": ["format"]},
            "train": {"batch_size": 4}}
    for section, values in change.items():
        data[section] = {**data.get(section, {}), **values}
    with pytest.raises(UserError) as exc:
        parse_config(data)
    assert key in str(exc.value) and words in str(exc.value), str(exc.value)
