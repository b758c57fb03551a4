"""The doctor's preference rules (DPO/ORPO/SimPO accuracy at chance or margins flat, chosen answers unlearned,
KTO with one label in the logs) on synthetic curves, through the live training callback, and on a real tiny
DPO run that learns and must stay quiet."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from ftwizard.core import doctor
from ftwizard.core.doctor import KTO_LOGS, PREF_WARMUP, PREF_WINDOW, diagnose_events, training_callback

ENOUGH = PREF_WARMUP + PREF_WINDOW


def pair_events(n, acc, margin, chosen=lambda s: 0.0, rejected=lambda s: 0.0, loss=0.69):
    return [{"type": "train", "step": s, "max_steps": 100, "loss": loss, "grad_norm": 1.0, "tokens_per_s": 100.0,
             "reward_accuracy": acc(s), "reward_margin": margin(s), "reward_chosen": chosen(s),
             "reward_rejected": rejected(s)} for s in range(1, n + 1)]


def codes(events):
    return {w.code: w for w in diagnose_events(events)}


def chance(s):  # a batch of 4: 0.25 .. 0.75 around 0.5
    return (0.25, 0.5, 0.75, 0.5)[s % 4]


def test_accuracy_at_chance_after_the_warm_up_is_stuck_with_the_fix():
    w = codes(pair_events(ENOUGH, chance, lambda s: 0.001 * (s % 3)))["preference-stuck"]
    assert "near chance" in w.message and w.evidence["steps"] == [PREF_WARMUP + 1, ENOUGH]
    assert any("learning_rate" in a for a in w.advice) and any("inspect" in a for a in w.advice)


def test_within_the_warm_up_nothing_is_said():
    assert "preference-stuck" not in codes(pair_events(ENOUGH - 1, chance, lambda s: 0.0))


def test_flat_margin_without_separation_is_stuck():
    w = codes(pair_events(ENOUGH, lambda s: 0.7, lambda s: 0.02))["preference-stuck"]
    assert "margin has not grown" in w.message


def test_a_learning_run_is_quiet():
    evs = pair_events(40, lambda s: min(1.0, 0.5 + s / 20), lambda s: 0.05 * s, chosen=lambda s: -0.005 * s,
                      rejected=lambda s: -0.055 * s, loss=0.5)
    assert not {"preference-stuck", "chosen-unlearned"} & set(codes(evs))


def test_high_accuracy_with_a_flat_margin_is_not_stuck():
    assert "preference-stuck" not in codes(pair_events(ENOUGH, lambda s: 1.0, lambda s: 0.3))


def test_chosen_falling_with_rejected_is_unlearning_with_the_sft_fix():
    evs = pair_events(30, lambda s: 1.0, lambda s: 0.02 * s, chosen=lambda s: -0.04 * s, rejected=lambda s: -0.06 * s)
    w = codes(evs)["chosen-unlearned"]
    assert "being unlearned" in w.message and w.evidence["chosen_drop"] > doctor.CHOSEN_DROP
    assert any("sft" in a for a in w.advice)


def test_chosen_steady_while_rejected_falls_is_fine():
    evs = pair_events(30, lambda s: 1.0, lambda s: 0.05 * s, chosen=lambda s: -0.001 * s, rejected=lambda s: -0.05 * s)
    assert "chosen-unlearned" not in codes(evs)


def kto_events(n, undesirable_at=()):
    out = []
    for s in range(1, n + 1):
        e = {"type": "train", "step": s, "loss": 0.5, "grad_norm": 1.0, "kl": 0.0, "reward_desirable": 0.1,
             "reward_margin": 0.1}
        if s in undesirable_at:
            e["reward_undesirable"] = -0.1
        out.append(e)
    return out


def test_kto_logs_without_one_label_warn():
    w = codes(kto_events(KTO_LOGS))["kto-one-label"]
    assert w.evidence["missing_label"] == "undesirable" and any("batch_size" in a for a in w.advice)
    assert "kto-one-label" not in codes(kto_events(KTO_LOGS, undesirable_at={KTO_LOGS - 3}))
    assert "kto-one-label" not in codes(kto_events(KTO_LOGS - 1))


def test_the_live_callback_says_it_once_from_trls_log_names():
    from ftwizard.core.recipes.preference import PAIR_METRICS

    said = []
    cb = training_callback(lambda kind, **kw: said.append(kw), vocab_size=320, metrics=PAIR_METRICS)
    control = SimpleNamespace(should_training_stop=False)
    for s in range(1, ENOUGH + 6):
        logs = {"loss": 0.69, "grad_norm": 1.0, "rewards/accuracies": chance(s), "rewards/margins": 0.0,
                "rewards/chosen": 0.0, "rewards/rejected": 0.0}
        cb.on_log(None, SimpleNamespace(global_step=s, is_world_process_zero=True), control, logs=logs)
        if s == ENOUGH - 1:
            assert said == []  # still warming up
    assert [w["code"] for w in said] == ["preference-stuck"] and said[0]["advice"]
    assert not control.should_training_stop  # a warning, not the end of the run


@pytest.mark.slow
def test_a_real_tiny_dpo_run_that_learns_stays_quiet(tiny_config, tmp_path, start_run, wait_run):
    from ftwizard.core.events import read_events
    from test_preference import kind_config, pair_rows

    steps = ENOUGH + 4
    cfg = kind_config(tiny_config, tmp_path, "dpo", pair_rows(48), steps=steps)
    cfg.dataset.validation = 0.0
    run_dir = start_run(cfg)
    info = wait_run(run_dir, 600)
    assert info.state == "completed", info.reason
    ev = read_events(run_dir)
    train = [e for e in ev if e["type"] == "train"]
    assert len(train) == steps and all("reward_accuracy" in e for e in train)  # the rules had curves to read
    tail = train[-PREF_WINDOW:]
    assert sum(e["reward_accuracy"] for e in tail) / len(tail) > 0.6  # it did learn
    assert diagnose_events(ev) == []
    assert not [e for e in ev if e["type"] == "warning" and e.get("code") in
                ("preference-stuck", "chosen-unlearned", "kto-one-label")]
