"""Helpers for the wizard's pilot and snapshot tests: an App with fake NVML and fixed RAM/CPU, and
run/config directories in tmp."""

from __future__ import annotations

import dataclasses

import pytest

from fakes import fake


def fixed_hardware(scenario: str):
    """detect() on a fake NVML scenario, with RAM and CPU pinned so screens are deterministic."""
    from ftwizard.core.hardware import detect

    hw = detect(fake(scenario))
    return dataclasses.replace(hw, ram_total_gib=64.0, ram_available_gib=58.2, cpu_count=16,
                               cpu_name="AMD Ryzen 9 7950X 16-Core Processor")


@pytest.fixture
def make_app(tmp_path, monkeypatch):
    """make_app(scenario="24gb", detect=True, state=None) -> WizardApp with runs/configs in tmp_path."""
    from ftwizard.tui.app import WizardApp

    monkeypatch.setenv("FTWIZARD_RUNS_DIR", str(tmp_path / "runs"))

    def make(scenario: str = "24gb", *, detect: bool = True, state=None, pinned: bool = False, config_dir=None):
        from ftwizard.tui.state import WizardState

        if pinned:
            state = (state or WizardState()).replace(hardware=fixed_hardware(scenario))
            detect = False
        return WizardApp(nvml_source=fake(scenario), runs_dir=tmp_path / "runs", config_dir=config_dir or tmp_path / "configs",
                         state=state, detect_hardware=detect)

    (tmp_path / "configs").mkdir()
    return make
