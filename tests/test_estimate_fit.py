"""The setting that fits: the levers searched in a practitioner's order (find_fitting), what each
proposal costs, the CPU estimate against free RAM, and the launch check (check_fits) with a fake reading
of free RAM. Pure arithmetic: no model is loaded here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fakes import RTX_3090_24GB, machine
from ftwizard.core.catalog import CATALOG
from ftwizard.core.estimate import (FITS, NO_FIT, SETTING_KEYS, TIGHT, Settings, check_fits, estimate,
                                    find_fitting)

ROOT = Path(__file__).resolve().parents[1]


def test_the_first_lever_that_fits_wins_and_nothing_else_changes():
    a = CATALOG["llama-3.1-8b"]
    base = Settings(method="lora", batch_size=4, seq_len=1024, gradient_checkpointing=False)
    # without checkpointing 8B LoRA needs far more than 24 GiB; checkpointing alone brings it within 24
    p = find_fitting(a, 40, base)
    assert p.changes == {"gradient_checkpointing": True} and p.method == "lora"
    assert p.verdict == FITS and p.steps == ["gradient checkpointing on"]


def test_batch_goes_down_with_accumulation_keeping_the_effective_batch():
    p = find_fitting(CATALOG["llama-3.1-8b"], 12, Settings(batch_size=8, seq_len=1024))
    s = p.settings
    assert p.fits and s.batch_size * s.grad_accum == 8
    # levers are pulled in order: checkpointing (already on) -> 8-bit states -> batch, before QLoRA
    assert p.method == "qlora" and "qlora instead of lora" == p.steps[0]


def test_max_length_goes_to_the_datas_p95_only_when_the_data_is_known():
    a = CATALOG["llama-3.1-8b"]
    lengths = [300] * 90 + [900] * 7 + [3000] * 3   # p95 = 900 -> 960 (a multiple of 64)
    base = Settings(method="lora", batch_size=1, seq_len=4096)
    with_data = find_fitting(a, 21, base, lengths=lengths)  # LoRA at 4,096: 23.5 GiB; at 960: 17.8
    assert with_data.settings.seq_len == 960 and with_data.changes["seq_len"] == 960
    assert with_data.rows_cut_pct == pytest.approx(3.0)
    assert "rows longer than 960 tokens: 3%" in with_data.describe()
    blind = find_fitting(a, 21, base)
    assert blind.settings.seq_len == 4096 and "seq_len" not in blind.changes


def test_describe_says_what_it_costs():
    p = find_fitting(CATALOG["llama-3.1-70b"], 48, Settings())
    text = p.describe()
    assert text.startswith("qlora fits") and "batch 1 x accumulation 4" in text
    assert text.endswith(f"{p.estimate.total_gib:.1f} GiB of 48")
    assert set(p.changes) <= set(SETTING_KEYS)


def test_no_lever_left_names_how_many_cards_would_do():
    p = find_fitting(CATALOG["llama-3.1-405b"], 80, Settings())
    assert p.verdict == NO_FIT and not p.fits
    assert p.more_cards and "FSDP" in p.more_cards and "distributed.strategy: fsdp" in p.more_cards


# ------------------------------------------------------------------------------------------ CPU


def test_cpu_estimate_is_fp32_without_cuda_context():
    a = CATALOG["smollm2-135m"]
    cpu = estimate(a, Settings(device="cpu", seq_len=256, gradient_checkpointing=False))
    gpu = estimate(a, Settings(seq_len=256, gradient_checkpointing=False))
    assert "CUDA context" not in cpu.breakdown and "process (Python, torch, libraries)" in cpu.breakdown
    assert cpu.breakdown["weights (fp32)"] == pytest.approx(2 * gpu.breakdown["weights (bf16)"])
    assert any(n.startswith("CPU:") for n in cpu.assumptions)


def _demo_cfg(**train):
    from ftwizard.core.config import load_config

    cfg = load_config(ROOT / "presets" / "cpu-demo.yaml")
    for k, v in train.items():
        setattr(cfg.train, k, v)
    return cfg


def test_the_cpu_demo_preset_passes_the_check():
    c = check_fits(_demo_cfg(), machine(ram_available_gib=8.0), arch=CATALOG["smollm2-135m"])
    assert c.device == "cpu" and c.ok and c.proposal is None
    # every row counted at max_length (the demo's rows are shorter: 2.9 GiB measured), so a little above
    assert c.estimate.total_gib < 5.0


def test_a_cpu_run_that_would_not_fit_free_ram_gets_the_setting_that_does():
    # whole batches of 4 per pass (train.micro_batch_size 4): the proposal takes them in smaller passes
    cfg = _demo_cfg(max_length=1024, micro_batch_size=4)
    c = check_fits(cfg, machine(ram_available_gib=6.0), arch=CATALOG["smollm2-135m"])
    assert c.device == "cpu" and c.verdict == NO_FIT and not c.ok
    assert c.proposal is not None and c.proposal.fits and c.proposal.settings.device == "cpu"
    assert c.proposal.changes.get("batch_size", 4) < 4
    changes = c.proposal.config_changes()
    assert "train.batch_size" not in changes and 4 % changes["train.micro_batch_size"] == 0
    text = c.reason()
    assert "free RAM" in text and "train.micro_batch_size" in text
    # applied, the config is valid and passes the same check
    fixed = cfg.model_copy(deep=True)
    for key, value in changes.items():
        setattr(fixed.train, key.split(".")[1], value)
    assert check_fits(fixed, machine(ram_available_gib=6.0), arch=CATALOG["smollm2-135m"]).ok
    # the proposal, estimated again, fits the same free RAM
    assert estimate(CATALOG["smollm2-135m"], c.proposal.settings).verdict(6.0) in (FITS, TIGHT)


def test_a_gpu_machine_is_checked_against_the_smallest_cards_free_memory():
    cfg = _demo_cfg(device="auto", precision="auto", gradient_checkpointing=None)
    c = check_fits(cfg, machine(ram_available_gib=1.0, gpus=[RTX_3090_24GB]), arch=CATALOG["llama-3.1-70b"])
    assert c.device == "cuda" and c.capacity_gib == RTX_3090_24GB.free_gib and c.verdict == NO_FIT
    assert c.proposal is not None and c.proposal.method == "qlora"


# ------------------------------------------------------------------------------------------ CLI


def _estimate(*args):
    p = subprocess.run([sys.executable, "-m", "ftwizard.core.cli", "estimate", *args], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def test_cli_takes_every_setting_key_as_a_flag_and_proposes_when_it_does_not_fit():
    out = _estimate("--model", "llama-3.1-8b", "--method", "lora", "--seq-len", "512", "--batch-size", "2",
                    "--gradient-accumulation-steps", "2", "--lora-rank", "8", "--optim", "adamw_8bit",
                    "--no-gradient-checkpointing", "--vram-gb", "12", "--json")
    assert out["verdict"] == NO_FIT
    prop = out["proposal"]
    assert prop["method"] == "qlora" and prop["verdict"] in (FITS, TIGHT)
    assert set(prop["settings"]) <= set(SETTING_KEYS) and prop["settings"]["gradient_checkpointing"] is True
    ok = _estimate("--model", "llama-3.1-8b", "--method", "lora", "--vram-gb", "80", "--json")
    assert ok["verdict"] == FITS and "proposal" not in ok
    cpu = _estimate("--model", "smollm2-135m", "--method", "lora", "--device", "cpu", "--seq-len", "256",
                    "--no-gradient-checkpointing", "--json")
    assert "CUDA context" not in cpu["breakdown"]


@pytest.mark.parametrize("label,model,seq,batch,measured,where",
                         [r for r in __import__("ftwizard.core.estimate", fromlist=["x"]).CPU_RSS_RUNS],
                         ids=lambda v: v if isinstance(v, str) and " " in v else None)
def test_cpu_estimate_against_measured_peak_rss(label, model, seq, batch, measured, where, tiny_work):
    """The CPU figure against the peak RSS of real CPU runs (kept next to the code, CPU_RSS_RUNS),
    within the stated tolerance."""
    from ftwizard.core.catalog import resolve_arch
    from ftwizard.core.estimate import CPU_TOLERANCE

    arch = resolve_arch(str(tiny_work / "tiny-model")) if model == "tiny" else CATALOG[model]
    est = estimate(arch, Settings(device="cpu", seq_len=seq, batch_size=batch, gradient_checkpointing=False))
    err = (est.total_gib - measured) / measured
    print(f"{label}: measured {measured:.2f} GiB, estimated {est.total_gib:.2f} ({100 * err:+.1f}%)")
    assert abs(err) <= CPU_TOLERANCE


def test_train_refuses_a_cpu_run_that_would_not_fit_free_ram(tmp_path, monkeypatch, capsys):
    """`ftwizard train`'s pre-flight with a fake reading of free RAM: refused with the setting that fits,
    nothing created; --force skips the check; the CPU demo passes it on the same reading."""
    import argparse

    import ftwizard.core.hardware as hardware
    from ftwizard.core.commands import train
    from ftwizard.core.config import load_config
    from ftwizard.core.errors import UserError

    # 6.5 GiB free: the demo estimates 4.6 GiB (rows counted at max_length; measured 2.9), under 75% of it
    monkeypatch.setattr(hardware, "detect", lambda source=None: machine(ram_available_gib=6.5))
    big = tmp_path / "big.yaml"
    big.write_text((ROOT / "presets" / "cpu-demo.yaml").read_text().replace("max_length: 256", "max_length: 1024")
                   .replace("batch_size: 4", "batch_size: 4\n  micro_batch_size: 4"))
    (tmp_path / "data").symlink_to(ROOT / "presets" / "data")
    args = argparse.Namespace(config=str(big), detach=True, runs_dir=str(tmp_path / "runs"), name=None, force=False)
    with pytest.raises(UserError) as e:
        train.run(args)
    msg = str(e.value)
    assert "would not fit" in msg and "free RAM" in msg and "train.micro_batch_size" in msg and "--force" in msg
    assert not (tmp_path / "runs").exists()
    from ftwizard.core.preflight import preflight

    demo = preflight(load_config(ROOT / "presets" / "cpu-demo.yaml"), hardware=hardware.detect())
    assert not [f for f in demo.findings if f.code == "memory"]  # the demo passes on 6.5 GiB free
