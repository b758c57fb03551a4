"""core/doctor.py: each rule fires on the curve it names, with its evidence, and stays quiet otherwise."""

from __future__ import annotations

import json
import math

from ftwizard.core import doctor
from ftwizard.core.doctor import diagnose_events, diagnose_series, should_stop


def train_events(losses, grads=None, tps=None, start=1):
    out = []
    for i, loss in enumerate(losses):
        s = start + i
        out.append({"type": "train", "t": 1000.0 + s, "step": s, "max_steps": 1000, "loss": loss,
                    "lr": 1e-4, "grad_norm": grads[i] if grads else 0.5,
                    "tokens_per_s": tps[i] if tps else 2000.0})
    return out


def codes(ws):
    return [w.code for w in ws]


def healthy(n=100):
    # a decreasing, slightly noisy loss; steady grad norm and throughput
    return [2.5 * math.exp(-i / 60) + 0.8 + 0.02 * ((i * 7919) % 5 - 2) for i in range(n)]


def test_healthy_run_has_no_warnings():
    evs = train_events(healthy(), grads=[0.4 + 0.1 * (i % 3) for i in range(100)],
                       tps=[2000.0 + 50 * (i % 4) for i in range(100)])
    evs += [{"type": "eval", "t": 2000.0 + s, "step": s, "eval_loss": v}
            for s, v in ((25, 2.4), (50, 2.0), (75, 1.8), (100, 1.7))]
    assert diagnose_events(evs) == []


def test_overfitting_names_eval_steps_and_values():
    evs = train_events(healthy(400))
    evs += [{"type": "eval", "t": 2000.0 + s, "step": s, "eval_loss": v}
            for s, v in ((100, 1.60), (200, 1.50), (300, 1.56), (400, 1.64))]
    ws = diagnose_events(evs)
    assert codes(ws) == ["overfitting"]
    w = ws[0]
    assert w.evidence["eval_steps"] == [200, 300, 400] and w.evidence["eval_loss"] == [1.50, 1.56, 1.64]
    assert w.evidence["train_loss_after"] < w.evidence["train_loss_before"]
    assert "steps 200-400" in w.message and "1.5 -> 1.64" in w.message
    assert any("fewer epochs" in a for a in w.advice) and any("learning_rate" in a for a in w.advice)
    assert should_stop(ws).code == "overfitting"


def test_rising_eval_with_rising_train_is_not_overfitting():
    evs = train_events([1.0 + i * 0.01 for i in range(300)])
    evs += [{"type": "eval", "t": 2000.0 + s, "step": s, "eval_loss": v}
            for s, v in ((100, 1.5), (200, 1.6), (300, 1.7))]
    assert "overfitting" not in codes(diagnose_events(evs))


def test_tiny_eval_wiggle_is_not_overfitting():
    evs = train_events(healthy(300))
    evs += [{"type": "eval", "t": 2000.0 + s, "step": s, "eval_loss": v}
            for s, v in ((100, 1.500), (200, 1.501), (300, 1.502))]  # +0.13 %, below 1 %
    assert diagnose_events(evs) == []


def test_plateau_from_the_start():
    flat = [6.2 + 0.03 * ((i * 31) % 7 - 3) / 3 for i in range(40)]
    ws = diagnose_events(train_events(flat))
    assert codes(ws) == ["plateau"]
    w = ws[0]
    assert w.evidence["start_steps"] == [1, 5] and w.evidence["recent_steps"] == [36, 40]
    assert "learning_rate" in w.advice[0]
    # too few steps: no judgement yet
    assert diagnose_events(train_events(flat[:doctor.PLATEAU_MIN_STEPS - 1])) == []
    # a loss that dipped and came back is not a plateau "from the start"
    dip = flat[:10] + [4.0] * 10 + flat[20:]
    assert "plateau" not in codes(diagnose_events(train_events(dip)))


def test_exploding_grad_norm_names_the_step():
    grads = [0.5 + 0.05 * (i % 3) for i in range(30)] + [48.0] + [0.6] * 5
    ws = diagnose_events(train_events(healthy(36), grads=grads))
    assert codes(ws) == ["exploding-grad"]
    assert ws[0].evidence["step"] == 31 and ws[0].evidence["grad_norm"] == 48.0
    assert "step 31" in ws[0].message and "learning rate" in ws[0].message
    # large but not relative to its history (a model whose norms are always ~40) is fine
    assert diagnose_events(train_events(healthy(36), grads=[40.0 + i % 3 for i in range(36)])) == []


def test_nan_loss_is_an_error_and_stops_early():
    evs = train_events([2.0, 1.9, 1.8, float("nan"), float("nan")])
    # as the trainer writes it: json with NaN literals
    evs = [json.loads(json.dumps(e, allow_nan=True)) for e in evs]
    ws = diagnose_events(evs)
    assert codes(ws)[0] == "nan-loss" and ws[0].severity == "error"
    assert ws[0].evidence["first_step"] == 4 and ws[0].evidence["steps"] == [4, 5]
    assert "10x" in ws[0].advice[0]
    assert should_stop(ws).code == "nan-loss"
    inf_grad = train_events([2.0, 1.9, 1.8], grads=[0.5, float("inf"), 0.5])
    assert codes(diagnose_events(inf_grad)) == ["nan-loss"]


def test_memorising():
    losses = healthy(30) + [0.04, 0.02, 0.01, 0.008, 0.005]
    ws = diagnose_events(train_events(losses))
    assert codes(ws) == ["memorising"] and ws[0].evidence["steps"] == [31, 35]
    assert diagnose_events(train_events(healthy(30) + [0.04, 0.02, 0.06, 0.01, 0.01])) == []


def test_throughput_collapse_and_noise():
    tps = [2000.0 + 100 * (i % 5) for i in range(40)] + [300.0, 280.0, 310.0, 290.0, 305.0]
    ws = diagnose_events(train_events(healthy(45), tps=tps))
    assert codes(ws) == ["throughput-drop"]
    assert ws[0].evidence["recent_steps"] == [41, 45] and ws[0].evidence["recent_tokens_per_s"] == 300.0
    # one slow step (an evaluation, a checkpoint) is not a collapse
    tps2 = tps[:40] + [300.0, 2000.0, 2100.0, 2050.0, 1990.0]
    assert diagnose_events(train_events(healthy(45), tps=tps2)) == []


def test_resumed_steps_replace_earlier_ones():
    # steps 1-20 plateau, then a resume from step 10 with a falling loss: judged on the curve as it is now
    first = train_events([6.0] * 20)
    second = train_events([6.0 - 0.2 * i for i in range(25)], start=11)
    assert "plateau" not in codes(diagnose_events(first + second))


def test_series_api_matches_events_api():
    losses = [6.0] * 30
    xs = list(range(1, 31))
    by_series = diagnose_series(train=(xs, losses))
    assert codes(by_series) == codes(diagnose_events(train_events(losses))) == ["plateau"]
    assert by_series[0].to_json()["advice"] == list(by_series[0].advice)


def test_bounded_cost_on_long_runs():
    """With the curve's minimum given (the monitor tracks it), no rule walks the whole curve: the rules
    read as many points of a 100k-step run as of a 10k-step one (give or take a binary search's probes)."""
    from reads import Reads

    def points_read(n):
        # a plateau, so every rule runs to its end (the plateau rule needs the minimum)
        xs, loss = list(range(1, n + 1)), [2.0 + 0.01 * math.sin(i) for i in range(n)]
        evals = (xs[::1000], [1.0] * len(xs[::1000]))
        curves = [Reads(xs), Reads(loss), Reads([0.5] * n), Reads([1000.0] * n)]
        x, train, grad, tps = curves
        assert diagnose_series(train=(x, train), grad=(x, grad), tps=(x, tps), evals=evals, train_min=min(loss))
        return sum(c.reads for c in curves)

    short, long = points_read(10_000), points_read(100_000)
    assert 0 < short < 10_000 and 0 <= long - short <= 2 * 4, (short, long)  # log2(10) ~ 3.3 more probes, per bisect


# ------------------------------------------------------------------- divergence and dead models


def test_diverging_loss_is_an_error_with_the_evidence():
    # as seen: 1.4 at the start, climbing to 65-289
    losses = [1.4, 1.38, 1.41, 1.36, 1.39] + [1.5 + 2 ** (i / 2) for i in range(20)] + [65, 120, 289, 150, 90]
    ws = diagnose_events(train_events(losses))
    assert codes(ws)[0] == "diverging" and ws[0].severity == "error"
    assert ws[0].evidence["recent_steps"] == [26, 30] and ws[0].evidence["start_steps"] == [1, 5]
    assert "diverged" in ws[0].message and "10x" in ws[0].advice[0]


def test_a_loss_that_spikes_once_or_stays_near_its_start_is_not_diverging():
    spike = [1.4] * 10 + [30.0] + [1.2] * 10
    assert "diverging" not in codes(diagnose_events(train_events(spike)))
    high_start = [0.2] * 5 + [0.7] * 10  # 3.5x, but only 0.5 above: noise on a low loss
    assert "diverging" not in codes(diagnose_events(train_events(high_start)))


def test_dead_model_by_zero_grad_norm():
    losses = healthy(40)
    grads = [0.5] * 11 + [0.0] * 29  # grad norm 0 for 29 steps
    ws = diagnose_events(train_events(losses, grads=grads))
    assert codes(ws)[0] == "dead-model" and ws[0].severity == "error"
    assert ws[0].evidence["steps"] == [31, 40] and "grad norm has been 0" in ws[0].message
    assert diagnose_events(train_events(losses, grads=[0.5] * 31 + [0.0] * 9)) == []  # 9 zeros: not yet


def test_dead_model_by_a_loss_pinned_at_ln_vocab():
    vocab = 49152
    pinned = [4.5 - 0.05 * i for i in range(10)] + [math.log(vocab) + 0.01 * (i % 3) for i in range(15)]
    ws = diagnose_events(train_events(pinned), vocab_size=vocab)
    assert codes(ws)[0] == "dead-model" and "ln(49152)" in ws[0].message
    assert "dead-model" not in codes(diagnose_events(train_events(pinned)))  # vocabulary unknown: no judgement
    assert "dead-model" not in codes(diagnose_events(train_events(healthy(40)), vocab_size=vocab))
    # a randomly initialised model starts at ln(vocab): not learning yet is not dead (the plateau rule speaks)
    fresh = [math.log(vocab) + 0.01 * (i % 3) for i in range(25)]
    assert codes(diagnose_events(train_events(fresh), vocab_size=vocab)) == ["plateau"]


def test_the_training_callback_ends_a_diverging_run():
    """The callback the training process adds: it stops training and `check()` raises with the reason."""
    from types import SimpleNamespace

    emitted = []
    cb = doctor.training_callback(lambda kind, **kw: emitted.append((kind, kw)), vocab_size=None)
    control = SimpleNamespace(should_training_stop=False)
    losses = [1.4] * 5 + [2.0, 5.0, 9.0, 30.0, 65.0, 120.0, 289.0, 150.0]
    for step, loss in enumerate(losses, 1):
        state = SimpleNamespace(global_step=step, is_world_process_zero=True)
        cb.on_log(None, state, control, logs={"loss": loss, "grad_norm": 1.0})
        if control.should_training_stop:
            break
    assert control.should_training_stop and step == 11  # five logs in a row >= 3x the start
    assert emitted == [("warning", {"code": "diverging", "message": emitted[0][1]["message"],
                                    "evidence": emitted[0][1]["evidence"]})]
    import pytest

    with pytest.raises(doctor.Diverged, match="training has diverged"):
        cb.check()
    from ftwizard.core.diagnose import diagnose_text

    d = diagnose_text(f"Diverged: {cb.ended.message}; the run was ended", exc_type="Diverged")
    assert d["kind"] == "diverged" and "learning_rate" in d["fixes"][0]
