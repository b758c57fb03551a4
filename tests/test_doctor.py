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
