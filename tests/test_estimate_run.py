"""Every run checks its estimate (issue 16, item 4): the estimate at launch is in the run, the measured
peak (the trainer's peak RSS on this CPU) beside it in `status --json`, and a run that exceeds it by more
than the stated tolerance says so in its events."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ftwizard.core.estimate import ESTIMATE_TOLERANCE, exceeds_estimate

CLI = [sys.executable, "-m", "ftwizard.core.cli"]


def test_exceeds_estimate_only_beyond_the_tolerance():
    assert not exceeds_estimate(1.0 + ESTIMATE_TOLERANCE - 1e-6, 1.0)
    assert exceeds_estimate(1.0 + ESTIMATE_TOLERANCE + 1e-3, 1.0)
    assert not exceeds_estimate(None, 1.0) and not exceeds_estimate(5.0, None)


def test_a_peak_above_the_estimate_is_one_warning_event(tmp_path):
    from ftwizard.core.events import read_events
    from ftwizard.core.recipes.common import Run, check_estimate

    run = Run(tmp_path)
    run.estimate_gib = 0.5
    check_estimate(run, {"rss_gib": 0.4, "peak_rss_gib": 0.55}, step=1)  # within 15%: nothing
    check_estimate(run, {"rss_gib": 0.7, "peak_rss_gib": 0.9}, step=2)
    check_estimate(run, {"rss_gib": 0.7, "peak_rss_gib": 1.2}, step=3)  # said once per run
    run.events.close()
    warnings = [e for e in read_events(tmp_path) if e["type"] == "warning"]
    assert [w["code"] for w in warnings] == ["estimate-exceeded"]
    assert warnings[0]["evidence"] == {"step": 2, "peak_gib": 0.9, "estimate_gib": 0.5}


def test_fold_takes_the_estimate_and_the_highest_peak():
    from ftwizard.core.events import RunFold

    fold = RunFold()
    fold.apply([{"type": "info", "t": 1, "key": "estimate", "value": {"total_gib": 2.5}},
                {"type": "train", "t": 2, "step": 1, "loss": 1.0, "mem": {"rss_gib": 1.0, "peak_rss_gib": 1.4}},
                {"type": "train", "t": 3, "step": 2, "loss": 1.0, "mem": {"rss_gib": 1.1, "peak_rss_gib": 1.2}},
                {"type": "train", "t": 4, "step": 3, "loss": 1.0,
                 "mem": {"cuda": [{"device": 0, "peak_gib": 3.0, "peak_reserved_gib": 3.5}]}}])
    assert fold.estimate_gib == 2.5 and fold.peak_gib == 3.5


@pytest.mark.slow
def test_status_json_carries_estimate_and_measured_peak_within_tolerance(tiny_config, start_run, wait_run):
    run_dir = start_run(tiny_config(steps=4))
    assert wait_run(run_dir).state == "completed"
    r = subprocess.run(CLI + ["status", str(run_dir), "--json"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    est, peak = info["estimate_gib"], info["peak_gib"]
    assert est and peak, info
    print(f"tiny run: peak RSS {peak:.3f} GiB, estimate {est:.3f} GiB ({peak / est:.2f})")
    assert peak <= est * (1 + ESTIMATE_TOLERANCE)
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    assert not [e for e in events if e.get("code") == "estimate-exceeded"]


def test_lora_dropout_on_fused_moe_experts_is_refused_before_a_run_exists(tmp_path):
    """peft 0.21 wraps Qwen3-MoE's fused experts in a ParamWrapper that raises on lora_dropout != 0 when
    the adapters are made: the pre-flight says so first (and lets dropout 0 through)."""
    from transformers import AutoModelForCausalLM, Qwen3MoeConfig

    from ftwizard.core.config import RunConfig
    from ftwizard.core.preflight import Report, check_method
    from ftwizard.core.catalog import known_arch

    c = Qwen3MoeConfig(vocab_size=128, hidden_size=32, intermediate_size=64, moe_intermediate_size=16,
                       num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2, num_experts=4,
                       num_experts_per_tok=2, head_dim=8)
    AutoModelForCausalLM.from_config(c).save_pretrained(tmp_path / "moe")
    arch = known_arch(str(tmp_path / "moe"))
    assert arch is not None and arch.moe
    report = Report()
    cfg = RunConfig(model={"name_or_path": str(tmp_path / "moe")}, dataset={"path": "d.jsonl"})
    check_method(cfg, arch, report)
    assert [(f.code, f.field) for f in report.errors] == [("method", "lora.dropout")]
    cfg.lora.dropout = 0.0
    report = Report()
    check_method(cfg, arch, report)
    assert report.errors == []


def test_peak_rss_is_the_trainers_own_not_its_parents():
    """A trainer is started by a large process (a test session, the wizard); its peak must be its own.
    getrusage's ru_maxrss carries the parent's size over fork and exec (it read 1.68 GiB for a 0.5 GiB
    tiny run late in a test session); VmHWM does not."""
    big = bytearray(600 * 1024 * 1024)  # the parent holds 600 MiB
    code = "from ftwizard.core.recipes.common import peak_rss_gib; print(peak_rss_gib())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert float(out.stdout) < 0.4, out.stdout  # the child imports little: far below the parent's 0.59 GiB
    del big
