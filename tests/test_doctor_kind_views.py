"""The doctor's per-kind rules (DPO/ORPO/SimPO stuck or unlearning chosen answers, KTO with one label, GRPO
with no reward spread or every completion cut) reach what a person reads: the monitor's `diagnose_view`
and `ftwizard status` (text, and `doctor` in --json), each warning with its fixes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ftwizard.core.doctor import GRPO_LOGS, KTO_LOGS, PREF_WARMUP, PREF_WINDOW, diagnose_events
from ftwizard.core.monitor import RunView, diagnose_view
from recorded_runs import events_for, make_run
from test_doctor_grpo import grpo_events
from test_doctor_preference import chance, kto_events, pair_events

CLI = [sys.executable, "-m", "ftwizard.core.cli"]
ENOUGH = PREF_WARMUP + PREF_WINDOW
KIND_CODES = {"preference-stuck", "chosen-unlearned", "kto-one-label", "grpo-no-signal", "grpo-clipped"}

CASES = {
    "dpo-accuracy-at-chance": (lambda: pair_events(ENOUGH, chance, lambda s: 0.001 * (s % 3)), "preference-stuck"),
    "dpo-chosen-falling-with-rejected": (lambda: pair_events(30, lambda s: 1.0, lambda s: 0.02 * s,
                                                             chosen=lambda s: -0.04 * s, rejected=lambda s: -0.06 * s),
                                         "chosen-unlearned"),
    "kto-one-label": (lambda: kto_events(KTO_LOGS), "kto-one-label"),
    "grpo-zero-spread": (lambda: grpo_events(GRPO_LOGS), "grpo-no-signal"),
    "grpo-always-cut": (lambda: grpo_events(GRPO_LOGS, zero_std=0.25, reward=0.4, clipped=1.0), "grpo-clipped"),
}


def view_codes(events) -> dict:
    view = RunView()
    view.apply(events)
    return {w.code: w for w in diagnose_view(view)}


@pytest.mark.parametrize("case", list(CASES))
def test_the_monitors_doctor_raises_each_kinds_rule_as_the_events_doctor_does(case):
    make, code = CASES[case]
    events = make()
    got = view_codes(events)
    assert code in got and got[code].advice, sorted(got)
    assert set(got) & KIND_CODES == {w.code for w in diagnose_events(events)} & KIND_CODES


@pytest.mark.parametrize("kind", ["dpo", "orpo", "kto", "grpo"])
def test_a_recorded_run_that_learns_gets_no_kind_warning_in_the_monitor(kind):
    assert not set(view_codes(events_for(200, 200, kind=kind))) & KIND_CODES


def test_status_prints_the_kind_rule_with_its_fixes_and_carries_it_in_json(tmp_path):
    run = make_run(tmp_path, "dpo-stuck", kind="dpo", steps=ENOUGH, max_steps=100)
    events = pair_events(ENOUGH, chance, lambda s: 0.001 * (s % 3))
    (run / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    r = subprocess.run(CLI + ["status", str(run)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    i = next(i for i, line in enumerate(lines) if "(preference-stuck)" in line)
    assert "near chance" in lines[i] and lines[i + 1].strip().startswith("- raise train.learning_rate"), r.stdout
    r = subprocess.run(CLI + ["status", str(run), "--json"], capture_output=True, text=True)
    doctor = {w["code"]: w for w in json.loads(r.stdout)["doctor"]}
    assert doctor["preference-stuck"]["evidence"]["steps"] == [PREF_WARMUP + 1, ENOUGH]
    assert any("inspect" in a for a in doctor["preference-stuck"]["advice"])
