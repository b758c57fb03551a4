"""The doctor's GRPO rules on synthetic curves: no reward spread in any group (TRL #3857), the reward 0
everywhere, completions always cut at max length; and that a GRPO run's zero loss is not taken for a
dead model."""

from __future__ import annotations

from ftwizard.core.doctor import GRPO_LOGS, diagnose_events


def grpo_events(n, zero_std=1.0, reward=0.0, clipped=0.2, loss=0.0, grad=0.0):
    return [{"type": "train", "step": s, "max_steps": 100, "loss": loss, "grad_norm": grad, "tokens_per_s": 0.0,
             "reward_mean": reward(s) if callable(reward) else reward,
             "zero_std_ratio": zero_std(s) if callable(zero_std) else zero_std,
             "clipped_ratio": clipped(s) if callable(clipped) else clipped} for s in range(1, n + 1)]


def codes(events):
    return {w.code: w for w in diagnose_events(events, vocab_size=320)}


def test_reward_zero_everywhere_for_ten_logs_is_no_signal_with_the_fix():
    w = codes(grpo_events(GRPO_LOGS))["grpo-no-signal"]
    assert "reward was 0 for every completion" in w.message and w.evidence["steps"] == [1, GRPO_LOGS]
    assert any("format" in a for a in w.advice) and any("num_generations" in a for a in w.advice)


def test_equal_nonzero_rewards_in_every_group_are_no_signal_too():
    w = codes(grpo_events(12, reward=1.0))["grpo-no-signal"]
    assert "same reward" in w.message and w.evidence["steps"] == [3, 12]


def test_one_log_with_spread_in_the_window_keeps_the_rule_quiet():
    evs = grpo_events(15, zero_std=lambda s: 0.5 if s == 10 else 1.0)
    assert "grpo-no-signal" not in codes(evs)
    assert "grpo-no-signal" not in codes(grpo_events(GRPO_LOGS - 1))  # too few logs yet


def test_completions_always_cut_at_max_length():
    w = codes(grpo_events(GRPO_LOGS, zero_std=0.25, reward=0.4, clipped=1.0))["grpo-clipped"]
    assert "max_completion_length" in w.message and any("max_completion_length" in a for a in w.advice)
    assert "grpo-clipped" not in codes(grpo_events(20, zero_std=0.25, clipped=lambda s: 0.9 if s == 15 else 1.0))


def test_a_learning_grpo_run_gets_no_grpo_warning_and_its_zero_grads_are_not_a_dead_model():
    healthy = grpo_events(30, zero_std=0.3, reward=lambda s: s / 30, clipped=0.1, loss=0.01, grad=0.2)
    assert not {"grpo-no-signal", "grpo-clipped", "dead-model"} & set(codes(healthy))
    stuck = codes(grpo_events(30))  # loss 0, grad 0: GRPO's no-signal case, said as such
    assert "grpo-no-signal" in stuck and "dead-model" not in stuck


def test_the_training_callback_warns_once_and_does_not_end_a_grpo_run():
    from types import SimpleNamespace

    from ftwizard.core.doctor import training_callback

    emitted = []
    cb = training_callback(lambda kind, **kw: emitted.append((kind, kw)), vocab_size=320)
    control = SimpleNamespace(should_training_stop=False)
    for s in range(1, 25):
        state = SimpleNamespace(global_step=s, is_world_process_zero=True)
        cb.on_log(None, state, control, logs={"loss": 0.0, "grad_norm": 0.0, "reward": 0.0,
                                              "frac_reward_zero_std": 1.0, "completions/clipped_ratio": 1.0})
    assert sorted(kw["code"] for _, kw in emitted) == ["grpo-clipped", "grpo-no-signal"]
    assert not control.should_training_stop
    cb.check()  # no Diverged: the run is not ended
